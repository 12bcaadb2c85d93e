"""Sessions end when they end: the access token of a signed-out session, or of one revoked by refresh-
token reuse, stops opening /api and /graphql; a WebSocket is closed when its token expires (4401) or its
session ends (4403); the built-in issuer is checked and absurd lifetimes refused. A real `fluxopus serve`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from fluxopus.auth.keys import SigningKey
from fluxopus.config import BUILT_IN_ISSUER
from fluxopus.db.engine import operator_engine
from fluxopus.db.users import ensure_member, start_token_session
from tests.utils.builders import unique
from tests.utils.http import bearer
from tests.utils.serve import Serve

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
# Another replica would learn of a sign-out within this; this process knows at once.
SERVE_ENV = {"FLUXOPUS_SESSION_CHECK_SECONDS": "1"}


def database_of(served: Serve) -> str:
    socket_dir = (served.pgdata / "postmaster.pid").read_text().splitlines()[4].strip()
    return f"postgresql://postgres:@/postgres?host={socket_dir}"


async def new_session(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {"email": f"{unique('s')}@example.com", "password": PASSWORD}
    response = await client.post("/auth/v1/signup", json=body)
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def opens(client: httpx.AsyncClient, token: str) -> bool:
    """Whether the token opens both APIs (they must agree). The two requests may straddle the moment
    the server checks the session again (every interval), so a disagreement is asked once more."""
    for attempt in (1, 2):
        rest = (await client.get("/api/tasks", headers=bearer(token))).status_code
        graphql = (await client.post("/graphql", json={"query": "{ me { id } }"}, headers=bearer(token))).json()
        codes = [e["extensions"]["code"] for e in graphql.get("errors", [])]
        assert rest in (200, 401) and codes in ([], ["UNAUTHENTICATED"]), (rest, codes)
        if (rest == 200) == (codes == []):
            return rest == 200
        assert attempt == 1, (rest, graphql)
        await asyncio.sleep(0.3)
    raise AssertionError("unreachable")


async def stops_opening(client: httpx.AsyncClient, token: str) -> None:
    """Within a few times the check interval (1 s here)."""
    began = time.monotonic()
    while await opens(client, token):
        assert time.monotonic() - began < 5, "the ended session kept working"
        await asyncio.sleep(0.2)


async def test_a_signed_out_sessions_token_stops_working(served: Serve) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        session = await new_session(client)
        other = await new_session(client)
        assert await opens(client, session["access_token"])
        out = await client.post("/auth/v1/logout", params={"scope": "local"}, headers=bearer(session["access_token"]))
        assert out.status_code == 204
        assert not await opens(client, session["access_token"])
        denied = await client.get("/api/tasks", headers=bearer(session["access_token"]))
        assert "session has ended" in denied.json()["error"]
        assert await opens(client, other["access_token"])  # somebody else's session is not affected


async def test_refresh_token_reuse_ends_every_token_of_the_session(served: Serve) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        session = await new_session(client)
        rotated = await client.post(
            "/auth/v1/token", params={"grant_type": "refresh_token"}, json={"refresh_token": session["refresh_token"]}
        )
        newer = rotated.json()
        assert await opens(client, newer["access_token"])
        reused = await client.post(
            "/auth/v1/token", params={"grant_type": "refresh_token"}, json={"refresh_token": session["refresh_token"]}
        )
        assert reused.json()["error_code"] == "refresh_token_already_used"
        assert not await opens(client, newer["access_token"])
        assert not await opens(client, session["access_token"])


async def test_a_session_ended_elsewhere_is_noticed_within_the_check_interval(served: Serve) -> None:
    """As another replica would end it: in the database only."""
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        session = await new_session(client)
        assert await opens(client, session["access_token"])
        conn = await asyncpg.connect(database_of(served))
        try:
            claims = jwt.decode(session["access_token"], options={"verify_signature": False})
            await conn.execute(
                "update auth_sessions set revoked_at = now() where id = $1", uuid.UUID(claims["session_id"])
            )
        finally:
            await conn.close()
        await stops_opening(client, session["access_token"])


async def test_a_cli_token_has_a_session_too(served: Serve) -> None:
    email = f"{unique('cli')}@example.com"
    token = served.token(email)
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        assert await opens(client, token)
        assert jwt.decode(token, options={"verify_signature": False})["iss"] == BUILT_IN_ISSUER
        # A password for the same user, a sign-in, and a sign-out everywhere: the CLI's token ends too.
        result = served.run_cli("users", "create", "--email", email, "--password", PASSWORD, "--reset-password")
        assert result.returncode == 0, result.stderr
        # A password reset signs out everywhere; the CLI is another process: the server learns of it
        # within its session check interval.
        await stops_opening(client, token)
        signed_in = await client.post(
            "/auth/v1/token", params={"grant_type": "password"}, json={"email": email, "password": PASSWORD}
        )
        fresh_cli = served.token(email)
        assert await opens(client, fresh_cli)
        out = await client.post(
            "/auth/v1/logout", params={"scope": "global"}, headers=bearer(signed_in.json()["access_token"])
        )
        assert out.status_code == 204
        assert not await opens(client, fresh_cli)


async def forge(served: Serve, **changes: Any) -> str:
    """A token signed with the server's own key, with a live session, and `changes` to its claims."""
    url = database_of(served)
    async with operator_engine(url) as engine:
        member = await ensure_member(engine, email=f"{unique('f')}@example.com", company=None, role=None)
        session = await start_token_session(engine, user_id=member.user_id, seconds=3600)
    now = int(time.time())
    claims = {
        "sub": str(member.user_id),
        "aud": "authenticated",
        "role": "authenticated",
        "iss": BUILT_IN_ISSUER,
        "iat": now,
        "exp": now + 3600,
        "session_id": str(session),
    }
    claims = {k: v for k, v in {**claims, **changes}.items() if v is not None}
    key = SigningKey.load_or_create(served.data_dir / "jwt-signing-key.pem")
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"iss": "https://evil.example/auth/v1"}, "issuer"),
        ({"iss": None}, "issuer"),
        ({"session_id": None}, "session"),
        ({"session_id": str(uuid.uuid4())}, "session has ended"),
        ({"exp": int(time.time()) + 100 * 365 * 86400}, "lifetime"),
        ({"iat": int(time.time()) - 10, "exp": int(time.time()) + 400 * 86400}, "lifetime"),
        ({"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, "not yet valid"),
    ],
    ids=["other issuer", "no issuer", "no session", "unknown session", "100 years", "400 days", "issued later"],
)
async def test_tokens_the_server_did_not_issue_as_such_are_refused(
    served: Serve, changes: dict[str, Any], words: str
) -> None:
    token = await forge(served, **changes)
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        response = await client.get("/api/tasks", headers=bearer(token))
        assert response.status_code == 401, response.text
        assert words in response.json()["error"].lower()
        assert await opens(client, await forge(served))  # the same, untouched, works


async def subscribed(served: Serve, token: str) -> Any:
    url = served.url.replace("http", "ws") + "/graphql"
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def closed_with(ws: Any, seconds: float) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), seconds)
    assert closed.value.rcvd is not None
    return int(closed.value.rcvd.code)


async def test_a_websocket_closes_when_its_session_ends(served: Serve) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        session = await new_session(client)
        ws = await subscribed(served, session["access_token"])
        kept = await subscribed(served, (await new_session(client))["access_token"])
        out = await client.post("/auth/v1/logout", headers=bearer(session["access_token"]))
        assert out.status_code == 204
        assert await closed_with(ws, 5) == 4403
        await kept.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        assert json.loads(await asyncio.wait_for(kept.recv(), 5))["type"] == "next"
        await kept.close()


async def test_a_websocket_closes_when_its_token_expires(served: Serve) -> None:
    now = int(time.time())
    token = await forge(served, exp=now + 3)
    ws = await subscribed(served, token)
    began = time.monotonic()
    assert await closed_with(ws, 10) == 4401
    assert time.monotonic() - began < 8
