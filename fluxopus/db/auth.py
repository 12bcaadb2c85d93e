"""SQL of the built-in sign-in (/auth/v1), run as the service: credentials, sessions, refresh
tokens and sign-in attempts are nobody's rows under RLS, and no caller is signed in yet."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fluxopus.db import users
from fluxopus.db.session import service_transaction

USER_COLUMNS = users.USER_COLUMNS


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


async def sign_up(
    engine: AsyncEngine,
    *,
    email: str,
    password_hash: str,
    metadata: dict[str, Any],
    company: str | None,
    address: str,
    per_address: int,
    confirmation_hash: str | None,
) -> RowMapping | Literal["taken", "limited"]:
    """A new user with a password, admin of a company of their own named after `company` (db/users'
    naming rule: own_company); "taken" when the email is, "limited" when
    `address` has made `per_address` sign-ups in the last hour (counted under a lock on the address, so
    parallel sign-ups cannot race past it). With a `confirmation_hash` the email is unconfirmed until
    its link is followed; without, it is confirmed now (the server sends no mail). An invitation is
    never taken up here: joining a company takes its link (accept_invitation)."""
    async with service_transaction(engine) as conn:
        await conn.execute(text("select pg_advisory_xact_lock(hashtextextended('signup:' || :a, 0))"), {"a": address})
        recent = await conn.scalar(
            text("select count(*) from sign_ups where address = :a and at > now() - interval '1 hour'"),
            {"a": address},
        )
        if int(recent or 0) >= per_address:
            return "limited"
        user = await users.signed_up_user(
            conn,
            email=email,
            password_hash=password_hash,
            metadata=metadata,
            company=company,
            confirmation_hash=confirmation_hash,
        )
        if user is None:
            return "taken"
        await conn.execute(text("insert into sign_ups (address) values (:a)"), {"a": address})
        await conn.execute(
            text("delete from sign_ups where address = :a and at < now() - interval '1 day'"), {"a": address}
        )
        return user


async def delete_unconfirmed_user(engine: AsyncEngine, user_id: UUID) -> None:
    """Undo a sign-up whose confirmation could not be sent: the user and the company it made."""
    async with service_transaction(engine) as conn:
        await _forget_unconfirmed(conn, user_id)
        await conn.execute(text("delete from users where id = :id and email_confirmed_at is null"), {"id": user_id})


@dataclass(frozen=True)
class Accepted:
    user: RowMapping
    company_id: UUID


async def accept_invitation(engine: AsyncEngine, token_hash: str) -> Accepted | Literal["invalid", "elsewhere"]:
    """Follow an invitation's link: the address's user (created, with no password yet, when it has no
    account) joins the inviting company, and the address counts as confirmed (the link reached it).
    "invalid": unknown, used or expired; "elsewhere": the address's user already belongs to a company."""
    async with service_transaction(engine) as conn:
        invitation = (
            (
                await conn.execute(
                    text(
                        "select id, company_id, email, role from invitations"
                        " where token_hash = :hash and accepted_at is null and expires_at > now() for update"
                    ),
                    {"hash": token_hash},
                )
            )
            .mappings()
            .first()
        )
        if invitation is None:
            return "invalid"
        existing = (
            (
                await conn.execute(
                    text(
                        "select u.id, u.email_confirmed_at, m.company_id from users u"
                        " left join members m on m.user_id = u.id where lower(u.email) = lower(:email)"
                    ),
                    {"email": invitation["email"]},
                )
            )
            .mappings()
            .first()
        )
        if existing is not None and existing["email_confirmed_at"] is None:
            # An account that never proved the address (a sign-up awaiting its confirmation, maybe not by
            # the address's owner) yields to whoever follows a link sent there: its password, sessions
            # and the company it made for itself go.
            await _forget_unconfirmed(conn, existing["id"])
        elif existing is not None and existing["company_id"] is not None:
            return "elsewhere"
        user = await users.invited_user(conn, invitation["email"])
        if not await users.add_member(conn, user["id"], invitation["company_id"], invitation["role"]):
            # another company's invitation was accepted a moment ago
            await conn.rollback()
            return "elsewhere"
        await conn.execute(
            text("update invitations set accepted_at = now(), accepted_by = :user where id = :id"),
            {"user": user["id"], "id": invitation["id"]},
        )
        return Accepted(user, invitation["company_id"])


async def _forget_unconfirmed(conn: AsyncConnection, user_id: UUID) -> None:
    left = await conn.scalar(text("delete from members where user_id = :id returning company_id"), {"id": user_id})
    if left is not None:  # the company it made for itself, if nobody else is in it
        await conn.execute(
            text(
                "delete from companies c where c.id = :c"
                " and not exists (select 1 from members m where m.company_id = c.id)"
            ),
            {"c": left},
        )
    await conn.execute(
        text(
            "update users set password_hash = null, user_metadata = '{}', confirmation_token_hash = null where id = :id"
        ),
        {"id": user_id},
    )
    await conn.execute(
        text(
            "update auth_sessions set revoked_at = now(), revoked_reason = 'address proven by someone else'"
            " where user_id = :id and revoked_at is null"
        ),
        {"id": user_id},
    )


