"""Users, companies and memberships: the one module that creates them.

Two ways in, one set of statements:
- the operator (`fluxopus users`, `fluxopus token`, the demo, tests and benchmarks) names the
  company: `ensure_member` and `create_user` join it when it exists (ignoring case) and create it
  otherwise — its first member is its admin — or use "Default company" when none is named;
- a stranger signing up at /auth/v1 (db/auth.py) never joins anyone: they get a company of their
  own, numbered when its name is taken (`new_company`); an invitation's link is the only way into
  an existing company (db/auth.accept_invitation, which adds the member here).
A role change keeps the company's last admin through fluxopus.set_membership (migration 012), the
same function the API's change_membership calls: the rule is written once, in SQL.

Everything here runs as the service, outside RLS: these are the operator's and the sign-in's
statements, not a caller's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from fluxopus.db.engine import sqlalchemy_url
from fluxopus.db.session import service_transaction

DEFAULT_COMPANY = "Default company"


@dataclass(frozen=True)
class Membership:
    user_id: UUID
    email: str
    company_id: UUID
    company: str
    role: str


class UserError(ValueError):
    """A refusal the CLI reports as one line: the message says what to do instead."""


class UserExists(UserError):
    pass


@dataclass(frozen=True)
class UserListing:
    email: str
    company: str | None
    role: str | None
    has_password: bool
    created_at: dt.datetime


@asynccontextmanager
async def operator_transaction(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A transaction as the database's owner, for one CLI command (its engine lives as long)."""
    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        async with service_transaction(engine) as conn:
            yield conn
    finally:
        await engine.dispose()


# --- the statements both ways share ------------------------------------------------------------


async def membership(conn: AsyncConnection, user_id: UUID) -> RowMapping | None:
    result = await conn.execute(
        text(
            "select m.company_id, c.name, m.role from members m join companies c on c.id = m.company_id"
            " where m.user_id = :user"
        ),
        {"user": user_id},
    )
    return result.mappings().first()


async def add_member(conn: AsyncConnection, user_id: UUID, company_id: UUID, role: str) -> bool:
    """False when the user already belongs to a company (a user has one)."""
    joined = await conn.execute(
        text(
            "insert into members (user_id, company_id, role) values (:user, :company, :role)"
            " on conflict (user_id) do nothing"
        ),
        {"user": user_id, "company": company_id, "role": role},
    )
    return bool(joined.rowcount)


async def new_company(conn: AsyncConnection, name: str) -> UUID:
    """A company of its own: names are unique ignoring case, so a taken one gets a number."""
    for n in range(1, 1000):
        candidate = name if n == 1 else f"{name} ({n})"
        created = await conn.execute(
            text("insert into companies (name) values (:name) on conflict do nothing returning id"),
            {"name": candidate[:200]},
        )
        company_id = created.scalar()
        if company_id is not None:
            return UUID(str(company_id))
    raise RuntimeError(f"no free company name like {name!r}")


async def _join_named(conn: AsyncConnection, user_id: UUID, company: str, role: str | None) -> Membership:
    """Make the user a member of `company`, creating it (with them as its admin) when missing."""
    found = (
        (await conn.execute(text("select id, name from companies where lower(name) = lower(:n)"), {"n": company}))
        .mappings()
        .first()
    )
    if found is None:
        company_id, name = await new_company(conn, company), company[:200]
        role = role or "admin"
    else:
        company_id, name = found["id"], found["name"]
    role = role or "member"
    await add_member(conn, user_id, company_id, role)
    email = await conn.scalar(text("select email from users where id = :id"), {"id": user_id})
    return Membership(user_id, str(email), company_id, name, role)


# --- the operator's ------------------------------------------------------------------------------


