"""Limits at the HTTP edge, before a request costs memory: body size, WebSocket message size, and
how long a client may take to send its headers.

Bodies are refused by their Content-Length before a byte is read, and otherwise counted as they
arrive: the request that goes over is answered 413 and never held whole in memory. Routes read
bodies themselves (after checking the token), so nothing here buffers.
"""

from __future__ import annotations

import json
from asyncio import TimerHandle
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fluxopus.errors import DomainError

# RFC 6455: "a message that is too big for it to process".
WS_MESSAGE_TOO_BIG = 1009


class BodyTooLarge(DomainError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit:,} bytes")


class BodyLimit:
    """ASGI middleware: `limit_for(scope)` bytes per request body, `message_limit` per WebSocket message."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[Scope], int], message_limit: int) -> None:
        self.app = app
        self.limit_for = limit_for
        self.message_limit = message_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, self._websocket_receive(receive, send), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not _may_have_body(scope):  # most reads: nothing to count, so no wrapping to pay for
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(scope, BodyTooLarge(limit))(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # a route that let it through unhandled
            if started:
                raise
            await _too_large(scope, exc)(scope, receive, send)

    def _websocket_receive(self, receive: Receive, send: Send) -> Receive:
        async def limited() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                size = len(message.get("text") or "") + len(message.get("bytes") or b"")
                if size > self.message_limit:
                    await send({"type": "websocket.close", "code": WS_MESSAGE_TOO_BIG, "reason": "Message too big"})
                    return {"type": "websocket.disconnect", "code": WS_MESSAGE_TOO_BIG}
            return message

        return limited


def _may_have_body(scope: Scope) -> bool:
    """HTTP/1.1: a request has a body only if it says so, by a length (not 0) or a transfer coding."""
    return any(
        (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding"
        for name, value in scope["headers"]
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


def _too_large(scope: Scope, exc: BodyTooLarge) -> Any:
    from starlette.responses import JSONResponse

    # REST's shape, with its code (rest_compat/errors.ErrorCode, a layer above this one).
    body: dict[str, Any] = {"error": exc.message, "code": "payload_too_large"}
    if scope["path"].startswith("/graphql"):
        body = {"error": exc.message, "errors": [{"message": exc.message, "extensions": {"code": exc.code}}]}
    elif scope["path"].startswith("/auth/v1/"):  # GoTrue's shape, which supabase-js reads
        body = {"code": 413, "error_code": "request_too_large", "msg": exc.message}
    # No `Connection: close`: closing with the rest of the body unread would reset the connection and
    # lose this answer; the server reads and drops what still arrives, holding none of it.
    return JSONResponse(body, status_code=413)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers do not arrive whole
    within `header_timeout` seconds of its first byte (or of the connection, for the first request).
    uvicorn itself waits forever, so a few hundred idle sockets would hold the server's files."""

    header_timeout: float = 15.0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._header_timer: TimerHandle | None = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


def json_depth_error(value: Any, limit: int) -> str | None:
    """Why `value` (parsed JSON) is nested too deeply to be handled, or None. Iterative: the point
    is to refuse what would make recursive code (validators, coercion, jsonb) overflow its stack."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return f"JSON is nested more than {limit} levels deep"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


def decode_json(data: str | bytes, max_depth: int) -> Any:
    """json.loads, with what it cannot take said as a JSONDecodeError that explains itself."""
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        raise json.JSONDecodeError("The body is not valid UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError(f"JSON is nested more than {max_depth} levels deep", "", 0) from None
    problem = json_depth_error(value, max_depth)
    if problem is not None:
        raise json.JSONDecodeError(problem, "", 0)
    return value
