"""Apply the SQL files in migrations/ in order, once each, under an advisory lock.

Plain SQL so the same files run on Supabase (`psql -f`) and here; the lock lets
several replicas start at once. Applied files are immutable: each one's sha256 is recorded, and a
database whose applied file has changed since refuses to start, naming it — a change to the schema
goes into a new file, or a database silently keeps the old text. (Databases migrated before
checksums were recorded get the current file's checksum on their first start.)

Raw asyncpg here, unlike the rest of db/: a migration file is many statements, which only the
simple query protocol (asyncpg's `execute` without arguments) runs in one call.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from importlib import resources

import asyncpg

from fluxopus.db.engine import asyncpg_dsn

log = logging.getLogger(__name__)

_LOCK_KEY = 0x466C75786F707573  # "Fluxopus"
_CREATE_TABLE = re.compile(r"^create table (?:if not exists )?(\w+)", re.IGNORECASE | re.MULTILINE)


class MigrationRefused(RuntimeError):
    """The database cannot be brought to this version's schema; the message says why."""


class MigrationChanged(MigrationRefused):
    """An applied migration's file differs from what was applied."""


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("fluxopus.db") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


async def migrate(database_url: str, on_apply: Callable[[str], None] | None = None) -> list[str]:
    """Apply pending migrations and refuse a schema with a table outside RLS; `on_apply(name)` is
    called before each (the CLI's progress lines).

    Returns the names of the migrations applied now."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    applied_now: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "create table if not exists fluxopus_migrations ("
            " name text primary key, applied_at timestamptz not null default now(), checksum text)"
        )
        await conn.execute("alter table fluxopus_migrations add column if not exists checksum text")
        done = {r["name"]: r["checksum"] for r in await conn.fetch("select name, checksum from fluxopus_migrations")}
        files = migration_files()
        changed = [name for name, sql in files if done.get(name) not in (None, checksum(sql))]
        if changed:
            names = ", ".join(f"{name}.sql" for name in changed)
            raise MigrationChanged(
                f"migration {names} changed after it was applied to this database; applied migrations are"
                " immutable: restore the file as it was and put the change in a new migration"
            )
        for name, sql in files:
            if name in done:
                if done[name] is None:
                    await conn.execute(
                        "update fluxopus_migrations set checksum = $2 where name = $1", name, checksum(sql)
                    )
                continue
            if on_apply is not None:
                on_apply(name)
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "insert into fluxopus_migrations (name, checksum) values ($1, $2)", name, checksum(sql)
                )
            log.info("applied migration %s", name)
            applied_now.append(name)
        # Only our own tables: a shared database (Supabase) may hold the operator's others.
        ours = sorted({t for _, sql in files for t in _CREATE_TABLE.findall(sql)})
        unprotected = await conn.fetch(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity"
            " and c.relname = any($1::text[]) order by 1",
            ours,
        )
        if unprotected:
            names = ", ".join(r["relname"] for r in unprotected)
            raise MigrationRefused(f"row-level security is not enabled on: {names}; add `enable row level security`")
    finally:
        try:
            await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
