"""Authentication end to end: HS256 secret, JWKS (ES256/RS256) with caching and rotation,
every way a token can be wrong, the embedded default's dev signing key, and `fluxopus token`.

Everything runs against the real embedded PostgreSQL and real HTTP JWKS servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.auth.jwt import LEEWAY_SECONDS, mint_token
from fluxopus.auth.keys import SigningKey
from fluxopus.config import Settings
from fluxopus.db.users import start_token_session
from fluxopus.runtime import build_verifier
from tests.utils.builders import SECRET, User, error_codes, make_user, unique
from tests.utils.cli import CliResult, cli_env, run_cli
from tests.utils.fake_jwks import FakeJWKS, claims_for
from tests.utils.http import bearer
from tests.utils.server import free_port

JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
ME_QUERY = "{ me { id email role company { name } } }"

# Keys the service has never been told about.
FOREIGN_EC = ec.generate_private_key(ec.SECP256R1())
FOREIGN_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


# ---------------------------------------------------------------------------------------------
# helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, for shapes PyJWT refuses to produce."""
    return f"{b64url_json(header)}.{b64url_json(claims)}.{b64url(signature)}"


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 with any bytes as the secret (PyJWT refuses PEM keys as HMAC secrets)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


def assert_unauthorized(response: httpx.Response, *words: str) -> str:
    """401 with exactly {"error": <message>, "code": "unauthorized"}, the message mentioning one of `words`."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == "unauthorized", body
    message = body["error"]
    assert isinstance(message, str) and message.strip(), body
    assert "Traceback" not in message
    if words:
        assert any(w.lower() in message.lower() for w in words), f"{message!r} mentions none of {words}"
    return message


def dev_settings(data_dir: Path, database_url: str) -> Settings:
    """The embedded default's auth: no shared secret, no JWKS → the data dir's signing key."""
    return Settings(data_dir=data_dir, database_url=database_url, jwt_secret=None, jwks_url=None)


def jwks_settings(data_dir: Path, database_url: str, jwks_url: str, **extra: Any) -> Settings:
    """Asymmetric keys only (no HS256 secret), like a Supabase project with signing keys."""
    return Settings(data_dir=data_dir, database_url=database_url, jwt_secret=None, jwks_url=jwks_url, **extra)


@asynccontextmanager
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


async def list_tasks(client: httpx.AsyncClient, headers: dict[str, str] | None) -> httpx.Response:
    return await client.get("/api/tasks", headers=headers or {})


class StaticHTTP:
    """A real HTTP server on 127.0.0.1 answering every GET with one fixed status and body."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                served.hits += 1
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def extra_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    return FakeJWKS._jwk(private_key.public_key(), kid, alg)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
async def member(database_url: str) -> User:
    """The first (admin) member of a fresh company; its HS256 token comes from the builders."""
    return await make_user(database_url, company=unique("company"), role="admin")


@pytest.fixture(scope="module")
def module_jwks() -> Iterator[FakeJWKS]:
    fake = FakeJWKS()
    yield fake
    fake.close()


@pytest.fixture
def own_jwks(module_jwks: FakeJWKS) -> FakeJWKS:
    """A JWKS server apart from the session's: tests here rotate keys and fail it freely.

    Reset for every test (keys, status, hit counter); each test builds its own app, so caches are fresh.
    """
    module_jwks.keys = [
        FakeJWKS._jwk(module_jwks.ec_key.public_key(), "ec-1", "ES256"),
        FakeJWKS._jwk(module_jwks.rsa_key.public_key(), "rsa-1", "RS256"),
    ]
    module_jwks.status = 200
    module_jwks.hits = 0
    return module_jwks


@pytest.fixture
def jwks_app(tmp_path: Path, database_url: str, engine: AsyncEngine, own_jwks: FakeJWKS) -> FastAPI:
    """A fresh app (and so a fresh JWKS cache) verifying tokens against `own_jwks` only."""
    return create_app(jwks_settings(tmp_path, database_url, own_jwks.url), engine=engine)


# ---------------------------------------------------------------------------------------------
# accepted tokens