async def ensure_member(database_url: str, *, email: str, company: str | None, role: str | None) -> Membership:
    """Create the user, the company and the membership when missing.

    A new company's first member is its admin unless a role is given; an existing member keeps
    their company, and their role unless one is given (the last admin's only through set_role's rule).
    """
    async with operator_transaction(database_url) as conn:
        user = (
            (
                await conn.execute(
                    text(
                        "insert into users (email) values (:email) on conflict (lower(email))"
                        " do update set email = users.email returning id, email"
                    ),
                    {"email": email},
                )
            )
            .mappings()
            .one()
        )
        member = await membership(conn, user["id"])
        if member is None:
            return await _join_named(conn, user["id"], company or DEFAULT_COMPANY, role)
        if company is not None and company.lower() != member["name"].lower():
            raise UserError(f"{email} already belongs to company {member['name']!r}; a user has one company")
        if role is not None and role != member["role"]:
            await _set_membership(conn, member["company_id"], user["id"], role, user["email"], member["name"])
        return Membership(user["id"], user["email"], member["company_id"], member["name"], role or member["role"])


async def create_user(
    database_url: str,
    *,
    email: str,
    password_hash: str,
    company: str | None,
    role: str | None,
    reset_password: bool = False,
) -> tuple[Membership, bool]:
    """Create a user with a password (and their company and membership, as `ensure_member` does).

    An existing user gets the new password only with `reset_password`, which also ends their
    sessions; company and role must then agree with theirs. Returns the membership and whether
    the user is new.
    """
    async with operator_transaction(database_url) as conn:
        user = (
            (await conn.execute(text("select id, email from users where lower(email) = lower(:e)"), {"e": email}))
            .mappings()
            .first()
        )
        if user is not None and not reset_password:
            raise UserExists(f"{user['email']} already exists; pass --reset-password to set a new password")
        created = user is None
        if user is None:
            user = (
                (
                    await conn.execute(
                        text(
                            "insert into users (email, password_hash, email_confirmed_at) values (:e, :h, now())"
                            " returning id, email"
                        ),
                        {"e": email, "h": password_hash},
                    )
                )
                .mappings()
                .one()
            )
        else:
            await _set_password(conn, user["id"], password_hash)
            # A reset password is usually a leaked or forgotten one: sign out everywhere.
            await conn.execute(
                text(
                    "update auth_sessions set revoked_at = now(), revoked_reason = 'password reset'"
                    " where user_id = :id and revoked_at is null"
                ),
                {"id": user["id"]},
            )
        member = await membership(conn, user["id"])
        if member is None:
            return await _join_named(conn, user["id"], company or DEFAULT_COMPANY, role), created
        if company is not None and company.lower() != member["name"].lower():
            raise UserError(f"{user['email']} already belongs to company {member['name']!r}; a user has one company")
        if role is not None and role != member["role"]:
            raise UserError(
                f"{user['email']} is {member['role']} of {member['name']!r}; change it with `fluxopus users set-role`"
            )
        return Membership(user["id"], user["email"], member["company_id"], member["name"], member["role"]), created


async def set_role(database_url: str, *, email: str, role: str) -> Membership:
    """Change a member's role; a company keeps at least one admin (fluxopus.set_membership)."""
    async with operator_transaction(database_url) as conn:
        found = (
            (
                await conn.execute(
                    text(
                        "select u.id, u.email, m.company_id, c.name from users u"
                        " left join members m on m.user_id = u.id left join companies c on c.id = m.company_id"
                        " where lower(u.email) = lower(:e)"
                    ),
                    {"e": email},
                )
            )
            .mappings()
            .first()
        )
        if found is None:
            raise UserError(f"No user with email {email!r}")
        if found["company_id"] is None:
            raise UserError(f"{found['email']} belongs to no company; add them with `fluxopus users create`")
        await _set_membership(conn, found["company_id"], found["id"], role, found["email"], found["name"])
        return Membership(found["id"], found["email"], found["company_id"], found["name"], role)


