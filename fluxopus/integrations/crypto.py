"""Secrets at rest (provider tokens, PKCE verifiers): AES-256-GCM under FLUXOPUS_ENCRYPTION_KEY.

A stored value is `version (1 byte) | key id (4) | nonce (12) | ciphertext + tag`. The key id
says which key sealed it, so after a rotation the old key (FLUXOPUS_ENCRYPTION_OLD_KEYS) still
opens what it sealed while everything new is sealed with the current one. Each value is bound to
where it belongs (associated data, e.g. "connection:<user>:<provider>:access"), so a value copied
into another row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fluxopus.config import parse_key

_VERSION = b"\x01"
_NONCE = 12
_KEY_ID = 4


class DecryptError(Exception):
    """No configured key opens the value: the key was rotated away, or the value was tampered with."""


def load_or_create_key(path: Path) -> bytes:
    """The embedded default's key: generated once into the data dir, readable by its owner only."""
    if path.exists():
        return parse_key(path.read_text(encoding="ascii"))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two processes starting at once must not each write a different key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return load_or_create_key(path)


def connection_context(user_id: object, provider: str, kind: str) -> str:
    """Where a connection's token belongs: its user, its provider, and which token (access|refresh)."""
    return f"connection:{user_id}:{provider}:{kind}"


def state_context(state_hash: str) -> str:
    """Where a pending authorization's PKCE verifier belongs."""
    return f"oauth-state:{state_hash}"


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"fluxopus key id\x00" + key).digest()[:_KEY_ID]


class TokenCipher:
    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        self._current = (_key_id(key), AESGCM(key))
        self._keys = {_key_id(k): AESGCM(k) for k in (*old_keys, key)}

    def encrypt(self, plaintext: str, context: str) -> bytes:
        key_id, aead = self._current
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + key_id + nonce + aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, sealed: bytes, context: str) -> str:
        if len(sealed) < 1 + _KEY_ID + _NONCE + 16 or sealed[:1] != _VERSION:
            raise DecryptError("not a value sealed by this service")
        aead = self._keys.get(sealed[1 : 1 + _KEY_ID])
        if aead is None:
            raise DecryptError("sealed with a key that is no longer configured (FLUXOPUS_ENCRYPTION_OLD_KEYS)")
        nonce, body = sealed[1 + _KEY_ID : 1 + _KEY_ID + _NONCE], sealed[1 + _KEY_ID + _NONCE :]
        try:
            return aead.decrypt(nonce, body, context.encode()).decode()
        except InvalidTag:
            raise DecryptError("the value does not belong here or was altered") from None

    def is_current(self, sealed: bytes) -> bool:
        return sealed[1 : 1 + _KEY_ID] == self._current[0]
