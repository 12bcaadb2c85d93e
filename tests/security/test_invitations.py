"""Joining a company takes proof: an invitation's single-use link, delivered to the address (by email
when SMTP is configured, else handed once to the inviting admin). Sign-up never joins anyone; links
expire; nobody learns about another tenant's users; with SMTP, sign-ups confirm their address."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import unique
from tests.utils.fake_smtp import FakeSMTP
from tests.utils.http import bearer

PASSWORD = "correct horse battery staple"
INVITE = "mutation($e: String!, $r: Role! = MEMBER) { inviteMember(email: $e, role: $r) { id acceptUrl emailSent } }"
ME = "{ me { email role company { name } } }"


@pytest.fixture(scope="module")
def smtp() -> Iterator[FakeSMTP]:
    fake = FakeSMTP()
    yield fake
    fake.close()


def built_in(settings: Settings, data_dir: Path, **changes: Any) -> Settings:
    """The self-hosted default: the server signs users in itself (no external secret or JWKS)."""
    return settings.model_copy(
        update={"jwt_secret": None, "jwks_url": None, "data_dir": data_dir, "signups_per_address": 10_000, **changes}
    )


@pytest.fixture(scope="module")
def offline_app(settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(built_in(settings, tmp_path_factory.mktemp("offline")), engine=engine)


@pytest.fixture(scope="module")
def mail_app(
    settings: Settings, engine: AsyncEngine, smtp: FakeSMTP, tmp_path_factory: pytest.TempPathFactory
) -> FastAPI:
    return create_app(built_in(settings, tmp_path_factory.mktemp("mail"), smtp_url=smtp.url), engine=engine)


@pytest.fixture
async def offline(offline_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=offline_app), base_url="http://test") as c:
        yield c


@pytest.fixture
async def mailing(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mail_app), base_url="http://test") as c:
        yield c


def address() -> str:
    return f"{unique('person')}@example.com"


async def sign_up(client: httpx.AsyncClient, email: str, **data: Any) -> dict[str, Any]:
    response = await client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD, "data": data})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(
        "/auth/v1/token", params={"grant_type": "password"}, json={"email": email, "password": password}
    )


async def graphql(client: httpx.AsyncClient, session: dict[str, Any], query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=bearer(session))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def admin_of_a_company(client: httpx.AsyncClient, name: str | None = None) -> dict[str, Any]:
    return await sign_up(client, address(), company=name or unique("Company"))


async def invite(client: httpx.AsyncClient, admin: dict[str, Any], email: str, role: str = "MEMBER") -> dict[str, Any]:
    result = await graphql(client, admin, INVITE, e=email, r=role)
    assert "errors" not in result, result
    invitation: dict[str, Any] = result["data"]["inviteMember"]
    return invitation


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def verify(client: httpx.AsyncClient, link: str) -> httpx.Response:
    """What supabase-js `verifyOtp({token_hash, type: 'invite'})` sends."""
    return await client.post("/auth/v1/verify", json={"type": "invite", "token_hash": token_of(link)})


def otp_expired(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error_code"] == "otp_expired"


async def company_of(client: httpx.AsyncClient, session: dict[str, Any]) -> dict[str, Any]:
    me: dict[str, Any] = (await graphql(client, session, ME))["data"]["me"]
    return me


# --- without SMTP: the link goes to the admin, once ----------------------------------------------


async def test_an_invitation_is_accepted_by_its_link_only(offline: httpx.AsyncClient, engine: AsyncEngine) -> None:
    name = unique("Acme")
    admin = await admin_of_a_company(offline, name)
    invitee = address()
    invitation = await invite(offline, admin, invitee, "ADMIN")
    assert invitation["emailSent"] is False and invitation["acceptUrl"].startswith(
        "http://127.0.0.1:8000/auth/v1/verify?"
    )

    # Signing up with the address does not get anyone in (it used to: first come, first joined).
    squatter = await sign_up(offline, invitee)
    assert (await company_of(offline, squatter))["company"]["name"] != name
    # ... and the address's account now belongs to a company: the link says so to its follower.
    refused = await verify(offline, invitation["acceptUrl"])
    assert refused.status_code == 422 and "one company" in refused.json()["msg"]

    fresh = address()
    invitation = await invite(offline, admin, fresh)
    session = await verify(offline, invitation["acceptUrl"])
    assert session.status_code == 200, session.text
    me = await company_of(offline, session.json())
    assert me == {"email": fresh, "role": "MEMBER", "company": {"name": name}}
    # The invited person had no account: they set their password (supabase-js updateUser), and sign in with it.
    updated = await offline.put(
        "/auth/v1/user", json={"password": "a new long password"}, headers=bearer(session.json())
    )
    assert updated.status_code == 200, updated.text
    assert (await sign_in(offline, fresh, "a new long password")).status_code == 200
    # The link worked once.
    otp_expired(await verify(offline, invitation["acceptUrl"]))
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("select accepted_by::text, accepted_at from invitations where id = :id"), {"id": invitation["id"]}
            )
        ).one()
    assert row.accepted_by == session.json()["user"]["id"] and row.accepted_at is not None


async def test_links_expire_and_unknown_ones_do_nothing(offline: httpx.AsyncClient, engine: AsyncEngine) -> None:
    admin = await admin_of_a_company(offline)
    invitee = address()
    invitation = await invite(offline, admin, invitee)
    async with engine.begin() as conn:
        await conn.execute(
            text("update invitations set expires_at = now() - interval '1 second' where id = :id"),
            {"id": invitation["id"]},
        )
    otp_expired(await verify(offline, invitation["acceptUrl"]))
    otp_expired(await offline.post("/auth/v1/verify", json={"type": "invite", "token_hash": "not-a-token"}))
    bad = await offline.post("/auth/v1/verify", json={"type": "recovery", "token_hash": "x"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "validation_failed"
    async with engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from users where lower(email) = :e"), {"e": invitee}) == 0


async def test_a_removed_member_joins_nobody_until_they_follow_a_link(offline: httpx.AsyncClient) -> None:
    first = await admin_of_a_company(offline, first_name := unique("First"))
    other = await admin_of_a_company(offline, other_name := unique("Other"))
    person = address()
    invitation = await invite(offline, first, person)
    joined = (await verify(offline, invitation["acceptUrl"])).json()
    removed = await graphql(offline, first, "mutation($u: ID!) { removeMember(userId: $u) }", u=joined["user"]["id"])
    assert "errors" not in removed, removed
    second = await invite(offline, other, person)
    # Being invited joins nobody: the user stays without a company until they follow the link.
    assert (await company_of(offline, joined))["company"] is None
    back = await verify(offline, second["acceptUrl"])
    assert back.status_code == 200, back.text
    assert (await company_of(offline, back.json()))["company"]["name"] == other_name != first_name


async def test_two_companies_invite_one_address_and_its_owner_chooses(offline: httpx.AsyncClient) -> None:
    """No admin can squat an invitation for someone else's address: the owner follows the link they want."""
    one = await admin_of_a_company(offline, one_name := unique("One"))
    two = await admin_of_a_company(offline, unique("Two"))
    person = address()
    squat = await invite(offline, two, person)
    mine = await invite(offline, one, person)
    chosen = await verify(offline, mine["acceptUrl"])
    assert (await company_of(offline, chosen.json()))["company"]["name"] == one_name
    late = await verify(offline, squat["acceptUrl"])
    assert late.status_code == 422 and late.json()["error_code"] == "user_already_exists"
    assert (await company_of(offline, chosen.json()))["company"]["name"] == one_name


