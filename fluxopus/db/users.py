"""Users, companies and memberships: the one module that creates them.

The company naming rule, the same wherever a user is created: a company's name is the one asked for,
trimmed and cut to 200 characters, and names are unique ignoring case (`company_name`). What differs
is who may join an existing company:
- the operator (`fluxopus users create`, `fluxopus token`, the demo, tests and benchmarks) provisions:
  `ensure_member` and `create_user` join the named company when it exists (ignoring case) and create
  it otherwise — its first member is its admin; with no name, "Default company";
- a stranger signing up at /auth/v1 (db/auth.sign_up) never joins anyone: they get a company of
  their own (`own_company`), named as they asked, else "<local part of the email>'s company", with
  " (2)", " (3)" … added when the name is taken; an invitation's link is the only way into an
  existing company (db/auth.accept_invitation, which adds the member with `add_member`).
A user belongs to one company at most.

A role change keeps the company's last admin through fluxopus.set_membership (migration 012), the
same function the API's change_membership calls: the rule is written once, in SQL, and its answers
become the same domain errors for both (`membership_refused`).

Everything here runs as the service, outside RLS: these are the operator's and the sign-in's
statements, not a caller's. Each function takes the engine of its caller (a CLI command makes one
with db/engine.operator_engine and disposes it when it ends).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fluxopus.db.session import service_transaction
from fluxopus.errors import Conflict, DomainError, NotFound

DEFAULT_COMPANY = "Default company"
COMPANY_NAME_MAX = 200  # companies.name's check
# What the sign-in (db/auth.py) reads of a user, `u` being users.
USER_COLUMNS = (
    "u.id, u.email, u.email_confirmed_at, u.last_sign_in_at, u.user_metadata, u.created_at, u.confirmation_sent_at"
)
_RETURNING_USER = "returning " + USER_COLUMNS.replace("u.", "")


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


def company_name(requested: str | None) -> str | None:
    """The name a company is asked for, as it is stored: trimmed and cut to the column's 200
    characters; None when nothing (or only spaces) was asked for."""
    name = (requested or "").strip()[:COMPANY_NAME_MAX]
    return name or None


async def own_company(conn: AsyncConnection, email: str, requested: str | None) -> UUID:
    """A new company for a user who signs up: the name they asked for, else "<local part>'s company";
    a taken name gets a number, " (2)", " (3)" … (names are unique ignoring case)."""
    name = company_name(requested) or company_name(f"{email.split('@')[0]}'s company")
    assert name is not None  # an email has a local part
    for n in range(1, 1000):
        suffix = "" if n == 1 else f" ({n})"
        created = await conn.execute(
            text("insert into companies (name) values (:name) on conflict do nothing returning id"),
            {"name": name[: COMPANY_NAME_MAX - len(suffix)] + suffix},
        )
        company_id = created.scalar()
        if company_id is not None:
            return UUID(str(company_id))
    raise RuntimeError(f"no free company name like {name!r}")


async def _join_named(conn: AsyncConnection, user_id: UUID, company: str, role: str | None) -> Membership:
    """Make the user a member of the company named `company` (ignoring case), creating it when missing:
    a new company's first member is its admin unless `role` says otherwise, others join as members."""
    created = await conn.scalar(
        text("insert into companies (name) values (:n) on conflict do nothing returning id"), {"n": company}
    )
    if created is not None:
        company_id, name, role = UUID(str(created)), company, role or "admin"
    else:  # it exists (or another transaction just made it: the insert waited for it to commit)
        found = (
            (await conn.execute(text("select id, name from companies where lower(name) = lower(:n)"), {"n": company}))
            .mappings()
            .one()
        )
        company_id, name, role = found["id"], found["name"], role or "member"
    await add_member(conn, user_id, company_id, role)
    email = await conn.scalar(text("select email from users where id = :id"), {"id": user_id})
    return Membership(user_id, str(email), company_id, name, role)


# --- the sign-in's (db/auth.py) -------------------------------------------------------------------


async def signed_up_user(
    conn: AsyncConnection,
    *,
    email: str,
    password_hash: str,
    metadata: dict[str, Any],
    company: str | None,
    confirmation_hash: str | None,
) -> RowMapping | None:
    """A user who signed up, admin of a company of their own (`own_company`); None when the email is
    taken. With a `confirmation_hash` the address is unconfirmed until its link is followed; without,
    it is confirmed now (the server sends no mail)."""
    user = (
        (
            await conn.execute(
                text(
                    "insert into users (email, password_hash, email_confirmed_at, user_metadata,"
                    " confirmation_token_hash, confirmation_sent_at)"
                    " values (:email, :hash, case when cast(:confirm as text) is null then now() end,"
                    " cast(:meta as jsonb), cast(:confirm as text),"
                    " case when cast(:confirm as text) is not null then now() end)"
                    f" on conflict (lower(email)) do nothing {_RETURNING_USER}"
                ),
                {"email": email, "hash": password_hash, "meta": json.dumps(metadata), "confirm": confirmation_hash},
            )
        )
        .mappings()
        .first()
    )
    if user is not None:
        await add_member(conn, user["id"], await own_company(conn, email, company), "admin")
    return user


async def invited_user(conn: AsyncConnection, email: str) -> RowMapping:
    """The user an invitation's link reached: created (with no password yet) when the address has no
    user, and confirmed either way (the link reached it). The caller adds the membership."""
    return (
        (
            await conn.execute(
                text(
                    "insert into users (email, email_confirmed_at) values (:email, now())"
                    " on conflict (lower(email)) do update set"
                    " email_confirmed_at = coalesce(users.email_confirmed_at, now()),"
                    f" confirmation_token_hash = null {_RETURNING_USER}"
                ),
                {"email": email},
            )
        )
        .mappings()
        .one()
    )


