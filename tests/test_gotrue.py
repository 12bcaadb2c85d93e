"""The built-in, Supabase-compatible sign-in at /auth/v1: shapes, sessions, refresh rotation, limits."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.auth.jwt import mint_anon_key
from fluxopus.auth.keys import SigningKey
from fluxopus.config import Settings
from tests.utils.builders import Company, unique
from tests.utils.http import bearer

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def auth_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The self-hosted default: no external secret or JWKS, so the server signs in users itself."""
    data_dir = tmp_path_factory.mktemp("gotrue")
    # Every client here signs up from one address: its per-address limit is tested on its own
    # (tests/security/test_sign_in.py).
    return settings.model_copy(
        update={"jwt_secret": None, "jwks_url": None, "data_dir": data_dir, "signups_per_address": 100_000}
    )


@pytest.fixture(scope="session")
def auth_app(auth_settings: Settings, engine: AsyncEngine) -> FastAPI:
    return create_app(auth_settings, engine=engine)


def client_for(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def auth(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(auth_app) as c:
        yield c


def email() -> str:
    return f"{unique('person')}@example.com"


async def sign_up(auth: httpx.AsyncClient, address: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"email": address or email(), "password": PASSWORD, **extra}
    response = await auth.post("/auth/v1/signup", json=body, headers={"apikey": "anything"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def sign_in(auth: httpx.AsyncClient, address: str, password: str = PASSWORD) -> httpx.Response:
    return await auth.post(
        "/auth/v1/token", params={"grant_type": "password"}, json={"email": address, "password": password}
    )


async def refresh(auth: httpx.AsyncClient, token: str) -> httpx.Response:
    return await auth.post("/auth/v1/token", params={"grant_type": "refresh_token"}, json={"refresh_token": token})


def assert_auth_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["error_code"] == code and body["msg"], body
    assert set(body) == {"code", "error_code", "msg"}
    message: str = body["msg"]
    return message


async def owner_rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


# --- sign-up -------------------------------------------------------------------------------------


async def test_sign_up_returns_a_session_that_opens_the_api(auth: httpx.AsyncClient) -> None:
    address = email()
    session = await sign_up(auth, address)
    assert session["token_type"] == "bearer" and session["expires_in"] == 3600
    assert abs(session["expires_at"] - (time.time() + 3600)) < 60
    user = session["user"]
    assert user["email"] == address and user["aud"] == "authenticated" and user["role"] == "authenticated"
    assert user["email_confirmed_at"] and user["app_metadata"]["provider"] == "email"
    uuid.UUID(user["id"])

    tasks = await auth.get("/api/tasks", headers=bearer(session))
    assert tasks.status_code == 200 and tasks.json() == []
    me = await auth.post("/graphql", json={"query": "{ me { email role company { name } } }"}, headers=bearer(session))
    local = address.split("@")[0]
    assert me.json()["data"]["me"] == {"email": address, "role": "ADMIN", "company": {"name": f"{local}'s company"}}


async def test_access_tokens_are_es256_with_the_published_key(auth: httpx.AsyncClient, auth_settings: Settings) -> None:
    session = await sign_up(auth)
    jwks = (await auth.get("/auth/v1/.well-known/jwks.json")).json()
    [key] = jwks["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and "d" not in key
    header = jwt.get_unverified_header(session["access_token"])
    assert header["alg"] == "ES256" and header["kid"] == key["kid"]
    claims = jwt.decode(
        session["access_token"], jwt.PyJWK.from_dict(key).key, algorithms=["ES256"], audience="authenticated"
    )
    assert claims["sub"] == session["user"]["id"] and claims["role"] == "authenticated"
    assert claims["exp"] - claims["iat"] == 3600 and claims["session_id"]
    assert claims["iss"] == auth_settings.auth_issuer == "fluxopus"  # stable whatever the host and port
    # The same key as `fluxopus token` uses: the data dir's.
    assert key["kid"] == SigningKey.load_or_create(auth_settings.dev_signing_key_path).kid


async def test_a_company_name_can_be_chosen_and_a_taken_one_is_numbered(auth: httpx.AsyncClient) -> None:
    name = unique("Initech")
    first = await sign_up(auth, data={"company": name})
    second = await sign_up(auth, data={"company": name})
    query = {"query": "{ me { company { name } } }"}
    names = [
        (await auth.post("/graphql", json=query, headers=bearer(s))).json()["data"]["me"]["company"]["name"]
        for s in (first, second)
    ]
    assert names == [name, f"{name} (2)"]


async def test_a_company_name_is_trimmed_and_a_long_taken_one_keeps_its_number(auth: httpx.AsyncClient) -> None:
    """db/users' one naming rule: trimmed, at most 200 characters, numbered when taken (within the
    200), and nothing asked for is "<local part>'s company"."""
    long = unique("Globex") + "x" * 200
    blank = email()
    sessions = [
        await sign_up(auth, data={"company": f"  {long}  "}),
        await sign_up(auth, data={"company": long}),
        await sign_up(auth, blank, data={"company": "   "}),
    ]
    query = {"query": "{ me { company { name } } }"}
    names = [
        (await auth.post("/graphql", json=query, headers=bearer(s))).json()["data"]["me"]["company"]["name"]
        for s in sessions
    ]
    assert names == [long[:200], long[:196] + " (2)", f"{blank.split('@')[0]}'s company"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, 400, "validation_failed"),
        ({"email": "x@example.com"}, 400, "validation_failed"),
        ({"password": PASSWORD}, 400, "validation_failed"),
        ({"email": "weak@example.com", "password": "short"}, 422, "weak_password"),
        ({"email": "x@example.com", "password": PASSWORD, "data": "nope"}, 400, "validation_failed"),
        ({"email": ["x@example.com"], "password": PASSWORD}, 400, "validation_failed"),
    ],
)
async def test_bad_sign_ups_are_refused_and_create_nothing(
    auth: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any], status: int, code: str
) -> None:
    before = await owner_rows(engine, "select count(*) as n from users")
    assert_auth_error(await auth.post("/auth/v1/signup", json=body), status, code)
    assert await owner_rows(engine, "select count(*) as n from users") == before


async def test_malformed_json_is_refused(auth: httpx.AsyncClient) -> None:
    response = await auth.post("/auth/v1/signup", content=b"{nope", headers={"Content-Type": "application/json"})
    assert_auth_error(response, 400, "bad_json")


async def test_an_email_signs_up_once(auth: httpx.AsyncClient, acme: Company) -> None:
    address = email()
    await sign_up(auth, address)
    again = await auth.post("/auth/v1/signup", json={"email": address.upper(), "password": PASSWORD + "!"})
    assert_auth_error(again, 422, "user_already_exists")
    # Users made by `fluxopus token` (no password) cannot be claimed by signing up either.
    taken = await auth.post("/auth/v1/signup", json={"email": acme.alice.email, "password": PASSWORD})
    assert_auth_error(taken, 422, "user_already_exists")


async def test_a_sign_up_never_takes_up_an_invitation(
    auth: httpx.AsyncClient, client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    """Whoever signs up first as an invited address used to join that company: now a sign-up makes the
    user a company of their own, and only the invitation's link joins the inviting one
    (tests/security/test_invitations.py)."""
    address = email()
    invited = await client.post(
        "/graphql",
        json={"query": "mutation($e: String!) { inviteMember(email: $e) { id } }", "variables": {"e": address}},
        headers=acme.admin.headers,
    )
    assert "errors" not in invited.json(), invited.text
    session = await sign_up(auth, address)
    me = await auth.post("/graphql", json={"query": "{ me { role company { name } } }"}, headers=bearer(session))
    assert me.json()["data"]["me"]["role"] == "ADMIN"
    assert me.json()["data"]["me"]["company"]["name"] != acme.name
    [invitation] = await owner_rows(
        engine, "select accepted_at from invitations where lower(email) = lower(:e)", e=address
    )
    assert invitation["accepted_at"] is None


# --- sign-in -------------------------------------------------------------------------------------


async def test_sign_in_with_the_right_password(auth: httpx.AsyncClient, engine: AsyncEngine) -> None:
    address = email()
    first = await sign_up(auth, address)
    response = await sign_in(auth, address.upper())
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["user"]["id"] == first["user"]["id"] and session["refresh_token"] != first["refresh_token"]
    assert session["user"]["last_sign_in_at"] is not None
    sessions = await owner_rows(engine, "select id from auth_sessions where user_id = :u", u=first["user"]["id"])
    assert len(sessions) == 2


async def test_a_wrong_password_reveals_nothing_about_the_email(auth: httpx.AsyncClient) -> None:
    address = email()
    await sign_up(auth, address)
    wrong = await sign_in(auth, address, "not the password")
    unknown = await sign_in(auth, email(), "not the password")
    assert_auth_error(wrong, 400, "invalid_credentials")
    assert wrong.json() == unknown.json() and wrong.status_code == unknown.status_code
    assert_auth_error(await sign_in(auth, email().replace("@", "")), 400, "invalid_credentials")


async def test_repeated_failures_for_one_email_are_rate_limited(auth: httpx.AsyncClient) -> None:
    address = email()
    await sign_up(auth, address)
    for _ in range(5):
        assert_auth_error(await sign_in(auth, address, "guess"), 400, "invalid_credentials")
    limited = await sign_in(auth, address)  # even the right password now waits
    assert_auth_error(limited, 429, "over_request_rate_limit")
    assert limited.headers["Retry-After"] == "900"
    other = email()
    await sign_up(auth, other)
    assert (await sign_in(auth, other)).status_code == 200  # other emails are not affected


async def test_repeated_failures_from_one_address_are_rate_limited(auth_app: FastAPI) -> None:
    async with client_for(auth_app, "203.0.113.7") as attacker, client_for(auth_app, "198.51.100.9") as someone:
        for _ in range(30):
            assert_auth_error(await sign_in(attacker, email(), "guess"), 400, "invalid_credentials")
        assert_auth_error(await sign_in(attacker, email(), "guess"), 429, "over_request_rate_limit")
        address = email()
        await sign_up(someone, address)
        assert (await sign_in(someone, address)).status_code == 200


async def test_a_success_clears_the_email_s_failures(auth: httpx.AsyncClient) -> None:
    address = email()
    await sign_up(auth, address)
    for _ in range(4):
        await sign_in(auth, address, "guess")
    assert (await sign_in(auth, address)).status_code == 200
    for _ in range(4):
        assert_auth_error(await sign_in(auth, address, "guess"), 400, "invalid_credentials")


# --- refresh, user, sign-out ---------------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_token_ends_the_session(auth: httpx.AsyncClient) -> None:
    session = await sign_up(auth)
    first = await refresh(auth, session["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != session["refresh_token"] and rotated["user"]["id"] == session["user"]["id"]
    assert (await auth.get("/api/tasks", headers=bearer(rotated))).status_code == 200

    # The spent token again: someone copied it. The whole session ends, the newest token with it.
    assert_auth_error(await refresh(auth, session["refresh_token"]), 400, "refresh_token_already_used")
    assert_auth_error(await refresh(auth, rotated["refresh_token"]), 400, "refresh_token_not_found")
    assert_auth_error(await auth.get("/auth/v1/user", headers=bearer(rotated)), 403, "session_not_found")


async def test_an_unknown_refresh_token_is_refused(auth: httpx.AsyncClient) -> None:
    assert_auth_error(await refresh(auth, "no-such-token"), 400, "refresh_token_not_found")
    bad_grant = await auth.post("/auth/v1/token", params={"grant_type": "magic"}, json={})
    assert_auth_error(bad_grant, 400, "validation_failed")


async def test_get_user(auth: httpx.AsyncClient) -> None:
    session = await sign_up(auth)
    response = await auth.get("/auth/v1/user", headers=bearer(session))
    assert response.status_code == 200 and response.json()["id"] == session["user"]["id"]
    assert_auth_error(await auth.get("/auth/v1/user"), 401, "no_authorization")
    assert_auth_error(await auth.get("/auth/v1/user", headers={"Authorization": "Bearer nope"}), 403, "bad_jwt")


async def test_sign_out_ends_refresh_and_scopes_choose_the_sessions(auth: httpx.AsyncClient) -> None:
    address = email()
    phone = await sign_up(auth, address)
    laptop = (await sign_in(auth, address)).json()
    tablet = (await sign_in(auth, address)).json()

    local = await auth.post("/auth/v1/logout", params={"scope": "local"}, headers=bearer(phone))
    assert local.status_code == 204
    assert_auth_error(await refresh(auth, phone["refresh_token"]), 400, "refresh_token_not_found")
    laptop = (await refresh(auth, laptop["refresh_token"])).json()  # other sessions live on

    others = await auth.post("/auth/v1/logout", params={"scope": "others"}, headers=bearer(laptop))
    assert others.status_code == 204
    assert_auth_error(await refresh(auth, tablet["refresh_token"]), 400, "refresh_token_not_found")
    laptop = (await refresh(auth, laptop["refresh_token"])).json()

    everywhere = await auth.post("/auth/v1/logout", headers=bearer(laptop))  # scope=global by default
    assert everywhere.status_code == 204
    assert_auth_error(await refresh(auth, laptop["refresh_token"]), 400, "refresh_token_not_found")
    assert_auth_error(await auth.post("/auth/v1/logout"), 401, "no_authorization")
    bad_scope = await auth.post("/auth/v1/logout", params={"scope": "galaxy"}, headers=bearer(laptop))
    assert_auth_error(bad_scope, 400, "validation_failed")


async def test_an_expired_access_token_is_401_on_the_api(auth: httpx.AsyncClient, auth_settings: Settings) -> None:
    session = await sign_up(auth)
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    claims |= {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}
    key = SigningKey.load_or_create(auth_settings.dev_signing_key_path)
    expired = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})
    response = await auth.get("/api/tasks", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json() == {"error": "Token has expired", "code": "unauthorized"}


async def test_settings_describe_email_sign_in(auth: httpx.AsyncClient) -> None:
    body = (await auth.get("/auth/v1/settings")).json()
    assert body["external"]["email"] is True and body["disable_signup"] is False and body["mailer_autoconfirm"]


async def test_not_served_when_an_external_identity_provider_signs_tokens(client: httpx.AsyncClient) -> None:
    """The `client` app verifies tokens with FLUXOPUS_JWT_SECRET / JWKS: sign-in happens there."""
    assert (await client.post("/auth/v1/signup", json={"email": email(), "password": PASSWORD})).status_code == 404
    assert (await client.get("/auth/v1/settings")).status_code == 404


async def test_the_anon_key_is_stable_public_and_opens_nothing(
    auth: httpx.AsyncClient, auth_settings: Settings
) -> None:
    key = SigningKey.load_or_create(auth_settings.dev_signing_key_path)
    anon = mint_anon_key(key)
    assert anon == mint_anon_key(key)  # the banner, `fluxopus anon-key` and the demo print the same one
    [jwk] = (await auth.get("/auth/v1/.well-known/jwks.json")).json()["keys"]
    assert jwt.decode(anon, jwt.PyJWK.from_dict(jwk).key, algorithms=["ES256"])["role"] == "anon"
    response = await auth.get("/api/tasks", headers={"Authorization": f"Bearer {anon}"})
    assert response.status_code == 401
    # Sent as Supabase clients send it, it neither helps nor hurts a sign-up.
    session = await auth.post(
        "/auth/v1/signup",
        json={"email": email(), "password": PASSWORD},
        headers={"apikey": anon, "Authorization": f"Bearer {anon}"},
    )
    assert session.status_code == 200 and session.json()["access_token"]


async def test_attempts_older_than_a_day_are_pruned(auth: httpx.AsyncClient, engine: AsyncEngine) -> None:
    address = email()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "insert into sign_in_attempts (email, address, succeeded, at)"
                " select :e, 'old', false, now() - interval '2 days' from generate_series(1, 10)"
            ),
            {"e": address},
        )
    assert_auth_error(await sign_in(auth, address, "guess"), 400, "invalid_credentials")  # not 429: too old
    rows = await owner_rows(engine, "select address from sign_in_attempts where email = :e", e=address)
    assert [r["address"] for r in rows] == ["127.0.0.1"]


async def test_spent_refresh_tokens_are_kept_a_week(auth: httpx.AsyncClient, engine: AsyncEngine) -> None:
    session = await sign_up(auth)
    first = (await refresh(auth, session["refresh_token"])).json()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "update refresh_tokens set used_at = now() - interval '8 days', created_at = now() - interval '9 days'"
                " where session_id = (select session_id from refresh_tokens r join auth_sessions s"
                "                     on s.id = r.session_id where s.user_id = :u limit 1) and used_at is not null"
            ),
            {"u": session["user"]["id"]},
        )
    second = (await refresh(auth, first["refresh_token"])).json()
    rows = await owner_rows(
        engine,
        "select r.used_at is not null as used from refresh_tokens r join auth_sessions s on s.id = r.session_id"
        " where s.user_id = :u",
        u=session["user"]["id"],
    )
    assert sorted(r["used"] for r in rows) == [False, True]  # the week-old spent token is gone
    assert_auth_error(await refresh(auth, session["refresh_token"]), 400, "refresh_token_not_found")
    assert (await refresh(auth, second["refresh_token"])).status_code == 200  # the session lives on