async def _set_membership(
    conn: AsyncConnection, company_id: UUID, user_id: UUID, role: str, email: str, company: str
) -> None:
    outcome = await conn.scalar(
        text("select fluxopus.set_membership(:company, :user, :role)"),
        {"company": company_id, "user": user_id, "role": role},
    )
    if outcome == "last_admin":
        raise UserError(f"{email} is the last admin of {company!r}; make another member admin first")
    if outcome != "ok":
        raise UserError(f"{email} is not a member of {company!r}")


async def list_users(database_url: str, *, company: str | None = None) -> list[UserListing]:
    """Every user (or one company's), by company then email; users without a company come last."""
    async with operator_transaction(database_url) as conn:
        if company is not None:
            found = await conn.scalar(text("select 1 from companies where lower(name) = lower(:n)"), {"n": company})
            if found is None:
                raise UserError(f"No company named {company!r}")
        rows = (
            await conn.execute(
                text(
                    "select u.email, c.name as company, m.role, u.password_hash is not null as has_password,"
                    " u.created_at from users u left join members m on m.user_id = u.id"
                    " left join companies c on c.id = m.company_id"
                    " where cast(:n as text) is null or lower(c.name) = lower(:n)"
                    " order by c.name nulls last, lower(u.email)"
                ),
                {"n": company},
            )
        ).mappings()
        return [UserListing(r["email"], r["company"], r["role"], r["has_password"], r["created_at"]) for r in rows]


async def _set_password(conn: AsyncConnection, user_id: UUID, password_hash: str) -> None:
    await conn.execute(
        text(
            "update users set password_hash = :h, email_confirmed_at = coalesce(email_confirmed_at, now())"
            " where id = :id"
        ),
        {"id": user_id, "h": password_hash},
    )


async def set_password(database_url: str, *, email: str, password_hash: str) -> None:
    """Set an existing user's password (the demo's, when theirs no longer opens with it)."""
    async with operator_transaction(database_url) as conn:
        user_id = await conn.scalar(text("select id from users where lower(email) = lower(:e)"), {"e": email})
        if user_id is None:
            raise UserError(f"No user with email {email!r}")
        await _set_password(conn, user_id, password_hash)


async def password_hash_of(database_url: str, *, email: str) -> str | None:
    async with operator_transaction(database_url) as conn:
        found = await conn.scalar(text("select password_hash from users where lower(email) = lower(:e)"), {"e": email})
        return None if found is None else str(found)


async def start_token_session(database_url: str, *, user_id: UUID, seconds: int) -> UUID:
    """The session a token printed by `fluxopus token` names: it ends when the token does, or earlier
    with a global sign-out or a password reset."""
    async with operator_transaction(database_url) as conn:
        session_id = await conn.scalar(
            text(
                "insert into auth_sessions (user_id, user_agent, address, not_after)"
                " values (:user, 'fluxopus token', 'cli', now() + make_interval(secs => :seconds)) returning id"
            ),
            {"user": user_id, "seconds": float(seconds)},
        )
        return UUID(str(session_id))


CompanyLimit = Literal["monthly_token_budget", "storage_quota"]


async def set_company_limit(database_url: str, *, company: str, limit: CompanyLimit, value: int | None) -> UUID:
    """Give a company its own monthly token budget or knowledge storage quota (None: back to the
    server's default)."""
    async with operator_transaction(database_url) as conn:
        company_id = await conn.scalar(
            text(f"update companies set {limit} = :v where lower(name) = lower(:n) returning id"),
            {"n": company, "v": value},
        )
    if company_id is None:
        raise UserError(f"No company named {company!r}")
    return UUID(str(company_id))


async def set_token_budget(database_url: str, *, company: str, tokens: int | None) -> UUID:
    return await set_company_limit(database_url, company=company, limit="monthly_token_budget", value=tokens)


async def set_storage_quota(database_url: str, *, company: str, bytes: int | None) -> UUID:
    return await set_company_limit(database_url, company=company, limit="storage_quota", value=bytes)
