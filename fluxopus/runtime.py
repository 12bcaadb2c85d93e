"""What a running app holds: settings, the database engine, the token verifier, the model providers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.models import ModelSettings
from fluxopus.auth.jwt import JWKSCache, TokenVerifier
from fluxopus.auth.keys import SigningKey
from fluxopus.config import Settings
from fluxopus.context import Context
from fluxopus.db.session import RlsTransaction
from fluxopus.errors import Unauthorized
from fluxopus.integrations.oauth import OAuth
from fluxopus.schema.limits import Documents, Limits


def build_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        audience=settings.jwt_audience,
        secret=settings.jwt_secret,
        jwks=JWKSCache(settings.jwks_url, settings.jwks_cache_seconds) if settings.jwks_url else None,
        local_key=SigningKey.load_or_create(settings.dev_signing_key_path) if settings.uses_dev_signing_key else None,
    )


def build_documents(settings: Settings) -> Documents:
    return Documents(
        Limits(
            max_bytes=settings.graphql_max_bytes,
            max_tokens=settings.graphql_max_tokens,
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_directives=settings.graphql_max_directives,
            max_fields=settings.graphql_max_fields,
            max_merged_fields=settings.graphql_max_merged_fields,
            max_cost=settings.graphql_max_cost,
        )
    )


@dataclass
class Runtime:
    settings: Settings
    verifier: TokenVerifier
    models: ModelSettings
    oauth: OAuth
    documents: Documents
    engine: AsyncEngine | None = None
    service_engine: AsyncEngine | None = None  # see db/engine.create_service_engine

    def context(self, claims: dict[str, object] | None, auth_error: Unauthorized | None = None) -> Context:
        if self.engine is None:
            raise RuntimeError("the database engine is not started")
        return Context(
            db=RlsTransaction(self.engine, claims, auth_error, self.service_engine),
            claims=claims,
            models=self.models,
            oauth=self.oauth,
            auth_error=auth_error,
        )
