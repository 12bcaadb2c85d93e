"""Service-side account provisioning (bypasses RLS): used by the CLI, not by API requests."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from fluxopus.db.engine import asyncpg_dsn


@dataclass(frozen=True)
class Membership:
    user_id: UUID
    email: str
    company_id: UUID
    company: str
    role: str


async def ensure_member(database_url: str, *, email: str, company: str | None, role: str | None) -> Membership:
    """Create the user, the company and the membership when missing.

    A new company's first member is its admin unless a role is given; an existing member keeps
    their company, and their role unless one is given.
    """
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            user = await conn.fetchrow(
                "insert into users (email) values ($1) on conflict (lower(email)) do update set email = users.email"
                " returning id, email",
                email,
            )
            member = await conn.fetchrow(
                "select m.company_id, c.name, m.role from members m join companies c on c.id = m.company_id"
                " where m.user_id = $1",
                user["id"],
            )
            if member is not None:
                if company is not None and company.lower() != member["name"].lower():
                    raise ValueError(f"{email} already belongs to company {member['name']!r}; a user has one company")
                if role is not None and role != member["role"]:
                    await conn.execute("update members set role = $1 where user_id = $2", role, user["id"])
                role = role or member["role"]
                return Membership(user["id"], user["email"], member["company_id"], member["name"], role)
            name = company or "Default company"
            existing = await conn.fetchrow("select id, name from companies where lower(name) = lower($1)", name)
            if existing is None:
                existing = await conn.fetchrow("insert into companies (name) values ($1) returning id, name", name)
                role = role or "admin"
            role = role or "member"
            await conn.execute(
                "insert into members (user_id, company_id, role) values ($1, $2, $3)", user["id"], existing["id"], role
            )
            return Membership(user["id"], user["email"], existing["id"], existing["name"], role)
    finally:
        await conn.close()


async def set_token_budget(database_url: str, *, company: str, tokens: int | None) -> UUID:
    """Give a company its own monthly token budget (None: back to the server's default)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        company_id: UUID | None = await conn.fetchval(
            "update companies set monthly_token_budget = $2 where lower(name) = lower($1) returning id", company, tokens
        )
    finally:
        await conn.close()
    if company_id is None:
        raise ValueError(f"No company named {company!r}")
    return company_id
