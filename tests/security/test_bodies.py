"""Request bodies are capped on every route before they are held in memory; WebSocket messages too;
clients that never finish their headers are closed; malformed input is a 4xx, never a traceback."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psutil
import pytest
import websockets
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, create_skill, unique
from tests.utils.serve import HealthProbe, Serve, provision_token
from tests.utils.server import ThreadedServer

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

MB = 1024 * 1024
SERVE_ENV = {"FLUXOPUS_HEADER_TIMEOUT": "1"}


async def chunks(total: int, size: int = MB, head: bytes = b"", tail: bytes = b"") -> AsyncIterator[bytes]:
    """A body streamed without a Content-Length (chunked), so only counting can stop it."""
    yield head
    block = b"x" * size
    for _ in range(total // size):
        yield block
    yield tail


def expect_413(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 413, response.text
    body: dict[str, Any] = response.json()
    return body


# --- in-process: every route family, with and without Content-Length ------------------------------


@pytest.mark.parametrize(
    ("path", "auth", "size"),
    [
        ("/api/tasks", True, 2 * MB),
        ("/api/skills", True, 2 * MB),
        ("/api/knowledge", True, 9 * MB),  # knowledge writes get the larger allowance, and no more
        ("/graphql", False, 2 * MB),
        ("/graphql", True, 9 * MB),
    ],
)
async def test_an_oversized_body_is_refused_by_its_content_length(
    client: httpx.AsyncClient, acme: Company, path: str, auth: bool, size: int
) -> None:
    headers = {**(acme.alice.headers if auth else {}), "Content-Type": "application/json"}
    body = b'{"title": "' + b"x" * size + b'"}'
    answer = expect_413(await client.post(path, content=body, headers=headers))
    assert "larger than" in answer["error"]
    if path == "/graphql":
        assert answer["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("path", ["/api/tasks", "/graphql"])
async def test_a_chunked_body_is_counted_and_refused(client: httpx.AsyncClient, acme: Company, path: str) -> None:
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    size = 20 * MB if path == "/graphql" else 4 * MB
    response = await client.post(path, content=chunks(size, head=b'{"title": "', tail=b'"}'), headers=headers)
    assert "larger than" in expect_413(response)["error"]
    assert await client.get("/api/tasks", headers=acme.alice.headers) is not None


async def test_gotrue_answers_its_own_shape(settings: Settings, engine: Any) -> None:
    app = create_app(settings.model_copy(update={"jwt_secret": None, "jwks_url": None}), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/auth/v1/signup", content=b"{" + b" " * 100_000 + b"}")
    assert expect_413(response)["error_code"] == "request_too_large"


async def test_a_large_knowledge_item_still_fits(client: httpx.AsyncClient, acme: Company) -> None:
    """1 MB of content written by a client that escapes non-ASCII (json.dumps does) is ~6 MB of JSON."""
    content = "é" * (1_048_576 // 2)
    body = json.dumps({"title": "Large", "content": content}).encode()
    assert len(body) > 2 * MB
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    response = await client.post("/api/knowledge", content=body, headers=headers)
    assert response.status_code == 201, response.text[:200]
    assert response.json()["content"] == content


async def test_nothing_is_created_by_a_refused_body(client: httpx.AsyncClient, acme: Company) -> None:
    title = unique("never")
    body = json.dumps({"title": title, "description": "d" * (2 * MB)}).encode()
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    expect_413(await client.post("/api/tasks", content=body, headers=headers))
    listed = await client.get("/api/tasks", params={"q": title}, headers=acme.alice.headers)
    assert listed.json() == []


# --- malformed input is a 4xx --------------------------------------------------------------------


DEEP = "[" * 1000 + "1" + "]" * 1000


def raw(template: str, value: str) -> bytes:
    """JSON text with `value` spliced in where RAW stands: json.dumps refuses to write such nesting."""
    return template.replace("RAW", value).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"query": "{ me { id } }", "x": "\xff\xfe"}', "not valid UTF-8"),
        (raw('{"query": "query($v: JSON) { __typename }", "variables": {"v": RAW}}', DEEP), "nested more than"),
        (raw('{"query": "{ me { id } }", "variables": {"v": RAW}}', "[" * 65 + "]" * 65), "nested more than"),
    ],
    ids=["invalid UTF-8", "variables 1000 deep", "variables 66 deep"],
)
async def test_malformed_graphql_bodies_are_400(
    client: httpx.AsyncClient, acme: Company, body: bytes, message: str
) -> None:
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_deep_json_that_fits_the_limit_works(client: httpx.AsyncClient, acme: Company) -> None:
    skill = await create_skill(client, acme.alice, instructions="Depth {{ input.v | length }}")
    nested = "[" * 60 + "]" * 60
    document = json.dumps("mutation($s: ID!, $i: JSON!) { runSkill(id: $s, input: $i) { output } }")
    body = f'{{"query": {document}, "variables": {{"s": "{skill["id"]}", "i": {{"v": {nested}}}}}}}'.encode()
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["runSkill"]["output"] == "Depth 1"


@pytest.mark.parametrize(
    "body",
    [b'{"title": "\xff\xfe"}', raw('{"title": "x", "description": RAW}', DEEP), b'{"title": "x"' + b"}" * 3],
    ids=["invalid UTF-8", "1000 deep", "trailing garbage"],
)
async def test_malformed_rest_bodies_are_400(client: httpx.AsyncClient, acme: Company, body: bytes) -> None:
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    response = await client.post("/api/tasks", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "Malformed JSON" in response.json()["error"]


async def test_a_deep_skill_input_over_rest_is_400(client: httpx.AsyncClient, acme: Company) -> None:
    skill = await create_skill(client, acme.alice)
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    response = await client.post(
        f"/api/skills/{skill['id']}/run", content=raw('{"input": {"a": RAW}}', DEEP), headers=headers
    )
    assert response.status_code == 400, response.text


# --- WebSocket messages ---------------------------------------------------------------------------


@pytest.fixture
def ws_server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    app: FastAPI = create_app(
        settings.model_copy(update={"indexer": False, "max_ws_message_bytes": 64 * 1024}), database_url=database_url
    )
    with ThreadedServer(app) as server:
        yield server


async def test_an_oversized_websocket_message_closes_that_socket_only(ws_server: ThreadedServer, acme: Company) -> None:
    url = ws_server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as other:
        await other.send(json.dumps({"type": "connection_init", "payload": {"token": acme.bob.token}}))
        assert json.loads(await other.recv())["type"] == "connection_ack"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as abuser:
            await abuser.send(
                json.dumps({"type": "connection_init", "payload": {"token": acme.alice.token, "pad": "x" * 100_000}})
            )
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(abuser.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await other.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        answer = json.loads(await asyncio.wait_for(other.recv(), 10))
        assert answer["payload"] == {"data": {"me": {"id": acme.bob.id}}}


async def test_a_deeply_nested_websocket_message_is_refused(ws_server: ThreadedServer, acme: Company) -> None:
    url = ws_server.url.replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        init = raw('{"type": "connection_init", "payload": {"token": "TOKEN", "x": RAW}}', DEEP)
        await ws.send(init.decode().replace("TOKEN", acme.alice.token))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


# --- a real server: memory, slow headers ----------------------------------------------------------


async def test_huge_bodies_leave_a_real_server_no_larger(served: Serve) -> None:
    """The issue's 4 × 100 MB to /graphql without a token left the process 770 MB larger; now each is
    refused at its Content-Length (or, chunked, after 1 MiB) and the rest is dropped as it arrives."""
    process = psutil.Process(served.proc.pid)
    token = await provision_token(served, f"{unique('bodies')}@example.com")
    async with httpx.AsyncClient(base_url=served.url, timeout=120) as client:
        await client.get("/healthz")
        before = process.memory_info().rss

        async def announced() -> int:
            headers = {"Content-Type": "application/json", "Content-Length": str(100 * MB)}
            return (await client.post("/graphql", content=chunks(100 * MB), headers=headers)).status_code

        async def chunked() -> int:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            return (await client.post("/api/tasks", content=chunks(100 * MB), headers=headers)).status_code

        with HealthProbe(served.url) as probe:
            statuses = await asyncio.gather(announced(), announced(), announced(), announced(), chunked())
        grown = process.memory_info().rss - before
        after = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert statuses == [413] * 5
    assert grown < 40 * MB, f"the server grew {grown / MB:.0f} MB"
    assert after.status_code == 200
    probe.assert_answered_within(0.1)


def test_a_client_that_never_finishes_its_headers_is_closed(served: Serve) -> None:
    """FLUXOPUS_HEADER_TIMEOUT=1 here: 50 connections that stop mid-header, and one that sends nothing,
    are closed by the server within a few seconds, while a normal request is answered meanwhile."""
    host, port = served.url.removeprefix("http://").split(":")
    sockets = []
    for i in range(51):
        sock = socket.create_connection((host, int(port)), timeout=10)
        if i:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
    began = time.monotonic()
    try:
        for sock in sockets:
            assert sock.recv(1) == b"", "the server answered instead of closing"  # b"": closed by the peer
    finally:
        for sock in sockets:
            sock.close()
    assert time.monotonic() - began < 8
