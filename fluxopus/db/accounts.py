"""Service-side account provisioning (bypasses RLS): used by the CLI, not by API requests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
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
            member = await _membership(conn, user["id"])
            if member is not None:
                if company is not None and company.lower() != member["name"].lower():
                    raise ValueError(f"{email} already belongs to company {member['name']!r}; a user has one company")
                if role is not None and role != member["role"]:
                    await conn.execute("update members set role = $1 where user_id = $2", role, user["id"])
                role = role or member["role"]
                return Membership(user["id"], user["email"], member["company_id"], member["name"], role)
            company_id, name, role = await _join(conn, user["id"], company or "Default company", role)
            return Membership(user["id"], user["email"], company_id, name, role)
    finally:
        await conn.close()


async def start_token_session(database_url: str, *, user_id: UUID, seconds: int) -> UUID:
    """The session a token printed by `fluxopus token` names: it ends when the token does, or earlier
    with a global sign-out or a password reset."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        session_id: UUID = await conn.fetchval(
            "insert into auth_sessions (user_id, user_agent, address, not_after)"
            " values ($1, 'fluxopus token', 'cli', now() + make_interval(secs => $2)) returning id",
            user_id,
            float(seconds),
        )
    finally:
        await conn.close()
    return session_id


CompanyLimit = Literal["monthly_token_budget", "storage_quota"]


async def set_company_limit(database_url: str, *, company: str, limit: CompanyLimit, value: int | None) -> UUID:
    """Give a company its own monthly token budget or knowledge storage quota (None: back to the
    server's default)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        company_id: UUID | None = await conn.fetchval(
            f"update companies set {limit} = $2 where lower(name) = lower($1) returning id", company, value
        )
    finally:
        await conn.close()
    if company_id is None:
        raise ValueError(f"No company named {company!r}")
    return company_id


async def set_token_budget(database_url: str, *, company: str, tokens: int | None) -> UUID:
    return await set_company_limit(database_url, company=company, limit="monthly_token_budget", value=tokens)


async def set_storage_quota(database_url: str, *, company: str, bytes: int | None) -> UUID:
    return await set_company_limit(database_url, company=company, limit="storage_quota", value=bytes)


class AccountError(ValueError):
    """A refusal the CLI reports as one line: the message says what to do instead."""


class UserExists(AccountError):
    pass


@dataclass(frozen=True)
class Account:
    email: str
    company: str | None
    role: str | None
    has_password: bool
    created_at: dt.datetime


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
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            user = await conn.fetchrow("select id, email from users where lower(email) = lower($1)", email)
            if user is not None and not reset_password:
                raise UserExists(f"{user['email']} already exists; pass --reset-password to set a new password")
            if user is None:
                user = await conn.fetchrow(
                    "insert into users (email, password_hash, email_confirmed_at) values ($1, $2, now())"
                    " returning id, email",
                    email,
                    password_hash,
                )
                created = True
            else:
                await conn.execute(
                    "update users set password_hash = $2, email_confirmed_at = coalesce(email_confirmed_at, now())"
                    " where id = $1",
                    user["id"],
                    password_hash,
                )
                # A reset password is usually a leaked or forgotten one: sign out everywhere.
                await conn.execute(
                    "update auth_sessions set revoked_at = now(), revoked_reason = 'password reset'"
                    " where user_id = $1 and revoked_at is null",
                    user["id"],
                )
                created = False
            member = await _membership(conn, user["id"])
            if member is not None:
                if company is not None and company.lower() != member["name"].lower():
                    raise AccountError(
                        f"{user['email']} already belongs to company {member['name']!r}; a user has one company"
                    )
                if role is not None and role != member["role"]:
                    raise AccountError(
                        f"{user['email']} is {member['role']} of {member['name']!r}; change it with"
                        " `fluxopus users set-role`"
                    )
                return Membership(
                    user["id"], user["email"], member["company_id"], member["name"], member["role"]
                ), created
            joined = await _join(conn, user["id"], company or "Default company", role)
            return Membership(user["id"], user["email"], joined[0], joined[1], joined[2]), created
    finally:
        await conn.close()


async def _membership(conn: asyncpg.Connection, user_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "select m.company_id, c.name, m.role from members m join companies c on c.id = m.company_id"
        " where m.user_id = $1",
        user_id,
    )


async def _join(conn: asyncpg.Connection, user_id: UUID, company: str, role: str | None) -> tuple[UUID, str, str]:
    """Make the user a member of `company`, creating it (with them as its admin) when missing."""
    found = await conn.fetchrow("select id, name from companies where lower(name) = lower($1)", company)
    if found is None:
        found = await conn.fetchrow("insert into companies (name) values ($1) returning id, name", company)
        role = role or "admin"
    role = role or "member"
    await conn.execute(
        "insert into members (user_id, company_id, role) values ($1, $2, $3)", user_id, found["id"], role
    )
    return found["id"], found["name"], role


async def list_users(database_url: str, *, company: str | None = None) -> list[Account]:
    """Every user (or one company's), by company then email; users without a company come last."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        if company is not None:
            found = await conn.fetchval("select 1 from companies where lower(name) = lower($1)", company)
            if found is None:
                raise AccountError(f"No company named {company!r}")
        rows = await conn.fetch(
            "select u.email, c.name as company, m.role, u.password_hash is not null as has_password, u.created_at"
            " from users u left join members m on m.user_id = u.id left join companies c on c.id = m.company_id"
            " where $1::text is null or lower(c.name) = lower($1)"
            " order by c.name nulls last, lower(u.email)",
            company,
        )
    finally:
        await conn.close()
    return [Account(r["email"], r["company"], r["role"], r["has_password"], r["created_at"]) for r in rows]


async def set_role(database_url: str, *, email: str, role: str) -> Membership:
    """Change a member's role; a company keeps at least one admin."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            member = await conn.fetchrow(
                "select u.id, u.email, m.company_id, c.name, m.role from users u"
                " left join members m on m.user_id = u.id left join companies c on c.id = m.company_id"
                " where lower(u.email) = lower($1)",
                email,
            )
            if member is None:
                raise AccountError(f"No user with email {email!r}")
            if member["company_id"] is None:
                raise AccountError(f"{member['email']} belongs to no company; add them with `fluxopus users create`")
            if member["role"] == "admin" and role != "admin":
                # The company's admins are locked first (as fluxopus.change_membership does), so two
                # demotions at once cannot leave it with none.
                admins = await conn.fetch(
                    "select user_id from members where company_id = $1 and role = 'admin' order by user_id for update",
                    member["company_id"],
                )
                if len(admins) <= 1:
                    raise AccountError(
                        f"{member['email']} is the last admin of {member['name']!r}; make another member admin first"
                    )
            await conn.execute("update members set role = $2 where user_id = $1", member["id"], role)
            return Membership(member["id"], member["email"], member["company_id"], member["name"], role)
    finally:
        await conn.close()


async def set_password(database_url: str, *, email: str, password_hash: str) -> None:
    """Set an existing user's password (the demo's, when theirs no longer opens with it)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        status: str = await conn.execute(
            "update users set password_hash = $2, email_confirmed_at = coalesce(email_confirmed_at, now())"
            " where lower(email) = lower($1)",
            email,
            password_hash,
        )
    finally:
        await conn.close()
    if status == "UPDATE 0":
        raise AccountError(f"No user with email {email!r}")


async def password_hash_of(database_url: str, *, email: str) -> str | None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        found: str | None = await conn.fetchval("select password_hash from users where lower(email) = lower($1)", email)
    finally:
        await conn.close()
    return found
