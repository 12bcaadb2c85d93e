"""The built-in sign-in: sign up, sign in with a password, refresh, sign out — as Supabase Auth does.

Access tokens are ES256 JWTs signed with the server's key (the one `fluxopus token` uses and
/auth/v1/.well-known/jwks.json publishes), valid for an hour. Refresh tokens are opaque, single
use and rotated; a spent one presented again revokes its whole session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import jwt
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.auth.keys import SigningKey
from fluxopus.auth.passwords import hash_password, verify_password, weakness
from fluxopus.db import auth as db

ACCESS_TOKEN_SECONDS = 3600
RATE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_ADDRESS = 30
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AuthError(Exception):
    """An answer of the auth API: HTTP status, GoTrue's error code, and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


INVALID_CREDENTIALS = AuthError(400, "invalid_credentials", "Invalid login credentials")


@dataclass(frozen=True)
class Client:
    """Who is asking: for rate limits and the session record."""

    address: str
    user_agent: str | None


class Accounts:
    def __init__(self, engine: AsyncEngine, key: SigningKey, issuer: str) -> None:
        self.engine = engine
        self.key = key
        self.issuer = issuer

    async def sign_up(self, email: str, password: str, metadata: dict[str, Any], client: Client) -> dict[str, Any]:
        email = _valid_email(email)
        problem = weakness(password)
        if problem is not None:
            raise AuthError(422, "weak_password", problem)
        company = str(metadata.get("company") or metadata.get("company_name") or f"{email.split('@')[0]}'s company")
        created = await db.create_user(
            self.engine,
            email=email,
            password_hash=await hash_password(password),
            metadata=metadata,
            company_name=company.strip()[:200] or "My company",
        )
        if created is None:
            raise AuthError(422, "user_already_exists", "User already registered")
        return await self._session(created.user, client)

    async def sign_in(self, email: str, password: str, client: Client) -> dict[str, Any]:
        by_email, by_address = await db.recent_failures(
            self.engine, email=email, address=client.address, window=RATE_WINDOW
        )
        if by_email >= MAX_FAILURES_PER_EMAIL or by_address >= MAX_FAILURES_PER_ADDRESS:
            raise AuthError(429, "over_request_rate_limit", "Too many sign-in attempts; try again in 15 minutes")
        user = await db.user_by_email(self.engine, email)
        # A password is checked even for an unknown email, so both fail alike and take as long.
        ok = await verify_password(user["password_hash"] if user else None, password)
        await db.record_attempt(self.engine, email=email, address=client.address, succeeded=ok)
        if user is None or not ok:
            raise INVALID_CREDENTIALS
        await db.join_invited_company(self.engine, user["id"], user["email"])
        return await self._session(user, client)

    async def refresh(self, refresh_token: str, client: Client) -> dict[str, Any]:
        token, new_hash = _new_refresh_token()
        rotated = await db.rotate_refresh_token(self.engine, _hash(refresh_token), new_hash)
        # A signed-out session's tokens are gone, as GoTrue deletes them (supabase-js reads
        # session_not_found here as "no session stored locally", which would mislead).
        if rotated.outcome in ("unknown", "revoked"):
            raise AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
        if rotated.outcome == "reused":
            raise AuthError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
        assert rotated.user_id is not None and rotated.session_id is not None
        user = await db.user_by_id(self.engine, rotated.user_id)
        if user is None:
            raise AuthError(400, "user_not_found", "User not found")
        return self._tokens(user, rotated.session_id, token)

    async def user(self, claims: dict[str, Any]) -> dict[str, Any]:
        session = claims.get("session_id")
        if session and await db.session_ended(self.engine, UUID(str(session))):
            raise AuthError(403, "session_not_found", "Session from session_id claim in JWT does not exist")
        user = await db.user_by_id(self.engine, UUID(str(claims["sub"])))
        if user is None:
            raise AuthError(403, "user_not_found", "User from sub claim in JWT does not exist")
        return user_json(user)

    async def sign_out(self, claims: dict[str, Any], scope: Literal["global", "local", "others"]) -> None:
        session = claims.get("session_id")
        await db.revoke_sessions(
            self.engine,
            user_id=UUID(str(claims["sub"])),
            session_id=UUID(str(session)) if session else None,
            scope=scope,
        )

    async def _session(self, user: RowMapping, client: Client) -> dict[str, Any]:
        token, token_hash = _new_refresh_token()
        session_id = await db.start_session(
            self.engine, user_id=user["id"], token_hash=token_hash, user_agent=client.user_agent, address=client.address
        )
        return self._tokens(user, session_id, token)

    def _tokens(self, user: RowMapping, session_id: UUID, refresh_token: str) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": str(user["id"]),
            "aud": "authenticated",
            "exp": now + ACCESS_TOKEN_SECONDS,
            "iat": now,
            "email": user["email"],
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": user["user_metadata"] or {},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(session_id),
            "is_anonymous": False,
        }
        access = jwt.encode(claims, self.key.private_key, algorithm="ES256", headers={"kid": self.key.kid})
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "expires_at": now + ACCESS_TOKEN_SECONDS,
            "refresh_token": refresh_token,
            "user": user_json(user),
        }


def user_json(user: RowMapping) -> dict[str, Any]:
    """A user as Supabase Auth shows one."""
    confirmed = _iso(user["email_confirmed_at"])
    return {
        "id": str(user["id"]),
        "aud": "authenticated",
        "role": "authenticated",
        "email": user["email"],
        "email_confirmed_at": confirmed,
        "confirmed_at": confirmed,
        "phone": "",
        "last_sign_in_at": _iso(user["last_sign_in_at"]),
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": user["user_metadata"] or {},
        "identities": [],
        "created_at": _iso(user["created_at"]),
        "updated_at": _iso(user["last_sign_in_at"] or user["created_at"]),
        "is_anonymous": False,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _valid_email(email: str) -> str:
    email = email.strip()
    if len(email) > 320 or not _EMAIL.match(email):
        raise AuthError(400, "validation_failed", "Unable to validate email address: invalid format")
    return email


def _new_refresh_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, _hash(token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
