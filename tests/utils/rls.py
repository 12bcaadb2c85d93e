"""A statement run as a user would be, straight on asyncpg: under `authenticated` and their claims."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from fluxopus.db.engine import asyncpg_dsn
from tests.utils.builders import User


async def value_as(database_url: str, user: User, statement: str, *arguments: Any) -> Any:
    """The first column of the first row `statement` gives, in a transaction of its own as `user`."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            claims = json.dumps({"sub": user.id, "role": "authenticated", "aud": "authenticated"})
            await conn.execute(
                "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)", claims
            )
            return await conn.fetchval(statement, *arguments)
    finally:
        await conn.close()
