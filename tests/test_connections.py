"""Connections over REST: the whole OAuth flow against a fake provider on 127.0.0.1, and its failures."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.config import Settings
from fluxopus.db.engine import create_engine
from fluxopus.db.migrate import migrate
from fluxopus.errors import Conflict, NotFound
from fluxopus.integrations.crypto import connection_context
from fluxopus.resolvers import connections
from tests.utils.builders import Company, User, make_company
from tests.utils.cli import cli_env, run_cli
from tests.utils.connections import APP_URL, JSON, World, expire, new_key, owner_rows, pending_states, stored, world
from tests.utils.fake_oauth import FakeOAuth, s256
from tests.utils.http import assert_error


@pytest.fixture
async def w(settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth) -> AsyncIterator[World]:
    async with world(settings, engine, fake_oauth) as w:
        yield w


# --- the whole flow --------------------------------------------------------------------------


async def test_authorize_callback_status_refresh_and_disconnect(w: World, acme: Company, engine: AsyncEngine) -> None:
    alice = acme.alice
    w.provider.expires_in = 3600

    # Authorize: by default a 302 to the provider, with PKCE S256 and a state.
    response = await w.client.get("/api/connections/authorize/fake", headers=alice.headers)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert response.headers["location"].startswith(w.fake.url + "/authorize?")
    assert query["client_id"] == [w.provider.client_id]
    assert query["redirect_uri"] == ["http://test/api/connections/callback/fake"]
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["openid email"]
    assert len(query["state"][0]) >= 32 and len(query["code_challenge"][0]) == 43

    outcome = await w.connect(alice)
    assert outcome == {"_to": APP_URL + "/", "connection": "fake", "status": "connected"}
    [row] = await stored(engine, alice)
    assert row["account"] == w.provider.account["email"] and row["account_id"] == w.provider.account["sub"]
    assert row["company_id"].hex == acme.alice.company_id.replace("-", "")

    [listed] = await w.connections(alice)
    assert listed["provider"] == "fake" and listed["status"] == "connected" and listed["id"] == str(row["id"])
    assert listed["account"] == w.provider.account["email"] and listed["scopes"] == ["openid", "email"]
    assert set(listed) == {
        "id", "user_id", "provider", "status", "account", "scopes", "expires_at", "error", "created_at", "updated_at",
    }  # fmt: skip

    status = await w.status(alice)
    assert status["connected"] is True and status["status"] == "connected"
    assert status["connection_id"] == listed["id"] and status["account"] == listed["account"]
    assert w.provider.refreshes == 0  # not expired: no refresh

    # The access token expires: the next status call refreshes it first.
    await expire(engine, row["id"])
    status = await w.status(alice)
    assert status["status"] == "connected" and w.provider.refreshes == 1
    expires_at = dt.datetime.fromisoformat(status["expires_at"])
    assert expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)
    [after] = await stored(engine, alice)
    assert after["access_token"] != row["access_token"] and after["refresh_token"] != row["refresh_token"]

    # Disconnect: revoked at the provider, then deleted.
    response = await w.client.delete(f"/api/connections/{listed['id']}", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": listed["id"], "deleted": True, "revoked": True, "revoke_error": None}
    current_refresh = w.provider.issued[-1]
    assert current_refresh.startswith("rt-") and current_refresh in w.provider.revoked
    assert await stored(engine, alice) == [] and await w.connections(alice) == []
    status = await w.status(alice)
    assert status == {
        "provider": "fake", "connected": False, "status": None, "connection_id": None, "account": None,
        "scopes": [], "expires_at": None, "error": None,
    }  # fmt: skip
    # The revoked grant is dead at the provider: its access token no longer works.
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{w.fake.url}/userinfo", headers={"Authorization": f"Bearer {w.provider.issued[-2]}"})
    assert answer.status_code == 401


async def test_authorize_answers_json_with_the_url(w: World, acme: Company) -> None:
    url = await w.authorize(acme.alice)
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == [w.provider.client_id] and "code_challenge" in query


async def test_a_provider_issuing_short_lived_tokens_is_refreshed_when_they_expire(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    w.provider.expires_in = 30  # inside the one-minute margin: already due for a refresh
    await w.connect(acme.alice)
    first = await w.status(acme.alice)
    assert first["status"] == "connected" and w.provider.refreshes == 1


async def test_reconnecting_replaces_the_tokens_of_the_same_connection(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    await w.connect(acme.alice)
    [before] = await stored(engine, acme.alice)
    assert (await w.connect(acme.alice))["status"] == "connected"
    [after] = await stored(engine, acme.alice)
    assert after["id"] == before["id"] and after["access_token"] != before["access_token"]


async def test_two_concurrent_status_calls_refresh_once(w: World, acme: Company, engine: AsyncEngine) -> None:
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    await expire(engine, row["id"])
    w.provider.refresh_delay = 0.5  # both calls arrive while the first refresh is in flight
    first, second = await asyncio.gather(w.status(acme.alice), w.status(acme.alice))
    assert first["status"] == second["status"] == "connected"
    assert w.provider.refreshes == 1
    # The refresh token rotated once; the stored one is the newest, and it works.
    await expire(engine, row["id"])
    w.provider.refresh_delay = 0
    assert (await w.status(acme.alice))["status"] == "connected" and w.provider.refreshes == 2


# --- the callback trusts only its state ------------------------------------------------------


async def test_a_state_is_single_use(w: World, acme: Company, engine: AsyncEngine) -> None:
    location = await w.consent(await w.authorize(acme.alice))
    assert (await w.callback(location))["status"] == "connected"
    replay = await w.callback(location)
    assert replay == {"_to": APP_URL + "/", "connection": "fake", "status": "error", "reason": "invalid_state"}
    assert len(await stored(engine, acme.alice)) == 1


async def test_an_expired_state_stores_nothing(w: World, acme: Company, engine: AsyncEngine) -> None:
    location = await w.consent(await w.authorize(acme.alice))
    state = parse_qs(urlsplit(location).query)["state"][0]
    async with engine.begin() as conn:
        await conn.execute(
            text("update oauth_states set expires_at = now() - interval '1 second' where state_hash = :h"),
            {"h": hashlib.sha256(state.encode()).hexdigest()},
        )
    outcome = await w.callback(location)
    assert outcome["status"] == "error" and outcome["reason"] == "expired_state"
    assert await stored(engine, acme.alice) == []
    assert w.provider.token_requests == []  # the code was never exchanged


async def test_unknown_or_missing_state_stores_nothing(w: World, acme: Company, engine: AsyncEngine) -> None:
    location = await w.consent(await w.authorize(acme.alice))
    code = parse_qs(urlsplit(location).query)["code"][0]
    for query in ({"code": code, "state": "forged"}, {"code": code}, {}):
        outcome = await w.callback(str(httpx.URL("http://test/api/connections/callback/fake", params=query)))
        assert outcome["status"] == "error" and outcome["reason"] == "invalid_state", query
    assert await stored(engine, acme.alice) == [] and w.provider.token_requests == []


async def test_the_connection_goes_to_the_user_who_started_the_flow(
    w: World, acme: Company, globex: Company, engine: AsyncEngine
) -> None:
    """Alice's state connects Alice's account, even when the callback arrives with Bob's (or another
    company's) bearer token: the callback ignores bearer tokens."""
    location = await w.consent(await w.authorize(acme.alice))
    assert (await w.callback(location, headers=globex.bob.headers))["status"] == "connected"
    assert len(await stored(engine, acme.alice)) == 1
    assert await stored(engine, globex.bob) == [] and await w.connections(globex.bob) == []
    assert (await w.status(globex.bob))["connected"] is False
    assert (await w.status(acme.alice))["connected"] is True


