"""The built-in OAuth providers: the authorization URLs they really send users to, each quirk (GitHub's
errors in a 200, Slack's workspace token, Notion's JSON token endpoint, RFC 7009 revocation) run against
the fake provider speaking that dialect, and the settings that configure them."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import OAuthProviderSettings, Settings, parse_key
from fluxopus.integrations.oauth import OAuth
from fluxopus.integrations.providers import BUILT_IN
from tests.utils.builders import Company, User
from tests.utils.connections import APP_URL, JSON, new_key
from tests.utils.fake_oauth import Dialect, FakeClient, FakeOAuth, Received
from tests.utils.http import assert_error

# Every provider dialect against the fake, one flow each: many seconds in all (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow


def app_with(settings: Settings, engine: AsyncEngine, **providers: OAuthProviderSettings) -> FastAPI:
    """An app with these providers (and nothing else) configured, as tests/utils/connections.py builds one."""
    return create_app(
        settings.model_copy(
            update={
                "public_url": "http://test",
                "app_url": APP_URL,
                "encryption_key": SecretStr(new_key()),
                "encryption_old_keys": [],
                "oauth": providers,
                "oauth_timeout": 5.0,
            }
        ),
        engine=engine,
    )


def dummy(**overrides: Any) -> OAuthProviderSettings:
    return OAuthProviderSettings(client_id="dummy-id", client_secret=SecretStr("dummy-secret"), **overrides)


@asynccontextmanager
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def stored(engine: AsyncEngine, user: User, provider: str) -> list[dict[str, Any]]:
    """Read as the database owner (no RLS): what is really stored."""
    sql = "select * from connections where user_id = :u and provider = :p"
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), {"u": user.id, "p": provider})).mappings()]


# --- A. authorization URLs of the built-ins, as configured with nothing but credentials ------------

# The real endpoints and extra parameters, written out rather than read from the specs: a change there must fail here.
AUTHORIZE = {
    "google": (
        "https://accounts.google.com/o/oauth2/v2/auth",
        {"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
    ),
    "microsoft": ("https://login.microsoftonline.com/common/oauth2/v2.0/authorize", {"response_mode": "query"}),
    "github": ("https://github.com/login/oauth/authorize", {}),
    "slack": ("https://slack.com/oauth/v2/authorize", {}),
    "notion": ("https://api.notion.com/v1/oauth/authorize", {"owner": "user"}),
    "hubspot": ("https://app.hubspot.com/oauth/authorize", {}),
    "atlassian": ("https://auth.atlassian.com/authorize", {"audience": "api.atlassian.com", "prompt": "consent"}),
}


def test_every_built_in_is_covered() -> None:
    """A new built-in provider must get its authorization URL checked below."""
    assert set(AUTHORIZE) == set(BUILT_IN)


async def authorization_url(client: httpx.AsyncClient, user: User, provider: str) -> tuple[str, dict[str, str]]:
    """The URL authorize answers, split into its endpoint and its (single-valued) query."""
    response = await client.get(f"/api/connections/authorize/{provider}", headers=user.headers | JSON)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"url"}
    parts = urlsplit(response.json()["url"])
    query = parse_qs(parts.query, keep_blank_values=True)
    assert all(len(values) == 1 for values in query.values()), query
    return f"{parts.scheme}://{parts.netloc}{parts.path}", {k: v[0] for k, v in query.items()}


@pytest.mark.parametrize("name", sorted(AUTHORIZE))
async def test_authorization_url_of_each_built_in(
    name: str, settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    """Credentials alone make a built-in usable: the user is sent to the provider's real endpoint with
    our callback, a state, PKCE only where the provider takes it, its scope syntax and its extra parameters."""
    spec = BUILT_IN[name]
    app = app_with(settings, engine, **{name: dummy()})
    async with http(app) as client:
        endpoint, query = await authorization_url(client, acme.alice, name)
        _, again = await authorization_url(client, acme.alice, name)

    expected_endpoint, extra = AUTHORIZE[name]
    assert endpoint == expected_endpoint
    assert query["response_type"] == "code" and query["client_id"] == "dummy-id"
    assert query["redirect_uri"] == f"http://test/api/connections/callback/{name}"
    assert len(query["state"]) >= 32 and query["state"] != again["state"]
    for key, value in extra.items():
        assert query[key] == value, key
    expected = {"response_type", "client_id", "redirect_uri", "state", *extra}
    if spec.pkce:
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["code_challenge"] != again["code_challenge"]
        expected |= {"code_challenge", "code_challenge_method"}
    if spec.scopes:
        assert query["scope"] == spec.scope_separator.join(spec.scopes)
        expected.add("scope")
    assert set(query) == expected  # nothing else: no client secret, no stray parameter
    assert "dummy-secret" not in str(query)


async def test_scope_syntax_of_the_providers_that_differ(
    settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    """Slack takes its scopes comma-separated and Notion none at all (the user picks pages instead)."""
    app = app_with(settings, engine, slack=dummy(), notion=dummy(), github=dummy())
    async with http(app) as client:
        _, slack = await authorization_url(client, acme.alice, "slack")
        _, notion = await authorization_url(client, acme.alice, "notion")
        _, github = await authorization_url(client, acme.alice, "github")
    assert slack["scope"] == "channels:read,channels:history,users:read" and "code_challenge" not in slack
    assert "scope" not in notion and "code_challenge" not in notion
    assert github["scope"] == "read:user user:email" and github["code_challenge_method"] == "S256"


async def test_a_microsoft_tenant_goes_into_its_endpoints(
    settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    """FLUXOPUS_OAUTH_MICROSOFT_TENANT=organizations keeps personal accounts out: it is in the URL users see."""
    app = app_with(settings, engine, microsoft=dummy(tenant="organizations"))
    async with http(app) as client:
        endpoint, query = await authorization_url(client, acme.alice, "microsoft")
    assert endpoint == "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
    assert query["response_mode"] == "query"
    configured = settings.model_copy(
        update={"oauth": {"microsoft": dummy(tenant="organizations")}, "encryption_key": SecretStr(new_key())}
    )
    token_url = OAuth(configured).providers["microsoft"].token_url
    assert token_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"


async def test_authorize_redirects_to_the_built_in_without_json(
    settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    """A browser following the link gets a 302 straight to the provider."""
    app = app_with(settings, engine, github=dummy())
    async with http(app) as client:
        response = await client.get("/api/connections/authorize/github", headers=acme.alice.headers)
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://github.com/login/oauth/authorize?")


@pytest.mark.parametrize("name", sorted(AUTHORIZE))
async def test_an_unconfigured_built_in_is_404_saying_what_to_set(
    name: str, settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    """An operator who has not configured a built-in learns the environment variables that would."""
    other = "github" if name != "github" else "google"
    app = app_with(settings, engine, **{other: dummy()})
    upper = name.upper()
    async with http(app) as client:
        for path in (f"/api/connections/authorize/{name}", f"/api/connections/status/{name}"):
            message = assert_error(await client.get(path, headers=acme.alice.headers | JSON), 404)
            assert f"FLUXOPUS_OAUTH_{upper}_CLIENT_ID" in message and f"FLUXOPUS_OAUTH_{upper}_CLIENT_SECRET" in message
            assert BUILT_IN[name].title in message


async def test_with_no_provider_at_all_a_built_in_is_still_404_with_the_hint(
    settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    app = app_with(settings, engine)
    async with http(app) as client:
        response = await client.get("/api/connections/authorize/slack", headers=acme.alice.headers | JSON)
    assert "FLUXOPUS_OAUTH_SLACK_CLIENT_ID" in assert_error(response, 404)


# --- B. each quirk against the fake provider speaking that provider's dialect ---------------------


@dataclass
class Flow:
    """A built-in provider pointed at the fake, and the steps a browser takes through a connection."""

    name: str
    client: httpx.AsyncClient
    fake: FakeOAuth
    provider: FakeClient

    async def authorize(self, user: User) -> dict[str, str]:
        """GET /authorize, then the user's consent at the provider: our callback's query."""
        response = await self.client.get(f"/api/connections/authorize/{self.name}", headers=user.headers | JSON)
        assert response.status_code == 200, response.text
        url = response.json()["url"]
        assert url.startswith(self.fake.url + "/authorize?"), url
        async with httpx.AsyncClient() as browser:
            at_provider = await browser.get(url)
        assert at_provider.status_code == 302, at_provider.text
        location = at_provider.headers["location"]
        assert location.startswith(f"http://test/api/connections/callback/{self.name}?"), location
        return dict(parse_qsl(urlsplit(location).query))

    async def callback(self, params: dict[str, str]) -> dict[str, str]:
        """The browser back at our callback: the query of the app URL it is sent to."""
        response = await self.client.get(f"/api/connections/callback/{self.name}", params=params)
        assert response.status_code == 302, response.text
        target = urlsplit(response.headers["location"])
        assert f"{target.scheme}://{target.netloc}{target.path}".rstrip("/") == APP_URL
        return dict(parse_qsl(target.query))

    async def connect(self, user: User) -> dict[str, str]:
        return await self.callback(await self.authorize(user))

    async def status(self, user: User) -> dict[str, Any]:
        response = await self.client.get(f"/api/connections/status/{self.name}", headers=user.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def disconnect(self, user: User) -> dict[str, Any]:
        connection_id = (await self.status(user))["connection_id"]
        assert connection_id is not None
        response = await self.client.delete(f"/api/connections/{connection_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert result["id"] == connection_id and result["deleted"] is True
        return result

    def received(self, path: str) -> list[Received]:
        return [r for r in self.provider.received if r.path == path]


@asynccontextmanager
async def flow(
    settings: Settings,
    engine: AsyncEngine,
    fake: FakeOAuth,
    name: str,
    dialect: Dialect = "standard",
    *,
    behaviour: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Flow]:
    """The built-in `name`, its endpoints overridden to the fake's, whose client answers in `dialect`."""
    provider = fake.client(dialect=dialect, **(behaviour or {}))
    config = OAuthProviderSettings(
        client_id=provider.client_id,
        client_secret=SecretStr(provider.client_secret),
        **(fake.endpoints(dialect) | overrides),
    )
    async with http(app_with(settings, engine, **{name: config})) as client:
        yield Flow(name, client, fake, provider)


