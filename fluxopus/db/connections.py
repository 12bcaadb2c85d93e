"""Service-side upkeep of sealed connection secrets (bypasses RLS): used by the CLI, not by API requests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.db.session import service_transaction
from fluxopus.integrations.crypto import DecryptError, TokenCipher, connection_context, state_context


@dataclass(frozen=True)
class Resealed:
    resealed: int  # values sealed anew with the current key
    current: int  # values already sealed with it
    unreadable: int  # values no configured key opens (their connections need reconnecting)


async def reseal(engine: AsyncEngine, cipher: TokenCipher) -> Resealed:
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

    async with service_transaction(engine) as conn:
        rows = await conn.execute(
            text("select id, user_id, provider, access_token, refresh_token from connections for update")
        )
        for row in rows.mappings().all():
            access = renew(row["access_token"], connection_context(row["user_id"], row["provider"], "access"))
            refresh = renew(row["refresh_token"], connection_context(row["user_id"], row["provider"], "refresh"))
            await conn.execute(
                text("update connections set access_token = :a, refresh_token = :r where id = :id"),
                {"id": row["id"], "a": access, "r": refresh},
            )
        states = await conn.execute(text("select state_hash, code_verifier from oauth_states for update"))
        for row in states.mappings().all():
            verifier = renew(row["code_verifier"], state_context(row["state_hash"]))
            await conn.execute(
                text("update oauth_states set code_verifier = :v where state_hash = :h"),
                {"h": row["state_hash"], "v": verifier},
            )
    return Resealed(**counts)
