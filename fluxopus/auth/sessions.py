"""The built-in sign-in: sign up, sign in with a password, refresh, sign out, follow an emailed
link — as Supabase Auth does.

Access tokens are ES256 JWTs signed with the server's key (the one `fluxopus token` uses and
/auth/v1/.well-known/jwks.json publishes), valid for an hour, and name their session: one that has
ended (signed out, a reused refresh token) stops opening the API within seconds (SessionCheck).
Refresh tokens are opaque, single use and rotated; a spent one presented again revokes its whole
session. Joining a company takes an invitation's link; with SMTP configured, a sign-up confirms its
address by a link too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import jwt
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.auth.keys import SigningKey
from fluxopus.auth.mail import Mail, MailError, confirmation_message
from fluxopus.auth.passwords import hash_password, verify_password, weakness
from fluxopus.db import auth as db

ACCESS_TOKEN_SECONDS = 3600
# Failed sign-ins: per email from one address (an attacker elsewhere does not lock the user out), per
# address, and per email from anywhere (bounds a guess spread over many addresses).
SIGN_IN_LIMITS = db.AttemptLimits(
    window=dt.timedelta(minutes=15), per_email_and_address=5, per_address=30, per_email=100
)
CONFIRMATION_VALID_FOR = dt.timedelta(days=1)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AuthError(Exception):
    """An answer of the auth API: HTTP status, GoTrue's error code, and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


INVALID_CREDENTIALS = AuthError(400, "invalid_credentials", "Invalid login credentials")
LINK_INVALID = AuthError(403, "otp_expired", "Email link is invalid or has expired")
TOO_MANY = AuthError(429, "over_request_rate_limit", "Too many sign-in attempts; try again in 15 minutes")


@dataclass(frozen=True)
class Client:
    """Who is asking: for rate limits and the session record."""

    address: str
    user_agent: str | None