async def test_github_names_the_account_by_login_and_revokes_the_whole_grant(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """GitHub has no OpenID userinfo: the account comes from GET /user, and a disconnect deletes the app's
    authorization with DELETE /applications/{client_id}/grant, authenticated as the app (HTTP Basic)."""
    account = {"id": 123, "login": "octocat", "name": "The Octocat", "email": None}
    async with flow(settings, engine, fake_oauth, "github", "github", behaviour={"account": account}) as f:
        assert await f.connect(acme.alice) == {"connection": "github", "status": "connected"}
        [token] = f.provider.issued
        assert token.startswith("gho_")
        [exchange] = f.provider.token_requests
        assert exchange["code_verifier"] and exchange["client_secret"] == f.provider.client_secret  # PKCE, post
        [who] = f.received("/user")
        assert who.method == "GET" and who.headers["authorization"] == f"Bearer {token}"

        status = await f.status(acme.alice)
        assert status["connected"] is True and status["account"] == "octocat"
        # GitHub lists granted scopes with commas; a non-expiring token has no expiry.
        assert status["scopes"] == ["read:user", "user:email"] and status["expires_at"] is None
        [row] = await stored(engine, acme.alice, "github")
        assert row["account_id"] == "123" and row["account"] == "octocat"

        assert await f.disconnect(acme.alice) == {
            "id": status["connection_id"], "deleted": True, "revoked": True, "revoke_error": None,
        }  # fmt: skip
        [delete] = f.received(f"/applications/{f.provider.client_id}/grant")
        app_credentials = (f.provider.client_id, f.provider.client_secret)
        assert delete.method == "DELETE" and delete.basic_credentials() == app_credentials
        assert delete.headers["content-type"].startswith("application/json") and delete.body == {"access_token": token}
        assert token in f.provider.revoked and await stored(engine, acme.alice, "github") == []
        async with httpx.AsyncClient() as api:
            gone = await api.get(f"{f.fake.url}/user", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 401


async def test_github_token_errors_arrive_in_a_200_and_become_the_reason(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """GitHub answers a bad code with HTTP 200 {"error": "bad_verification_code"}: that must not be
    mistaken for a token, and the app is told why."""
    async with flow(settings, engine, fake_oauth, "github", "github") as f:
        params = await f.authorize(acme.alice)
        outcome = await f.callback(params | {"code": "not-a-code"})  # a code used already, or from an old tab
        assert outcome == {"connection": "github", "status": "error", "reason": "bad_verification_code"}
        [exchange] = f.provider.token_requests
        assert exchange["code"] == "not-a-code"
        assert f.provider.issued == [] and await stored(engine, acme.alice, "github") == []
        assert (await f.status(acme.alice))["connected"] is False


async def test_github_with_a_wrong_client_secret_says_so(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    async with flow(settings, engine, fake_oauth, "github", "github") as f:
        params = await f.authorize(acme.alice)
        f.provider.client_secret = "rotated-at-github"  # the operator's secret is now stale
        outcome = await f.callback(params)
    assert outcome["status"] == "error" and outcome["reason"] == "incorrect_client_credentials"
    assert await stored(engine, acme.alice, "github") == []


async def test_slack_names_the_workspace_from_the_token_response_and_revokes_with_the_token(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """oauth.v2.access answers {"ok": true, "access_token": "xoxb-…", "token_type": "bot", "scope": "a,b",
    "team": {…}}: the account is the workspace; auth.revoke is authenticated by the token it revokes."""
    behaviour = {"account": {"team": {"id": "T1", "name": "Acme"}}}
    async with flow(settings, engine, fake_oauth, "slack", "slack", behaviour=behaviour, scopes=["a", "b"]) as f:
        assert await f.connect(acme.alice) == {"connection": "slack", "status": "connected"}
        [sent] = f.provider.authorize_requests
        assert sent["scope"] == "a,b" and "code_challenge" not in sent
        [token] = f.provider.issued
        assert token.startswith("xoxb-")

        status = await f.status(acme.alice)
        assert status["connected"] is True and status["account"] == "Acme"
        assert status["scopes"] == ["a", "b"] and status["expires_at"] is None
        [row] = await stored(engine, acme.alice, "slack")
        assert row["account_id"] == "T1" and row["token_type"] == "bot"

        result = await f.disconnect(acme.alice)
        assert result["revoked"] is True and result["revoke_error"] is None
        [revoke] = f.received("/api/auth.revoke")
        assert revoke.method == "POST" and revoke.headers["authorization"] == f"Bearer {token}"
        assert token in f.provider.revoked and await stored(engine, acme.alice, "slack") == []


async def test_slack_token_errors_arrive_as_ok_false_in_a_200(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    async with flow(settings, engine, fake_oauth, "slack", "slack") as f:
        params = await f.authorize(acme.alice)
        outcome = await f.callback(params | {"code": "stale-code"})
        assert outcome == {"connection": "slack", "status": "error", "reason": "invalid_code"}
        assert len(f.provider.token_requests) == 1 and f.provider.issued == []
        assert await stored(engine, acme.alice, "slack") == []


async def test_slack_refusing_the_revocation_still_deletes_and_says_why(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """The user removed the app in Slack first: auth.revoke answers {"ok": false, "error": "token_revoked"}
    with HTTP 200. That is not a successful revocation, but the connection goes all the same."""
    async with flow(settings, engine, fake_oauth, "slack", "slack") as f:
        await f.connect(acme.alice)
        fake_oauth.uninstall(f.provider)
        result = await f.disconnect(acme.alice)
        assert result["revoked"] is False and "token_revoked" in result["revoke_error"]
        assert f.provider.issued[0] not in result["revoke_error"]  # never a token in a message
        assert len(f.received("/api/auth.revoke")) == 1
        assert await stored(engine, acme.alice, "slack") == []
        assert (await f.status(acme.alice))["connected"] is False


async def test_notion_exchanges_the_code_as_json_with_basic_auth_and_names_the_workspace(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """Notion's token endpoint takes a JSON body, HTTP Basic client credentials and a Notion-Version header;
    its answer names the workspace, which becomes the account. Revocation is JSON {"token"} with Basic too."""
    async with flow(settings, engine, fake_oauth, "notion", "notion") as f:
        assert await f.connect(acme.alice) == {"connection": "notion", "status": "connected"}
        [sent] = f.provider.authorize_requests
        assert sent["owner"] == "user" and "scope" not in sent and "code_challenge" not in sent
        [exchange] = f.received("/token")
        assert exchange.headers["content-type"].startswith("application/json")
        assert exchange.headers["notion-version"] == "2022-06-28"
        assert exchange.basic_credentials() == (f.provider.client_id, f.provider.client_secret)
        assert exchange.body == {
            "grant_type": "authorization_code",
            "code": exchange.body["code"],
            "redirect_uri": "http://test/api/connections/callback/notion",
        }  # the secret only in the header; no PKCE verifier for a provider without PKCE

        account = f.provider.account
        status = await f.status(acme.alice)
        assert status["connected"] is True and status["account"] == account["workspace_name"]
        assert status["scopes"] == []
        [row] = await stored(engine, acme.alice, "notion")
        assert row["account_id"] == account["workspace_id"]

        [token] = f.provider.issued
        result = await f.disconnect(acme.alice)
        assert result["revoked"] is True and result["revoke_error"] is None
        [revoke] = f.received("/revoke")
        assert revoke.method == "POST" and revoke.headers["content-type"].startswith("application/json")
        assert revoke.body == {"token": token} and revoke.headers["notion-version"] == "2022-06-28"
        assert revoke.basic_credentials() == (f.provider.client_id, f.provider.client_secret)
        assert token in f.provider.revoked


async def test_notion_refreshes_in_json_too(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """A short-lived Notion token is renewed through the same JSON token endpoint, with Basic auth."""
    behaviour = {"issue_refresh": True, "expires_in": 30}  # within the refresh margin: stale at once
    async with flow(settings, engine, fake_oauth, "notion", "notion", behaviour=behaviour) as f:
        await f.connect(acme.alice)
        status = await f.status(acme.alice)
        assert status["connected"] is True and f.provider.refreshes == 1
        [_, renewal] = f.received("/token")
        assert renewal.headers["content-type"].startswith("application/json") and renewal.auth_scheme == "basic"
        assert renewal.body == {"grant_type": "refresh_token", "refresh_token": f.provider.issued[1]}
        assert status["account"] == f.provider.account["workspace_name"]  # the account survives the refresh


async def test_notion_without_a_workspace_name_falls_back_to_the_owner_email(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    account = {
        "workspace_id": "ws-1",
        "workspace_name": None,
        "bot_id": "bot-1",
        "owner": {"type": "user", "user": {"person": {"email": "ada@example.com"}}},
    }
    async with flow(settings, engine, fake_oauth, "notion", "notion", behaviour={"account": account}) as f:
        await f.connect(acme.alice)
        assert (await f.status(acme.alice))["account"] == "ada@example.com"


@pytest.mark.parametrize("refresh", [True, False])
async def test_rfc7009_revocation_ends_the_grant_through_its_refresh_token(
    refresh: bool, settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """Google (pointed at the fake) revokes by RFC 7009: the refresh token when there is one, which ends
    the whole grant, the access token otherwise; with the token_type_hint saying which."""
    behaviour = {"issue_refresh": refresh}
    async with flow(settings, engine, fake_oauth, "google", behaviour=behaviour) as f:
        await f.connect(acme.alice)
        status = await f.status(acme.alice)
        assert status["account"] == f.provider.account["email"] and status["scopes"] == ["openid", "email", "profile"]
        issued = list(f.provider.issued)
        result = await f.disconnect(acme.alice)
        assert result["revoked"] is True and result["revoke_error"] is None

        [revoke] = f.received("/revoke")
        hint, token = ("refresh_token", issued[1]) if refresh else ("access_token", issued[0])
        assert revoke.body["token"] == token and revoke.body["token_type_hint"] == hint
        # Google's spec authenticates the client in the body (client_secret_post).
        assert revoke.body["client_id"] == f.provider.client_id and revoke.auth_scheme is None
        assert set(issued) <= f.provider.revoked  # the access token died with its grant
        async with httpx.AsyncClient() as api:
            gone = await api.get(f"{f.fake.url}/userinfo", headers={"Authorization": f"Bearer {issued[0]}"})
        assert gone.status_code == 401


async def test_providers_without_revocation_delete_and_say_where_to_remove_the_app(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    """Entra ID has no revocation endpoint: the connection is deleted, the user is told, nothing is called."""
    async with flow(settings, engine, fake_oauth, "microsoft", revoke_url=None) as f:
        await f.connect(acme.alice)
        assert (await f.status(acme.alice))["account"] == f.provider.account["email"]
        result = await f.disconnect(acme.alice)
        assert result["revoked"] is False and "offers no revocation" in result["revoke_error"]
        assert f.received("/revoke") == [] and f.provider.revoked == set()
        assert await stored(engine, acme.alice, "microsoft") == []


async def test_the_fake_dialects_refuse_what_the_real_providers_refuse(fake_oauth: FakeOAuth) -> None:
    """The quirk tests above only prove something if the fake, like the provider, rejects the standard way."""
    notion = fake_oauth.client(dialect="notion")
    github = fake_oauth.client(dialect="github")
    basic = (notion.client_id, notion.client_secret)
    grant = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "http://test/cb"}
    version = {"Notion-Version": "2022-06-28"}
    async with httpx.AsyncClient(base_url=fake_oauth.url) as raw:
        as_form = await raw.post("/token", data=grant, auth=basic, headers=version)
        no_version = await raw.post("/token", json=grant, auth=basic)
        secret_in_body = await raw.post(
            "/token",
            json=grant | {"client_id": notion.client_id, "client_secret": notion.client_secret},
            headers=version,
        )
        right = await raw.post("/token", json=grant, auth=basic, headers=version)
        wrong_app = await raw.request(
            "DELETE", f"/applications/{github.client_id}/grant", json={"access_token": "gho_x"}, auth=basic
        )
        unknown_token = await raw.post("/api/auth.revoke", headers={"Authorization": "Bearer xoxb-unknown"})
    assert as_form.status_code == 400 and no_version.json()["code"] == "missing_version"
    assert secret_in_body.status_code == 401
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant"  # accepted, but "x" is no code
    assert wrong_app.status_code == 404
    assert unknown_token.status_code == 200 and unknown_token.json() == {"ok": False, "error": "invalid_auth"}


# --- C. settings -----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FLUXOPUS_* or DATABASE_URL from the outside and no .env file: only what a test sets."""
    for key in list(os.environ):
        if key.upper().startswith("FLUXOPUS_") or key.upper() == "DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def configure(clean: Path, **providers: OAuthProviderSettings) -> OAuth:
    return OAuth(Settings(data_dir=clean / "data", encryption_key=SecretStr(new_key()), oauth=providers))


def test_a_generic_provider_needs_discovery_or_its_endpoints(clean_env: Path) -> None:
    for partial in ({}, {"authorize_url": "https://sso.example/authorize"}, {"token_url": "https://sso.example/t"}):
        with pytest.raises(ValueError, match="FLUXOPUS_OAUTH_ACME_SSO_DISCOVERY_URL") as error:
            configure(clean_env, acme_sso=dummy(**partial))
        assert "FLUXOPUS_OAUTH_ACME_SSO_AUTHORIZE_URL" in str(error.value)
    # Either way of naming the endpoints is enough.
    endpoints = configure(
        clean_env, acme_sso=dummy(authorize_url="https://sso.example/authorize", token_url="https://sso.example/token")
    )
    assert endpoints.providers["acme_sso"].token_url == "https://sso.example/token"
    discovered = configure(
        clean_env, acme_sso=dummy(discovery_url="https://sso.example/.well-known/openid-configuration")
    )
    assert discovered.providers["acme_sso"].discovery_url is not None


@pytest.mark.parametrize(
    "config",
    [
        OAuthProviderSettings(client_id="only-the-id"),
        OAuthProviderSettings(client_secret=SecretStr("only-the-secret")),
        OAuthProviderSettings(client_id="", client_secret=SecretStr("empty-id")),
    ],
)
def test_a_built_in_needs_both_client_id_and_secret(clean_env: Path, config: OAuthProviderSettings) -> None:
    with pytest.raises(ValueError, match="FLUXOPUS_OAUTH_GITHUB_CLIENT_ID") as error:
        configure(clean_env, github=config)
    assert "_CLIENT_SECRET" in str(error.value)
    assert "only-the-secret" not in str(error.value)


def test_a_built_in_with_nothing_set_is_simply_off(clean_env: Path) -> None:
    oauth = configure(clean_env, github=OAuthProviderSettings(), google=dummy())
    assert set(oauth.providers) == {"google"}


@pytest.mark.parametrize("name", ["Acme", "GitHub", "1sso", "sso provider", "a" * 41, "sso.example", ""])
def test_a_provider_name_must_be_url_safe(clean_env: Path, name: str) -> None:
    """Names end up in paths and environment variable names: lower-case letters, digits, - and _ only."""
    with pytest.raises(ValueError, match="OAuth provider name"):
        configure(clean_env, **{name: dummy(discovery_url="https://sso.example/.well-known/openid-configuration")})


@pytest.mark.parametrize("field", ["authorize_url", "token_url", "userinfo_url", "revoke_url"])
@pytest.mark.parametrize("url", ["ftp://sso.example/x", "javascript:alert(1)", "/relative/path", "file:///etc/passwd"])
def test_endpoints_must_be_http_urls(clean_env: Path, field: str, url: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be an http"):
        configure(clean_env, google=dummy(**{field: url}))


def test_a_discovery_url_must_be_http(clean_env: Path) -> None:
    with pytest.raises(ValueError, match="discovery_url must be an http"):
        configure(clean_env, acme=dummy(discovery_url="file:///etc/openid-configuration"))


def test_database_url_given_by_its_field_name_is_kept(clean_env: Path) -> None:
    """Settings(database_url=...) is how code (and tests/conftest.py) configures an external database; the
    env alias DATABASE_URL must not make the field name silently fall back to the embedded server."""
    by_name = Settings(data_dir=clean_env / "data", database_url="postgresql://u@h/db")
    assert by_name.database_url == "postgresql://u@h/db" and by_name.embedded is False


def test_database_url_with_a_provider_requires_an_encryption_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas behind a load balancer must all open each other's tokens: no per-host generated key."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    settings = Settings(data_dir=clean_env / "data", oauth={"github": dummy()})
    assert settings.embedded is False
    with pytest.raises(ValueError, match="FLUXOPUS_ENCRYPTION_KEY") as error:
        OAuth(settings)
    assert "openssl rand -base64 32" in str(error.value)
    assert not (clean_env / "data").exists()  # no key file was generated instead
    # Without any provider nothing needs sealing, so nothing is required.
    assert OAuth(settings.model_copy(update={"oauth": {}})).providers == {}


def test_embedded_generates_a_private_key_file_once_and_reuses_it(clean_env: Path) -> None:
    data = clean_env / "data"
    settings = Settings(data_dir=data, oauth={"github": dummy()})
    assert settings.database_url is None and not data.exists()

    first = OAuth(settings)
    key_file = data / "encryption-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    assert len(parse_key(content)) == 32

    second = OAuth(settings)
    assert key_file.read_text() == content
    sealed = first.cipher.encrypt("xoxb-secret", "connection:u:github:access")
    assert second.cipher.decrypt(sealed, "connection:u:github:access") == "xoxb-secret"
    assert second.cipher.is_current(sealed)


def test_an_explicit_key_wins_over_the_key_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded server with FLUXOPUS_ENCRYPTION_KEY writes no key file, and a replica on DATABASE_URL
    with the same key opens what it sealed."""
    key = SecretStr(new_key())
    embedded = OAuth(Settings(data_dir=clean_env / "data", encryption_key=key, oauth={"github": dummy()}))
    assert not (clean_env / "data" / "encryption-key").exists()
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    replica = OAuth(Settings(data_dir=clean_env / "other", encryption_key=key, oauth={"github": dummy()}))
    assert replica.cipher.decrypt(embedded.cipher.encrypt("t", "c"), "c") == "t"


def test_providers_from_the_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FLUXOPUS_OAUTH_<NAME>_<FIELD>: names are not known in advance, may contain _, and scopes split on , and space."""
    monkeypatch.setenv("FLUXOPUS_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("FLUXOPUS_OAUTH_ACME_SSO_CLIENT_ID", "acme-id")
    monkeypatch.setenv("FLUXOPUS_OAUTH_ACME_SSO_CLIENT_SECRET", "acme-secret")
    monkeypatch.setenv(
        "FLUXOPUS_OAUTH_ACME_SSO_DISCOVERY_URL", "https://sso.acme.example/.well-known/openid-configuration"
    )
    monkeypatch.setenv("FLUXOPUS_OAUTH_ACME_SSO_SCOPES", "openid,email profile")
    monkeypatch.setenv("FLUXOPUS_OAUTH_MICROSOFT_CLIENT_ID", "ms-id")
    monkeypatch.setenv("FLUXOPUS_OAUTH_MICROSOFT_CLIENT_SECRET", "ms-secret")
    monkeypatch.setenv("FLUXOPUS_OAUTH_MICROSOFT_TENANT", "organizations")
    monkeypatch.setenv("FLUXOPUS_OAUTH_SLACK_PKCE", "true")

    settings = Settings()
    acme = settings.oauth["acme_sso"]
    assert acme.client_id == "acme-id" and acme.client_secret is not None
    assert acme.client_secret.get_secret_value() == "acme-secret"
    assert acme.discovery_url == "https://sso.acme.example/.well-known/openid-configuration"
    assert acme.scopes == ["openid", "email", "profile"]
    assert settings.oauth["microsoft"].tenant == "organizations" and settings.oauth["slack"].pkce is True
    assert "acme-secret" not in repr(settings)

    oauth = OAuth(settings)
    assert set(oauth.providers) == {"acme_sso", "microsoft"}  # slack has no credentials: off
    assert oauth.providers["acme_sso"].scope == "openid email profile"
    assert oauth.providers["acme_sso"].title == "Acme Sso"
    assert "/organizations/" in oauth.providers["microsoft"].authorize_url
    assert (clean_env / "data" / "encryption-key").exists()  # embedded: the key was generated


def test_providers_from_a_dotenv_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same variables in .env; the real environment wins over the file."""
    (clean_env / ".env").write_text(
        "FLUXOPUS_OAUTH_GITHUB_CLIENT_ID=from-file\nFLUXOPUS_OAUTH_GITHUB_CLIENT_SECRET=file-secret\n"
    )
    assert Settings().oauth["github"].client_id == "from-file"
    monkeypatch.setenv("FLUXOPUS_OAUTH_GITHUB_CLIENT_ID", "from-env")
    github = Settings().oauth["github"]
    assert github.client_id == "from-env" and github.client_secret is not None
    assert github.client_secret.get_secret_value() == "file-secret"


def test_an_unknown_field_in_the_environment_is_not_taken_for_a_provider(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUXOPUS_OAUTH_TIMEOUT", "3")
    settings = Settings()
    assert settings.oauth == {} and settings.oauth_timeout == 3.0


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        base64.b64encode(b"x" * 16).decode(),  # AES-128 length: too short
        base64.b64encode(b"x" * 33).decode(),
        "",
    ],
)
def test_a_malformed_encryption_key_says_how_to_make_one(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("FLUXOPUS_ENCRYPTION_KEY", key)
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "openssl rand -base64 32" in str(error.value) and "FLUXOPUS_ENCRYPTION_KEY" in str(error.value)


def test_encryption_keys_are_accepted_as_people_paste_them(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes(range(250, 256)) + b"k" * 26  # bytes whose base64 differs between the standard and URL-safe alphabets
    standard = base64.b64encode(raw).decode()
    for text_key in (standard, standard.rstrip("="), base64.urlsafe_b64encode(raw).decode(), f"  {standard}\n"):
        monkeypatch.setenv("FLUXOPUS_ENCRYPTION_KEY", text_key)
        key = Settings().encryption_key
        assert key is not None and parse_key(key.get_secret_value()) == raw
    monkeypatch.setenv("FLUXOPUS_ENCRYPTION_OLD_KEYS", f"{new_key()}, not-a-key")
    with pytest.raises(ValidationError, match="openssl rand -base64 32"):
        Settings()