# --- the operator's ------------------------------------------------------------------------------


async def ensure_member(engine: AsyncEngine, *, email: str, company: str | None, role: str | None) -> Membership:
    """Create the user, the company and the membership when missing.

    A new company's first member is its admin unless a role is given; an existing member keeps
    their company, and their role unless one is given (a company's last admin stays one: fluxopus.set_membership).
    """
    async with service_transaction(engine) as conn:
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
        company = company_name(company)
        if member is None:
            return await _join_named(conn, user["id"], company or DEFAULT_COMPANY, role)
        if company is not None and company.lower() != member["name"].lower():
            raise UserError(f"{email} already belongs to company {member['name']!r}; a user has one company")
        if role is not None and role != member["role"]:
            await _set_membership(conn, member["company_id"], user["id"], role, member["name"])
        return Membership(user["id"], user["email"], member["company_id"], member["name"], role or member["role"])


async def create_user(
    engine: AsyncEngine,
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
    async with service_transaction(engine) as conn:
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
        company = company_name(company)
        if member is None:
            return await _join_named(conn, user["id"], company or DEFAULT_COMPANY, role), created
        if company is not None and company.lower() != member["name"].lower():
            raise UserError(f"{user['email']} already belongs to company {member['name']!r}; a user has one company")
        if role is not None and role != member["role"]:
            raise UserError(
                f"{user['email']} is {member['role']} of {member['name']!r}; change it with `fluxopus users set-role`"
            )
        return Membership(user["id"], user["email"], member["company_id"], member["name"], member["role"]), created


async def set_role(engine: AsyncEngine, *, email: str, role: str) -> Membership:
    """Change a member's role; a company keeps at least one admin (fluxopus.set_membership)."""
    async with service_transaction(engine) as conn:
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
        await _set_membership(conn, found["company_id"], found["id"], role, found["name"])
        return Membership(found["id"], found["email"], found["company_id"], found["name"], role)


async def _set_membership(conn: AsyncConnection, company_id: UUID, user_id: UUID, role: str, company: str) -> None:
    outcome = await conn.scalar(
        text("select fluxopus.set_membership(:company, :user, :role)"),
        {"company": company_id, "user": user_id, "role": role},
    )
    refused = membership_refused(str(outcome), company)
    if refused is not None:
        raise refused


def membership_refused(outcome: str, company: str) -> DomainError | None:
    """What fluxopus.set_membership or fluxopus.change_membership (migration 012: the last-admin rule)
    answered, as the error the API and the CLI both report; None when the change was made."""
    if outcome == "ok":
        return None
    if outcome == "last_admin":
        return Conflict(
            f"The last admin cannot be removed or demoted: {company!r} has no other admin;"
            " make another member an admin first"
        )
    if outcome == "not_found":
        return NotFound("Member not found")
    if outcome == "forbidden":
        # The caller's admin role was checked first, and the function (after waiting for the company's
        # admin locks) did not see it: another admin demoted or removed the caller meanwhile, e.g. two
        # admins demoting each other at once. The request lost a race; it was not a member overreaching.
        return Conflict("Your role changed while this ran: you are no longer an admin of the company")
    raise RuntimeError(f"the membership rule answered {outcome!r}")


async def list_users(engine: AsyncEngine, *, company: str | None = None) -> list[UserListing]:
    """Every user (or one company's), by company then email; users without a company come last."""
    async with service_transaction(engine) as conn:
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


async def set_password(engine: AsyncEngine, *, email: str, password_hash: str) -> None:
    """Set an existing user's password (the demo's, when theirs no longer opens with it)."""
    async with service_transaction(engine) as conn:
        user_id = await conn.scalar(text("select id from users where lower(email) = lower(:e)"), {"e": email})
        if user_id is None:
            raise UserError(f"No user with email {email!r}")
        await _set_password(conn, user_id, password_hash)


async def password_hash_of(engine: AsyncEngine, *, email: str) -> str | None:
    async with service_transaction(engine) as conn:
        found = await conn.scalar(text("select password_hash from users where lower(email) = lower(:e)"), {"e": email})
        return None if found is None else str(found)


async def start_token_session(engine: AsyncEngine, *, user_id: UUID, seconds: int) -> UUID:
    """The session a token printed by `fluxopus token` names: it ends when the token does, or earlier
    with a global sign-out or a password reset."""
    async with service_transaction(engine) as conn:
        session_id = await conn.scalar(
            text(
                "insert into auth_sessions (user_id, user_agent, address, not_after)"
                " values (:user, 'fluxopus token', 'cli', now() + make_interval(secs => :seconds)) returning id"
            ),
            {"user": user_id, "seconds": float(seconds)},
        )
        return UUID(str(session_id))


CompanyLimit = Literal["monthly_token_budget", "storage_quota"]


async def set_company_limit(engine: AsyncEngine, *, company: str, limit: CompanyLimit, value: int | None) -> UUID:
    """Give a company its own monthly token budget or knowledge storage quota (None: back to the
    server's default)."""
    async with service_transaction(engine) as conn:
        company_id = await conn.scalar(
            text(f"update companies set {limit} = :v where lower(name) = lower(:n) returning id"),
            {"n": company, "v": value},
        )
    if company_id is None:
        raise UserError(f"No company named {company!r}")
    return UUID(str(company_id))


async def set_token_budget(engine: AsyncEngine, *, company: str, tokens: int | None) -> UUID:
    return await set_company_limit(engine, company=company, limit="monthly_token_budget", value=tokens)


async def set_storage_quota(engine: AsyncEngine, *, company: str, bytes: int | None) -> UUID:
    return await set_company_limit(engine, company=company, limit="storage_quota", value=bytes)
