from __future__ import annotations

import datetime as dt

import strawberry

from fluxopus.models import connections as m
from fluxopus.models.common import PageQuery, parse, parse_uuid
from fluxopus.resolvers import connections
from fluxopus.schema._convert import build

ConnectionState = strawberry.enum(m.ConnectionState, name="ConnectionState")


@strawberry.type(description="An OAuth grant to a third-party tool. Tokens never leave the server.")
class Connection:
    id: strawberry.ID
    user_id: strawberry.ID
    provider: str
    status: ConnectionState  # type: ignore[valid-type]
    account: str | None
    scopes: list[str]
    expires_at: dt.datetime | None
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@strawberry.type
class ConnectionStatus:
    provider: str
    connected: bool
    status: ConnectionState | None  # type: ignore[valid-type]
    connection_id: strawberry.ID | None
    account: str | None
    scopes: list[str]
    expires_at: dt.datetime | None
    error: str | None


@strawberry.type
class Disconnected:
    id: strawberry.ID
    deleted: bool
    revoked: bool
    revoke_error: str | None


@strawberry.type
class ConnectionsQuery:
    @strawberry.field(description="The caller's connections; an admin's: the whole company's")
    async def connections(self, info: strawberry.Info, limit: int = 50, offset: int = 0) -> list[Connection]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await connections.list_connections(info.context, query=query)
        return [build(Connection, c) for c in page.items]

    @strawberry.field(description="The caller's connection to a provider; an expired access token is refreshed first")
    async def connection_status(self, info: strawberry.Info, provider: str) -> ConnectionStatus:
        return build(ConnectionStatus, await connections.connection_status(info.context, provider=provider))


@strawberry.type
class ConnectionsMutation:
    @strawberry.mutation(
        description="Start connecting a provider: returns the URL of its consent page to send the browser to. "
        "Afterwards the browser comes back to `redirectTo` (a path or URL on the app's origin) with "
        "`connection=<provider>&status=connected|error`."
    )
    async def authorize_connection(self, info: strawberry.Info, provider: str, redirect_to: str | None = None) -> str:
        query = parse(m.AuthorizeQuery, {"redirect_to": redirect_to})
        authorization = await connections.authorize_connection(info.context, provider=provider, query=query)
        return authorization.url

    @strawberry.mutation(description="Revoke at the provider where it can be, then delete the connection")
    async def disconnect(self, info: strawberry.Info, id: strawberry.ID) -> Disconnected:
        return build(Disconnected, await connections.disconnect(info.context, id=parse_uuid(id)))
