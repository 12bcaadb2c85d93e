from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlalchemy import Select

from fluxopus.models import members as m
from fluxopus.models.common import Page, PageQuery, parse, parse_uuid
from fluxopus.resolvers import members
from fluxopus.schema import compiled
from fluxopus.schema._derive import Limit, Offset, argument, graphql_enum, object_type, out, outs
from fluxopus.schema.pagination import After, Before, Connection, First, Last, connection

graphql_enum(m.Role)

UserId = Annotated[strawberry.ID, strawberry.argument(description="The member's user id")]


@object_type(m.Company)
class Company:
    pass


@object_type(m.Member)
class Member:
    pass


@object_type(m.Me)
class Me:
    pass


@object_type(m.Invitation)
class Invitation:
    pass


@compiled.root("members", many=True)
def _member_rows(limit: int = 50, offset: int = 0) -> Select[Any]:
    """How GraphQL reads `members` in one SQL statement (schema/compiled.py)."""
    query = parse(PageQuery, {"limit": limit, "offset": offset})
    return compiled.paged(members.member_rows(), query)


@strawberry.type
class MembersQuery:
    @strawberry.field(description="The caller: user id, email, company and role")
    async def me(self, info: strawberry.Info) -> Me:
        return out(Me, await members.me(info.context))

    @strawberry.field(description="The caller's company; null for a user without one")
    async def company(self, info: strawberry.Info) -> Company | None:
        result = await members.company(info.context)
        return out(Company, result) if result else None

    @strawberry.field(description="The members of the caller's company, in the order they joined")
    async def members(self, info: strawberry.Info, limit: Limit = 50, offset: Offset = 0) -> list[Member]:
        page = await members.list_members(info.context, query=parse(PageQuery, {"limit": limit, "offset": offset}))
        return outs(Member, page.items)

    @strawberry.field(description="`members` as a Relay connection: cursors, pageInfo and totalCount")
    async def members_connection(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Member]:
        async def fetch(limit: int, offset: int) -> Page[m.Member]:
            return await members.list_members(info.context, query=parse(PageQuery, {"limit": limit, "offset": offset}))

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="Admins only: the company's pending invitations, newest first")
    async def invitations(self, info: strawberry.Info) -> list[Invitation]:
        return outs(Invitation, await members.pending_invitations(info.context))


@strawberry.type
class MembersMutation:
    @strawberry.mutation(
        description="Admins only. Invites the address to join the company as `role`: it does so by following the"
        " invitation's link (emailed to it, or returned here as acceptUrl when the server sends no email)."
        " Inviting an address again renews its link"
    )
    async def invite_member(
        self,
        info: strawberry.Info,
        email: Annotated[str, argument(m.InvitationCreate, "email")],
        role: Annotated[m.Role, argument(m.InvitationCreate, "role")] = m.Role.member,
    ) -> Invitation:
        data = parse(m.InvitationCreate, {"email": email, "role": role})
        return out(Invitation, await members.invite_member(info.context, data=data))

    @strawberry.mutation(description="Admins only. Withdraws a pending invitation; returns its id")
    async def cancel_invitation(
        self,
        info: strawberry.Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The invitation's id")],
    ) -> strawberry.ID:
        cancelled = await members.cancel_invitation(info.context, id=parse_uuid(id))
        return strawberry.ID(str(cancelled))

    @strawberry.mutation(description="Admins only. The company's last admin cannot be demoted")
    async def update_member_role(
        self,
        info: strawberry.Info,
        user_id: UserId,
        role: Annotated[m.Role, strawberry.argument(description="Their new role")],
    ) -> Member:
        member = await members.update_member_role(info.context, user_id=parse_uuid(user_id, "userId"), role=role)
        return out(Member, member)

    @strawberry.mutation(
        description="Admins only. Removes the user from the company (their account stays); returns their id."
        " The company's last admin cannot be removed"
    )
    async def remove_member(self, info: strawberry.Info, user_id: UserId) -> strawberry.ID:
        removed = await members.remove_member(info.context, user_id=parse_uuid(user_id, "userId"))
        return strawberry.ID(str(removed))
