"""The caller's identity and company; the company's members and invitations.

Admins manage members only through security-definer functions (migrations 005 to 007): they lock
the company's admins, so it always keeps one. An invitation carries a single-use secret (only its
hash is stored): the link is emailed to the address when the server sends mail, or handed once to the
inviting admin otherwise; following it is the only way into a company (auth/sessions.SignIn.verify).
Nothing an admin sees tells whether an address has an account, or another company's invitation.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from uuid import UUID

from fluxopus.auth.mail import MailError, invitation_message
from fluxopus.db import queries as sql
from fluxopus.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from fluxopus.models.common import Page, PageQuery
from fluxopus.models.members import Company, Invitation, InvitationCreate, Me, Member, Role
from fluxopus.resolvers.context import Context


async def me(ctx: Context) -> Me:
    if "me" not in ctx.cache:
        row = (await ctx.db.execute(sql.ME)).mappings().one()
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
    found = await ctx.db.execute(sql.COLLEAGUE, {"id": user_id})
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
    rows = list((await ctx.db.execute(sql.LIST_MEMBERS, {"limit": query.limit, "offset": query.offset})).mappings())
    total = rows[0]["total"] if rows else 0
    return Page([Member.model_validate(r) for r in rows], Page.known(total))


async def members_by_user(ctx: Context, user_ids: Sequence[UUID]) -> list[Member | None]:
    """Batch for the loaders: each user's membership, None where RLS shows none."""
    params = {"ids": list(user_ids), "limit": len(user_ids), "offset": 0}
    found = {
        r["user_id"]: Member.model_validate(r) for r in (await ctx.db.execute(sql.SOME_MEMBERS, params)).mappings()
    }
    return [found.get(u) for u in user_ids]


async def get_member(ctx: Context, *, user_id: UUID) -> Member:
    row = (await ctx.db.execute(sql.ONE_MEMBER, {"id": user_id, "limit": 1, "offset": 0})).mappings().first()
    if row is None:
        raise NotFound("Member not found")
    return Member.model_validate(row)


async def pending_invitations(ctx: Context) -> list[Invitation]:
    await require_admin(ctx)
    return [Invitation.model_validate(r) for r in (await ctx.db.execute(sql.PENDING_INVITATIONS)).mappings()]


async def invite_member(ctx: Context, *, data: InvitationCreate) -> Invitation:
    """An invitation to the caller's company with a new single-use link (inviting an address again
    renews it). With SMTP configured the link is emailed to the address, and sending is part of the
    transaction: an invitation whose mail failed is not kept. Otherwise the answer carries the link,
    once, for the admin to pass on."""
    caller = await require_admin(ctx)
    secret = secrets.token_urlsafe(32)
    params = {
        "email": data.email,
        "role": data.role.value,
        "hash": hashlib.sha256(secret.encode()).hexdigest(),
        "valid_for": ctx.mail.invitation_ttl,
    }
    result = (await ctx.db.execute(sql.INVITE, params)).mappings().one()
    outcome, invitation_id = result["outcome"], result["invitation_id"]
    if outcome == "member":
        raise Conflict(f"{data.email} is already a member of your company")
    if outcome == "forbidden":  # the caller stopped being an admin since require_admin read their role
        raise Conflict("Your role changed while this ran: you are no longer an admin of the company")
    row = (await ctx.db.execute(sql.INVITATION, {"id": invitation_id})).mappings().one()
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
    if (await ctx.db.execute(sql.CANCEL_INVITATION, {"id": id})).first() is None:
        raise NotFound("Pending invitation not found")
    return id


async def _change_membership(ctx: Context, user_id: UUID, role: Role | None) -> None:
    await require_admin(ctx)
    outcome = (
        await ctx.db.execute(sql.CHANGE_MEMBERSHIP, {"target": user_id, "role": role.value if role else None})
    ).scalar_one()
    if outcome == "not_found":
        raise NotFound("Member not found")
    if outcome == "last_admin":
        raise Conflict("The company's last admin cannot be removed or demoted; make another member an admin first")
    if outcome == "forbidden":
        # require_admin saw an admin, and the function (after waiting for the company's admin locks)
        # did not: another admin demoted or removed the caller meanwhile, e.g. two admins demoting
        # each other at once. The request lost a race; it was not a member overreaching.
        raise Conflict("Your role changed while this ran: you are no longer an admin of the company")
    if outcome != "ok":
        raise RuntimeError(f"fluxopus.change_membership answered {outcome!r}")
    ctx.cache.pop("me", None)  # the caller may have changed their own role


async def update_member_role(ctx: Context, *, user_id: UUID, role: Role) -> Member:
    await _change_membership(ctx, user_id, role)
    return await get_member(ctx, user_id=user_id)


async def remove_member(ctx: Context, *, user_id: UUID) -> UUID:
    """The user keeps their account (and can be invited again); their company's data stays with it."""
    await _change_membership(ctx, user_id, None)
    return user_id
