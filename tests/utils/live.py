"""A graphql-transport-ws subscriber for live-event tests: subscribe, then take events as they come."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

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


async def subscribed(sub: Subscription, settle: float = 0.3) -> Subscription:
    """Gives the server a moment to register the subscription (its checks run before it listens)."""
    await asyncio.sleep(settle)
    return sub
