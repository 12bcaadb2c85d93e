from __future__ import annotations

from typing import Annotated

import strawberry

from fluxopus.models import connections as m
from fluxopus.models.common import Page, PageQuery, parse, parse_uuid
from fluxopus.resolvers import connections
from fluxopus.schema._derive import Limit, Offset, argument, graphql_enum, object_type, out, outs
from fluxopus.schema.pagination import After, Before, First, Last, connection
from fluxopus.schema.pagination import Connection as PaginatedConnection

graphql_enum(m.ConnectionState)

ProviderName = Annotated[
    str, strawberry.argument(description="The provider's name as the server is configured with it, e.g. github")
]


@object_type(m.Connection)
class Connection:
    pass


@object_type(m.ConnectionStatus)
class ConnectionStatus:
    pass


@object_type(m.Disconnected)
class Disconnected:
    pass


@strawberry.type
class ConnectionsQuery:
    @strawberry.field(description="The caller's connections; an admin's: the whole company's")
    async def connections(self, info: strawberry.Info, limit: Limit = 50, offset: Offset = 0) -> list[Connection]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await connections.list_connections(info.context, query=query)
        return outs(Connection, page.items)

    @strawberry.field(description="`connections` as a Relay connection: cursors, pageInfo and totalCount")
    async def connections_connection(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> PaginatedConnection[Connection]:
        async def fetch(limit: int, offset: int) -> Page[m.Connection]:
            query = parse(PageQuery, {"limit": limit, "offset": offset})
            return await connections.list_connections(info.context, query=query)

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="The caller's connection to a provider; an expired access token is refreshed first")
    async def connection_status(self, info: strawberry.Info, provider: ProviderName) -> ConnectionStatus:
        return out(ConnectionStatus, await connections.connection_status(info.context, provider=provider))


@strawberry.type
class ConnectionsMutation:
    @strawberry.mutation(
        description="Start connecting a provider: returns the URL of its consent page to send the browser to. "
        "Afterwards the browser comes back to `redirectTo` (a path or URL on the app's origin) with "
        "`connection=<provider>&status=connected|error`."
    )
    async def authorize_connection(
        self,
        info: strawberry.Info,
        provider: ProviderName,
        redirect_to: Annotated[str | None, argument(m.AuthorizeQuery, "redirect_to")] = None,
    ) -> str:
        query = parse(m.AuthorizeQuery, {"redirect_to": redirect_to})
        authorization = await connections.authorize_connection(info.context, provider=provider, query=query)
        return authorization.url

    @strawberry.mutation(description="Revoke at the provider where it can be, then delete the connection")
    async def disconnect(
        self,
        info: strawberry.Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The connection's id")],
    ) -> Disconnected:
        return out(Disconnected, await connections.disconnect(info.context, id=parse_uuid(id)))