async def test_a_state_of_another_provider_is_refused(w: World, acme: Company, engine: AsyncEngine) -> None:
    location = await w.consent(await w.authorize(acme.alice))
    elsewhere = location.replace("/callback/fake?", "/callback/github?")
    response = await w.client.get(elsewhere)
    assert_error(response, 404)  # github is not configured here
    assert (await w.callback(location))["status"] == "connected"  # the 404 did not spend the state


async def test_pkce_mismatch_fails_and_stores_nothing(w: World, acme: Company, engine: AsyncEngine) -> None:
    """A code injected into another flow of the same user (another state, so another verifier)."""
    victim_flow = await w.consent(await w.authorize(acme.alice))
    other_flow = await w.consent(await w.authorize(acme.alice))
    code = parse_qs(urlsplit(victim_flow).query)["code"][0]
    state = parse_qs(urlsplit(other_flow).query)["state"][0]
    crossed = str(httpx.URL("http://test/api/connections/callback/fake", params={"code": code, "state": state}))
    outcome = await w.callback(crossed)
    assert outcome["status"] == "error" and outcome["reason"] == "invalid_grant"
    assert await stored(engine, acme.alice) == []
    [exchange] = w.provider.token_requests
    assert s256(exchange["code_verifier"]) != w.provider.authorize_requests[0]["code_challenge"]


