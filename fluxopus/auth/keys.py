"""The built-in sign-in's signing key: FLUXOPUS_JWT_PRIVATE_KEY(_FILE), else an ES256 key generated once
into the data dir."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fluxopus.config import Settings


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """A key's `kid`, derived from the public key alone: every replica holding the key names it alike."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


class SigningKey:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} does not hold an EC private key")
            return cls(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # O_EXCL: two processes starting at once must not overwrite each other's key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load_or_create(path)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return cls(key)


def signing_key(settings: Settings) -> SigningKey:
    """The configured key (the same on every replica), else the data dir's (generated on first use)."""
    configured = settings.configured_signing_key()
    if configured is not None:
        return SigningKey(configured)
    return SigningKey.load_or_create(settings.dev_signing_key_path)


def previous_keys(settings: Settings) -> dict[str, ec.EllipticCurvePublicKey]:
    """FLUXOPUS_JWT_PREVIOUS_KEYS by kid: tokens they signed before a rotation are still accepted."""
    return {key_id(k): k for k in settings.previous_verification_keys()}
