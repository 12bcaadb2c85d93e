"""Streaming endpoints: Server-Sent Events by default, one JSON body on `Accept: application/json`.

Either way a client that goes away cancels the work: Starlette cancels an event stream when
the client disconnects, and a JSON answer being computed is cancelled the same way here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.http.streaming import SSE_HEARTBEAT_INTERVAL, merge_stream_with_heartbeat


def wants_event_stream(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "text/event-stream" in accept or "application/json" not in accept


def encode_event(event: BaseModel) -> str:
    data = event.model_dump(mode="json", exclude_none=True)
    return f"event: {data.pop('type')}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_stream(events: AsyncIterator[BaseModel]) -> Response:
    async def encoded() -> AsyncGenerator[str, None]:
        async for event in events:
            yield encode_event(event)

    # Comment lines keep proxies from closing a stream while the model is still thinking.
    body = merge_stream_with_heartbeat(
        encoded, lambda: ": ping\n\n", SSE_HEARTBEAT_INTERVAL, send_initial_heartbeat=False
    )
    headers = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


class ClientGone(Exception):
    """The client disconnected before the answer was ready; nobody is left to answer."""


async def cancel_on_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Runs `work` unless the client disconnects first, in which case it is cancelled."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
