"""SQL of the built-in sign-in (/auth/v1), run as the service: credentials, sessions, refresh
tokens and sign-in attempts are nobody's rows under RLS, and no caller is signed in yet."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import RowMapping, text
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fluxopus.errors import Unavailable

USER_COLUMNS = "u.id, u.email, u.email_confirmed_at, u.last_sign_in_at, u.user_metadata, u.created_at"


@asynccontextmanager
async def service_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    try:
        async with engine.begin() as conn:
            yield conn
    except SATimeoutError:
        raise Unavailable() from None


async def user_by_email(engine: AsyncEngine, email: str) -> RowMapping | None:
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(f"select {USER_COLUMNS}, u.password_hash from users u where lower(u.email) = lower(:email)"),
            {"email": email},
        )
        return result.mappings().first()


async def user_by_id(engine: AsyncEngine, user_id: UUID) -> RowMapping | None:
    async with service_transaction(engine) as conn:
        result = await conn.execute(text(f"select {USER_COLUMNS} from users u where u.id = :id"), {"id": user_id})
        return result.mappings().first()


@dataclass(frozen=True)
class NewUser:
    user: RowMapping
    company_id: UUID
    role: str
    invited: bool


async def create_user(
    engine: AsyncEngine, *, email: str, password_hash: str, metadata: dict[str, Any], company_name: str
) -> NewUser | None:
    """A new user with a password, who joins the company that invited their email, or else becomes
    the admin of a new company. None when the email is taken."""
    async with service_transaction(engine) as conn:
        user = (
            (
                await conn.execute(
                    text(
                        "insert into users (email, password_hash, email_confirmed_at, user_metadata)"
                        " values (:email, :hash, now(), cast(:meta as jsonb))"
                        f" on conflict (lower(email)) do nothing returning {USER_COLUMNS.replace('u.', '')}"
                    ),
                    {"email": email, "hash": password_hash, "meta": json.dumps(metadata)},
                )
            )
            .mappings()
            .first()
        )
        if user is None:
            return None
        invitation = (
            (
                await conn.execute(
                    text(
                        "update invitations set accepted_at = now()"
                        " where lower(email) = lower(:email) and accepted_at is null returning company_id, role"
                    ),
                    {"email": email},
                )
            )
            .mappings()
            .first()
        )
        if invitation is not None:
            company_id, role = invitation["company_id"], invitation["role"]
        else:
            company_id, role = await _new_company(conn, company_name), "admin"
        await conn.execute(
            text("insert into members (user_id, company_id, role) values (:user, :company, :role)"),
            {"user": user["id"], "company": company_id, "role": role},
        )
        return NewUser(user=user, company_id=company_id, role=role, invited=invitation is not None)


async def _new_company(conn: AsyncConnection, name: str) -> UUID:
    """Company names are unique ignoring case: a taken one gets a number."""
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


async def join_invited_company(engine: AsyncEngine, user_id: UUID, email: str) -> None:
    """A user without a company (removed from one) who has since been invited joins at sign-in."""
    async with service_transaction(engine) as conn:
        await conn.execute(
            text(
                "with invited as ("
                "  update invitations set accepted_at = now()"
                "   where lower(email) = lower(:email) and accepted_at is null"
                "     and not exists (select 1 from members where user_id = :user)"
                "  returning company_id, role)"
                " insert into members (user_id, company_id, role) select :user, company_id, role from invited"
            ),
            {"user": user_id, "email": email},
        )


async def start_session(
    engine: AsyncEngine, *, user_id: UUID, token_hash: str, user_agent: str | None, address: str | None
) -> UUID:
    async with service_transaction(engine) as conn:
        session_id = (
            await conn.execute(
                text(
                    "insert into auth_sessions (user_id, user_agent, address) values (:user, :agent, :address)"
                    " returning id"
                ),
                {"user": user_id, "agent": (user_agent or "")[:512] or None, "address": address},
            )
        ).scalar_one()
        await conn.execute(
            text("insert into refresh_tokens (token_hash, session_id) values (:hash, :session)"),
            {"hash": token_hash, "session": session_id},
        )
        await conn.execute(text("update users set last_sign_in_at = now() where id = :id"), {"id": user_id})
        return UUID(str(session_id))


@dataclass(frozen=True)
class Rotated:
    outcome: Literal["rotated", "unknown", "reused", "revoked"]
    user_id: UUID | None = None
    session_id: UUID | None = None


async def rotate_refresh_token(engine: AsyncEngine, token_hash: str, new_hash: str) -> Rotated:
    """Spend a refresh token for a new one. A token spent before means it was copied: the whole
    session is revoked, so whoever holds its newer tokens is signed out too. (Spent tokens older
    than a week are forgotten; one of those comes back as unknown.)"""
    async with service_transaction(engine) as conn:
        row = (
            (
                await conn.execute(
                    text(
                        "select r.used_at, s.id as session_id, s.user_id, s.revoked_at"
                        " from refresh_tokens r join auth_sessions s on s.id = r.session_id"
                        " where r.token_hash = :hash for update of r, s"
                    ),
                    {"hash": token_hash},
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return Rotated("unknown")
        if row["revoked_at"] is not None:
            return Rotated("revoked", row["user_id"], row["session_id"])
        ids = {"session": row["session_id"], "hash": token_hash, "new": new_hash}
        if row["used_at"] is not None:
            await conn.execute(
                text(
                    "update auth_sessions set revoked_at = now(), revoked_reason = 'refresh token reused'"
                    " where id = :session"
                ),
                ids,
            )
            return Rotated("reused", row["user_id"], row["session_id"])
        await conn.execute(
            text(
                "with spent as (update refresh_tokens set used_at = now() where token_hash = :hash),"
                " touched as (update auth_sessions set refreshed_at = now() where id = :session),"
                # Spent tokens are kept to catch their reuse, for a week: a session refreshed hourly
                # keeps ~170 rows, not one per hour forever.
                " pruned as (delete from refresh_tokens"
                "            where session_id = :session and used_at < now() - interval '7 days')"
                " insert into refresh_tokens (token_hash, session_id, parent_hash) values (:new, :session, :hash)"
            ),
            ids,
        )
        return Rotated("rotated", row["user_id"], row["session_id"])


async def revoke_sessions(
    engine: AsyncEngine, *, user_id: UUID, session_id: UUID | None, scope: Literal["global", "local", "others"]
) -> None:
    condition = {"global": "true", "local": "id = :session", "others": "id is distinct from :session"}[scope]
    async with service_transaction(engine) as conn:
        await conn.execute(
            text(
                "update auth_sessions set revoked_at = now(), revoked_reason = 'signed out'"
                f" where user_id = :user and revoked_at is null and {condition}"
            ),
            {"user": user_id, "session": session_id},
        )


async def session_ended(engine: AsyncEngine, session_id: UUID) -> bool:
    """Signed out or revoked (or never existed)."""
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text("select 1 from auth_sessions where id = :id and revoked_at is null"), {"id": session_id}
        )
        return result.first() is None


async def record_attempt(engine: AsyncEngine, *, email: str, address: str, succeeded: bool) -> None:
    async with service_transaction(engine) as conn:
        params = {"email": email.lower()[:320], "address": address, "ok": succeeded}
        await conn.execute(
            text("insert into sign_in_attempts (email, address, succeeded) values (:email, :address, :ok)"), params
        )
        # Only the last window counts; older attempts of this email or address go (both indexed).
        await conn.execute(
            text(
                "delete from sign_in_attempts where at < now() - interval '1 day'"
                " and (lower(email) = lower(:email) or address = :address)"
            ),
            params,
        )


async def recent_failures(engine: AsyncEngine, *, email: str, address: str, window: dt.timedelta) -> tuple[int, int]:
    """Failed sign-ins in the window: for this email since its last success, and from this address."""
    async with service_transaction(engine) as conn:
        row = (
            await conn.execute(
                text(
                    "with since as (select now() - cast(:window as interval) as t)"
                    " select"
                    " (select count(*) from sign_in_attempts a, since"
                    "   where lower(a.email) = lower(:email) and not a.succeeded and a.at > since.t"
                    "     and a.at > coalesce((select max(b.at) from sign_in_attempts b"
                    "                          where lower(b.email) = lower(:email) and b.succeeded), '-infinity'))"
                    " as by_email,"
                    " (select count(*) from sign_in_attempts a, since"
                    "   where a.address = :address and not a.succeeded and a.at > since.t) as by_address"
                ),
                {"email": email, "address": address, "window": window},
            )
        ).one()
        return int(row.by_email), int(row.by_address)
