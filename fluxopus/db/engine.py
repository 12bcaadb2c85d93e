"""Engine construction: one asyncpg pool per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from fluxopus.config import Settings


def sqlalchemy_url(url: str) -> str:
    """Accept plain postgres:// URLs (what Supabase and Heroku hand out) and select asyncpg."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(("postgresql+asyncpg", *parts[1:]))


def asyncpg_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


def create_engine(database_url: str, settings: Settings) -> AsyncEngine:
    """The pool requests run in. Fixed size by default: overflow connections are closed as soon as
    they are returned, so under load a pool with overflow opens and closes sessions all the time."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # No ping before each checkout (a round trip per request): RlsTransaction replaces a connection
        # the database dropped when its BEGIN fails, and SQLAlchemy drops the pool's others with it.
    )


def create_service_engine(database_url: str, settings: Settings) -> AsyncEngine:
    """A small pool of its own for the short statements a request makes as the service, outside its
    own transaction (the budget's start_run, finish_run, charge_tokens). Those never wait for the
    request pool, so a request holding one of its connections can always get one of these: with a
    single pool, thirty requests holding all its connections and each waiting for a second one
    deadlocked it."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=settings.db_service_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
    )


@asynccontextmanager
async def operator_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine of one CLI command (or the demo's seeding, a test's setup): no pool to keep, since it
    lives as long as the command, and disposed when the command ends."""
    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()