async def confirm_email(engine: AsyncEngine, token_hash: str, valid_for: dt.timedelta) -> RowMapping | None:
    """Follow a sign-up's confirmation link (single use, valid for `valid_for` after it was sent)."""
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(
                "update users set email_confirmed_at = now(), confirmation_token_hash = null"
                " where confirmation_token_hash = :hash and confirmation_sent_at > now() - cast(:valid as interval)"
                f" returning {USER_COLUMNS.replace('u.', '')}"
            ),
            {"hash": token_hash, "valid": valid_for},
        )
        return result.mappings().first()


async def renew_confirmation(engine: AsyncEngine, email: str, token_hash: str) -> bool:
    """A new confirmation link for an unconfirmed address (at most one a minute); False when there is
    nothing to confirm, or one was sent less than a minute ago."""
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(
                "update users set confirmation_token_hash = :hash, confirmation_sent_at = now()"
                " where lower(email) = lower(:email) and email_confirmed_at is null and password_hash is not null"
                " and (confirmation_sent_at is null or confirmation_sent_at < now() - interval '1 minute')"
            ),
            {"email": email, "hash": token_hash},
        )
        return bool(result.rowcount)


async def update_user(
    engine: AsyncEngine, user_id: UUID, *, password_hash: str | None, metadata: dict[str, Any] | None
) -> RowMapping | None:
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(
                "update users set password_hash = coalesce(:hash, password_hash),"
                " user_metadata = coalesce(cast(:meta as jsonb), user_metadata)"
                f" where id = :id returning {USER_COLUMNS.replace('u.', '')}"
            ),
            {"id": user_id, "hash": password_hash, "meta": json.dumps(metadata) if metadata is not None else None},
        )
        return result.mappings().first()


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
                {
                    "user": user_id,
                    "agent": (user_agent or "")[:512] or None,
                    "address": address[:64] if address else None,
                },
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
) -> list[UUID]:
    """Ends sessions of the user; returns the ones it ended."""
    condition = {"global": "true", "local": "id = :session", "others": "id is distinct from :session"}[scope]
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(
                "update auth_sessions set revoked_at = now(), revoked_reason = 'signed out'"
                f" where user_id = :user and revoked_at is null and {condition} returning id"
            ),
            {"user": user_id, "session": session_id},
        )
        return [UUID(str(row[0])) for row in result]


async def session_alive(engine: AsyncEngine, session_id: UUID, user_id: UUID) -> bool:
    """Whether the user's session is still on: not signed out, revoked or past its end."""
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(
                "select 1 from auth_sessions where id = :id and user_id = :user and revoked_at is null"
                " and (not_after is null or not_after > now())"
            ),
            {"id": session_id, "user": user_id},
        )
        return result.first() is not None


@dataclass(frozen=True)
class AttemptLimits:
    """Failed sign-ins allowed within `window`: for an email from one address (since its last success
    there), from one address, and for an email from anywhere (a distributed guess)."""

    window: dt.timedelta
    per_email_and_address: int
    per_address: int
    per_email: int


async def begin_attempt(engine: AsyncEngine, *, email: str, address: str, limits: AttemptLimits) -> int | None:
    """Count the recent failures and record this attempt as one, atomically, before any password is
    checked (under locks on the address and the email, taken in that order): parallel guesses cannot
    all be evaluated. Returns the attempt's id (finish_attempt marks a success), or None when a limit
    is reached (nothing is recorded then)."""
    email = email.lower()[:320]
    async with service_transaction(engine) as conn:
        await conn.execute(
            text(
                "select pg_advisory_xact_lock(hashtextextended('address:' || :address, 0)),"
                " pg_advisory_xact_lock(hashtextextended('email:' || :email, 0))"
            ),
            {"address": address, "email": email},
        )
        row = (
            await conn.execute(
                text(
                    "with since as (select now() - cast(:window as interval) as t),"
                    " last_success as (select coalesce(max(at), '-infinity') as at from sign_in_attempts"
                    "                   where lower(email) = :email and succeeded)"
                    " select"
                    " (select count(*) from sign_in_attempts a, since, last_success l"
                    "   where lower(a.email) = :email and a.address = :address and not a.succeeded"
                    "     and a.at > since.t and a.at > l.at) as by_pair,"
                    " (select count(*) from sign_in_attempts a, since"
                    "   where a.address = :address and not a.succeeded and a.at > since.t) as by_address,"
                    " (select count(*) from sign_in_attempts a, since, last_success l"
                    "   where lower(a.email) = :email and not a.succeeded and a.at > since.t and a.at > l.at)"
                    " as by_email"
                ),
                {"email": email, "address": address, "window": limits.window},
            )
        ).one()
        if (
            row.by_pair >= limits.per_email_and_address
            or row.by_address >= limits.per_address
            or row.by_email >= limits.per_email
        ):
            return None
        attempt_id = await conn.scalar(
            text(
                "insert into sign_in_attempts (email, address, succeeded) values (:email, :address, false) returning id"
            ),
            {"email": email, "address": address},
        )
        # Only the last window counts; older attempts of this email or address go (both indexed).
        await conn.execute(
            text(
                "delete from sign_in_attempts where at < now() - interval '1 day'"
                " and (lower(email) = :email or address = :address)"
            ),
            {"email": email, "address": address},
        )
    return int(attempt_id)


async def finish_attempt(engine: AsyncEngine, attempt_id: int) -> None:
    """The attempt's password was right."""
    async with service_transaction(engine) as conn:
        await conn.execute(text("update sign_in_attempts set succeeded = true where id = :id"), {"id": attempt_id})
