"""The caller's identity, company and membership."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text

from fluxopus.context import Context
from fluxopus.errors import Forbidden, Invalid
from fluxopus.models.accounts import Company, Me

_ME = text(
    """
    select u.email, m.role, c.id as company_id, c.name as company_name, c.created_at as company_created_at
    from (select fluxopus.uid() as id) caller
    left join users u on u.id = caller.id
    left join members m on m.user_id = caller.id
    left join companies c on c.id = m.company_id
    """
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


async def require_membership(ctx: Context) -> Me:
    caller = await me(ctx)
    if caller.company is None:
        raise Forbidden("You are not a member of any company; ask an admin to add you")
    return caller


async def ensure_colleague(ctx: Context, user_id: UUID, field: str) -> None:
    """RLS shows only members of the caller's company, so a miss means 'not a colleague'."""
    found = await ctx.db.execute(text("select 1 from members where user_id = :id"), {"id": user_id})
    if found.first() is None:
        raise Invalid(f"{field}: user {user_id} is not a member of your company")