async def test_the_link_in_a_browser_lands_on_the_app_signed_in(offline: httpx.AsyncClient) -> None:
    admin = await admin_of_a_company(offline)
    invitation = await invite(offline, admin, address())
    landed = await offline.get(invitation["acceptUrl"].removeprefix("http://127.0.0.1:8000"))
    assert landed.status_code == 303 and landed.headers["Referrer-Policy"] == "no-referrer"
    target, _, fragment = landed.headers["location"].partition("#")
    assert target == "http://127.0.0.1:8000"
    session = {k: v[0] for k, v in parse_qs(fragment).items()}
    assert session["type"] == "invite" and session["token_type"] == "bearer" and session["refresh_token"]
    assert (await offline.get("/api/tasks", headers=bearer(session))).status_code == 200
    again = await offline.get(invitation["acceptUrl"].removeprefix("http://127.0.0.1:8000"))
    assert "error_code=otp_expired" in again.headers["location"]


async def test_gotrue_invite_endpoint_for_an_admin(offline: httpx.AsyncClient) -> None:
    admin = await admin_of_a_company(offline)
    invited = await offline.post(
        "/auth/v1/invite", json={"email": address(), "data": {"role": "admin"}}, headers=bearer(admin)
    )
    assert invited.status_code == 200, invited.text
    assert invited.json()["role"] == "admin" and invited.json()["action_link"].startswith(
        "http://127.0.0.1:8000/auth/v1/verify"
    )
    session = await verify(offline, invited.json()["action_link"])
    assert (await company_of(offline, session.json()))["role"] == "ADMIN"
    colleague = await invite(offline, admin, address())  # a plain member
    member = (await verify(offline, colleague["acceptUrl"])).json()
    forbidden = await offline.post("/auth/v1/invite", json={"email": address()}, headers=bearer(member))
    assert forbidden.status_code == 403 and forbidden.json()["error_code"] == "forbidden", forbidden.text
    anonymous = await offline.post("/auth/v1/invite", json={"email": address()})
    assert anonymous.status_code == 401


# --- with SMTP: the link goes to the address ----------------------------------------------------


async def test_with_smtp_the_link_is_emailed_and_never_shown(mailing: httpx.AsyncClient, smtp: FakeSMTP) -> None:
    admin = await sign_up_confirmed(mailing, smtp, address(), company=(name := unique("Mailed")))
    invitee = address()
    invitation = await invite(mailing, admin, invitee)
    assert invitation == {"id": invitation["id"], "acceptUrl": None, "emailSent": True}
    [message] = smtp.to(invitee)
    assert name in message["Subject"]
    session = await verify(mailing, smtp.link_to(invitee))
    assert (await company_of(mailing, session.json()))["company"]["name"] == name


