"""Apply the SQL files in migrations/ in order, once each, under an advisory lock.

Plain SQL so the same files run on Supabase (`psql -f`) and here; the lock lets
several replicas start at once.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import asyncpg

from fluxopus.db.engine import asyncpg_dsn

log = logging.getLogger(__name__)

_LOCK_KEY = 0x466C75786F707573  # "Fluxopus"
_CREATE_TABLE = re.compile(r"^create table (?:if not exists )?(\w+)", re.IGNORECASE | re.MULTILINE)


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("fluxopus.db") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


async def migrate(database_url: str) -> list[str]:
    """Apply pending migrations and refuse a schema with a table outside RLS.

    Returns the names of the migrations applied now."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    applied_now: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "create table if not exists fluxopus_migrations ("
            " name text primary key, applied_at timestamptz not null default now())"
        )
        done = {r["name"] for r in await conn.fetch("select name from fluxopus_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("insert into fluxopus_migrations (name) values ($1)", name)
            log.info("applied migration %s", name)
            applied_now.append(name)
        # Only our own tables: a shared database (Supabase) may hold the operator's others.
        ours = sorted({t for _, sql in migration_files() for t in _CREATE_TABLE.findall(sql)})
        unprotected = await conn.fetch(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity"
            " and c.relname = any($1::text[]) order by 1",
            ours,
        )
        if unprotected:
            names = ", ".join(r["relname"] for r in unprotected)
            raise RuntimeError(f"row-level security is not enabled on: {names}; add `enable row level security`")
    finally:
        try:
            await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
