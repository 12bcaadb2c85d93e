"""The real @supabase/supabase-js (tests/js, run by Node) against the built-in /auth/v1 on a real server:
sign up, sign in, session, refresh with rotation, user, the API with the access token, sign out, and
failed sign-ins that do not tell whether an email is registered; and the invited person's side of an
invitation (verifyOtp, updateUser), with the link handed to the admin or emailed.
`npm ci --prefix tests/js` installs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.auth.jwt import mint_anon_key
from fluxopus.auth.keys import SigningKey
from fluxopus.config import Settings
from tests.utils.fake_smtp import FakeSMTP
from tests.utils.server import ThreadedServer

pytestmark = [pytest.mark.js, pytest.mark.slow]

JS = Path(__file__).resolve().parent / "js"
SCRIPT = JS / "auth_flow.mjs"
PASSWORD = "correct horse battery staple"


@dataclass
class Server:
    url: str
    anon_key: str


def node() -> str:
    path = shutil.which("node")
    assert path, "Node.js is required for tests/test_supabase_js.py"
    assert (JS / "node_modules" / "@supabase" / "supabase-js").is_dir(), "run: npm ci --prefix tests/js"
    return path


@pytest.fixture(scope="module")
def auth_server(settings: Settings, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No JWT secret, no JWKS: the service signs its own tokens with a dev key made in a fresh data dir."""
    own = settings.model_copy(
        update={
            "jwt_secret": None,
            "jwks_url": None,
            "data_dir": tmp_path_factory.mktemp("js"),
            "signups_per_address": 100_000,  # every test signs up from 127.0.0.1
        }
    )
    assert own.uses_dev_signing_key
    anon_key = mint_anon_key(SigningKey.load_or_create(own.dev_signing_key_path))
    with ThreadedServer(create_app(own, database_url=database_url)) as server:
        yield Server(server.url, anon_key)


@pytest.fixture(scope="module")
def flow(auth_server: Server) -> dict[str, Any]:
    """One run of tests/js/auth_flow.mjs for a new email: every step's outcome."""
    email = f"js-{uuid.uuid4().hex[:10]}@example.com"
    outcome = run_script(SCRIPT, auth_server.url, auth_server.anon_key, email, PASSWORD)
    outcome["email"] = email
    return outcome


def run_script(script: Path, *args: str) -> dict[str, Any]:
    """A tests/js script under Node: the JSON object it prints."""
    result = subprocess.run([node(), str(script), *args], capture_output=True, text=True, timeout=90, cwd=JS)
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


def test_sign_up_returns_a_session(flow: dict[str, Any]) -> None:
    sign_up = flow["signUp"]
    assert sign_up["error"] is None, sign_up
    assert sign_up["session"]["tokenType"] == "bearer"
    assert sign_up["session"]["expiresIn"] > 0
    assert sign_up["session"]["userEmail"] == flow["email"]
    assert sign_up["user"]["email"] == flow["email"]


def test_sign_in_get_session_and_get_user(flow: dict[str, Any]) -> None:
    user_id = flow["signUp"]["user"]["id"]
    assert flow["signIn"]["error"] is None, flow["signIn"]
    assert flow["signIn"]["session"]["userId"] == user_id
    assert flow["signIn"]["user"] == {"id": user_id, "email": flow["email"]}
    assert flow["getSession"]["error"] is None
    assert flow["getSession"]["isSignInSession"] is True
    assert flow["getUser"] == {"error": None, "user": {"id": user_id, "email": flow["email"]}}


def test_refresh_rotates_the_refresh_token(flow: dict[str, Any]) -> None:
    refresh = flow["refresh"]
    assert refresh["error"] is None, refresh
    assert refresh["session"]["userId"] == flow["signUp"]["user"]["id"]
    assert refresh["refreshTokenChanged"] is True
    assert refresh["storedIsRefreshed"] is True


def test_the_new_user_is_admin_of_a_new_company(flow: dict[str, Any]) -> None:
    assert flow["tasks"] == {"status": 200, "body": []}
    assert flow["me"]["status"] == 200, flow["me"]
    me = flow["me"]["body"]
    assert "errors" not in me, me
    assert me["data"]["me"]["email"] == flow["email"]
    assert me["data"]["me"]["role"] == "ADMIN"
    assert me["data"]["me"]["company"]["name"]


def test_sign_out_revokes_the_refresh_tokens(flow: dict[str, Any]) -> None:
    assert flow["signOut"] == {"error": None, "sessionAfter": None}
    for step in ("refreshAfterSignOut", "rotatedRefreshAfterSignOut"):
        outcome = flow[step]
        assert outcome["session"] is None, step
        # An AuthApiError is the server's refusal; AuthSessionMissingError may come from the client alone.
        assert outcome["error"]["isAuthApiError"] is True, outcome
        assert outcome["error"]["status"] == 400, outcome
        assert outcome["error"]["code"] in ("refresh_token_not_found", "refresh_token_already_used"), outcome


