"""graphql-sse's single-connection mode on /graphql, beside Strawberry's distinct-connections mode.

Strawberry answers the distinct mode (one POST per operation, its own event stream). Browsers on
HTTP/1.1 open at most six connections per host, so graphql-sse's `createClient({singleConnection:
true})` carries every operation over one stream instead (PROTOCOL.md "Single connection mode"):

    PUT    /graphql                                     → 201, a reservation token (text/plain)
    GET    /graphql   X-GraphQL-Event-Stream-Token      → 200 text/event-stream, the reservation's
                                                          `next {id, payload}` / `complete {id}`
    POST   /graphql   token, extensions.operationId     → 202; results go to the stream
    DELETE /graphql?operationId=…  token                → 200; that operation is stopped

Only the requests are handled here; each operation runs through the same `schema.stream` and
context as the distinct mode. Every request carries the Authorization of the user who reserved:
a reservation token alone admits nobody, and one user's token never reaches another's stream.
The token may also come as `?token=` (PROTOCOL.md), for clients that cannot set headers.

Reservations live in this process's memory: behind a load balancer a client's stream and its
POSTs must reach the same replica (sticky sessions), or clients use the distinct-connections mode
(graphql-sse's default), which keeps no state between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.http.streaming import SSETransport
from strawberry.types.graphql import OperationType

from fluxopus.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from fluxopus.runtime import Runtime

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-graphql-event-stream-token"
TOKEN_PARAM = "token"

# Per process. A client holds one reservation (its single connection), re-reserved after a drop.
MAX_RESERVATIONS = 1_000
MAX_RESERVATIONS_PER_USER = 10
MAX_OPERATIONS = 100  # running at once on one stream, like a WebSocket's subscriptions
UNCLAIMED_SECONDS = 30.0  # a reservation whose stream was not opened by then is dropped
QUEUED_MESSAGES = 256  # past this, operations wait for the stream to read (backpressure)
RECENTLY_FINISHED = 256  # operation ids a late DELETE may still name (answered 200)
HEARTBEAT_SECONDS = 15.0
_SSE = SSETransport()


class TooMany(DomainError):
    status = 429
    code = "RATE_LIMITED"


class NotAcceptable(DomainError):
    status = 406
    code = "BAD_USER_INPUT"


def stream_token(request: Request) -> str | None:
    """The reservation a request names: the header graphql-sse's client sends, or `?token=`."""
    return request.headers.get(TOKEN_HEADER) or request.query_params.get(TOKEN_PARAM)


@dataclass(eq=False)
class Reservation:
    token: str
    user: str
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUED_MESSAGES))
    operations: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    finished: dict[str, None] = field(default_factory=dict)  # insertion-ordered, trimmed
    open: bool = False  # a GET claimed it
    streaming: bool = False  # and its response began (until then the expiry still applies)
    expiry: asyncio.TimerHandle | None = None

    def finish(self, operation_id: str) -> None:
        self.operations.pop(operation_id, None)
        self.finished[operation_id] = None
        if len(self.finished) > RECENTLY_FINISHED:
            del self.finished[next(iter(self.finished))]