class SignIn:
    """The built-in sign-in (what /auth/v1 serves): sign-up, sign-in, refresh, verify links, sessions."""

    def __init__(
        self,
        engine: AsyncEngine,
        key: SigningKey,
        issuer: str,
        mail: Mail,
        sessions: SessionCheck,
        signups_per_address: int,
    ) -> None:
        self.engine = engine
        self.key = key
        self.issuer = issuer
        self.mail = mail
        self.sessions = sessions
        self.signups_per_address = signups_per_address

    async def sign_up(self, email: str, password: str, metadata: dict[str, Any], client: Client) -> dict[str, Any]:
        """A session, or, when the address must be confirmed first (SMTP configured), the user alone."""
        email = _valid_email(email)
        problem = weakness(password)
        if problem is not None:
            raise AuthError(422, "weak_password", problem)
        company = metadata.get("company") or metadata.get("company_name")
        secret, secret_hash = _new_secret() if self.mail.configured else (None, None)
        created = await db.sign_up(
            self.engine,
            email=email,
            password_hash=await hash_password(password),
            metadata=metadata,
            company=str(company) if company else None,
            address=client.address,
            per_address=self.signups_per_address,
            confirmation_hash=secret_hash,
        )
        if created == "taken":
            raise AuthError(422, "user_already_exists", "User already registered")
        if created == "limited":
            raise AuthError(429, "over_request_rate_limit", "Too many sign-ups from this address; try again later")
        if secret is None:
            return await self._session(created, client)
        try:
            await self.mail.send(email, *confirmation_message(self.mail.link(secret, "signup")))
        except MailError as exc:
            await db.delete_unconfirmed_user(self.engine, created["id"])
            raise AuthError(503, "email_send_failed", f"Error sending confirmation email ({exc})") from None
        return user_json(created)

    async def sign_in(self, email: str, password: str, client: Client) -> dict[str, Any]:
        # Counted (as a failure, until it succeeds) before the password is checked, atomically: forty
        # parallel guesses are not all evaluated.
        attempt = await db.begin_attempt(self.engine, email=email, address=client.address, limits=SIGN_IN_LIMITS)
        if attempt is None:
            raise TOO_MANY
        user = await db.user_by_email(self.engine, email)
        # A password is checked even for an unknown email, so both fail alike and take as long.
        ok = await verify_password(user["password_hash"] if user else None, password)
        if user is None or not ok:
            raise INVALID_CREDENTIALS
        await db.finish_attempt(self.engine, attempt)
        if user["email_confirmed_at"] is None:
            raise AuthError(400, "email_not_confirmed", "Email not confirmed")
        return await self._session(user, client)

    async def verify(self, kind: str, secret: str, client: Client) -> dict[str, Any]:
        """Follow an emailed link: an invitation (joins its company) or a sign-up's confirmation. A session."""
        if kind == "invite":
            accepted = await db.accept_invitation(self.engine, _hash(secret))
            if accepted == "elsewhere":
                raise AuthError(
                    422,
                    "user_already_exists",
                    "This address already belongs to a member of a company; a user belongs to one company",
                )
            if accepted == "invalid":
                raise LINK_INVALID
            return await self._session(accepted.user, client)
        if kind in ("signup", "email"):
            user = await db.confirm_email(self.engine, _hash(secret), CONFIRMATION_VALID_FOR)
            if user is None:
                raise LINK_INVALID
            return await self._session(user, client)
        raise AuthError(400, "validation_failed", "type must be invite, signup or email")

    async def resend(self, kind: str, email: str) -> None:
        """A new confirmation link for an unconfirmed sign-up. Answers the same whatever the address."""
        if kind != "signup":
            raise AuthError(400, "validation_failed", "type must be signup")
        if not self.mail.configured:
            raise AuthError(400, "validation_failed", "This server sends no email: sign-ups are confirmed at once")
        secret, secret_hash = _new_secret()
        if await db.renew_confirmation(self.engine, _valid_email(email), secret_hash):
            try:
                await self.mail.send(email, *confirmation_message(self.mail.link(secret, "signup")))
            except MailError as exc:
                raise AuthError(503, "email_send_failed", f"Error sending confirmation email ({exc})") from None

    async def update(self, claims: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """`PUT /user`: a new password (an invited user sets their first one) and/or user metadata."""
        await self.sessions.require(claims)
        password, metadata = body.get("password"), body.get("data")
        if body.get("email") or body.get("phone"):
            raise AuthError(422, "validation_failed", "Changing the email or phone is not supported")
        if password is not None:
            if not isinstance(password, str):
                raise AuthError(400, "validation_failed", "password must be a string")
            problem = weakness(password)
            if problem is not None:
                raise AuthError(422, "weak_password", problem)
        if metadata is not None and not isinstance(metadata, dict):
            raise AuthError(400, "validation_failed", "data must be an object")
        user = await db.update_user(
            self.engine,
            UUID(str(claims["sub"])),
            password_hash=await hash_password(password) if password is not None else None,
            metadata=metadata,
        )
        if user is None:
            raise AuthError(403, "user_not_found", "User from sub claim in JWT does not exist")
        return user_json(user)

    async def refresh(self, refresh_token: str, client: Client) -> dict[str, Any]:
        token, new_hash = _new_refresh_token()
        rotated = await db.rotate_refresh_token(self.engine, _hash(refresh_token), new_hash)
        # A signed-out session's tokens are gone, as GoTrue deletes them (supabase-js reads
        # session_not_found here as "no session stored locally", which would mislead).
        if rotated.outcome in ("unknown", "revoked"):
            raise AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
        if rotated.outcome == "reused":
            if rotated.session_id is not None:
                self.sessions.ended([rotated.session_id])
            raise AuthError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
        assert rotated.user_id is not None and rotated.session_id is not None
        user = await db.user_by_id(self.engine, rotated.user_id)
        if user is None:
            raise AuthError(400, "user_not_found", "User not found")
        return self._tokens(user, rotated.session_id, token)

    async def user(self, claims: dict[str, Any]) -> dict[str, Any]:
        await self.sessions.require(claims)
        user = await db.user_by_id(self.engine, UUID(str(claims["sub"])))
        if user is None:
            raise AuthError(403, "user_not_found", "User from sub claim in JWT does not exist")
        return user_json(user)

    async def sign_out(self, claims: dict[str, Any], scope: Literal["global", "local", "others"]) -> None:
        session = claims.get("session_id")
        ended = await db.revoke_sessions(
            self.engine,
            user_id=UUID(str(claims["sub"])),
            session_id=UUID(str(session)) if session else None,
            scope=scope,
        )
        self.sessions.ended(ended)

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
        "confirmation_sent_at": _iso(user["confirmation_sent_at"]),
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
    return _new_secret()


def _new_secret() -> tuple[str, str]:
    """A single-use secret and the sha256 kept of it (a refresh token, a link's token)."""
    token = secrets.token_urlsafe(32)
    return token, _hash(token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionCheck:
    """Whether the session an access token names is still on, asked of the sessions table and
    remembered for `ttl` seconds (an ended session stays ended: remembered until evicted). Sign-outs
    and reuse detection in this process are known at once; in another replica within `ttl`."""

    def __init__(self, engine: Callable[[], AsyncEngine | None], ttl: float, size: int = 10_000) -> None:
        self._engine = engine
        self.ttl = ttl
        self._size = size
        self._known: OrderedDict[UUID, tuple[bool, float]] = OrderedDict()

    async def alive(self, session_id: UUID, user_id: UUID) -> bool:
        now = time.monotonic()
        known = self._known.get(session_id)
        if known is not None and (not known[0] or now - known[1] < self.ttl):
            return known[0]
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the database engine is not started")
        alive = await db.session_alive(engine, session_id, user_id)
        self._remember(session_id, alive, now)
        return alive

    async def require(self, claims: dict[str, Any]) -> None:
        """GoTrue's answer for a token whose session has ended."""
        session = claims.get("session_id")
        if not session or not await self.alive(UUID(str(session)), UUID(str(claims["sub"]))):
            raise AuthError(403, "session_not_found", "Session from session_id claim in JWT does not exist")

    def ended(self, session_ids: Iterable[UUID]) -> None:
        now = time.monotonic()
        for session_id in session_ids:
            self._remember(session_id, False, now)

    def _remember(self, session_id: UUID, alive: bool, at: float) -> None:
        self._known[session_id] = (alive, at)
        self._known.move_to_end(session_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)