async def test_hs256_token_signed_with_configured_secret_is_accepted(client: httpx.AsyncClient, member: User) -> None:
    assert jwt.get_unverified_header(member.token)["alg"] == "HS256"
    response = await list_tasks(client, member.headers)
    assert response.status_code == 200, response.text
    assert response.json() == []


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_jwks_signed_token_is_accepted(client: httpx.AsyncClient, jwks: FakeJWKS, member: User, alg: str) -> None:
    token = jwks.sign(claims_for(member.id), alg=alg)
    response = await list_tasks(client, bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == []


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_jwks_signed_token_works_on_graphql(
    client: httpx.AsyncClient, jwks: FakeJWKS, member: User, alg: str
) -> None:
    token = jwks.sign(claims_for(member.id, email=member.email), alg=alg)
    response = await client.post("/graphql", json={"query": ME_QUERY}, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {"me": {"id": member.id, "email": member.email, "role": "ADMIN", "company": {"name": member.company}}}
    }


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient, member: User) -> None:
    response = await list_tasks(client, {"Authorization": f"bearer {member.token}"})
    assert response.status_code == 200, response.text


async def test_jwks_only_app_accepts_both_asymmetric_algorithms(
    jwks_app: FastAPI, own_jwks: FakeJWKS, member: User
) -> None:
    async with http(jwks_app) as c:
        for alg in ("ES256", "RS256"):
            response = await list_tasks(c, bearer(own_jwks.sign(claims_for(member.id), alg=alg)))
            assert response.status_code == 200, (alg, response.text)


# ---------------------------------------------------------------------------------------------
# rejected tokens


@dataclass
class Forger:
    jwks: FakeJWKS
    user_id: str

    def claims(self, **extra: Any) -> dict[str, Any]:
        return claims_for(self.user_id, **extra)


def _tampered(f: Forger) -> str:
    header, _, signature = f.jwks.sign(f.claims()).split(".")
    other = f.claims(sub=str(uuid.uuid4()))
    return f"Bearer {header}.{b64url_json(other)}.{signature}"


def _rs256_relabelled_hs256(f: Forger) -> str:
    _, payload, signature = f.jwks.sign(f.claims(), alg="RS256").split(".")
    return f"Bearer {b64url_json({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{payload}.{signature}"