class SingleConnection:
    """The reservations of one router (one app, so one process) and the four requests on them."""

    def __init__(self, view: GraphQLRouter[Any, Any]) -> None:
        self.view = view
        self.reservations: dict[str, Reservation] = {}

    async def reserve(self, request: Request) -> Response:
        """PUT: a new reservation for the caller, answered with its token."""
        user = await _caller(request)
        if len(self.reservations) >= MAX_RESERVATIONS:
            raise Unavailable("Too many event streams are reserved on this server; retry in a few seconds")
        if sum(r.user == user for r in self.reservations.values()) >= MAX_RESERVATIONS_PER_USER:
            raise TooMany(
                f"At most {MAX_RESERVATIONS_PER_USER} event streams per user: close one (or use the "
                "distinct-connections mode)"
            )
        reservation = Reservation(token=secrets.token_urlsafe(32), user=user)
        reservation.expiry = asyncio.get_running_loop().call_later(UNCLAIMED_SECONDS, self._unclaimed, reservation)
        self.reservations[reservation.token] = reservation
        return PlainTextResponse(reservation.token, status_code=201)

    async def stream(self, request: Request, token: str) -> Response:
        """GET: opens the reserved stream; it ends with the caller's token or session, or the client."""
        if "text/event-stream" not in request.headers.get("accept", ""):
            raise NotAcceptable("Open the reserved stream with 'Accept: text/event-stream'")
        claims = await _claims(request)
        reservation = self._find(token, str(claims["sub"]))
        if reservation.open:
            raise Conflict("This reservation's stream is already open: one stream per reservation")
        reservation.open = True
        runtime: Runtime = request.app.state.runtime
        return StreamingResponse(self._events(reservation, runtime, claims), headers=_SSE.headers)

    async def execute(self, request: Request, token: str, context: Any, root_value: Any) -> Response:
        """POST: runs one operation (checked and executed by Strawberry, like the distinct mode's)
        and answers 202; its results, errors included, go to the stream under its operation id."""
        if context.claims is None:
            raise context.auth_error
        data = await self.view.parse_http_body(self.view.request_adapter_class(request))
        # From here to the task's creation nothing suspends (schema.stream only builds the generator):
        # the reservation found is still there, and no other POST takes the same operation id meanwhile.
        reservation = self._find(token, str(context.claims["sub"]))
        if not isinstance(data, GraphQLRequestData):
            raise Invalid("Batching is not supported over graphql-sse: POST one operation at a time")
        operation_id = (data.extensions or {}).get("operationId")
        if not isinstance(operation_id, str) or not operation_id:
            raise Invalid("Missing extensions.operationId: the stream's messages are addressed by it")
        if operation_id in reservation.operations or operation_id in reservation.finished:
            raise Conflict(f"Operation {operation_id!r} was already started on this stream")
        if len(reservation.operations) >= MAX_OPERATIONS:
            raise TooMany(f"At most {MAX_OPERATIONS} operations at once on one stream")
        results = await self.view.schema.stream(
            data.query,
            variable_values=data.variables,
            context_value=context,
            root_value=root_value,
            operation_name=data.operation_name,
            operation_extensions=data.extensions,
            allowed_operation_types=OperationType.from_http("POST"),
        )
        reservation.operations[operation_id] = asyncio.create_task(
            self._run(request, reservation, operation_id, results), name=f"graphql-sse {operation_id}"
        )
        return Response(status_code=202)

    async def stop(self, request: Request) -> Response:
        """DELETE ?operationId=: stops a running operation (the client unsubscribed)."""
        token = stream_token(request)
        if token is None:
            raise Invalid(f"Missing {TOKEN_HEADER} header: which stream's operation to stop?")
        operation_id = request.query_params.get("operationId")
        if not operation_id:
            raise Invalid("Missing ?operationId= : which operation to stop?")
        reservation = self._find(token, await _caller(request))
        task = reservation.operations.get(operation_id)
        if task is None and operation_id not in reservation.finished:
            raise NotFound(f"No operation {operation_id!r} on this stream")
        if task is not None:
            task.cancel()
            reservation.finish(operation_id)
        return Response(status_code=200)

    def _find(self, token: str, user: str) -> Reservation:
        reservation = self.reservations.get(token)
        if reservation is None:
            raise NotFound("Unknown or expired event stream token: reserve a stream again (PUT /graphql)")
        if reservation.user != user:
            raise Forbidden("This event stream was reserved by another user")
        return reservation

    def _unclaimed(self, reservation: Reservation) -> None:
        if not reservation.streaming:
            self._drop(reservation)

    def _drop(self, reservation: Reservation) -> None:
        """The stream is gone (or never came): its operations stop and its token stops working."""
        self.reservations.pop(reservation.token, None)
        if reservation.expiry is not None:
            reservation.expiry.cancel()
        for task in reservation.operations.values():
            task.cancel()
        reservation.operations.clear()

    async def _events(self, reservation: Reservation, runtime: Runtime, claims: dict[str, Any]) -> AsyncIterator[str]:
        # Wakes at the session cache's pace, as a WebSocket's watcher does (router._watch): the stream
        # ends when the token that opened it expires or its session ends, and a comment in between
        # keeps proxies from closing an idle connection. The client reconnects with a new token.
        interval = min(max(runtime.sessions.ttl, 1.0), HEARTBEAT_SECONDS)
        expires = float(claims["exp"])
        if self.reservations.get(reservation.token) is not reservation:
            return  # lapsed between the GET and its response's start
        reservation.streaming = True
        if reservation.expiry is not None:
            reservation.expiry.cancel()
        try:
            # Sent at once: browsers resolve fetch() on the first bytes, and the client waits for that
            # before it POSTs its operations.
            yield _SSE.encode_comment("stream open")
            while True:
                try:
                    async with asyncio.timeout(max(min(expires - time.time(), interval), 0.05)):
                        message = await reservation.queue.get()
                except TimeoutError:
                    if time.time() >= expires or not await runtime.session_on(claims):
                        return
                    yield _SSE.encode_comment("ping")
                    continue
                yield message
        finally:
            self._drop(reservation)

    async def _run(
        self, request: Request, reservation: Reservation, operation_id: str, results: AsyncGenerator[Any, None]
    ) -> None:
        try:
            async with contextlib.aclosing(results):
                async for result in results:
                    payload = await self.view.process_result(request, result)
                    await self._send(reservation, "next", {"id": operation_id, "payload": payload})
        except Exception:  # the client still learns its operation ended; the log says why
            log.exception("graphql-sse operation %s failed", operation_id)
        finally:
            reservation.finish(operation_id)
        await self._send(reservation, "complete", {"id": operation_id})

    async def _send(self, reservation: Reservation, event: str, data: dict[str, Any]) -> None:
        await reservation.queue.put(_SSE.encode_event(event, self.view.encode_json_string(data)))


async def _claims(request: Request) -> dict[str, Any]:
    """Verified claims (their `sub` is required), or Unauthorized (401) / Unavailable (503)."""
    runtime: Runtime = request.app.state.runtime
    return await runtime.authenticate(request.headers.get("authorization"))


async def _caller(request: Request) -> str:
    return str((await _claims(request))["sub"])
