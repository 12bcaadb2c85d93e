"""A graphql-transport-ws subscriber for live-event tests: subscribe, then take events as they come."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, cast

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from fluxopus.resolvers.live_hub import LiveHub
from tests.utils.builders import User
from tests.utils.server import ThreadedServer

TIMEOUT = 15.0  # a safety net: a missing event fails the test instead of hanging it


class Subscription:
    def __init__(self, ws: ClientConnection, op_id: str) -> None:
        self.ws = ws
        self.id = op_id
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next `next` payload's data field (the event), or fails on error/complete/timeout."""
        message = await asyncio.wait_for(self.messages.get(), timeout)
        assert message["type"] == "next", message
        payload = message["payload"]
        assert not payload.get("errors"), payload
        data: dict[str, Any] = next(iter(payload["data"].values()))
        return data

    async def message(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next raw message for this subscription (next, error or complete)."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def nothing(self, within: float = 1.0) -> None:
        """Nothing arrives within `within` seconds."""
        with contextlib.suppress(TimeoutError):
            message = await asyncio.wait_for(self.messages.get(), within)
            raise AssertionError(f"unexpected message: {message}")

    async def take(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The next `count` events, in order."""
        return [await self.next(timeout) for _ in range(count)]

    async def errors(self, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The GraphQL errors the subscription ended with: an `error` message's payload, or a `next`
        carrying errors (then `complete`). Fails on an event instead."""
        message = await self.message(timeout)
        if message["type"] == "error":
            found: list[dict[str, Any]] = message["payload"]
            return found
        assert message["type"] == "next" and message["payload"].get("errors"), message
        assert message["payload"].get("data") is None, message
        assert (await self.message(timeout))["type"] == "complete"
        return list(message["payload"]["errors"])

    async def stop(self) -> None:
        await self.ws.send(json.dumps({"id": self.id, "type": "complete"}))


class Connection:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.subscriptions: dict[str, Subscription] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
            elif message.get("id") in self.subscriptions:
                await self.subscriptions[message["id"]].messages.put(message)

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> Subscription:
        op_id = uuid.uuid4().hex
        sub = self.subscriptions[op_id] = Subscription(self.ws, op_id)
        await self.ws.send(
            json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
        )
        return sub


@asynccontextmanager
async def live_connection(base_url: str, token: str) -> AsyncIterator[Connection]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert ack["type"] == "connection_ack", ack
        connection = Connection(ws)
        try:
            yield connection
        finally:
            connection.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connection.reader


def hub_of(server: ThreadedServer) -> LiveHub:
    """The live hub of a ThreadedServer's app (in this process: its subscribers can be looked at)."""
    app: Any = server.server.config.app
    hub = app.state.runtime.live
    assert hub is not None, "live events are off on this server"
    return cast(LiveHub, hub)


def subscriptions_of(server: ThreadedServer, user: User) -> int:
    """How many subscriptions of `user` the server's hub is fanning changes out to right now."""
    hub, company, user_id = hub_of(server), uuid.UUID(user.company_id), uuid.UUID(user.id)
    while True:
        try:  # the server's thread may change the set meanwhile: look again
            return hub.subscriptions_of(company, user_id)
        except RuntimeError:
            continue


async def listening(server: ThreadedServer, user: User, count: int = 1, timeout: float = TIMEOUT) -> None:
    """Waits until the server's hub holds exactly `count` subscriptions of `user`: once it does, every
    change committed afterwards is fanned out to them (a subscription's checks run before it listens,
    and `complete` removes it only eventually)."""
    async with asyncio.timeout(timeout):
        while subscriptions_of(server, user) != count:
            await asyncio.sleep(0.01)


async def live_sub(
    server: ThreadedServer, conn: Connection, user: User, query: str, variables: Any = None
) -> Subscription:
    """Subscribes on `conn` (a connection of `user`) and returns once the server listens for it."""
    before = subscriptions_of(server, user)
    sub = await conn.subscribe(query, variables)
    await listening(server, user, before + 1)
    return sub


@asynccontextmanager
async def sse_subscription(
    server: ThreadedServer, user: User, query: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """A subscription over graphql-sse's distinct connections mode (POST /graphql, Accept:
    text/event-stream): yields its `next` payloads as they come, once the server listens for it."""
    before = subscriptions_of(server, user)
    body = {"query": query, "variables": variables or {}}
    headers = {**user.headers, "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http,
        aconnect_sse(http, "POST", "/graphql", json=body, headers=headers) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        await listening(server, user, before + 1)

        async def payloads() -> AsyncGenerator[dict[str, Any], None]:
            async for message in source.aiter_sse():
                if message.event == "complete":
                    return
                assert message.event == "next", message
                yield json.loads(message.data)

        async with aclosing(payloads()) as stream:
            yield stream