# (id, Authorization header value or None, words one of which a clear message contains)
REJECTIONS: list[tuple[str, Callable[[Forger], str | None], tuple[str, ...]]] = [
    ("no-header", lambda f: None, ("authorization",)),
    ("alg-none", lambda f: "Bearer " + forge({"alg": "none", "typ": "JWT"}, f.claims()), ("algorithm", "alg")),
    ("alg-None-with-kid", lambda f: "Bearer " + forge({"alg": "None", "kid": "ec-1"}, f.claims()), ("alg",)),
    ("alg-none-pyjwt", lambda f: "Bearer " + jwt.encode(f.claims(), None, algorithm="none"), ("alg",)),
    (
        "hs256-wrong-secret",
        lambda f: "Bearer " + jwt.encode(f.claims(), "another-secret-long-enough-for-hs256-0123456789"),
        ("signature",),
    ),
    (
        "es256-foreign-key-same-kid",
        lambda f: "Bearer " + jwt.encode(f.claims(), FOREIGN_EC, algorithm="ES256", headers={"kid": "ec-1"}),
        ("signature",),
    ),
    (
        "rs256-foreign-key-same-kid",
        lambda f: "Bearer " + jwt.encode(f.claims(), FOREIGN_RSA, algorithm="RS256", headers={"kid": "rsa-1"}),
        ("signature",),
    ),
    (
        "es256-unknown-kid",
        lambda f: "Bearer " + jwt.encode(f.claims(), FOREIGN_EC, algorithm="ES256", headers={"kid": "forged-kid"}),
        ("key",),
    ),
    ("payload-tampered", _tampered, ("signature",)),
    (  # two keys in the JWKS: without a kid there is no telling which one
        "es256-without-kid",
        lambda f: "Bearer " + jwt.encode(f.claims(), f.jwks.ec_key, algorithm="ES256"),
        ("key", "kid"),
    ),
    ("wrong-audience", lambda f: "Bearer " + f.jwks.sign(f.claims(aud="anon")), ("audience",)),
    ("missing-aud", lambda f: "Bearer " + f.jwks.sign(without(f.claims(), "aud")), ("aud",)),
    ("expired", lambda f: "Bearer " + f.jwks.sign(claims_for(f.user_id, ttl=-3600)), ("expired",)),
    ("missing-exp", lambda f: "Bearer " + f.jwks.sign(without(f.claims(), "exp")), ("exp",)),
    ("exp-not-a-number", lambda f: "Bearer " + f.jwks.sign(f.claims(exp="never")), ("exp", "expiration")),
    ("not-yet-valid", lambda f: "Bearer " + f.jwks.sign(f.claims(nbf=int(time.time()) + 3600)), ("yet", "nbf")),
    ("missing-sub", lambda f: "Bearer " + f.jwks.sign(without(f.claims(), "sub")), ("sub",)),
    ("sub-not-uuid", lambda f: "Bearer " + f.jwks.sign(f.claims(sub="alice")), ("sub",)),
    ("sub-not-a-string", lambda f: "Bearer " + f.jwks.sign(f.claims(sub=42)), ("sub",)),
    (
        "supabase-anon-key",  # the public anon key: role anon, no sub, no aud
        lambda f: (
            "Bearer "
            + jwt.encode({"iss": "supabase", "role": "anon", "iat": 0, "exp": int(time.time()) + 3600}, SECRET)
        ),
        ("sub", "aud", "claim"),
    ),
    ("garbage-abc", lambda f: "Bearer abc", ("malformed", "invalid")),
    ("garbage-a.b.c", lambda f: "Bearer a.b.c", ("malformed", "invalid")),
    ("two-segments", lambda f: "Bearer " + ".".join(f.jwks.sign(f.claims()).split(".")[:2]), ("malformed", "invalid")),
    (
        "header-not-an-object",
        lambda f: f"Bearer {b64url_json(['x'])}.{b64url_json(f.claims())}.",
        ("malformed", "header"),
    ),
    (
        "kid-not-a-string",
        lambda f: "Bearer " + forge({"alg": "ES256", "kid": ["ec-1"]}, f.claims(), b"x"),
        ("malformed", "kid", "key"),
    ),
    ("empty-bearer", lambda f: "Bearer ", ("bearer",)),
    ("bearer-only-spaces", lambda f: "Bearer    ", ("bearer",)),
    ("scheme-only", lambda f: "Bearer", ("bearer",)),
    ("basic-scheme", lambda f: "Basic xxx", ("bearer",)),
    ("token-without-scheme", lambda f: f.jwks.sign(f.claims()), ("bearer",)),
    (
        "hs256-signed-with-public-key-pem",  # algorithm confusion: the public key as HMAC secret
        lambda f: "Bearer " + hs256_by_hand({"alg": "HS256", "kid": "ec-1"}, f.claims(), public_pem(f.jwks.ec_key)),
        ("signature",),
    ),
    (
        "hs256-signed-with-rsa-public-key-pem",
        lambda f: "Bearer " + hs256_by_hand({"alg": "HS256", "kid": "rsa-1"}, f.claims(), public_pem(f.jwks.rsa_key)),
        ("signature",),
    ),
    ("rs256-token-relabelled-hs256", _rs256_relabelled_hs256, ("signature",)),
    (
        "ps256-not-accepted",
        lambda f: "Bearer " + jwt.encode(f.claims(), f.jwks.rsa_key, algorithm="PS256", headers={"kid": "rsa-1"}),
        ("alg",),
    ),
    (
        "es256-header-pointing-at-rsa-key",  # kid of the RSA key, alg of EC: key type confusion
        lambda f: "Bearer " + jwt.encode(f.claims(), FOREIGN_EC, algorithm="ES256", headers={"kid": "rsa-1"}),
        ("alg", "key", "signature"),
    ),
    (
        "rs256-header-pointing-at-ec-key",
        lambda f: "Bearer " + jwt.encode(f.claims(), f.jwks.rsa_key, algorithm="RS256", headers={"kid": "ec-1"}),
        ("alg", "key", "signature"),
    ),
]


