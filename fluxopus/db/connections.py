"""Service-side upkeep of sealed connection secrets (bypasses RLS): used by the CLI, not by API requests."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from fluxopus.db.engine import asyncpg_dsn
from fluxopus.integrations.crypto import DecryptError, TokenCipher, connection_context, state_context


@dataclass(frozen=True)
class Resealed:
    resealed: int  # values sealed anew with the current key
    current: int  # values already sealed with it
    unreadable: int  # values no configured key opens (their connections need reconnecting)


async def reseal(database_url: str, cipher: TokenCipher) -> Resealed:
    """Seal every stored token and PKCE verifier with the current key, so rotated-out keys
    (FLUXOPUS_ENCRYPTION_OLD_KEYS) can be dropped. One transaction: all or nothing."""
    counts = {"resealed": 0, "current": 0, "unreadable": 0}

    def renew(sealed: bytes | None, context: str) -> bytes | None:
        if sealed is None:
            return None
        if cipher.is_current(sealed):
            counts["current"] += 1
            return sealed
        try:
            value = cipher.encrypt(cipher.decrypt(sealed, context), context)
        except DecryptError:
            counts["unreadable"] += 1
            return sealed
        counts["resealed"] += 1
        return value

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            for row in await conn.fetch(
                "select id, user_id, provider, access_token, refresh_token from connections for update"
            ):
                access = renew(row["access_token"], connection_context(row["user_id"], row["provider"], "access"))
                refresh = renew(row["refresh_token"], connection_context(row["user_id"], row["provider"], "refresh"))
                await conn.execute(
                    "update connections set access_token = $2, refresh_token = $3 where id = $1",
                    row["id"],
                    access,
                    refresh,
                )
            for row in await conn.fetch("select state_hash, code_verifier from oauth_states for update"):
                verifier = renew(row["code_verifier"], state_context(row["state_hash"]))
                await conn.execute(
                    "update oauth_states set code_verifier = $2 where state_hash = $1", row["state_hash"], verifier
                )
    finally:
        await conn.close()
    return Resealed(**counts)