def test_wrong_password_and_unknown_email_fail_alike(flow: dict[str, Any]) -> None:
    wrong, unknown = flow["wrongPassword"], flow["unknownEmail"]
    assert wrong["session"] is None and unknown["session"] is None
    assert wrong["error"]["isAuthApiError"] is True, wrong
    assert wrong["error"]["name"] == "AuthApiError"
    assert wrong["error"]["status"] == 400
    assert wrong["error"]["code"] == "invalid_credentials"
    assert unknown["error"] == wrong["error"]


# --- the invite flow: the invited person's side, in supabase-js ---------------------------------------

INVITE_SCRIPT = JS / "invite_flow.mjs"
INVITE = "mutation($e: String!) { inviteMember(email: $e) { acceptUrl emailSent } }"


def run_invite_flow(server: Server, email: str, token_hash: str) -> dict[str, Any]:
    return run_script(INVITE_SCRIPT, server.url, server.anon_key, email, token_hash, PASSWORD)


def admin_of(server: Server, company: str, smtp: FakeSMTP | None = None) -> dict[str, str]:
    """An admin signed up over HTTP (confirming the address first when the server sends mail)."""
    email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "data": {"company": company}}
    response = httpx.post(f"{server.url}/auth/v1/signup", json=body, timeout=30)
    assert response.status_code == 200, response.text
    signed_up = response.json()
    if smtp is not None:
        token = parse_qs(urlsplit(smtp.link_to(email)).query)["token"][0]
        signed_up = httpx.post(
            f"{server.url}/auth/v1/verify", json={"type": "signup", "token_hash": token}, timeout=30
        ).json()
    return {"Authorization": f"Bearer {signed_up['access_token']}"}


def assert_joined(outcome: dict[str, Any], email: str, company: str) -> None:
    assert outcome["verify"] == {"error": None, "userEmail": email, "hasSession": True}, outcome
    assert outcome["meAfterVerify"]["body"]["data"]["me"] == {
        "email": email,
        "role": "MEMBER",
        "company": {"name": company},
    }
    assert outcome["updateUser"] == {"error": None, "userEmail": email}
    assert outcome["signOut"] == {"error": None}
    assert outcome["signIn"] == {"error": None, "hasSession": True}
    assert outcome["meAfterSignIn"]["body"]["data"]["me"]["company"] == {"name": company}
    again = outcome["verifyAgain"]
    assert again["hasSession"] is False and again["error"]["isAuthApiError"] is True
    assert again["error"]["status"] == 403 and again["error"]["code"] == "otp_expired"


def test_an_invited_person_joins_with_supabase_js(auth_server: Server) -> None:
    company = f"JS {uuid.uuid4().hex[:8]}"
    admin = admin_of(auth_server, company)
    email = f"invitee-{uuid.uuid4().hex[:10]}@example.com"
    invited = httpx.post(
        f"{auth_server.url}/graphql", json={"query": INVITE, "variables": {"e": email}}, headers=admin, timeout=30
    ).json()["data"]["inviteMember"]
    assert invited["emailSent"] is False
    token = parse_qs(urlsplit(invited["acceptUrl"]).query)["token"][0]
    assert_joined(run_invite_flow(auth_server, email, token), email, company)


@pytest.fixture(scope="module")
def smtp() -> Iterator[FakeSMTP]:
    fake = FakeSMTP()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def mail_server(
    settings: Settings, database_url: str, smtp: FakeSMTP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    own = settings.model_copy(
        update={
            "jwt_secret": None,
            "jwks_url": None,
            "data_dir": tmp_path_factory.mktemp("js-mail"),
            "smtp_url": smtp.url,
            "signups_per_address": 100_000,  # every test signs up from 127.0.0.1
        }
    )
    anon_key = mint_anon_key(SigningKey.load_or_create(own.dev_signing_key_path))
    with ThreadedServer(create_app(own, database_url=database_url)) as server:
        yield Server(server.url, anon_key)


def test_an_invited_person_joins_from_the_email_with_supabase_js(mail_server: Server, smtp: FakeSMTP) -> None:
    company = f"JS mail {uuid.uuid4().hex[:8]}"
    admin = admin_of(mail_server, company, smtp)
    email = f"invitee-{uuid.uuid4().hex[:10]}@example.com"
    invited = httpx.post(
        f"{mail_server.url}/graphql", json={"query": INVITE, "variables": {"e": email}}, headers=admin, timeout=30
    ).json()["data"]["inviteMember"]
    assert invited == {"acceptUrl": None, "emailSent": True}
    token = parse_qs(urlsplit(smtp.link_to(email)).query)["token"][0]
    assert_joined(run_invite_flow(mail_server, email, token), email, company)
