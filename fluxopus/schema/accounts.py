from __future__ import annotations

import datetime as dt

import strawberry

from fluxopus.models import accounts as m
from fluxopus.models.common import PageQuery, parse, parse_uuid
from fluxopus.resolvers import accounts
from fluxopus.schema._convert import build

Role = strawberry.enum(m.Role, name="Role")


@strawberry.type
class Company:
    id: strawberry.ID
    name: str
    created_at: dt.datetime


@strawberry.type
class Member:
    user_id: strawberry.ID
    email: str
    role: Role  # type: ignore[valid-type]
    company_id: strawberry.ID
    created_at: dt.datetime


@strawberry.type
class Me:
    id: strawberry.ID
    email: str | None
    role: Role | None  # type: ignore[valid-type]
    company: Company | None


@strawberry.type
class Invitation:
    id: strawberry.ID
    email: str
    role: Role  # type: ignore[valid-type]
    invited_by: strawberry.ID
    created_at: dt.datetime
    accepted_at: dt.datetime | None
    expires_at: dt.datetime
    accept_url: str | None = strawberry.field(
        description="The link that accepts the invitation, in inviteMember's answer only and only when the server"
        " sends no email: pass it on to the invited person (it works once, until expiresAt)"
    )
    email_sent: bool = strawberry.field(description="In inviteMember's answer: the link was emailed to the address")


@strawberry.type
class AccountsQuery:
    @strawberry.field(description="The caller: user id, email, company and role")
    async def me(self, info: strawberry.Info) -> Me:
        result = await accounts.me(info.context)
        return Me(
            id=strawberry.ID(str(result.id)),
            email=result.email,
            role=result.role,
            company=build(Company, result.company) if result.company else None,
        )

    @strawberry.field(description="The caller's company; null for a user without one")
    async def company(self, info: strawberry.Info) -> Company | None:
        result = await accounts.company(info.context)
        return build(Company, result) if result else None

    @strawberry.field(description="The members of the caller's company, in the order they joined")
    async def members(self, info: strawberry.Info, limit: int = 50, offset: int = 0) -> list[Member]:
        page = await accounts.list_members(info.context, query=parse(PageQuery, {"limit": limit, "offset": offset}))
        return [build(Member, x) for x in page.items]

    @strawberry.field(description="Admins only: the company's pending invitations, newest first")
    async def invitations(self, info: strawberry.Info) -> list[Invitation]:
        return [build(Invitation, x) for x in await accounts.pending_invitations(info.context)]


@strawberry.type
class AccountsMutation:
    @strawberry.mutation(
        description="Admins only. Invites the address to join the company as `role`: it does so by following the"
        " invitation's link (emailed to it, or returned here as acceptUrl when the server sends no email)."
        " Inviting an address again renews its link"
    )
    async def invite_member(
        self,
        info: strawberry.Info,
        email: str,
        role: Role = m.Role.member,  # type: ignore[valid-type]
    ) -> Invitation:
        data = parse(m.InvitationCreate, {"email": email, "role": role})
        return build(Invitation, await accounts.invite_member(info.context, data=data))

    @strawberry.mutation(description="Admins only. Withdraws a pending invitation; returns its id")
    async def cancel_invitation(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        cancelled = await accounts.cancel_invitation(info.context, id=parse_uuid(id))
        return strawberry.ID(str(cancelled))

    @strawberry.mutation(description="Admins only. The company's last admin cannot be demoted")
    async def update_member_role(
        self,
        info: strawberry.Info,
        user_id: strawberry.ID,
        role: Role,  # type: ignore[valid-type]
    ) -> Member:
        member = await accounts.update_member_role(info.context, user_id=parse_uuid(user_id, "userId"), role=role)
        return build(Member, member)

    @strawberry.mutation(
        description="Admins only. Removes the user from the company (their account stays); returns their id."
        " The company's last admin cannot be removed"
    )
    async def remove_member(self, info: strawberry.Info, user_id: strawberry.ID) -> strawberry.ID:
        removed = await accounts.remove_member(info.context, user_id=parse_uuid(user_id, "userId"))
        return strawberry.ID(str(removed))
