"""The built-in sign-in's signing key given by environment (FLUXOPUS_JWT_PRIVATE_KEY or _FILE), so that
replicas on one database accept each other's tokens; malformed keys refused at startup; the 401 for a
token of a key the server does not know; a rotated-out key (FLUXOPUS_JWT_PREVIOUS_KEYS).

Apps run in-process against the session's PostgreSQL; two apps with separate data dirs stand for two
replicas (tests/test_replicas.py starts real `fluxopus serve` processes).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.auth.jwt import mint_anon_key, mint_token
from fluxopus.auth.keys import SigningKey, key_id, signing_key
from fluxopus.config import Settings
from fluxopus.db.users import start_token_session
from fluxopus.runtime import build_verifier
from tests.utils.builders import SECRET, User, error_codes, make_user, unique
from tests.utils.cli import cli_env, run_cli
from tests.utils.http import bearer

ME_QUERY = "{ me { email company { name } } }"
UNKNOWN = "signed by a key this server does not know"


def private_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


KEY = ec.generate_private_key(ec.SECP256R1())
PEM = private_pem(KEY)


def key_settings(data_dir: Path, database_url: str, **keys: Any) -> Settings:
    """The built-in sign-in (no secret, no JWKS) with the given key settings."""
    return Settings(data_dir=data_dir, database_url=database_url, jwt_secret=None, jwks_url=None, **keys)


async def own_token(engine: AsyncEngine, key: ec.EllipticCurvePrivateKey, user: User, settings: Settings) -> str:
    """A token as the built-in sign-in issues it (issuer, live session), signed with `key`."""
    session = await start_token_session(engine, user_id=uuid.UUID(user.id), seconds=600)
    return mint_token(
        SigningKey(key),
        user_id=uuid.UUID(user.id),
        email=user.email,
        role=user.role,
        company_id=uuid.UUID(user.company_id),
        ttl=600,
        session_id=session,
        issuer=settings.auth_issuer,
    )


async def rest_and_graphql(app: FastAPI, token: str) -> tuple[httpx.Response, dict[str, Any]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        rest = await c.get("/api/tasks", headers=bearer(token))
        graphql = await c.post("/graphql", json={"query": ME_QUERY}, headers=bearer(token))
    assert graphql.status_code == 200, graphql.text
    body: dict[str, Any] = graphql.json()
    return rest, body


@pytest.fixture
async def member(database_url: str) -> User:
    return await make_user(database_url, company=unique("company"), role="admin")


# ---------------------------------------------------------------------------------------------
# loading


@pytest.mark.parametrize(
    "text",
    [
        PEM,
        PEM.replace("\n", "\\n"),  # one line with escapes, as pasted into an env file
        f'"{PEM.strip()}"',  # Docker's --env-file keeps the quotes
        "  " + PEM.replace("\n", "\\r\\n") + "  ",
        KEY.private_bytes(  # SEC1 ("EC PRIVATE KEY"), what `openssl ecparam -genkey` prints
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode(),
    ],
    ids=["pem", "escaped-newlines", "quoted", "crlf-escapes-and-spaces", "sec1"],
)
def test_the_key_from_the_environment(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("FLUXOPUS_JWT_PRIVATE_KEY", text)
    settings = Settings(data_dir=tmp_path, database_url=database_url, jwt_secret=None, jwks_url=None)
    key = signing_key(settings)
    assert key.private_key.private_numbers() == KEY.private_numbers()
    assert key.kid == key_id(KEY.public_key())
    # The data dir's key is neither read nor made.
    assert not (tmp_path / "jwt-signing-key.pem").exists()
    verifier = build_verifier(settings)
    assert verifier.local_key is not None and verifier.local_key.kid == key.kid


def test_the_key_from_a_file_is_the_same_key(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "signing.pem"
    path.write_text(PEM)
    monkeypatch.setenv("FLUXOPUS_JWT_PRIVATE_KEY_FILE", str(path))
    from_file = Settings(data_dir=tmp_path / "a", database_url=database_url, jwt_secret=None, jwks_url=None)
    from_text = key_settings(
        tmp_path / "b", database_url, jwt_private_key=PEM.replace("\n", "\\n"), jwt_private_key_file=None
    )
    # Two replicas with separate data dirs: one kid, one anon key.
    assert signing_key(from_file).kid == signing_key(from_text).kid
    assert mint_anon_key(signing_key(from_file)) == mint_anon_key(signing_key(from_text))
    # Without the setting each data dir has a key of its own: what replicas used to get.
    own = key_settings(tmp_path / "c", database_url, jwt_private_key_file=None)
    assert signing_key(own).kid != signing_key(from_text).kid


ENCRYPTED = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
).decode()


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"jwt_private_key": "not a key"}, ("FLUXOPUS_JWT_PRIVATE_KEY", "not a readable PEM", "openssl ecparam")),
        ({"jwt_private_key": PEM[:120]}, ("FLUXOPUS_JWT_PRIVATE_KEY", "not a readable PEM")),
        ({"jwt_private_key": ENCRYPTED}, ("encrypted",)),
        ({"jwt_private_key": public_pem(KEY)}, ("not a readable PEM private key",)),
        (
            {"jwt_private_key": private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))},
            ("of type RSA", "ES256", "P-256"),
        ),
        ({"jwt_private_key": private_pem(ec.generate_private_key(ec.SECP384R1()))}, ("secp384r1", "ES256")),
        ({"jwt_private_key": private_pem(ed25519.Ed25519PrivateKey.generate())}, ("Ed25519", "ES256")),
        ({"jwt_private_key_file": Path("/nonexistent/key.pem")}, ("FLUXOPUS_JWT_PRIVATE_KEY_FILE", "cannot read")),
        ({"jwt_private_key": PEM, "jwt_private_key_file": Path("/x.pem")}, ("not both",)),
        ({"jwt_private_key": PEM, "jwt_secret": SECRET}, ("FLUXOPUS_JWT_PRIVATE_KEY", "FLUXOPUS_JWT_SECRET")),
        ({"jwt_private_key": PEM, "jwks_url": "http://127.0.0.1:9/jwks"}, ("FLUXOPUS_JWKS_URL",)),
        ({"jwt_previous_keys": "garbage"}, ("FLUXOPUS_JWT_PREVIOUS_KEYS", "no PEM block")),
        ({"jwt_previous_keys": public_pem(ec.generate_private_key(ec.SECP384R1()))}, ("P-256",)),
    ],
    ids=[
        "garbage",
        "truncated",
        "encrypted",
        "public-key",
        "rsa",
        "p384",
        "ed25519",
        "missing-file",
        "both",
        "with-secret",
        "with-jwks",
        "previous-garbage",
        "previous-p384",
    ],
)
def test_a_malformed_or_unsupported_key_is_refused_at_startup(
    tmp_path: Path, database_url: str, keys: dict[str, Any], words: tuple[str, ...]
) -> None:
    base: dict[str, Any] = {"jwt_secret": None, "jwks_url": None}
    with pytest.raises(ValidationError) as raised:
        Settings(data_dir=tmp_path, database_url=database_url, **(base | keys))
    message = str(raised.value)
    for word in words:
        assert word in message, message
    assert "PRIVATE KEY-----" not in message and "input_value" not in message  # no key is echoed back
    assert not (tmp_path / "jwt-signing-key.pem").exists()


# ---------------------------------------------------------------------------------------------
# replicas, and the 401 for another key


async def test_apps_given_one_key_accept_each_others_tokens(
    tmp_path: Path, database_url: str, engine: AsyncEngine, member: User
) -> None:
    one = key_settings(tmp_path / "one", database_url, jwt_private_key=PEM)
    two = key_settings(tmp_path / "two", database_url, jwt_private_key=PEM.replace("\n", "\\n"))
    token = await own_token(engine, KEY, member, one)
    for settings in (one, two):
        rest, graphql = await rest_and_graphql(create_app(settings, engine=engine), token)
        assert rest.status_code == 200, rest.text
        assert graphql["data"]["me"] == {"email": member.email, "company": {"name": member.company}}, graphql
    # Both publish the same JWKS.
    documents = []
    for settings in (one, two):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, engine=engine)), base_url="http://test"
        ) as c:
            documents.append((await c.get("/auth/v1/.well-known/jwks.json")).json())
    assert documents[0] == documents[1]
    [jwk] = documents[0]["keys"]
    assert jwk["kid"] == key_id(KEY.public_key()) == jwt.get_unverified_header(token)["kid"]
    assert jwt.decode(token, jwt.PyJWK.from_dict(jwk).key, algorithms=["ES256"], audience="authenticated")


async def test_a_token_of_another_key_gets_the_unknown_key_401(
    tmp_path: Path, database_url: str, engine: AsyncEngine, member: User
) -> None:
    settings = key_settings(tmp_path, database_url, jwt_private_key=PEM)
    app = create_app(settings, engine=engine)
    other = ec.generate_private_key(ec.SECP256R1())
    rest, graphql = await rest_and_graphql(app, await own_token(engine, other, member, settings))
    assert rest.status_code == 401, rest.text
    # The REST 401 keeps its shape; the message says what is wrong (not the algorithm, which is fine).
    assert UNKNOWN in rest.json()["error"] and key_id(other.public_key()) in rest.json()["error"], rest.text
    assert "algorithm" not in rest.json()["error"]
    assert graphql["data"] is None and error_codes(graphql) == ["UNAUTHENTICATED"], graphql
    assert UNKNOWN in graphql["errors"][0]["message"], graphql

    # Where the algorithm really is the problem, the message says so.
    rest, graphql = await rest_and_graphql(app, member.token)  # HS256, and no secret is configured
    assert rest.status_code == 401 and "algorithm 'HS256' is not accepted" in rest.json()["error"], rest.text
    assert "algorithm 'HS256'" in graphql["errors"][0]["message"], graphql


async def test_a_rotated_out_key_is_still_accepted_when_listed(
    tmp_path: Path, database_url: str, engine: AsyncEngine, member: User
) -> None:
    old = ec.generate_private_key(ec.SECP256R1())
    before = key_settings(tmp_path / "before", database_url, jwt_private_key=private_pem(old))
    token = await own_token(engine, old, member, before)
    forgotten = create_app(key_settings(tmp_path / "a", database_url, jwt_private_key=PEM), engine=engine)
    rest, _ = await rest_and_graphql(forgotten, token)
    assert rest.status_code == 401 and UNKNOWN in rest.json()["error"], rest.text

    for listed in (public_pem(old), private_pem(old).replace("\n", "\\n"), public_pem(KEY) + public_pem(old)):
        settings = key_settings(tmp_path / "b", database_url, jwt_private_key=PEM, jwt_previous_keys=listed)
        app = create_app(settings, engine=engine)
        rest, graphql = await rest_and_graphql(app, token)
        assert rest.status_code == 200, rest.text
        assert graphql["data"]["me"]["email"] == member.email, graphql
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            kids = [k["kid"] for k in (await c.get("/auth/v1/.well-known/jwks.json")).json()["keys"]]
        assert kids == [key_id(KEY.public_key()), key_id(old.public_key())]
        # New tokens are signed with the current key only.
        assert build_verifier(settings).local_key is not None
        assert signing_key(settings).kid == key_id(KEY.public_key())


# ---------------------------------------------------------------------------------------------
# the CLI


@pytest.mark.slow
async def test_keygen_makes_a_key_the_settings_take_and_a_bad_one_stops_the_cli(tmp_path: Path) -> None:
    env = cli_env(tmp_path, None)
    first, second = await run_cli(env, tmp_path, "keygen"), await run_cli(env, tmp_path, "keygen")
    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    assert first.stdout.startswith("-----BEGIN PRIVATE KEY-----\n") and first.stdout != second.stdout
    # What it prints, given to two replicas as an env var: one anon key (no database needed).
    anon = [await run_cli({**env, "FLUXOPUS_JWT_PRIVATE_KEY": first.stdout}, tmp_path, "anon-key") for _ in (1, 2)]
    assert anon[0].code == 0 and anon[0].stdout == anon[1].stdout and anon[0].stdout.count(".") == 2, anon
    assert not (tmp_path / "jwt-signing-key.pem").exists()

    rsa_pem = private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    refused = await run_cli({**env, "FLUXOPUS_JWT_PRIVATE_KEY": rsa_pem}, tmp_path, "anon-key")
    assert refused.code == 2 and refused.stdout == "", refused
    assert "FLUXOPUS_JWT_PRIVATE_KEY" in refused.stderr and "ES256" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and "PRIVATE KEY-----" not in refused.stderr
