"""An app wired to the fake OAuth provider, and the steps of a connection flow as a browser takes them."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import OAuthProviderSettings, Settings
from tests.utils.builders import User
from tests.utils.fake_oauth import FakeClient, FakeOAuth

APP_URL = "https://app.example.com"
JSON = {"Accept": "application/json"}


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def oauth_settings(
    settings: Settings,
    fake: FakeOAuth,
    client: FakeClient,
    *,
    key: str,
    old_keys: tuple[str, ...] = (),
    **provider: Any,
) -> Settings:
    """The test settings with one provider, `fake`, found through the fake's OpenID discovery."""
    config = OAuthProviderSettings(
        client_id=client.client_id,
        client_secret=SecretStr(client.client_secret),
        discovery_url=f"{fake.url}/.well-known/openid-configuration",
        scopes=["openid", "email"],
        **provider,
    )
    return settings.model_copy(
        update={
            "public_url": "http://test",
            "app_url": APP_URL,
            "encryption_key": SecretStr(key),
            "encryption_old_keys": [SecretStr(k) for k in old_keys],
            "oauth": {"fake": config},
            "oauth_timeout": 5.0,
        }
    )


@dataclass
class World:
    """One test's app, its HTTP client (every response body is kept) and its fake OAuth client."""

    app: FastAPI
    client: httpx.AsyncClient
    fake: FakeOAuth
    provider: FakeClient
    bodies: list[str] = field(default_factory=list)

    async def authorize(self, user: User, **params: str) -> str:
        """GET /authorize as a frontend does (Accept: application/json): the provider URL."""
        response = await self.client.get("/api/connections/authorize/fake", params=params, headers=user.headers | JSON)
        assert response.status_code == 200, response.text
        url: str = response.json()["url"]
        assert url.startswith(self.fake.url + "/authorize?")
        return url

    async def consent(self, url: str) -> str:
        """The user's browser at the provider, which sends it back: our callback URL."""
        async with httpx.AsyncClient() as browser:
            response = await browser.get(url)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith("http://test/api/connections/callback/fake?"), location
        return location

    async def callback(self, location: str, headers: dict[str, str] | None = None) -> dict[str, str]:
        """The browser back at our callback: where it is sent next, as its query plus `_to`."""
        response = await self.client.get(location, headers=headers or {})
        assert response.status_code == 302, response.text
        assert response.headers["referrer-policy"] == "no-referrer"
        target = response.headers["location"]
        parts = urlsplit(target)
        outcome = {k: v[0] for k, v in parse_qs(parts.query).items()}
        outcome["_to"] = f"{parts.scheme}://{parts.netloc}{parts.path}"
        return outcome

    async def connect(self, user: User, **params: str) -> dict[str, str]:
        return await self.callback(await self.consent(await self.authorize(user, **params)))

    async def status(self, user: User) -> dict[str, Any]:
        response = await self.client.get("/api/connections/status/fake", headers=user.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def connections(self, user: User) -> list[dict[str, Any]]:
        response = await self.client.get("/api/connections", headers=user.headers)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result


@asynccontextmanager
async def world(
    settings: Settings,
    engine: AsyncEngine,
    fake: FakeOAuth,
    *,
    key: str | None = None,
    old_keys: tuple[str, ...] = (),
    provider: FakeClient | None = None,
    **behaviour: Any,
) -> AsyncIterator[World]:
    """An app whose provider `fake` is a new client of the fake (or `provider`, to share one between apps)."""
    provider = provider or fake.client(**behaviour)
    app = create_app(oauth_settings(settings, fake, provider, key=key or new_key(), old_keys=old_keys), engine=engine)
    bodies: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        bodies.append(response.text + " " + str(response.headers))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", event_hooks={"response": [keep]}) as c:
        yield World(app, c, fake, provider, bodies)


async def owner_rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Read as the database owner (no RLS): what is really stored."""
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def stored(engine: AsyncEngine, user: User) -> list[dict[str, Any]]:
    return await owner_rows(engine, "select * from connections where user_id = :u", u=user.id)


async def pending_states(engine: AsyncEngine, user: User | None = None) -> int:
    """Authorizations in flight: the user's, or everyone's."""
    if user is None:
        return len(await owner_rows(engine, "select 1 from oauth_states"))
    return len(await owner_rows(engine, "select 1 from oauth_states where user_id = :u", u=user.id))


async def expire(engine: AsyncEngine, connection_id: Any) -> None:
    """The connection's access token expired a minute ago (as the provider said it would)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("update connections set expires_at = now() - interval '1 minute' where id = :id"),
            {"id": connection_id},
        )
