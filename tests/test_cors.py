"""CORS (http_cors.py) and the GraphQL WebSocket's origin check, both driven by FLUXOPUS_CORS_ORIGINS.

Preflights are answered with and without the setting (never the router's 405); an origin not allowed
gets a 403 without Access-Control-Allow-Origin, so the browser refuses. WebSocket handshakes from an
origin not allowed are refused with 403 before the socket opens (a browser sees close code 1006);
same-origin pages and clients that send no Origin always connect. The browser's own view, a page on
another origin, is tests/test_cross_origin_browser.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company
from tests.utils.server import ThreadedServer

APP_ORIGIN = "http://app.example.test:5173"
OTHER_ORIGIN = "http://evil.example.test"
PAGE_HEADERS = "authorization, content-type, x-graphql-event-stream-token, x-request-id, apikey, x-client-info, prefer"


def preflight(origin: str, method: str = "GET", headers: str | None = "authorization") -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return asked


@pytest.fixture(scope="module")
def cors_app(settings: Settings, engine: AsyncEngine) -> FastAPI:
    return create_app(settings.model_copy(update={"cors_origins": [APP_ORIGIN]}), engine=engine)


@pytest.fixture
async def cors_client(cors_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cors_app), base_url="http://test") as c:
        yield c


def assert_refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 403, response.text
    assert "access-control-allow-origin" not in response.headers, response.headers
    message = response.json()["error"]
    assert message.startswith("CORS preflight refused"), message
    assert all(w.lower() in message.lower() for w in words), message


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/tasks", "/graphql", "/auth/v1/token", "/healthz"])
async def test_without_the_setting_a_foreign_preflight_is_refused_not_405(client: httpx.AsyncClient, path: str) -> None:
    assert_refused(await client.options(path, headers=preflight(OTHER_ORIGIN, "POST")), OTHER_ORIGIN)


@pytest.mark.parametrize("path", ["/api/tasks", "/graphql"])
async def test_without_the_setting_the_servers_own_origin_may_preflight(client: httpx.AsyncClient, path: str) -> None:
    response = await client.options(path, headers=preflight("http://test", "PUT", PAGE_HEADERS))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "http://test"
    assert "PUT" in response.headers["access-control-allow-methods"]


async def test_an_allowed_origin_preflights_every_header_its_clients_send(cors_client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        response = await cors_client.options("/graphql", headers=preflight(APP_ORIGIN, method, PAGE_HEADERS))
        assert response.status_code == 200, (method, response.text)
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
        assert method in response.headers["access-control-allow-methods"].split(", ")
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(PAGE_HEADERS.split(", ")) | {"x-supabase-api-version", "accept", "last-event-id"} <= allowed
    assert "Origin" in response.headers["vary"]


async def test_an_allowed_origin_is_refused_what_is_not_allowed(cors_client: httpx.AsyncClient) -> None:
    assert_refused(await cors_client.options("/api/tasks", headers=preflight(OTHER_ORIGIN)), OTHER_ORIGIN)
    assert_refused(await cors_client.options("/api/tasks", headers=preflight(APP_ORIGIN, "TRACE")), "TRACE")
    custom = preflight(APP_ORIGIN, "GET", "authorization, x-secret-thing")
    assert_refused(await cors_client.options("/api/tasks", headers=custom), "x-secret-thing")


async def test_responses_to_an_allowed_origin_expose_the_totals(cors_client: httpx.AsyncClient, acme: Company) -> None:
    asked = {**acme.alice.headers, "Origin": APP_ORIGIN, "Prefer": "count=exact"}
    response = await cors_client.get("/api/tasks", params={"limit": 1}, headers=asked)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-total-count", "preference-applied", "x-request-id"} <= exposed
    assert "x-total-count" in response.headers
    assert response.headers["preference-applied"] == "count=exact"
    # Errors too: a page must be able to read why it was refused.
    denied = await cors_client.get("/api/tasks", headers={"Origin": APP_ORIGIN})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_responses_to_another_origin_carry_no_allow_origin(
    cors_client: httpx.AsyncClient, client: httpx.AsyncClient, acme: Company
) -> None:
    for c in (cors_client, client):
        response = await c.get("/api/tasks", headers={**acme.alice.headers, "Origin": OTHER_ORIGIN})
        assert response.status_code == 200, response.text  # answered; the browser withholds it from the page
        assert "access-control-allow-origin" not in response.headers


async def test_a_wildcard_allows_any_origin(settings: Settings, engine: AsyncEngine, acme: Company) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["*"]}), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        response = await c.options("/graphql", headers=preflight(OTHER_ORIGIN, "POST", PAGE_HEADERS))
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == "*"
        simple = await c.get("/api/tasks", headers={**acme.alice.headers, "Origin": OTHER_ORIGIN})
        assert simple.headers["access-control-allow-origin"] == "*"


def test_origins_are_read_as_browsers_send_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FLUXOPUS_CORS_ORIGINS", " https://App.Example.com:443/ , http://localhost:5173,capacitor://localhost"
    )
    assert Settings().cors_origins == ["https://app.example.com", "http://localhost:5173", "capacitor://localhost"]
    for bad in ("https://app.example.com/login", "localhost:5173", "http://:80", "http://x:99999"):
        monkeypatch.setenv("FLUXOPUS_CORS_ORIGINS", bad)
        with pytest.raises(ValidationError, match="FLUXOPUS_CORS_ORIGINS"):
            Settings()


# --------------------------------------------------------------------------------------------
# WebSocket (graphql-transport-ws)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    own = settings.model_copy(update={"cors_origins": [APP_ORIGIN]})
    with ThreadedServer(create_app(own, database_url=database_url)) as running:
        yield running


async def handshake(server: ThreadedServer, token: str, origin: str | None) -> dict[str, object]:
    """Opens /graphql as graphql-transport-ws from `origin` and answers connection_init's reply."""
    url = server.url.replace("http", "ws", 1) + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"], origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        reply: dict[str, object] = json.loads(await ws.recv())
        return reply


@pytest.mark.parametrize("origin", [APP_ORIGIN, None, "same"])
async def test_websocket_from_an_allowed_origin_connects(
    ws_server: ThreadedServer, acme: Company, origin: str | None
) -> None:
    origin = ws_server.url if origin == "same" else origin
    assert (await handshake(ws_server, acme.alice.token, origin))["type"] == "connection_ack"


async def test_websocket_from_another_origin_is_refused(ws_server: ThreadedServer, acme: Company) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await handshake(ws_server, acme.alice.token, OTHER_ORIGIN)
    assert refused.value.response.status_code == 403


async def test_a_wildcard_lets_any_origin_open_a_websocket(
    settings: Settings, database_url: str, acme: Company
) -> None:
    own = settings.model_copy(update={"cors_origins": ["*"]})
    with ThreadedServer(create_app(own, database_url=database_url)) as server:
        assert (await handshake(server, acme.alice.token, OTHER_ORIGIN))["type"] == "connection_ack"
