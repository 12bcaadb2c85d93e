"""What a running app holds: settings, the database engine, the token verifier, the model providers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.services import AiServices
from fluxopus.auth.jwt import JWKSCache, TokenVerifier, bearer_token
from fluxopus.auth.keys import previous_keys, signing_key
from fluxopus.auth.mail import Mail
from fluxopus.auth.sessions import SessionCheck
from fluxopus.config import Settings
from fluxopus.db.session import RlsTransaction
from fluxopus.errors import DomainError, Unauthorized
from fluxopus.integrations.oauth import OAuth
from fluxopus.requestinfo import note_caller
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.live_hub import LiveHub


def build_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        audience=settings.jwt_audience,
        secret=settings.jwt_secret,
        jwks=JWKSCache(settings.jwks_url, settings.jwks_cache_seconds) if settings.jwks_url else None,
        local_key=signing_key(settings) if settings.uses_dev_signing_key else None,
        previous_keys=previous_keys(settings),
        issuer=settings.auth_issuer,
        max_lifetime=settings.jwt_max_lifetime,
    )


def build_mail(settings: Settings) -> Mail:
    return Mail(
        smtp_url=settings.smtp_url,
        sender=settings.mail_sender,
        public_url=settings.base_url,
        app_url=settings.frontend_url,
        invitation_ttl=dt.timedelta(days=settings.invitation_days),
    )


@dataclass
class Runtime:
    settings: Settings
    verifier: TokenVerifier
    ai: AiServices
    oauth: OAuth
    mail: Mail
    engine: AsyncEngine | None = None
    service_engine: AsyncEngine | None = None  # see db/engine.create_service_engine
    live: LiveHub | None = None  # while the app serves, unless FLUXOPUS_LIVE is off
    sessions: SessionCheck = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionCheck(lambda: self.engine, self.settings.session_check_seconds)

    async def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """The claims of `Authorization: Bearer <jwt>`: signature, audience, lifetime, and for the
        server's own tokens their issuer and a session that is still on."""
        return await self.authenticate_token(bearer_token(authorization))

    async def authenticate_token(self, token: str) -> dict[str, Any]:
        claims = await self.verifier.verify(token)
        if not await self.session_on(claims):
            raise Unauthorized("This session has ended (signed out): sign in again")
        note_caller(claims)  # for the access log
        return claims

    async def session_on(self, claims: dict[str, Any]) -> bool:
        """Whether the session behind verified claims is on (only the server's own tokens name one it knows)."""
        if self.verifier.local_key is None or claims.get("iss") != self.verifier.issuer:
            return True
        return await self.sessions.alive(UUID(str(claims["session_id"])), UUID(str(claims["sub"])))

    def context(self, claims: dict[str, object] | None, auth_error: DomainError | None = None) -> Context:
        if self.engine is None:
            raise RuntimeError("the database engine is not started")
        return Context(
            db=RlsTransaction(self.engine, claims, auth_error, self.service_engine),
            mail=self.mail,
            claims=claims,
            ai=self.ai,
            oauth=self.oauth,
            auth_error=auth_error,
            live=self.live,
        )