@pytest.mark.parametrize(("make_header", "words"), [c[1:] for c in REJECTIONS], ids=[c[0] for c in REJECTIONS])
async def test_bad_token_is_rejected_with_401(
    client: httpx.AsyncClient,
    jwks: FakeJWKS,
    member: User,
    make_header: Callable[[Forger], str | None],
    words: tuple[str, ...],
) -> None:
    value = make_header(Forger(jwks, member.id))
    headers = {"Authorization": value} if value is not None else None
    assert_unauthorized(await list_tasks(client, headers), *words)


@pytest.mark.parametrize(
    "name",
    ["alg-none", "hs256-signed-with-public-key-pem", "rs256-token-relabelled-hs256", "hs256-wrong-secret"],
)
async def test_jwks_only_app_refuses_hs256_and_none(
    jwks_app: FastAPI, own_jwks: FakeJWKS, member: User, name: str
) -> None:
    """Without a configured secret no symmetric token is even considered: no key confusion possible."""
    make_header = dict((c[0], c[1]) for c in REJECTIONS)[name]
    value = make_header(Forger(own_jwks, member.id))
    assert value is not None
    async with http(jwks_app) as c:
        assert_unauthorized(await list_tasks(c, {"Authorization": value}), "alg")


@pytest.mark.parametrize(
    "name", ["no-header", "alg-none", "es256-foreign-key-same-kid", "wrong-audience", "expired", "garbage-abc"]
)
async def test_bad_token_is_unauthenticated_on_graphql(
    client: httpx.AsyncClient, jwks: FakeJWKS, member: User, name: str
) -> None:
    make_header = dict((c[0], c[1]) for c in REJECTIONS)[name]
    value = make_header(Forger(jwks, member.id))
    headers = {"Authorization": value} if value is not None else {}
    response = await client.post("/graphql", json={"query": ME_QUERY}, headers=headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["data"] is None
    assert error_codes(result) == ["UNAUTHENTICATED"]
    assert result["errors"][0]["message"]


async def test_rejected_token_changes_nothing(client: httpx.AsyncClient, jwks: FakeJWKS, member: User) -> None:
    expired = jwks.sign(claims_for(member.id, ttl=-3600))
    created = await client.post("/api/tasks", json={"title": "should not exist"}, headers=bearer(expired))
    assert_unauthorized(created, "expired")
    listed = await list_tasks(client, member.headers)
    assert listed.status_code == 200
    assert listed.json() == []


# ---------------------------------------------------------------------------------------------
# JWKS: caching, rotation, outages


async def test_jwks_is_fetched_once_for_many_requests(jwks_app: FastAPI, own_jwks: FakeJWKS, member: User) -> None:
    assert own_jwks.hits == 0  # nothing is fetched before the first token arrives
    es, rs = own_jwks.sign(claims_for(member.id)), own_jwks.sign(claims_for(member.id), alg="RS256")
    async with http(jwks_app) as c:
        for token in [es, rs] * 5:
            assert (await list_tasks(c, bearer(token))).status_code == 200
        concurrent = await asyncio.gather(*(list_tasks(c, bearer(t)) for t in [es, rs] * 5))
    assert [r.status_code for r in concurrent] == [200] * 10
    assert own_jwks.hits == 1


async def test_concurrent_first_requests_share_one_fetch(jwks_app: FastAPI, own_jwks: FakeJWKS, member: User) -> None:
    token = own_jwks.sign(claims_for(member.id))
    async with http(jwks_app) as c:
        responses = await asyncio.gather(*(list_tasks(c, bearer(token)) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert own_jwks.hits == 1


async def test_forged_kids_do_not_flood_the_jwks_endpoint(jwks_app: FastAPI, own_jwks: FakeJWKS, member: User) -> None:
    async with http(jwks_app) as c:
        for i in range(5):
            token = jwt.encode(claims_for(member.id), FOREIGN_EC, algorithm="ES256", headers={"kid": f"forged-{i}"})
            assert_unauthorized(await list_tasks(c, bearer(token)), "key")
    assert own_jwks.hits == 1  # one fetch to learn the keys, then the refetch throttle holds


async def test_rotated_key_is_accepted_after_refetch_on_unknown_kid(
    jwks_app: FastAPI, own_jwks: FakeJWKS, member: User
) -> None:
    new_key = ec.generate_private_key(ec.SECP256R1())
    rotated = jwt.encode(claims_for(member.id), new_key, algorithm="ES256", headers={"kid": "ec-2"})
    old = own_jwks.sign(claims_for(member.id))
    async with http(jwks_app) as c:
        assert (await list_tasks(c, bearer(old))).status_code == 200
        assert own_jwks.hits == 1

        # Unknown to the issuer as well: rejected.
        assert_unauthorized(await list_tasks(c, bearer(rotated)), "key")

        own_jwks.keys.append(extra_jwk(new_key, "ec-2", "ES256"))
        jwks_app.state.runtime.verifier.jwks.MIN_REFETCH_SECONDS = 0  # let the unknown kid refetch now
        response = await list_tasks(c, bearer(rotated))
        assert response.status_code == 200, response.text
        hits = own_jwks.hits

        # Both keys now cached: no further fetches for either.
        for token in (rotated, old, rotated):
            assert (await list_tasks(c, bearer(token))).status_code == 200
    assert own_jwks.hits == hits


async def test_jwks_cache_expires_and_revoked_keys_stop_working(
    tmp_path: Path, database_url: str, engine: AsyncEngine, own_jwks: FakeJWKS, member: User
) -> None:
    app = create_app(jwks_settings(tmp_path, database_url, own_jwks.url, jwks_cache_seconds=0), engine=engine)
    es, rs = own_jwks.sign(claims_for(member.id)), own_jwks.sign(claims_for(member.id), alg="RS256")
    async with http(app) as c:
        assert (await list_tasks(c, bearer(es))).status_code == 200
        assert (await list_tasks(c, bearer(es))).status_code == 200
        assert own_jwks.hits == 2  # a zero TTL refetches for every token

        own_jwks.keys = [k for k in own_jwks.keys if k["kid"] != "ec-1"]  # the issuer revokes ec-1
        assert_unauthorized(await list_tasks(c, bearer(es)), "key")
        assert (await list_tasks(c, bearer(rs))).status_code == 200

        # The issuer goes down: the keys we already have keep working.
        own_jwks.status = 500
        assert (await list_tasks(c, bearer(rs))).status_code == 200


async def test_jwks_endpoint_answering_500_gives_401(jwks_app: FastAPI, own_jwks: FakeJWKS, member: User) -> None:
    own_jwks.status = 500
    async with http(jwks_app) as c:
        assert_unauthorized(await list_tasks(c, bearer(own_jwks.sign(claims_for(member.id)))), "key", "jwks")
        # Nor does GraphQL turn the outage into an internal error.
        token = own_jwks.sign(claims_for(member.id))
        response = await c.post("/graphql", json={"query": ME_QUERY}, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert error_codes(response.json()) == ["UNAUTHENTICATED"]

        own_jwks.status = 200  # the issuer recovers: the next token triggers a fetch again
        assert (await list_tasks(c, bearer(own_jwks.sign(claims_for(member.id))))).status_code == 200


async def test_unreachable_jwks_endpoint_gives_401(
    tmp_path: Path, database_url: str, engine: AsyncEngine, jwks: FakeJWKS, member: User
) -> None:
    app = create_app(jwks_settings(tmp_path, database_url, f"http://127.0.0.1:{free_port()}/jwks.json"), engine=engine)
    async with http(app) as c:
        assert_unauthorized(await list_tasks(c, bearer(jwks.sign(claims_for(member.id)))), "key", "jwks")


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, b"<html><body>Sign in</body></html>", "text/html"),
        (200, b'{"keys": []}', "application/json"),
        (200, b'{"keys": [{"kty": "nonsense", "kid": "ec-1"}]}', "application/json"),
        (200, b'{"hello": "world"}', "application/json"),
        (200, b"[1, 2, 3]", "application/json"),
        (404, b'{"error": "not found"}', "application/json"),
    ],
    ids=["html", "empty-key-set", "unusable-key", "object-without-keys", "json-array", "404"],
)
async def test_jwks_url_serving_something_else_gives_401(
    tmp_path: Path,
    database_url: str,
    engine: AsyncEngine,
    jwks: FakeJWKS,
    member: User,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    served = StaticHTTP(status, body, content_type)
    try:
        app = create_app(jwks_settings(tmp_path, database_url, served.url), engine=engine)
        async with http(app) as c:
            assert_unauthorized(await list_tasks(c, bearer(jwks.sign(claims_for(member.id)))), "key", "jwks")
        assert served.hits >= 1
    finally:
        served.close()


# ---------------------------------------------------------------------------------------------
# the embedded default's dev signing key


def test_dev_signing_key_is_generated_once_with_mode_0600(tmp_path: Path, database_url: str) -> None:
    settings = dev_settings(tmp_path / "fresh", database_url)
    assert settings.uses_dev_signing_key
    path = tmp_path / "fresh" / "jwt-signing-key.pem"
    assert not path.exists()

    verifier = build_verifier(settings)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert verifier.local_key is not None and verifier.secret is None and verifier.jwks is None

    # A restart (or a second process on the same data dir) keeps the same key.
    content = path.read_bytes()
    again = build_verifier(settings)
    assert again.local_key is not None and again.local_key.kid == verifier.local_key.kid
    assert path.read_bytes() == content


def test_configured_secret_or_jwks_means_no_dev_key(tmp_path: Path, database_url: str, jwks: FakeJWKS) -> None:
    for settings in (
        Settings(data_dir=tmp_path, database_url=database_url, jwt_secret=SECRET, jwks_url=None),
        jwks_settings(tmp_path, database_url, jwks.url),
    ):
        assert build_verifier(settings).local_key is None
    assert not (tmp_path / "jwt-signing-key.pem").exists()


async def test_dev_key_tokens_are_accepted_and_others_rejected(
    tmp_path: Path, database_url: str, engine: AsyncEngine, jwks: FakeJWKS, member: User
) -> None:
    settings = dev_settings(tmp_path, database_url)
    app = create_app(settings, engine=engine)
    key = SigningKey.load_or_create(settings.dev_signing_key_path)
    stranger = SigningKey(ec.generate_private_key(ec.SECP256R1()))
    # The server's own tokens name its issuer and a session it knows (as `fluxopus token` makes one).
    session = await start_token_session(engine, user_id=uuid.UUID(member.id), seconds=600)

    def minted(signing_key: SigningKey | str) -> str:
        return mint_token(
            signing_key,
            user_id=uuid.UUID(member.id),
            email=member.email,
            role=member.role,
            company_id=uuid.UUID(member.company_id),
            ttl=600,
            session_id=session,
            issuer=settings.auth_issuer,
        )

    forged_kid = jwt.encode(claims_for(member.id), stranger.private_key, algorithm="ES256", headers={"kid": key.kid})
    async with http(app) as c:
        response = await list_tasks(c, bearer(minted(key)))
        assert response.status_code == 200, response.text
        graphql = await c.post("/graphql", json={"query": ME_QUERY}, headers=bearer(minted(key)))
        assert graphql.json()["data"]["me"]["company"] == {"name": member.company}, graphql.text

        assert_unauthorized(await list_tasks(c, bearer(minted(stranger))))
        assert_unauthorized(await list_tasks(c, bearer(forged_kid)), "signature")
        assert_unauthorized(await list_tasks(c, bearer(member.token)), "alg")  # HS256: no secret configured
        assert_unauthorized(await list_tasks(c, bearer(jwks.sign(claims_for(member.id)))))  # not our JWKS

    # A new app on the same data dir (a restart) accepts tokens minted before it.
    async with http(create_app(dev_settings(tmp_path, database_url), engine=engine)) as c:
        assert (await list_tasks(c, bearer(minted(key)))).status_code == 200


@pytest.mark.parametrize("kid", [None, "local"])
async def test_dev_key_mode_rejects_rs256_tokens(
    tmp_path: Path, database_url: str, engine: AsyncEngine, member: User, kid: str | None
) -> None:
    """An RS256 token whose kid (absent, or the dev key's) selects the EC dev key: key-type confusion."""
    settings = dev_settings(tmp_path, database_url)
    app = create_app(settings, engine=engine)
    headers = {"kid": SigningKey.load_or_create(settings.dev_signing_key_path).kid} if kid else None
    token = jwt.encode(claims_for(member.id), FOREIGN_RSA, algorithm="RS256", headers=headers)
    async with http(app) as c:
        assert_unauthorized(await list_tasks(c, bearer(token)), "alg", "key", "signature")


# ---------------------------------------------------------------------------------------------
# `fluxopus token`


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir (so one dev signing key) shared by the CLI tests that use the session database."""
    return tmp_path_factory.mktemp("cli-data")


@pytest.fixture
def token_cli(cli_dir: Path, database_url: str) -> Callable[..., Any]:
    async def run(*args: str, **env: str) -> CliResult:
        return await run_cli(cli_env(cli_dir, database_url, **env), cli_dir, "token", *args)

    return run


def printed_token(result: CliResult) -> str:
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # only the token, so `TOKEN=$(fluxopus token ...)` works
    assert JWT_SHAPE.match(lines[0]), lines[0]
    return lines[0]


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.fixture
def cli_app(cli_dir: Path, database_url: str, engine: AsyncEngine) -> FastAPI:
    return create_app(dev_settings(cli_dir, database_url), engine=engine)


async def me(app: FastAPI, token: str) -> dict[str, Any]:
    async with http(app) as c:
        response = await c.post("/graphql", json={"query": ME_QUERY}, headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["me"]
    return result


@pytest.mark.slow
async def test_cli_token_prints_a_supabase_shaped_jwt(
    token_cli: Callable[..., Any], cli_dir: Path, cli_app: FastAPI
) -> None:
    email, company = f"{unique('cli')}@example.com", unique("Cli Co")
    before = int(time.time())
    token = printed_token(await token_cli("--email", email, "--company", company, "--ttl", "7200"))
    after = int(time.time())

    claims = unverified(token)
    uuid.UUID(claims["sub"])
    uuid.UUID(claims["session_id"])
    assert claims["aud"] == "authenticated"
    assert claims["role"] == "authenticated"
    assert claims["email"] == email
    assert isinstance(claims["iat"], int) and before - 5 <= claims["iat"] <= after + 5
    assert claims["exp"] == claims["iat"] + 7200
    assert isinstance(claims["app_metadata"], dict)

    # Signed with the key the embedded default generated in this data dir.
    key_path = cli_dir / "jwt-signing-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = SigningKey.load_or_create(key_path)
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    assert jwt.decode(token, key.public_key, algorithms=["ES256"], audience="authenticated") == claims

    # And accepted by an app on the same data dir, which sees the new user's company.
    async with http(cli_app) as c:
        response = await list_tasks(c, bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == []
    assert await me(cli_app, token) == {
        "id": claims["sub"],
        "email": email,
        "role": "ADMIN",
        "company": {"name": company},
    }


@pytest.mark.slow
async def test_cli_token_reuses_the_user_for_the_same_email(token_cli: Callable[..., Any]) -> None:
    email, company = f"{unique('again')}@example.com", unique("Again Co")
    first = unverified(printed_token(await token_cli("--email", email, "--company", company)))
    second = unverified(printed_token(await token_cli("--email", email.upper())))
    assert first["sub"] == second["sub"]
    assert first["session_id"] != second["session_id"]
    assert second["exp"] == second["iat"] + 3600  # the default lifetime

    # A user has one company: asking for another is refused, not silently ignored.
    moved = await token_cli("--email", email, "--company", unique("Second Co"))
    assert moved.code != 0
    assert moved.stdout == ""
    assert email in moved.stderr


@pytest.mark.slow
async def test_cli_token_roles_first_admin_then_member_unless_told(
    token_cli: Callable[..., Any], cli_app: FastAPI
) -> None:
    company = unique("Roles Co")
    founder = printed_token(await token_cli("--email", f"{unique('founder')}@example.com", "--company", company))
    joined = await asyncio.gather(
        token_cli("--email", f"{unique('joiner')}@example.com", "--company", company),
        token_cli("--email", f"{unique('boss')}@example.com", "--company", company, "--role", "admin"),
    )
    joiner, boss = (printed_token(r) for r in joined)
    roles = [(await me(cli_app, t))["role"] for t in (founder, joiner, boss)]
    assert roles == ["ADMIN", "MEMBER", "ADMIN"]
    assert {(await me(cli_app, t))["company"]["name"] for t in (founder, joiner, boss)} == {company}


@pytest.mark.slow
async def test_cli_token_refuses_bad_input_on_stderr(token_cli: Callable[..., Any], jwks: FakeJWKS) -> None:
    cases = {
        "not an email": (("--email", "not-an-email"), {}, "email"),
        "unknown role": (("--email", f"{unique('r')}@example.com", "--role", "owner"), {}, "role"),
        # Tokens then come from the JWKS issuer; a locally minted one could never verify.
        "only a JWKS url": (("--email", f"{unique('idp')}@example.com"), {"FLUXOPUS_JWKS_URL": jwks.url}, "jwks"),
    }
    results = await asyncio.gather(*(token_cli(*args, **env) for args, env, _ in cases.values()))
    for (name, (_, _, word)), result in zip(cases.items(), results, strict=True):
        assert result.code != 0, name
        assert result.stdout == "", name
        assert word in result.stderr.lower(), (name, result.stderr)


@pytest.mark.slow
async def test_cli_token_signs_hs256_when_a_secret_is_configured(
    token_cli: Callable[..., Any], client: httpx.AsyncClient
) -> None:
    email = f"{unique('hs')}@example.com"
    token = printed_token(await token_cli("--email", email, "--company", unique("Hs Co"), FLUXOPUS_JWT_SECRET=SECRET))
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="authenticated")["email"] == email
    assert (await list_tasks(client, bearer(token))).status_code == 200  # the session app uses that secret


def postgres_processes_for(pgdata: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes started with this data directory."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(pgdata) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.mark.slow
async def test_cli_token_on_the_embedded_database_leaves_no_server_running(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("emb")
    email = f"{unique('solo')}@example.com"
    result = await run_cli(cli_env(data_dir, None), data_dir, "token", "--email", email, "--company", "Solo Co")
    token = printed_token(result)

    key = SigningKey.load_or_create(data_dir / "jwt-signing-key.pem")
    claims = jwt.decode(token, key.public_key, algorithms=["ES256"], audience="authenticated")
    assert claims["email"] == email

    pgdata = data_dir / "pgdata"
    assert (pgdata / "PG_VERSION").is_file()  # the embedded server really was created here
    pid_file = pgdata / "postmaster.pid"
    pid = int(pid_file.read_text().splitlines()[0]) if pid_file.exists() else None
    assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert postgres_processes_for(pgdata) == []


def test_tests_hash_passwords_cheaply_and_servers_do_not() -> None:
    """The suite's cheap argon2 parameters come from its environment only; without it, RFC 9106's."""
    from fluxopus.auth.passwords import hash_password_now

    assert hash_password_now("correct horse battery").startswith("$argon2id$v=19$m=8,t=1,p=1$")
    env = {k: v for k, v in os.environ.items() if k != "FLUXOPUS_INSECURE_FAST_PASSWORD_HASHES"}
    script = "from fluxopus.auth.passwords import hash_password_now as h; print(h('correct horse battery'))"
    printed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert printed.stdout.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), printed.stdout


async def test_a_verified_token_is_trusted_no_longer_than_its_expiry(client: httpx.AsyncClient, member: User) -> None:
    """Tokens are verified once and remembered (the cost of a GET is mostly the signature check
    otherwise); the memory ends with the token: one expired a moment ago, inside the leeway, is
    accepted, and refused once the leeway is over even though it was accepted before."""
    token = mint_token(
        SECRET,
        user_id=uuid.UUID(member.id),
        email=member.email,
        role="member",
        company_id=uuid.UUID(member.company_id),
        ttl=1 - LEEWAY_SECONDS,
    )
    for _ in range(2):
        assert (await list_tasks(client, {"Authorization": f"Bearer {token}"})).status_code == 200
    await asyncio.sleep(1.2)
    assert_unauthorized(await list_tasks(client, {"Authorization": f"Bearer {token}"}), "expired")