async def test_an_unconfirmed_sign_up_yields_to_the_invited_owner(mailing: httpx.AsyncClient, smtp: FakeSMTP) -> None:
    """Someone signs up with another person's address (they cannot confirm it): when the owner follows
    an invitation sent to that address, the squatter's account, password and company go."""
    admin = await sign_up_confirmed(mailing, smtp, address(), company=(name := unique("Real")))
    victim = address()
    squatter = await mailing.post("/auth/v1/signup", json={"email": victim, "password": "squatter password"})
    assert squatter.status_code == 200 and "access_token" not in squatter.json()
    await invite(mailing, admin, victim)
    session = await verify(mailing, smtp.link_to(victim))
    assert session.status_code == 200, session.text
    assert (await company_of(mailing, session.json()))["company"]["name"] == name
    assert (await sign_in(mailing, victim, "squatter password")).status_code == 400


async def test_a_mail_failure_stores_no_invitation(
    mailing: httpx.AsyncClient, smtp: FakeSMTP, engine: AsyncEngine
) -> None:
    admin = await sign_up_confirmed(mailing, smtp, address())
    invitee = address()
    smtp.refuse = True
    try:
        result = await graphql(mailing, admin, INVITE, e=invitee)
    finally:
        smtp.refuse = False
    assert result["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert "nothing was stored" in result["errors"][0]["message"]
    async with engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from invitations where lower(email) = :e"), {"e": invitee}) == 0


async def sign_up_confirmed(client: httpx.AsyncClient, smtp: FakeSMTP, email: str, **data: Any) -> dict[str, Any]:
    """Sign up, then follow the confirmation link the server emailed: a session."""
    pending = await client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD, "data": data})
    assert pending.status_code == 200, pending.text
    confirmed = await client.post(
        "/auth/v1/verify", json={"type": "signup", "token_hash": token_of(smtp.link_to(email))}
    )
    assert confirmed.status_code == 200, confirmed.text
    session: dict[str, Any] = confirmed.json()
    return session


async def test_with_smtp_a_sign_up_confirms_its_address(mailing: httpx.AsyncClient, smtp: FakeSMTP) -> None:
    email = address()
    pending = await mailing.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
    assert pending.status_code == 200
    user = pending.json()
    assert "access_token" not in user and user["email"] == email and user["confirmation_sent_at"]
    assert user["email_confirmed_at"] is None
    refused = await sign_in(mailing, email)
    assert refused.status_code == 400 and refused.json()["error_code"] == "email_not_confirmed"
    assert (await sign_in(mailing, email, "wrong password!")).json()["error_code"] == "invalid_credentials"
    # A new link on request (the old one stops working), then following it signs the user in.
    first_link = smtp.link_to(email)
    resent = await mailing.post("/auth/v1/resend", json={"type": "signup", "email": email})
    assert resent.status_code == 200
    unknown = await mailing.post("/auth/v1/resend", json={"type": "signup", "email": address()})
    assert unknown.status_code == 200  # the same answer: whether an address has an account is not told
    assert len(smtp.to(email)) == 1  # at most one a minute
    session = await mailing.post("/auth/v1/verify", json={"type": "signup", "token_hash": token_of(first_link)})
    assert session.status_code == 200, session.text
    assert (await sign_in(mailing, email)).status_code == 200
    otp_expired(await mailing.post("/auth/v1/verify", json={"type": "signup", "token_hash": token_of(first_link)}))
    settings = await mailing.get("/auth/v1/settings")
    assert settings.json()["mailer_autoconfirm"] is False


async def test_a_sign_up_whose_mail_fails_leaves_nothing(
    mailing: httpx.AsyncClient, smtp: FakeSMTP, engine: AsyncEngine
) -> None:
    email = address()
    smtp.refuse = True
    try:
        failed = await mailing.post(
            "/auth/v1/signup", json={"email": email, "password": PASSWORD, "data": {"company": email}}
        )
    finally:
        smtp.refuse = False
    assert failed.status_code == 503 and failed.json()["error_code"] == "email_send_failed"
    async with engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from users where lower(email) = :e"), {"e": email}) == 0
        assert await conn.scalar(text("select count(*) from companies where name = :e"), {"e": email}) == 0
    again = await mailing.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
    assert again.status_code == 200


async def test_without_smtp_sign_ups_are_confirmed_at_once(offline: httpx.AsyncClient) -> None:
    assert (await offline.get("/auth/v1/settings")).json()["mailer_autoconfirm"] is True
    session = await sign_up(offline, address())
    assert session["access_token"] and session["user"]["email_confirmed_at"]
    refused = await offline.post("/auth/v1/resend", json={"type": "signup", "email": address()})
    assert refused.status_code == 400 and "sends no email" in refused.json()["msg"]
