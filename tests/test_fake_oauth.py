"""The fake OAuth provider against Authlib's real httpx client and plain HTTP: it must behave like a real one."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit

import httpx
import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.utils.fake_oauth import FakeClient, FakeOAuth, s256

# Every provider dialect against the fake, one flow each: many seconds in all (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

REDIRECT = "https://app.example/oauth/callback?next=%2Fhome"  # a query of its own, which must survive


@pytest.fixture
def oauth(fake_oauth: FakeOAuth) -> FakeOAuth:
    return fake_oauth


def authlib_client(fake: FakeOAuth, client: FakeClient, **kwargs: Any) -> AsyncOAuth2Client:
    # Without code_challenge_method="S256" Authlib silently drops code_verifier from the authorization URL.
    options = {"scope": "openid email", "redirect_uri": REDIRECT, "code_challenge_method": "S256"}
    options["token_endpoint"] = f"{fake.url}/token"  # Authlib's keyword for its metadata, used by refresh_token()
    return AsyncOAuth2Client(client.client_id, client.client_secret, **(options | kwargs))


async def follow(url: str) -> tuple[int, str]:
    """What a browser does with the authorization URL (consent is automatic): the status and Location."""
    async with httpx.AsyncClient() as http:
        r = await http.get(url, follow_redirects=False)
    return r.status_code, r.headers.get("location", "")


def query(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


async def authorize(ac: AsyncOAuth2Client, fake: FakeOAuth, verifier: str) -> tuple[str, str]:
    url, state = ac.create_authorization_url(f"{fake.url}/authorize", code_verifier=verifier)
    status, location = await follow(url)
    assert status == 302 and location.startswith(REDIRECT.split("?")[0])
    return location, state


async def login(fake: FakeOAuth, client: FakeClient, **kwargs: Any) -> dict[str, Any]:
    verifier = generate_token(48)
    async with authlib_client(fake, client, **kwargs) as ac:
        location, state = await authorize(ac, fake, verifier)
        return dict(await ac.fetch_token(authorization_response=location, state=state, code_verifier=verifier))


async def userinfo(fake: FakeOAuth, access_token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{fake.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"})


async def post(fake: FakeOAuth, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{fake.url}{path}", data=data, **kwargs)


async def test_code_flow_with_pkce_userinfo_refresh_and_revoke(oauth: FakeOAuth) -> None:
    client = oauth.client()
    async with httpx.AsyncClient() as http:
        meta = (await http.get(f"{oauth.url}/.well-known/openid-configuration")).json()
    assert meta["issuer"] == oauth.url and meta["code_challenge_methods_supported"] == ["S256"]
    verifier = generate_token(48)
    async with authlib_client(oauth, client, token_endpoint=meta["token_endpoint"]) as ac:
        location, state = await authorize(ac, oauth, verifier)
        sent = client.authorize_requests[-1]
        assert sent["code_challenge"] == s256(verifier) and sent["code_challenge_method"] == "S256"
        assert query(location)["next"] == "/home" and query(location)["state"] == state

        token = await ac.fetch_token(authorization_response=location, state=state, code_verifier=verifier)
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600 and token["scope"] == "openid email"
        assert client.token_requests[-1]["code_verifier"] == verifier
        assert client.issued == [token["access_token"], token["refresh_token"]]
        assert (await ac.get(meta["userinfo_endpoint"])).json() == client.account

        first = dict(token)
        token = await ac.refresh_token(meta["token_endpoint"])
        assert client.refreshes == 1 and token["scope"] == "openid email"
        assert token["access_token"] not in first.values() and token["refresh_token"].startswith("rt-")
        assert client.issued[2:] == [token["access_token"], token["refresh_token"]]

        revoked = await ac.revoke_token(meta["revocation_endpoint"], token_type_hint="refresh_token")
        assert revoked.status_code == 200
        # Revoking a refresh token revokes its whole grant, access tokens included (RFC 7009 2.1).
        assert {token["refresh_token"], token["access_token"], first["access_token"]} <= client.revoked
        with pytest.raises(OAuthError) as e:
            await ac.refresh_token(meta["token_endpoint"])
        assert e.value.error == "invalid_grant"
        denied = await ac.get(meta["userinfo_endpoint"])
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_pkce_mismatch_is_invalid_grant_and_burns_the_code(oauth: FakeOAuth) -> None:
    client = oauth.client()
    verifier = generate_token(48)
    async with authlib_client(oauth, client) as ac:
        location, state = await authorize(ac, oauth, verifier)
        with pytest.raises(OAuthError) as e:
            await ac.fetch_token(authorization_response=location, state=state, code_verifier=generate_token(48))
        assert (e.value.error, e.value.description) == ("invalid_grant", "PKCE verification failed")
        with pytest.raises(OAuthError, match="invalid_grant"):  # the right verifier is too late: single use
            await ac.fetch_token(authorization_response=location, state=state, code_verifier=verifier)
    assert client.issued == []


async def test_pkce_required_but_authlib_sends_no_challenge_without_code_challenge_method(oauth: FakeOAuth) -> None:
    client = oauth.client()
    async with authlib_client(oauth, client, code_challenge_method=None) as ac:
        url, state = ac.create_authorization_url(f"{oauth.url}/authorize", code_verifier=generate_token(48))
    assert "code_challenge" not in url
    status, location = await follow(url)
    assert status == 302 and query(location)["error"] == "invalid_request" and query(location)["state"] == state
    assert "code" not in query(location)


async def test_code_replay_is_invalid_grant_and_revokes_the_first_tokens(oauth: FakeOAuth) -> None:
    client = oauth.client()
    verifier = generate_token(48)
    async with authlib_client(oauth, client) as ac:
        location, state = await authorize(ac, oauth, verifier)
        token = await ac.fetch_token(authorization_response=location, state=state, code_verifier=verifier)
        assert (await userinfo(oauth, token["access_token"])).status_code == 200
        with pytest.raises(OAuthError) as e:
            await ac.fetch_token(authorization_response=location, state=state, code_verifier=verifier)
    assert e.value.error == "invalid_grant"
    assert set(client.issued) == client.revoked and len(client.issued) == 2  # RFC 6749 4.1.2
    assert (await userinfo(oauth, token["access_token"])).status_code == 401


async def test_wrong_secret_is_invalid_client(oauth: FakeOAuth) -> None:
    client = oauth.client()
    impostor = FakeClient(client.client_id, "not-the-secret")
    with pytest.raises(OAuthError) as e:
        await login(oauth, impostor)
    assert e.value.error == "invalid_client" and client.issued == []
    r = await post(oauth, "/token", {"grant_type": "refresh_token", "refresh_token": "rt-x"}, auth=("nobody", "x"))
    assert r.status_code == 401 and r.json() == {"error": "invalid_client"}
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_denied_consent_redirects_with_access_denied(oauth: FakeOAuth) -> None:
    client = oauth.client(deny=True)
    async with authlib_client(oauth, client) as ac:
        url, state = ac.create_authorization_url(f"{oauth.url}/authorize", code_verifier=generate_token(48))
    status, location = await follow(url)
    params = query(location)
    assert status == 302 and params["error"] == "access_denied" and params["state"] == state
    assert params["error_description"] and "code" not in params
    # An unknown client is never redirected anywhere: the redirect_uri is unverified.
    status, location = await follow(url.replace(client.client_id, "unknown-client"))
    assert (status, location) == (400, "")


async def test_token_status_fails_both_grants(oauth: FakeOAuth) -> None:
    client = oauth.client(token_status=500)
    with pytest.raises(httpx2.HTTPStatusError) as e:  # Authlib raises before reading the body on 5xx
        await login(oauth, client)
    assert e.value.response.status_code == 500 and e.value.response.json() == {"error": "server_error"}

    client.token_status = None
    token = await login(oauth, client)
    client.token_status = 503
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    r = await post(oauth, "/token", form, auth=(client.client_id, client.client_secret))
    assert r.status_code == 503 and r.json() == {"error": "server_error"} and client.refreshes == 0


async def test_rotation_invalidates_the_old_refresh_token(oauth: FakeOAuth) -> None:
    client = oauth.client()
    first = await login(oauth, client)
    async with authlib_client(oauth, client, token=first) as ac:
        second = await ac.refresh_token()
        assert second["refresh_token"] != first["refresh_token"]
        with pytest.raises(OAuthError, match="invalid_grant"):
            await ac.refresh_token(refresh_token=first["refresh_token"])
        assert (await ac.refresh_token(refresh_token=second["refresh_token"]))["access_token"]
    assert client.refreshes == 2

    client.rotate_refresh = False  # without rotation the response omits refresh_token and Authlib keeps the old one
    async with authlib_client(oauth, client, token=await login(oauth, client)) as ac:
        kept = ac.token["refresh_token"]
        assert (await ac.refresh_token())["refresh_token"] == kept
        assert (await ac.refresh_token())["refresh_token"] == kept


async def test_concurrent_refreshes_with_rotation_let_exactly_one_win(oauth: FakeOAuth) -> None:
    client = oauth.client(refresh_delay=0.2)
    token = await login(oauth, client)
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    auth = (client.client_id, client.client_secret)
    start = time.monotonic()
    results = await asyncio.gather(post(oauth, "/token", form, auth=auth), post(oauth, "/token", form, auth=auth))
    assert time.monotonic() - start >= 0.2  # the winner slept; the loser found its token already rotated
    assert sorted(r.status_code for r in results) == [200, 400] and client.refreshes == 1
    assert next(r for r in results if r.status_code == 400).json()["error"] == "invalid_grant"


async def test_client_secret_basic_and_post_both_work(oauth: FakeOAuth) -> None:
    client = oauth.client()
    assert (await login(oauth, client))["access_token"].startswith("at-")  # Authlib's default: client_secret_basic
    assert "client_secret" not in client.token_requests[-1] and "client_id" not in client.token_requests[-1]
    assert await login(oauth, client, token_endpoint_auth_method="client_secret_post")
    assert client.token_requests[-1]["client_secret"] == client.client_secret

    # Basic credentials are form-urlencoded before base64 (RFC 6749 2.3.1); Authlib does not encode them.
    odd = oauth.client(client_secret="p@ss:w+rd/%é")
    basic = base64.b64encode(f"{quote_plus(odd.client_id)}:{quote_plus(odd.client_secret)}".encode()).decode()
    r = await post(oauth, "/revoke", {"token": "unknown"}, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200  # RFC 7009: unknown tokens are fine
    both = await post(oauth, "/revoke", {"token": "x", "client_secret": odd.client_secret}, auth=("a", "b"))
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"


async def test_failure_knobs_and_token_expiry(oauth: FakeOAuth) -> None:
    client = oauth.client(refresh_error="invalid_grant", expires_in=None, issue_refresh=True, scope="email")
    token = await login(oauth, client)
    assert "expires_in" not in token and token["scope"] == "email"
    async with authlib_client(oauth, client, token=token) as ac:
        with pytest.raises(OAuthError, match="invalid_grant"):
            await ac.refresh_token()
        client.revoke_status = 503
        assert (await ac.revoke_token(f"{oauth.url}/revoke")).status_code == 503
        assert client.revoked == set() and client.refreshes == 0
    client.userinfo_status = 500
    assert (await userinfo(oauth, token["access_token"])).status_code == 500

    short = oauth.client(expires_in=0, issue_refresh=False)
    token = await login(oauth, short)
    assert token["expires_in"] == 0 and "refresh_token" not in token and len(short.issued) == 1
    assert (await userinfo(oauth, token["access_token"])).status_code == 401