async def test_the_user_refusing_consent_stores_nothing(w: World, acme: Company, engine: AsyncEngine) -> None:
    w.provider.deny = True
    outcome = await w.connect(acme.alice)
    assert outcome == {"_to": APP_URL + "/", "connection": "fake", "status": "error", "reason": "access_denied"}
    assert await stored(engine, acme.alice) == [] and w.provider.token_requests == []


async def test_a_token_endpoint_failure_stores_nothing(w: World, acme: Company, engine: AsyncEngine) -> None:
    w.provider.token_status = 500
    outcome = await w.connect(acme.alice)
    assert outcome["status"] == "error" and outcome["reason"] == "provider_error"
    assert await stored(engine, acme.alice) == []
    assert await pending_states(engine, acme.alice) == 0  # the state was spent all the same


async def test_an_odd_provider_error_code_is_not_echoed(w: World, acme: Company) -> None:
    location = await w.consent(await w.authorize(acme.alice))
    state = parse_qs(urlsplit(location).query)["state"][0]
    url = httpx.URL("http://test/api/connections/callback/fake", params={"state": state, "error": "<script>x"})
    outcome = await w.callback(str(url))
    assert outcome["status"] == "error" and outcome["reason"] == "provider_error"


# --- refresh failures ------------------------------------------------------------------------


