"""Verify Supabase-style access tokens: HS256 (shared secret) or ES256/RS256 (JWKS)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fluxopus.auth.keys import SigningKey
from fluxopus.config import BUILT_IN_ISSUER
from fluxopus.errors import Unauthorized

if TYPE_CHECKING:
    from fluxopus.db.users import Membership

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
LEEWAY_SECONDS = 5
# A kid may name a key of another type than the header's alg; PyJWT would raise TypeError.
_PUBLIC_KEY_TYPES: dict[str, type] = {"ES256": ec.EllipticCurvePublicKey, "RS256": rsa.RSAPublicKey}

Claims = dict[str, Any]


def unknown_key(kid: object) -> Unauthorized:
    # Not "algorithm not accepted": the algorithm is fine, the key is another server's (a replica given
    # another FLUXOPUS_JWT_PRIVATE_KEY, a data dir whose key was regenerated) or a rotated-out one.
    return Unauthorized(f"Token signed by a key this server does not know (kid {kid!r}): sign in again")


class JWKSCache:
    """Keys fetched from a JWKS URL, looked up by `kid`, refreshed when stale or a kid is unknown."""

    # An unknown kid triggers a refetch at most this often, so forged kids cannot flood the issuer.
    MIN_REFETCH_SECONDS = 30.0

    def __init__(self, url: str, ttl: float, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.ttl = ttl
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > self.ttl
        if stale or (kid not in self._keys and now - self._fetched_at > self.MIN_REFETCH_SECONDS):
            async with self._lock:
                if self._fetched_at < now:  # nobody refreshed while we waited
                    await self._fetch()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid or "")
        if key is None:
            raise unknown_key(kid)
        return key

    def fresh_for(self) -> float:
        """Seconds until the keys are fetched again (0 when they are due)."""
        return max(0.0, self._fetched_at + self.ttl - time.monotonic())

    async def _fetch(self) -> None:
        try:
            if self._client is None:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.get(self.url)
            else:
                response = await self._client.get(self.url)
            response.raise_for_status()
            document = response.json()
            if not isinstance(document, dict):
                raise ValueError("the JWKS document is not a JSON object")
            jwks = jwt.PyJWKSet.from_dict(document)
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            if self._keys:  # keep serving the keys we have; the issuer may be briefly down
                return
            raise Unauthorized("Cannot fetch the signing keys to verify the token") from exc
        self._keys = {k.key_id: k for k in jwks.keys if k.key_id}
        self._fetched_at = time.monotonic()


class TokenVerifier:
    def __init__(
        self,
        *,
        audience: str,
        secret: str | None = None,
        jwks: JWKSCache | None = None,
        local_key: SigningKey | None = None,
        previous_keys: Mapping[str, ec.EllipticCurvePublicKey] | None = None,
        issuer: str = BUILT_IN_ISSUER,
        max_lifetime: int = 366 * 86400,
    ) -> None:
        self.audience = audience
        self.secret = secret
        self.jwks = jwks
        self.local_key = local_key
        # Public keys of the server's own keys rotated out, by kid: their tokens stay valid until they expire.
        self.previous_keys = dict(previous_keys or {})
        self.issuer = issuer  # what the server's own tokens (local_key) must carry as `iss`
        self.max_lifetime = max_lifetime
        # Tokens verified lately, by their exact text: a client sends the same token with every request
        # for its lifetime, and checking its signature and claims cost more than the rest of a `GET`.
        # Only what the token itself proves is kept (its claims), for VERIFIED_TTL at most and never
        # past its `exp`, nor past the JWKS cache's TTL for a token signed by a JWKS key (a key the issuer
        # removes stops being trusted as soon as it did before); whether its session is still on is
        # asked every time (Runtime.session_on).
        self._verified: dict[str, tuple[float, Claims]] = {}

    VERIFIED_TTL = 60.0  # seconds
    VERIFIED_MAX = 4096

    async def verify(self, token: str) -> Claims:
        """The token's claims; a token signed with the server's own key must also name the built-in
        issuer and a session (whether that session is still on is SessionCheck's to say)."""
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            until, claims = known
            if now < until:
                return dict(claims)
            del self._verified[token]
        claims, ttl = await self._verify(token)
        if ttl > 0:
            if len(self._verified) >= self.VERIFIED_MAX:
                del self._verified[next(iter(self._verified))]  # the oldest entry: insertion order
            self._verified[token] = (min(now + ttl, float(claims["exp"]) + LEEWAY_SECONDS), claims)
        return dict(claims)

    async def _verify(self, token: str) -> tuple[Claims, float]:
        """The claims, and how long they may be trusted without checking the token again."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("Malformed token") from exc
        alg = header.get("alg")
        key: Any
        own_key = False  # one of the server's own keys: its tokens must name its issuer and a session
        ttl = self.VERIFIED_TTL
        if alg == "HS256" and self.secret is not None:
            key = self.secret
        elif alg in ASYMMETRIC_ALGORITHMS and self.local_key is not None:
            kid, own_key = header.get("kid"), True
            if kid is None or kid == self.local_key.kid:
                key = self.local_key.public_key
            elif kid in self.previous_keys:
                key = self.previous_keys[kid]
            else:
                raise unknown_key(kid)
        elif alg in ASYMMETRIC_ALGORITHMS and self.jwks is not None:
            key = (await self.jwks.get(header.get("kid"))).key
            ttl = min(ttl, self.jwks.fresh_for())
        else:
            raise Unauthorized(f"Token algorithm {alg!r} is not accepted")
        if alg in _PUBLIC_KEY_TYPES and not isinstance(key, _PUBLIC_KEY_TYPES[alg]):
            raise Unauthorized(f"Token algorithm {alg!r} does not match the key its kid names")
        try:
            claims: Claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                options={"require": ["sub", "exp", "aud"]},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized(f"Token audience must be {self.audience!r}") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("Token signature is invalid") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"Invalid token: {exc}") from exc
        try:
            UUID(str(claims["sub"]))
        except ValueError as exc:
            raise Unauthorized("Token subject must be a user id (UUID)") from exc
        self._check_lifetime(claims)
        if own_key:
            if claims.get("iss") != self.issuer:
                raise Unauthorized(f"Token issuer must be {self.issuer!r}")
            try:
                UUID(str(claims.get("session_id")))
            except ValueError as exc:
                raise Unauthorized("Token names no session (session_id)") from exc
        return claims, ttl

    def _check_lifetime(self, claims: Claims) -> None:
        """An access token lives hours, not decades: a leaked one that never expires is refused."""
        now = time.time()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or exp - now > self.max_lifetime:
            raise Unauthorized(f"Token lifetime is over the limit of {self.max_lifetime} seconds")
        # (PyJWT refuses an `iat` in the future itself.)
        if isinstance(iat, int | float) and exp - iat > self.max_lifetime:
            raise Unauthorized(f"Token lifetime is over the limit of {self.max_lifetime} seconds")

    async def verify_header(self, authorization: str | None) -> Claims:
        return await self.verify(bearer_token(authorization))


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("Missing Authorization header: send 'Authorization: Bearer <jwt>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <jwt>'")
    return token.strip()


def token_from_params(params: Mapping[str, Any]) -> str:
    """WebSocket connection_params: {"Authorization": "Bearer ..."} or {"token": "..."}."""
    token = params.get("token")
    if isinstance(token, str):
        return token
    header = params.get("Authorization") or params.get("authorization")
    return bearer_token(header if isinstance(header, str) else None)


def mint_token(
    key: SigningKey | str,
    *,
    user_id: UUID,
    email: str,
    role: str,
    company_id: UUID,
    ttl: int,
    audience: str = "authenticated",
    session_id: UUID | None = None,
    issuer: str | None = None,
) -> str:
    """A Supabase-shaped access token (used by `fluxopus token` and tests). The server's own key
    accepts it only with its issuer and a live session (auth_sessions)."""
    import uuid

    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "aud": audience,
        "role": "authenticated",
        "email": email,
        "iat": now,
        "exp": now + ttl,
        "session_id": str(session_id or uuid.uuid4()),
        **({"iss": issuer} if issuer else {}),
        "app_metadata": {"provider": "fluxopus", "company_id": str(company_id), "company_role": role},
        "user_metadata": {},
        "is_anonymous": False,
    }
    token: str
    if isinstance(key, str):
        token = jwt.encode(claims, key, algorithm="HS256")
    else:
        token = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})
    return token


def member_token(
    key: SigningKey | str,
    member: Membership,
    *,
    ttl: int,
    audience: str,
    session_id: UUID | None = None,
    issuer: str | None = None,
) -> str:
    """`mint_token` for a member as db/users returns them (`fluxopus token`, the demo)."""
    return mint_token(
        key,
        user_id=member.user_id,
        email=member.email,
        role=member.role,
        company_id=member.company_id,
        ttl=ttl,
        audience=audience,
        session_id=session_id,
        issuer=issuer,
    )


def mint_anon_key(key: SigningKey) -> str:
    """Supabase clients are created with a project's public "anon" key: a JWT with role anon.
    Ours never expires and opens nothing (`/api` requires aud=authenticated); /auth/v1 accepts
    requests with or without it, as Supabase's gateway would with it. Signed deterministically
    (RFC 6979), so the banner, `fluxopus anon-key` and the demo all print the same key."""
    header = {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
    claims = {"iss": "fluxopus", "role": "anon", "iat": 1767225600}
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_json(value: object) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())
