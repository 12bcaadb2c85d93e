"""Passwords: argon2id (argon2-cffi's RFC 9106 defaults), hashed and checked off the event loop."""

from __future__ import annotations

import asyncio
import os

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; a cap keeps a request from buying seconds of CPU

# The test suite sets FLUXOPUS_INSECURE_FAST_PASSWORD_HASHES=1 (tests/conftest.py): argon2's cheapest
# parameters hash in ~0.1 ms instead of ~130 ms and protect nothing. Never set it for a real server.
# Checking a hash reads its parameters from the hash itself, so either kind verifies either way.
_INSECURE = os.environ.get("FLUXOPUS_INSECURE_FAST_PASSWORD_HASHES") == "1"
_hasher = PasswordHasher.from_parameters(profiles.CHEAPEST if _INSECURE else profiles.RFC_9106_LOW_MEMORY)
# Checked when the email is unknown, so a wrong email costs as much time as a wrong password.
_DUMMY = _hasher.hash("fluxopus: no such user")


def weakness(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"Password should be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password should be at most {MAX_LENGTH} characters."
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY, password[:MAX_LENGTH]) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def hash_password_now(password: str) -> str:
    """For the CLI, which has no event loop to keep free."""
    return _hasher.hash(password)