async def test_invalid_grant_on_refresh_marks_the_connection_revoked(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    await expire(engine, row["id"])
    w.provider.refresh_error = "invalid_grant"
    status = await w.status(acme.alice)
    assert status["connected"] is False and status["status"] == "revoked"
    assert "invalid_grant" in status["error"]
    [listed] = await w.connections(acme.alice)
    assert listed["status"] == "revoked"
    # Revoked is final: no further refresh attempts until the user reconnects.
    w.provider.refresh_error = None
    assert (await w.status(acme.alice))["status"] == "revoked" and w.provider.refreshes == 0
    assert (await w.connect(acme.alice))["status"] == "connected"
    assert (await w.status(acme.alice))["status"] == "connected"


async def test_a_provider_outage_during_refresh_is_an_error_retried_next_time(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    await expire(engine, row["id"])
    w.provider.token_status = 503
    status = await w.status(acme.alice)
    assert status["status"] == "error" and "HTTP 503" in status["error"] and status["connected"] is False
    w.provider.token_status = None
    status = await w.status(acme.alice)
    assert status["status"] == "connected" and status["error"] is None and w.provider.refreshes == 1


async def test_an_expired_token_without_refresh_token_is_expired(w: World, acme: Company, engine: AsyncEngine) -> None:
    w.provider.issue_refresh = False
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    assert row["refresh_token"] is None
    await expire(engine, row["id"])
    status = await w.status(acme.alice)
    assert status["status"] == "expired" and status["connected"] is False
    assert (await w.connections(acme.alice))[0]["status"] == "expired"


# --- disconnect ------------------------------------------------------------------------------


async def test_a_failed_revocation_still_deletes_and_says_so(w: World, acme: Company, engine: AsyncEngine) -> None:
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    w.provider.revoke_status = 503
    response = await w.client.delete(f"/api/connections/{row['id']}", headers=acme.alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["deleted"] is True and body["revoked"] is False and "HTTP 503" in body["revoke_error"]
    assert await stored(engine, acme.alice) == []


async def test_only_the_owner_disconnects(w: World, acme: Company, globex: Company, engine: AsyncEngine) -> None:
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    url = f"/api/connections/{row['id']}"
    assert_error(await w.client.delete(url, headers=acme.bob.headers), 404)  # a colleague cannot see it
    assert_error(await w.client.delete(url, headers=globex.admin.headers), 404)  # another company
    assert_error(await w.client.delete(url, headers=acme.admin.headers), 403)  # an admin sees, may not
    assert_error(await w.client.delete(url), 401)
    assert_error(await w.client.delete("/api/connections/not-a-uuid", headers=acme.alice.headers), 400)
    assert_error(
        await w.client.delete("/api/connections/00000000-0000-4000-8000-000000000000", headers=acme.alice.headers),
        404,
    )
    assert len(await stored(engine, acme.alice)) == 1 and w.provider.revoked == set()


async def test_admins_list_the_company_connections_members_their_own(w: World, acme: Company, globex: Company) -> None:
    await w.connect(acme.alice)
    await w.connect(acme.bob)
    await w.connect(globex.alice)
    ids = {acme.alice.id, acme.bob.id}
    assert {c["user_id"] for c in await w.connections(acme.admin)} >= ids
    assert {c["user_id"] for c in await w.connections(acme.admin)}.isdisjoint({globex.alice.id})
    assert [c["user_id"] for c in await w.connections(acme.alice)] == [acme.alice.id]
    assert [c["user_id"] for c in await w.connections(globex.alice)] == [globex.alice.id]
    # Status is about the caller's own connection, admins included.
    assert (await w.status(acme.admin))["connected"] is False


# --- input and errors ------------------------------------------------------------------------

EVIL_REDIRECTS = [
    "https://evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "https://app.example.com.evil.example/",
    "https://app.example.com@evil.example/",
    "https://user:pass@app.example.com/",
    "http://app.example.com/settings",  # scheme downgrade
    "https://app.example.com:8443/",
    "javascript:alert(1)",
    "data:text/html,hi",
    "/settings\r\nLocation: https://evil.example",
    "evil.example",
]


@pytest.mark.parametrize("redirect_to", EVIL_REDIRECTS)
async def test_redirect_to_must_stay_on_the_app_origin(
    w: World, acme: Company, engine: AsyncEngine, redirect_to: str
) -> None:
    before = await pending_states(engine, acme.alice)
    response = await w.client.get(
        "/api/connections/authorize/fake", params={"redirect_to": redirect_to}, headers=acme.alice.headers
    )
    message = assert_error(response, 400)
    assert "redirect_to" in message
    assert await pending_states(engine, acme.alice) == before


async def test_redirect_to_on_the_app_origin_is_where_the_callback_ends(w: World, acme: Company) -> None:
    outcome = await w.connect(acme.alice, redirect_to="/settings/connections?tab=tools")
    assert outcome == {
        "_to": APP_URL + "/settings/connections", "tab": "tools", "connection": "fake", "status": "connected",
    }  # fmt: skip
    outcome = await w.connect(acme.alice, redirect_to=APP_URL + "/done")
    assert outcome["_to"] == APP_URL + "/done" and outcome["status"] == "connected"
    w.provider.deny = True
    outcome = await w.connect(acme.alice, redirect_to="/back")
    assert outcome["_to"] == APP_URL + "/back" and outcome["status"] == "error"


async def test_unknown_or_unconfigured_providers_are_404(w: World, acme: Company) -> None:
    headers = acme.alice.headers | JSON
    for path in (
        "/api/connections/authorize/nope",
        "/api/connections/status/nope",
        "/api/connections/callback/nope?code=x&state=y",
        "/api/connections/authorize/NOPE",
        "/api/connections/status/" + "x" * 300,
    ):
        assert_error(await w.client.get(path, headers=headers), 404)
    message = assert_error(await w.client.get("/api/connections/authorize/github", headers=headers), 404)
    assert "FLUXOPUS_OAUTH_GITHUB_CLIENT_ID" in message


async def test_every_endpoint_but_the_callback_needs_a_token(w: World) -> None:
    for path in ("/api/connections", "/api/connections/authorize/fake", "/api/connections/status/fake"):
        assert_error(await w.client.get(path), 401)


async def test_a_user_without_a_company_cannot_connect(w: World, database_url: str) -> None:
    from fluxopus.auth.jwt import mint_token
    from tests.utils.builders import SECRET

    token = mint_token(
        SECRET, user_id=uuid.uuid4(), email="nobody@example.com", role="member", company_id=uuid.uuid4(), ttl=600
    )
    response = await w.client.get("/api/connections/authorize/fake", headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 403)


async def test_a_discovery_failure_is_503(settings: Settings, engine: AsyncEngine, acme: Company) -> None:
    async with world(settings, engine, _unreachable()) as w:
        response = await w.client.get("/api/connections/authorize/fake", headers=acme.alice.headers)
        message = assert_error(response, 503)
        assert "OpenID configuration" in message


def _unreachable() -> FakeOAuth:
    """A fake whose server is already gone: its URL refuses connections."""
    fake = FakeOAuth()
    fake.close()
    return fake


# --- tokens at rest and in use ---------------------------------------------------------------


async def _database_text(engine: AsyncEngine) -> str:
    """Every row of every table of ours, as PostgreSQL prints it (bytea as hex)."""
    tables = await owner_rows(engine, "select tablename from pg_tables where schemaname = 'public'")
    parts = []
    for table in tables:
        rows = await owner_rows(engine, f'select t::text as row from public."{table["tablename"]}" t')
        parts.extend(r["row"] for r in rows)
    return "\n".join(parts)


async def test_no_token_in_the_database_any_response_or_any_log(
    w: World, acme: Company, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await w.connect(acme.alice)
    [row] = await stored(engine, acme.alice)
    await expire(engine, row["id"])
    await w.status(acme.alice)  # a refresh: new tokens stored
    await w.connections(acme.alice)
    await w.connections(acme.admin)
    await w.authorize(acme.alice)  # a pending state with its PKCE verifier
    w.provider.revoke_status = 500  # a failed revocation reports an error: still no token in it
    await w.client.delete(f"/api/connections/{row['id']}", headers=acme.alice.headers)
    await w.connect(acme.alice)

    secrets = [*w.provider.issued, *(r["code_verifier"] for r in w.provider.token_requests if "code_verifier" in r)]
    assert len(w.provider.issued) == 6 and len(secrets) >= 8
    dump = await _database_text(engine)
    logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    [row] = await stored(engine, acme.alice)
    assert str(row["id"]) in dump and row["access_token"].hex() in dump  # the scan reads the sealed columns
    for secret in secrets:
        for form in (secret, secret.encode().hex(), base64.b64encode(secret.encode()).decode()):
            assert form not in dump
            assert form not in logs
            assert all(form not in body for body in w.bodies)
    # Tokens are there all the same: sealed, and they open with the server's key to the newest ones.
    cipher = w.app.state.runtime.oauth.cipher
    access, refresh = (connection_context(acme.alice.id, "fake", kind) for kind in ("access", "refresh"))
    assert cipher.decrypt(row["access_token"], access) == w.provider.issued[-2]
    assert cipher.decrypt(row["refresh_token"], refresh) == w.provider.issued[-1]


async def _access_token(w: World, user: User) -> str:
    """The internal API skills will use: a usable token for the caller's connection."""
    runtime = w.app.state.runtime
    ctx = runtime.context(await runtime.verifier.verify(user.token))
    try:
        token = await connections.get_access_token(ctx, "fake")
    except BaseException:
        await ctx.db.rollback()
        raise
    await ctx.db.commit()
    return token


async def _works_at_the_provider(w: World, token: str) -> bool:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{w.fake.url}/userinfo", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code == 200 and answer.json()["sub"] == w.provider.account["sub"]


async def test_get_access_token_returns_a_usable_token_refreshed_when_expired(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    with pytest.raises(NotFound):
        await _access_token(w, acme.alice)
    await w.connect(acme.alice)
    token = await _access_token(w, acme.alice)
    assert token == w.provider.issued[0] and await _works_at_the_provider(w, token)
    [row] = await stored(engine, acme.alice)
    await expire(engine, row["id"])
    fresh = await _access_token(w, acme.alice)
    assert fresh != token and w.provider.refreshes == 1 and await _works_at_the_provider(w, fresh)
    # Revoked at the provider: the refresh is refused and the connection is unusable until reconnected.
    await expire(engine, row["id"])
    w.provider.refresh_error = "invalid_grant"
    with pytest.raises(Conflict, match="revoked"):
        await _access_token(w, acme.alice)


async def test_tokens_sealed_under_a_rotated_out_key_are_still_read(
    settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth, acme: Company
) -> None:
    old = new_key()
    async with world(settings, engine, fake_oauth, key=old) as before:
        await before.connect(acme.alice)
        provider = before.provider
    new = new_key()
    async with world(settings, engine, fake_oauth, key=new, old_keys=(old,), provider=provider) as after:
        assert await _access_token(after, acme.alice) == provider.issued[0]  # opened with the old key
        [row] = await stored(engine, acme.alice)
        cipher = after.app.state.runtime.oauth.cipher
        assert not cipher.is_current(row["access_token"])
        await expire(engine, row["id"])
        assert (await after.status(acme.alice))["status"] == "connected"  # refreshed: sealed anew
        [row] = await stored(engine, acme.alice)
        assert cipher.is_current(row["access_token"]) and cipher.is_current(row["refresh_token"])
    # A server that lost the key cannot read the tokens: an error that says so, not a crash.
    async with world(settings, engine, fake_oauth, key=old, provider=provider) as lost:
        await expire(engine, row["id"])
        status = await lost.status(acme.alice)
        assert status["status"] == "error" and "FLUXOPUS_ENCRYPTION_OLD_KEYS" in status["error"]
        with pytest.raises(Conflict):
            await _access_token(lost, acme.alice)


async def test_a_sealed_token_copied_to_another_row_does_not_open(w: World, acme: Company, engine: AsyncEngine) -> None:
    await w.connect(acme.alice)
    await w.connect(acme.bob)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "update connections set access_token = (select access_token from connections where user_id = :a),"
                " expires_at = null where user_id = :b"
            ),
            {"a": acme.alice.id, "b": acme.bob.id},
        )
    with pytest.raises(Conflict, match="cannot be read"):
        await _access_token(w, acme.bob)


@pytest.fixture
async def own_database(database_url: str, engine: AsyncEngine) -> AsyncIterator[str]:
    """A database of its own in the same server, for a command that sweeps every row."""
    name = f"reseal_{uuid.uuid4().hex[:12]}"
    async with engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text(f"create database {name}"))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    await migrate(url)
    yield url
    async with engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text(f"drop database {name} with (force)")
        )


@pytest.mark.slow
async def test_reseal_moves_every_token_to_the_current_key(
    settings: Settings, fake_oauth: FakeOAuth, own_database: str, tmp_path: Path
) -> None:
    own_engine = create_engine(own_database, settings)
    company = await make_company(own_database)
    old, new = new_key(), new_key()
    try:
        async with world(settings, own_engine, fake_oauth, key=old) as before:
            await before.connect(company.alice)
            await before.connect(company.bob)
            pending = await before.authorize(company.alice)  # a pending state: its verifier is sealed too
            provider = before.provider

        env = cli_env(tmp_path, own_database, FLUXOPUS_ENCRYPTION_KEY=new)
        refused = await run_cli(env, tmp_path, "reseal")  # without the old key nothing opens
        assert refused.code == 1 and "unreadable 5" in refused.stdout, refused
        assert "FLUXOPUS_ENCRYPTION_OLD_KEYS" in refused.stderr

        done = await run_cli({**env, "FLUXOPUS_ENCRYPTION_OLD_KEYS": old}, tmp_path, "reseal")
        assert done.code == 0, done
        assert done.stdout.strip() == "resealed 5, already current 0, unreadable 0"
        again = await run_cli({**env, "FLUXOPUS_ENCRYPTION_OLD_KEYS": old}, tmp_path, "reseal")
        assert again.stdout.strip() == "resealed 0, already current 5, unreadable 0"

        async with world(settings, own_engine, fake_oauth, key=new, provider=provider) as after:
            assert await _access_token(after, company.alice) in provider.issued  # the new key alone opens it
            # The flow begun before the reseal completes after it: its verifier was resealed too.
            assert (await after.callback(await after.consent(pending)))["status"] == "connected"
    finally:
        await own_engine.dispose()


async def test_a_grant_that_cannot_be_stored_is_revoked(w: World, acme: Company, engine: AsyncEngine) -> None:
    """Alice starts connecting, then is removed from her company before she comes back: nothing is
    stored, and the fresh grant is revoked at the provider rather than left alive."""
    location = await w.consent(await w.authorize(acme.alice))
    async with engine.begin() as conn:
        await conn.execute(text("delete from members where user_id = :u"), {"u": acme.alice.id})
    outcome = await w.callback(location)
    assert outcome["status"] == "error" and outcome["reason"] == "not_allowed"
    assert await stored(engine, acme.alice) == []
    [access, refresh] = w.provider.issued
    assert refresh in w.provider.revoked
