"""The caller's identity and company; the company's members and invitations.

Admins manage members only through security-definer functions (fluxopus.change_membership and
fluxopus.invite_member): a role change locks the company's admins, so it always keeps one (the rule
is fluxopus.set_membership's, migration 012, which the CLI calls too). An invitation carries a
single-use secret (only its hash is stored): the link is emailed to the address when the server
sends mail, or handed once to the inviting admin otherwise; following it is the only way into a
company (auth/sessions.SignIn.verify). Nothing an admin sees tells whether an address has an
account, or another company's invitation.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, select

from fluxopus.auth.mail import MailError, invitation_message
from fluxopus.db.users import membership_refused
from fluxopus.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from fluxopus.models.common import Page, PageQuery
from fluxopus.models.members import (
    Company,
    Invitation,
    InvitationCreate,
    Me,
    Member,
    Role,
    companies,
    invitations,
    members,
    users,
)
from fluxopus.resolvers._sql import fetch_one, fetch_page, one_of
from fluxopus.resolvers.context import Context

_caller = select(func.fluxopus.uid().label("id")).subquery("caller")
# The caller (fluxopus.uid()) whether or not they belong to a company: every join is outer.
_ME = select(
    users.c.email,
    members.c.role,
    companies.c.id.label("company_id"),
    companies.c.name.label("company_name"),
    companies.c.created_at.label("company_created_at"),
).select_from(
    _caller.outerjoin(users, users.c.id == _caller.c.id)
    .outerjoin(members, members.c.user_id == _caller.c.id)
    .outerjoin(companies, companies.c.id == members.c.company_id)
)
# RLS shows the members of the caller's company only.
_MEMBERS = (
    select(members.c.user_id, users.c.email, members.c.role, members.c.company_id, members.c.created_at)
    .join_from(members, users, users.c.id == members.c.user_id)
    .order_by(members.c.created_at, members.c.user_id)
)
_INVITATIONS = select(
    invitations.c.id,
    invitations.c.email,
    invitations.c.role,
    invitations.c.invited_by,
    invitations.c.created_at,
    invitations.c.accepted_at,
    invitations.c.expires_at,
)


async def me(ctx: Context) -> Me:
    if "me" not in ctx.cache:
        row = (await ctx.db.execute(_ME)).mappings().one()
        company = (
            Company(id=row["company_id"], name=row["company_name"], created_at=row["company_created_at"])
            if row["company_id"]
            else None
        )
        email = row["email"] or (ctx.claims or {}).get("email")
        ctx.cache["me"] = Me(id=ctx.user_id, email=email, role=row["role"], company=company)
    result: Me = ctx.cache["me"]
    return result


NO_COMPANY = "You are not a member of any company; ask an admin to add you"


async def require_membership(ctx: Context) -> Me:
    caller = await me(ctx)
    if caller.company is None:
        raise Forbidden(NO_COMPANY)
    return caller


async def ensure_colleague(ctx: Context, user_id: UUID, field: str) -> None:
    """RLS shows only members of the caller's company, so a miss means 'not a colleague'."""
    found = await ctx.db.execute(select(members.c.user_id).where(members.c.user_id == user_id))
    if found.first() is None:
        raise Invalid(f"{field}: user {user_id} is not a member of your company")


async def require_admin(ctx: Context) -> Me:
    caller = await require_membership(ctx)
    if caller.role != Role.admin:
        raise Forbidden("Only an admin of your company can manage its members")
    return caller


async def company(ctx: Context) -> Company | None:
    return (await me(ctx)).company


async def list_members(ctx: Context, *, query: PageQuery) -> Page[Member]:
    """RLS shows the caller's company; a user without one sees nobody."""
    return await fetch_page(ctx, member_rows, Member, limit=query.limit, offset=query.offset)


def member_rows() -> Select[Any]:
    """The caller's company's members, in the order they joined (also schema/compiled.py's)."""
    return _MEMBERS


def member_of(user_id: Any) -> Select[Any]:
    """A user's membership as RLS shows it; `user_id` a value or a column of an enclosing query."""
    return _MEMBERS.where(members.c.user_id == user_id)


