"""Migrations are immutable once applied, and schema.sql shows the schema they build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from fluxopus.db.engine import asyncpg_dsn
from fluxopus.db.migrate import MigrationChanged, checksum, migrate, migration_files
from fluxopus.db.snapshot import schema_snapshot, scratch_database

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


async def _checksums(url: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {r["name"]: r["checksum"] for r in await conn.fetch("select name, checksum from fluxopus_migrations")}
    finally:
        await conn.close()


async def _set_checksum(url: str, name: str, value: str | None) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("update fluxopus_migrations set checksum = $2 where name = $1", name, value)
    finally:
        await conn.close()


async def test_every_applied_migration_records_its_checksum(database_url: str) -> None:
    assert await _checksums(database_url) == {name: checksum(sql) for name, sql in migration_files()}


async def test_a_changed_applied_migration_refuses_naming_it(database_url: str) -> None:
    async with scratch_database(database_url) as url:
        # What a database migrated with an earlier text of 002 holds.
        await _set_checksum(url, "002_skills", checksum("-- the text 002 had when it was applied"))
        with pytest.raises(MigrationChanged, match=r"migration 002_skills\.sql changed after it was applied"):
            await migrate(url)
        assert (await _checksums(url))["002_skills"] == checksum("-- the text 002 had when it was applied")
        # The file restored (here: the record), the database starts again.
        await _set_checksum(url, "002_skills", checksum(dict(migration_files())["002_skills"]))
        assert await migrate(url) == []


async def test_a_database_migrated_before_checksums_gets_them(database_url: str) -> None:
    async with scratch_database(database_url) as url:
        for name, _ in migration_files():
            await _set_checksum(url, name, None)
        assert await migrate(url) == []
        assert await _checksums(url) == {name: checksum(sql) for name, sql in migration_files()}


async def test_serve_and_migrate_refuse_a_changed_migration_with_a_message(database_url: str, tmp_path: Path) -> None:
    async with scratch_database(database_url) as url:
        await _set_checksum(url, "001_spine", "0" * 64)
        env = {**os.environ, "DATABASE_URL": url, "FLUXOPUS_DATA_DIR": str(tmp_path)}
        for command in (["migrate"], ["serve", "--port", "1"]):  # refused before the port matters
            result = subprocess.run(
                [sys.executable, "-m", "fluxopus.cli", *command], env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert "Cannot migrate the database: migration 001_spine.sql changed after it was applied" in result.stderr
            assert "Traceback" not in result.stderr


async def test_committed_schema_sql_is_what_the_migrations_build(database_url: str) -> None:
    committed = (ROOT / "schema.sql").read_text(encoding="utf-8")
    assert await schema_snapshot(database_url) == committed, (
        "schema.sql is stale: run `fluxopus sql-schema > schema.sql` and commit it"
    )
