"""/graphql over HTTP (GraphiQL on GET), graphql-transport-ws and graphql-sse, authenticated per transport."""

from __future__ import annotations

from typing import Any

from cross_web import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from fluxopus.auth.jwt import token_from_params
from fluxopus.errors import Unauthorized
from fluxopus.schema.operation import TransportContext
from fluxopus.schema.root import schema


async def get_context(connection: HTTPConnection) -> TransportContext:
    context = TransportContext(connection.app.state.runtime)
    if connection.scope["type"] == "http":
        # Authentication is checked lazily so GraphiQL can introspect without a token.
        await context.authenticate(connection.headers.get("authorization"))
    return context


class FluxopusGraphQLRouter(GraphQLRouter[TransportContext, None]):
    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """Transport errors (bad JSON, no query, GET mutation) answer JSON like the rest of the API."""
        try:
            return await super().run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            error = {"message": exc.reason, "extensions": {"code": "BAD_USER_INPUT"}}
            return JSONResponse({"error": exc.reason, "errors": [error]}, status_code=exc.status_code)

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
        return None


def graphql_router() -> FluxopusGraphQLRouter:
    return FluxopusGraphQLRouter(
        schema,
        context_getter=get_context,
        # Subscriptions over WebSocket (graphql-transport-ws) or plain HTTP (graphql-sse).
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL],
        graphql_ide="graphiql",
    )