async def members_by_user(ctx: Context, user_ids: Sequence[UUID]) -> list[Member | None]:
    """Batch for the loaders: each user's membership, None where RLS shows none."""
    rows = (await ctx.db.execute(_MEMBERS.where(one_of(members.c.user_id, user_ids)))).mappings()
    found = {r["user_id"]: Member.model_validate(r) for r in rows}
    return [found.get(u) for u in user_ids]


async def get_member(ctx: Context, *, user_id: UUID) -> Member:
    row = await fetch_one(ctx, member_of, user_id=user_id)
    if row is None:
        raise NotFound("Member not found")
    return Member.model_validate(row)


async def pending_invitations(ctx: Context) -> list[Invitation]:
    await require_admin(ctx)
    pending = _INVITATIONS.where(invitations.c.accepted_at.is_(None), invitations.c.expires_at > func.now()).order_by(
        invitations.c.created_at.desc(), invitations.c.id
    )
    return [Invitation.model_validate(r) for r in (await ctx.db.execute(pending)).mappings()]


async def invite_member(ctx: Context, *, data: InvitationCreate) -> Invitation:
    """An invitation to the caller's company with a new single-use link (inviting an address again
    renews it). With SMTP configured the link is emailed to the address, and sending is part of the
    transaction: an invitation whose mail failed is not kept. Otherwise the answer carries the link,
    once, for the admin to pass on."""
    caller = await require_admin(ctx)
    secret = secrets.token_urlsafe(32)
    invited = func.fluxopus.invite_member(
        data.email, data.role.value, hashlib.sha256(secret.encode()).hexdigest(), ctx.mail.invitation_ttl
    ).table_valued("outcome", "invitation_id")
    result = (await ctx.db.execute(select(invited.c.outcome, invited.c.invitation_id))).mappings().one()
    outcome, invitation_id = result["outcome"], result["invitation_id"]
    if outcome == "member":
        raise Conflict(f"{data.email} is already a member of your company")
    if outcome == "forbidden":  # the caller stopped being an admin since require_admin read their role
        raise Conflict("Your role changed while this ran: you are no longer an admin of the company")
    row = (await ctx.db.execute(_INVITATIONS.where(invitations.c.id == invitation_id))).mappings().one()
    link = ctx.mail.link(secret, "invite")
    if not ctx.mail.configured:
        return Invitation.model_validate({**row, "accept_url": link})
    assert caller.company is not None
    try:
        await ctx.mail.send(data.email, *invitation_message(caller.company.name, link, row["expires_at"]))
    except MailError as exc:
        raise Unavailable(f"The invitation could not be emailed ({exc}); nothing was stored") from None
    return Invitation.model_validate({**row, "email_sent": True})


async def cancel_invitation(ctx: Context, *, id: UUID) -> UUID:
    await require_admin(ctx)
    cancel = (
        delete(invitations)
        .where(invitations.c.id == id, invitations.c.accepted_at.is_(None))
        .returning(invitations.c.id)
    )
    if (await ctx.db.execute(cancel)).first() is None:
        raise NotFound("Pending invitation not found")
    return id


async def _change_membership(ctx: Context, user_id: UUID, role: Role | None) -> None:
    """The last-admin rule is fluxopus.set_membership's (migration 012), which this function calls after
    checking the caller is an admin of the member's company; its answer becomes the error."""
    caller = await require_admin(ctx)
    assert caller.company is not None
    change = func.fluxopus.change_membership(user_id, role.value if role else None)
    outcome = (await ctx.db.execute(select(change))).scalar_one()
    refused = membership_refused(outcome, caller.company.name)
    if refused is not None:
        raise refused
    ctx.cache.pop("me", None)  # the caller may have changed their own role


async def update_member_role(ctx: Context, *, user_id: UUID, role: Role) -> Member:
    await _change_membership(ctx, user_id, role)
    return await get_member(ctx, user_id=user_id)


async def remove_member(ctx: Context, *, user_id: UUID) -> UUID:
    """The user keeps their account (and can be invited again); their company's data stays with it."""
    await _change_membership(ctx, user_id, None)
    return user_id
