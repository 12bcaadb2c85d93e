"""/graphql over HTTP (GraphiQL on GET) and graphql-transport-ws, authenticated per transport."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

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
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        graphql_ide="graphiql",
    )
