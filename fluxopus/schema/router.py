"""/graphql over HTTP (GraphiQL on GET), graphql-transport-ws and graphql-sse, authenticated per transport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from cross_web import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from fluxopus.auth.jwt import token_from_params
from fluxopus.config import Settings
from fluxopus.errors import DomainError, Unauthorized
from fluxopus.http_limits import decode_json
from fluxopus.requestinfo import note_operation
from fluxopus.runtime import Runtime
from fluxopus.schema import ide
from fluxopus.schema.compiled import Statements
from fluxopus.schema.compiled import stats as compiled_stats
from fluxopus.schema.limits import Documents, Limits
from fluxopus.schema.operation import TransportContext
from fluxopus.schema.root import schema
from fluxopus.schema.sse_single import SingleConnection, stream_token


class FluxopusGraphQLRouter(GraphQLRouter[TransportContext, None]):
    def __init__(self, *args: Any, max_json_depth: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_json_depth = max_json_depth
        # GraphiQL's scripts and styles, from the package (schema/ide.py): the page works offline.
        self.add_route(kwargs.get("path", "") + "/assets/{name}", ide.asset, methods=["GET"], include_in_schema=False)
        # graphql-sse's single-connection mode (schema/sse_single.py): PUT reserves a stream, DELETE
        # stops an operation; GET and POST naming a reservation are told apart in run().
        self.single = SingleConnection(self)
        path = kwargs.get("path", "")
        self.add_api_route(path, self._reserve_stream, methods=["PUT"], include_in_schema=False)
        self.add_api_route(path, self._stop_operation, methods=["DELETE"], include_in_schema=False)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """Transport errors (bad JSON, no query, GET mutation, too large) answer JSON like the rest of the API."""
        try:
            if isinstance(request, Request) and (token := stream_token(request)) is not None:
                if request.method == "GET":
                    return await self.single.stream(request, token)
                return await self.single.execute(request, token, context, root_value)
            return await super().run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            return _transport_error(exc.status_code, exc.reason, "BAD_USER_INPUT")
        except DomainError as exc:  # the body outgrew its limit while it was read
            return _transport_error(exc.status, exc.message, exc.code)

    async def _reserve_stream(self, request: Request) -> Response:
        try:
            return await self.single.reserve(request)
        except DomainError as exc:
            return _transport_error(exc.status, exc.message, exc.code)

    async def _stop_operation(self, request: Request) -> Response:
        try:
            return await self.single.stop(request)
        except DomainError as exc:
            return _transport_error(exc.status, exc.message, exc.code)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """Our GraphiQL page (schema/ide.py) in place of Strawberry's, whose assets come from a CDN."""
        return await ide.page(request)

    def decode_json(self, data: str | bytes) -> object:
        """HTTP bodies and WebSocket messages alike (a WebSocket answers a refusal with 4400)."""
        return decode_json(data, self.max_json_depth)

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return self.decode_json(data)
        except json.JSONDecodeError as exc:
            reason = exc.msg if exc.doc == "" else "Unable to parse request body as JSON"
            raise HTTPException(400, reason) from exc

    async def on_ws_connect(self, context: TransportContext) -> dict[str, Any] | None:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        try:
            token = token_from_params(params)
        except Unauthorized as exc:
            raise ConnectionRejectionError({"error": exc.message}) from exc
        await context.authenticate(token, header=False)
        if context.claims is None:
            assert context.auth_error is not None
            raise ConnectionRejectionError({"error": context.auth_error.message})
        assert isinstance(context.request, WebSocket)
        context.watcher = asyncio.create_task(_watch(context.request, context.runtime, context.claims))
        return None


async def _watch(websocket: WebSocket, runtime: Runtime, claims: dict[str, Any]) -> None:
    """Closes a socket whose token expires (4401) or whose session ends (4403), as graphql-transport-ws
    spells unauthorized and forbidden; checks at the session cache's pace, and stops with the socket."""
    interval = max(runtime.sessions.ttl, 1.0)
    expires = float(claims["exp"])
    while websocket.application_state is WebSocketState.CONNECTED:
        await asyncio.sleep(max(min(expires - time.time(), interval), 0.05))
        if websocket.application_state is not WebSocketState.CONNECTED:
            return
        if time.time() >= expires:
            await _close(websocket, 4401, "Token expired: connect again with a new one")
            return
        if not await runtime.session_on(claims):
            await _close(websocket, 4403, "Session ended: sign in again")
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError):  # closed meanwhile by the client or the protocol handler
        await websocket.close(code=code, reason=reason)


def _transport_error(status: int, message: str, code: str) -> JSONResponse:
    headers = {"Retry-After": "2"} if status == 503 else None
    body = {"error": message, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status, headers=headers)


class CompiledFirst:
    """ASGI middleware in front of POST /graphql: a query answered from its compiled statement before
    (schema/compiled.Statements), asked again with the same document, operation and variables by a
    signed-in caller, is answered from that statement without Strawberry — no parsing, validation,
    limits or executor, which cost more than the query itself. They would decide the same again:
    Strawberry checked exactly this request before it was kept, and the statement depends on nothing
    else (RLS decides what the caller's transaction reads). Whatever else — a first time, a token that
    fails, a failure of the statement, a body that is not a plain query request — goes on to Strawberry
    untouched. The answer is written by the router's own encoder, so its bytes are Strawberry's."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        statements: Statements,
        max_json_depth: int,
        encode: Callable[[object], str | bytes],
    ) -> None:
        self.app = app
        self.statements = statements
        self.max_json_depth = max_json_depth
        self.encode = encode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/graphql":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            body = await request.body()
        except Exception as exc:  # noqa: BLE001 - too large, or gone: Strawberry's router answers it as always
            await self.app(scope, _raising(exc), send)
            return
        data = await self._answer(request, body)
        if data is None:
            await self.app(scope, _replaying(body, receive), send)
            return
        # Parsed and written again (not PostgreSQL's text as it is): the same bytes as the first answer
        # to this query, which Strawberry wrote — spacing and escapes included.
        answer = self.encode({"data": json.loads(data)})
        await Response(answer, media_type="application/json")(scope, receive, send)

    async def _answer(self, request: Request, body: bytes) -> str | None:
        if not _plain_json_request(request):
            return None
        try:
            payload = decode_json(body, self.max_json_depth)
        except ValueError:
            return None
        if not isinstance(payload, dict) or not payload.keys() <= {"query", "operationName", "variables"}:
            return None
        query, operation, variables = payload.get("query"), payload.get("operationName"), payload.get("variables")
        if not isinstance(query, str) or not isinstance(operation, str | None):
            return None
        compiled = self.statements.find(query, operation, variables)
        if compiled is None:
            return None
        runtime: Runtime = request.app.state.runtime
        try:
            claims = await runtime.authenticate(request.headers.get("authorization"))
        except DomainError:
            return None  # Strawberry says what is wrong with the token, field by field
        ctx = runtime.context(claims)
        try:
            value: str = (await ctx.db.fetch(compiled.prepared, compiled.args))[0][0]
            await ctx.db.commit()
        except Exception:  # noqa: BLE001 - Strawberry answers it again, with its error
            await ctx.db.rollback()
            return None
        compiled_stats["fast"] += 1
        note_operation(compiled.name, "query")
        return value


def _plain_json_request(request: Request) -> bool:
    """JSON in, JSON out: what Strawberry answers with a plain JSON body (not SSE, not multipart, not an
    operation for a graphql-sse stream, answered 202 with its results on that stream)."""
    if stream_token(request) is not None:
        return False
    if not request.headers.get("content-type", "").startswith("application/json"):
        return False
    accept = request.headers.get("accept")
    return accept is None or accept in ("*/*", "application/json")


def _replaying(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _raising(exc: Exception) -> Receive:
    async def receive() -> Message:
        raise exc

    return receive


def graphql_router(settings: Settings, statements: Statements | None) -> FluxopusGraphQLRouter:
    """`statements`: the compiled queries (shared with CompiledFirst), None when they are off."""
    # Checked documents are cached per router: one app, one cache.
    documents = Documents(Limits.of(settings))

    async def get_context(connection: HTTPConnection) -> TransportContext:
        context = TransportContext(connection.app.state.runtime, documents, statements)
        if connection.scope["type"] == "http":
            # Authentication is checked lazily so GraphiQL can introspect without a token.
            await context.authenticate(connection.headers.get("authorization"))
        return context

    return FluxopusGraphQLRouter(
        schema,
        max_json_depth=settings.max_json_depth,
        context_getter=get_context,
        # Subscriptions over WebSocket (graphql-transport-ws) or plain HTTP (graphql-sse).
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL],
        # Pages on these origins may open a WebSocket (same-origin pages and clients sending no Origin
        # always may): the list HTTP CORS allows (app.py), so one setting opens both.
        allowed_origins=settings.cors_origins,
        graphql_ide="graphiql",
    )
