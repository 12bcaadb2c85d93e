"""Companies and members on GraphQL: `company`, `members`, `invitations`, and the admin mutations
`inviteMember`, `cancelInvitation`, `updateMemberRole`, `removeMember`.

Everything goes through the real app and the embedded PostgreSQL. Direct SQL (as the database
owner, so without RLS) only reads what really is stored, sets up a user without a company, and
holds the company's admin rows locked so that two concurrent demotions meet inside the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.auth.jwt import mint_token
from tests.utils.builders import SECRET, Company, User, error_codes, gql, make_user, unique
from tests.utils.http import ok

MEMBER_FIELDS = "userId email role companyId createdAt"
INVITATION_FIELDS = "id email role invitedBy createdAt acceptedAt expiresAt acceptUrl emailSent"

COMPANY = "{ company { id name createdAt } }"
MEMBERS = (
    f"query($limit: Int! = 50, $offset: Int! = 0) {{ members(limit: $limit, offset: $offset) {{ {MEMBER_FIELDS} }} }}"
)
INVITATIONS = f"{{ invitations {{ {INVITATION_FIELDS} }} }}"
INVITE = (
    "mutation($email: String!, $role: Role! = MEMBER)"
    f" {{ inviteMember(email: $email, role: $role) {{ {INVITATION_FIELDS} }} }}"
)
CANCEL = "mutation($id: ID!) { cancelInvitation(id: $id) }"
UPDATE_ROLE = (
    f"mutation($userId: ID!, $role: Role!) {{ updateMemberRole(userId: $userId, role: $role) {{ {MEMBER_FIELDS} }} }}"
)
REMOVE = "mutation($userId: ID!) { removeMember(userId: $userId) }"

NIL = "00000000-0000-4000-8000-000000000000"
LAST_ADMIN = "last admin cannot be removed or demoted"


# ---------------------------------------------------------------------------------------------
# helpers


def expect(result: dict[str, Any], code: str) -> dict[str, Any]:
    assert error_codes(result) == [code], result
    # A failed non-null field nulls the whole `data`; a nullable one (`company`) only itself.
    assert not any((result.get("data") or {}).values()), result
    message = result["errors"][0]["message"]
    assert isinstance(message, str) and message.strip(), result
    error: dict[str, Any] = result["errors"][0]
    return error


def utc(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0), value
    return parsed


def new_email() -> str:
    return f"{unique('invitee')}@example.com"


async def roles(engine: AsyncEngine, company_id: str) -> dict[str, str]:
    """user_id → role of every member of a company, as stored."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select user_id::text, role from members where company_id = cast(:c as uuid)"), {"c": company_id}
        )
        return {r[0]: r[1] for r in rows}


async def invitation_rows(engine: AsyncEngine, email: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select id::text, company_id::text, email, role, invited_by::text, accepted_at"
                " from invitations where lower(email) = lower(:e) order by created_at"
            ),
            {"e": email},
        )
        return [dict(r) for r in rows.mappings()]


async def all_invitations(engine: AsyncEngine, company_id: str) -> list[tuple[str, str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select id::text, role, accepted_at from invitations where company_id = cast(:c as uuid) order by id"),
            {"c": company_id},
        )
        return [tuple(r) for r in rows]


async def make_companyless(engine: AsyncEngine, database_url: str) -> User:
    """A user with an account and a valid token who belongs to no company (as after a removal)."""
    user = await make_user(database_url, company=unique("company"), role="admin")
    async with engine.begin() as conn:
        await conn.execute(text("delete from members where user_id = cast(:u as uuid)"), {"u": user.id})
    return user


async def invite(client: httpx.AsyncClient, admin: User, email: str, role: str = "MEMBER") -> dict[str, Any]:
    invitation: dict[str, Any] = ok(await gql(client, admin, INVITE, {"email": email, "role": role}))["inviteMember"]
    return invitation


async def member_ids(client: httpx.AsyncClient, user: User) -> list[str]:
    return [m["userId"] for m in ok(await gql(client, user, MEMBERS))["members"]]


def expired(user: User) -> User:
    token = mint_token(
        SECRET,
        user_id=uuid.UUID(user.id),
        email=user.email,
        role=user.role,
        company_id=uuid.UUID(user.company_id),
        ttl=-3600,
    )
    return dataclasses.replace(user, token=token)


# ---------------------------------------------------------------------------------------------
# company


async def test_company_is_the_callers(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    mine = ok(await gql(client, acme.bob, COMPANY))["company"]
    assert mine["id"] == acme.bob.company_id
    assert mine["name"] == acme.name
    utc(mine["createdAt"])
    theirs = ok(await gql(client, globex.admin, COMPANY))["company"]
    assert theirs["id"] == globex.admin.company_id != mine["id"]
    assert theirs["name"] == globex.name


async def test_company_is_null_without_one(client: httpx.AsyncClient, engine: AsyncEngine, database_url: str) -> None:
    loner = await make_companyless(engine, database_url)
    data = ok(await gql(client, loner, "{ company { id } me { id email role company { id } } members { userId } }"))
    assert data == {
        "company": None,
        "me": {"id": loner.id, "email": loner.email, "role": None, "company": None},
        "members": [],
    }


# ---------------------------------------------------------------------------------------------
# members


@pytest.mark.parametrize("who", ["admin", "alice"])
async def test_members_lists_the_company_in_join_order(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, who: str
) -> None:
    members = ok(await gql(client, getattr(acme, who), MEMBERS))["members"]
    expected = [acme.admin, acme.alice, acme.bob]
    assert [m["userId"] for m in members] == [u.id for u in expected]
    for member, user in zip(members, expected, strict=True):
        assert member["email"] == user.email
        assert member["role"] == user.role.upper()
        assert member["companyId"] == acme.admin.company_id
        utc(member["createdAt"])
    assert {m["userId"]: m["role"] for m in members} == {
        user_id: role.upper() for user_id, role in (await roles(engine, acme.admin.company_id)).items()
    }


async def test_members_pages(client: httpx.AsyncClient, acme: Company) -> None:
    page = ok(await gql(client, acme.alice, MEMBERS, {"limit": 1, "offset": 1}))["members"]
    assert [m["userId"] for m in page] == [acme.alice.id]
    assert ok(await gql(client, acme.alice, MEMBERS, {"limit": 2, "offset": 2}))["members"][0]["userId"] == acme.bob.id
    assert ok(await gql(client, acme.alice, MEMBERS, {"offset": 3}))["members"] == []


@pytest.mark.parametrize(
    "variables", [{"limit": 0}, {"limit": 201}, {"limit": -1}, {"offset": -1}, {"limit": "ten"}, {"offset": 1.5}]
)
async def test_members_bad_paging(client: httpx.AsyncClient, acme: Company, variables: dict[str, Any]) -> None:
    expect(await gql(client, acme.alice, MEMBERS, variables), "BAD_USER_INPUT")


async def test_members_isolated_between_companies(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    acme_ids = set(await member_ids(client, acme.alice))
    globex_ids = set(await member_ids(client, globex.alice))
    assert acme_ids == {acme.admin.id, acme.alice.id, acme.bob.id}
    assert globex_ids == {globex.admin.id, globex.alice.id, globex.bob.id}


# ---------------------------------------------------------------------------------------------
# inviteMember and invitations


async def test_invite_member_stores_a_pending_invitation(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    email = new_email()
    invitation = await invite(client, acme.admin, email, "ADMIN")
    assert invitation["email"] == email
    assert invitation["role"] == "ADMIN"
    assert invitation["invitedBy"] == acme.admin.id
    assert invitation["acceptedAt"] is None
    # A week to follow its link, which comes back once (no mail is configured here) and is not stored.
    assert utc(invitation["expiresAt"]) - utc(invitation["createdAt"]) == dt.timedelta(days=7)
    link = invitation.pop("acceptUrl")
    assert link.startswith("http://127.0.0.1:8000/auth/v1/verify?token=") and "type=invite" in link
    assert invitation.pop("emailSent") is False
    token = link.split("token=")[1].split("&")[0]
    async with engine.connect() as conn:
        stored = await conn.scalar(text("select token_hash from invitations where id = :id"), {"id": invitation["id"]})
    assert stored == hashlib.sha256(token.encode()).hexdigest() and token not in stored
    assert await invitation_rows(engine, email) == [
        {
            "id": invitation["id"],
            "company_id": acme.admin.company_id,
            "email": email,
            "role": "admin",
            "invited_by": acme.admin.id,
            "accepted_at": None,
        }
    ]
    assert ok(await gql(client, acme.admin, INVITATIONS))["invitations"] == [
        {**invitation, "acceptUrl": None, "emailSent": False}
    ]
    # An invitation is not a membership: nobody joined yet.
    assert len(await roles(engine, acme.admin.company_id)) == 3


async def test_invite_member_defaults_to_member_and_normalises_the_email(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    email = new_email()
    result = ok(
        await gql(
            client,
            acme.admin,
            "mutation($e: String!) { inviteMember(email: $e) { email role } }",
            {"e": f"  {email.upper()} "},
        )
    )
    assert result["inviteMember"] == {"email": email, "role": "MEMBER"}
    assert [r["role"] for r in await invitation_rows(engine, email)] == ["member"]


async def test_invitations_lists_pending_ones_newest_first(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    first = await invite(client, acme.admin, new_email())
    second = await invite(client, acme.admin, new_email(), "ADMIN")
    lapsed = await invite(client, acme.admin, new_email())
    async with engine.begin() as conn:  # an expired invitation is no longer pending
        await conn.execute(
            text("update invitations set expires_at = now() - interval '1 second' where id = :id"), {"id": lapsed["id"]}
        )
    listed = ok(await gql(client, acme.admin, INVITATIONS))["invitations"]
    assert [i["id"] for i in listed] == [second["id"], first["id"]]
    assert all(i["acceptUrl"] is None and i["emailSent"] is False for i in listed)  # the link is never shown again


async def test_inviting_an_existing_user_without_a_company_does_not_make_them_a_member(
    client: httpx.AsyncClient, engine: AsyncEngine, database_url: str, acme: Company
) -> None:
    """They join by following the link (tests/security/test_invitations.py), not by being named."""
    loner = await make_companyless(engine, database_url)
    invitation = await invite(client, acme.admin, loner.email, "ADMIN")
    assert invitation["acceptedAt"] is None and invitation["acceptUrl"]
    assert loner.id not in await roles(engine, acme.admin.company_id)
    me = ok(await gql(client, loner, "{ me { role company { id } } }"))["me"]
    assert me == {"role": None, "company": None}


async def test_a_removed_member_is_invited_back_like_anyone(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    ok(await gql(client, acme.admin, REMOVE, {"userId": acme.bob.id}))
    invitation = await invite(client, acme.admin, acme.bob.email)
    assert invitation["acceptedAt"] is None
    assert acme.bob.id not in await roles(engine, acme.admin.company_id)  # not until the link is followed


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "no-at-sign.example.com",
        "two@@example.com",
        "a@b@example.com",
        "spaces in@example.com",
        "nodomain@",
        "@example.com",
        "nodot@localhost",
        "trailing-dot@example.",
        f"{'x' * 65}@example.com",
        f"long@{'d' * 320}.com",
    ],
)
async def test_invite_member_refuses_bad_emails(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, email: str
) -> None:
    before = await all_invitations(engine, acme.admin.company_id)
    error = expect(await gql(client, acme.admin, INVITE, {"email": email}), "BAD_USER_INPUT")
    assert "email" in error["message"].lower()
    assert await all_invitations(engine, acme.admin.company_id) == before


@pytest.mark.parametrize(
    "document, variables",
    [
        (INVITE, {"email": "ok@example.com", "role": "owner"}),
        (INVITE, {"email": "ok@example.com", "role": None}),
        (INVITE, {"email": None}),
        (INVITE, {"email": 42}),
        ('mutation { inviteMember(email: "ok@example.com", role: superadmin) { id } }', {}),
        ('mutation { inviteMember(email: "ok@example.com", role: "ADMIN") { id } }', {}),
        ("mutation { inviteMember { id } }", {}),
    ],
)
async def test_invite_member_refuses_bad_roles_and_types(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, document: str, variables: dict[str, Any]
) -> None:
    before = await all_invitations(engine, acme.admin.company_id)
    expect(await gql(client, acme.admin, document, variables), "BAD_USER_INPUT")
    assert await all_invitations(engine, acme.admin.company_id) == before
    assert await invitation_rows(engine, "ok@example.com") == []


async def test_inviting_another_companys_member_answers_like_anyone(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    """Whether an address has an account elsewhere is not the inviting admin's to learn."""
    stranger = ok(await gql(client, acme.admin, INVITE, {"email": new_email()}))["inviteMember"]
    for email in (globex.alice.email, globex.admin.email.upper()):
        invitation = ok(await gql(client, acme.admin, INVITE, {"email": email}))["inviteMember"]
        assert set(invitation) == set(stranger)
        assert invitation["acceptedAt"] is None and invitation["acceptUrl"]
        assert [r["company_id"] for r in await invitation_rows(engine, email)] == [acme.admin.company_id]
    assert (await roles(engine, globex.admin.company_id))[globex.alice.id] == "member"
    # One's own member is no secret.
    error = expect(await gql(client, acme.admin, INVITE, {"email": acme.bob.email}), "CONFLICT")
    assert "already a member of your company" in error["message"]


async def test_several_companies_may_invite_an_address_and_inviting_again_renews(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    """No admin can squat an address: another company's invitation does not block this one. Inviting
    an address again renews its invitation (a new link, a new expiry, the new role)."""
    email = new_email()
    theirs = await invite(client, globex.admin, email)
    mine = await invite(client, acme.admin, email)
    again = await invite(client, acme.admin, email.upper(), "ADMIN")
    assert again["id"] == mine["id"] and again["role"] == "ADMIN" and again["acceptUrl"] != mine["acceptUrl"]
    rows = {(r["id"], r["company_id"], r["role"]) for r in await invitation_rows(engine, email)}
    assert rows == {(theirs["id"], globex.admin.company_id, "member"), (mine["id"], acme.admin.company_id, "admin")}


async def test_invitations_isolated_between_companies(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    mine = await invite(client, acme.admin, new_email())
    theirs = await invite(client, globex.admin, new_email())
    assert [i["id"] for i in ok(await gql(client, acme.admin, INVITATIONS))["invitations"]] == [mine["id"]]
    assert [i["id"] for i in ok(await gql(client, globex.admin, INVITATIONS))["invitations"]] == [theirs["id"]]
    # Neither admin can withdraw the other company's invitation: to them it does not exist.
    expect(await gql(client, acme.admin, CANCEL, {"id": theirs["id"]}), "NOT_FOUND")
    assert len(await all_invitations(engine, globex.admin.company_id)) == 1


# ---------------------------------------------------------------------------------------------
# cancelInvitation


async def test_cancel_invitation(client: httpx.AsyncClient, engine: AsyncEngine, acme: Company) -> None:
    email = new_email()
    kept = await invite(client, acme.admin, new_email())
    invitation = await invite(client, acme.admin, email)
    assert ok(await gql(client, acme.admin, CANCEL, {"id": invitation["id"]})) == {"cancelInvitation": invitation["id"]}
    assert await invitation_rows(engine, email) == []
    assert [i["id"] for i in ok(await gql(client, acme.admin, INVITATIONS))["invitations"]] == [kept["id"]]
    # Gone means gone; and the email can be invited again.
    expect(await gql(client, acme.admin, CANCEL, {"id": invitation["id"]}), "NOT_FOUND")
    assert (await invite(client, acme.admin, email))["email"] == email


async def test_cancel_invitation_not_found(client: httpx.AsyncClient, engine: AsyncEngine, acme: Company) -> None:
    accepted = await invite(client, acme.admin, new_email())
    async with engine.begin() as conn:
        await conn.execute(text("update invitations set accepted_at = now() where id = :id"), {"id": accepted["id"]})
    before = await all_invitations(engine, acme.admin.company_id)
    for invitation_id in (NIL, str(uuid.uuid4()), accepted["id"]):
        expect(await gql(client, acme.admin, CANCEL, {"id": invitation_id}), "NOT_FOUND")
    assert await all_invitations(engine, acme.admin.company_id) == before


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", NIL + "0", "' or 1=1 --"])
async def test_cancel_invitation_bad_id(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, bad_id: str
) -> None:
    await invite(client, acme.admin, new_email())
    before = await all_invitations(engine, acme.admin.company_id)
    expect(await gql(client, acme.admin, CANCEL, {"id": bad_id}), "BAD_USER_INPUT")
    assert await all_invitations(engine, acme.admin.company_id) == before


# ---------------------------------------------------------------------------------------------
# updateMemberRole and removeMember


async def test_update_member_role_promotes_and_demotes(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    promoted = ok(await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.alice.id, "role": "ADMIN"}))
    member = promoted["updateMemberRole"]
    assert {k: member[k] for k in ("userId", "email", "role", "companyId")} == {
        "userId": acme.alice.id,
        "email": acme.alice.email,
        "role": "ADMIN",
        "companyId": acme.admin.company_id,
    }
    utc(member["createdAt"])
    assert (await roles(engine, acme.admin.company_id))[acme.alice.id] == "admin"
    # Alice is an admin now, with the same token: she can invite.
    assert (await invite(client, acme.alice, new_email()))["invitedBy"] == acme.alice.id
    demoted = ok(await gql(client, acme.alice, UPDATE_ROLE, {"userId": acme.alice.id, "role": "MEMBER"}))
    assert demoted["updateMemberRole"]["role"] == "MEMBER"
    # Setting the role a member already has is fine and changes nothing.
    same = ok(await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.bob.id, "role": "MEMBER"}))
    assert same["updateMemberRole"]["role"] == "MEMBER"
    assert await roles(engine, acme.admin.company_id) == {
        acme.admin.id: "admin",
        acme.alice.id: "member",
        acme.bob.id: "member",
    }


async def test_remove_member(client: httpx.AsyncClient, engine: AsyncEngine, acme: Company) -> None:
    assert ok(await gql(client, acme.admin, REMOVE, {"userId": acme.bob.id})) == {"removeMember": acme.bob.id}
    assert acme.bob.id not in await roles(engine, acme.admin.company_id)
    assert await member_ids(client, acme.alice) == [acme.admin.id, acme.alice.id]
    # Bob keeps his account but sees nothing of the company any more.
    data = ok(await gql(client, acme.bob, "{ me { id company { id } } company { id } members { userId } }"))
    assert data == {"me": {"id": acme.bob.id, "company": None}, "company": None, "members": []}
    async with engine.connect() as conn:
        still = await conn.execute(text("select 1 from users where id = cast(:u as uuid)"), {"u": acme.bob.id})
        assert still.first() is not None
    expect(await gql(client, acme.admin, REMOVE, {"userId": acme.bob.id}), "NOT_FOUND")


async def test_an_admin_may_step_down_when_another_admin_remains(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    ok(await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.alice.id, "role": "ADMIN"}))
    stepped = ok(await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.admin.id, "role": "MEMBER"}))
    assert stepped["updateMemberRole"]["role"] == "MEMBER"
    # Now a member: the admin mutations are closed to them.
    expect(await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.admin.id, "role": "ADMIN"}), "FORBIDDEN")
    ok(await gql(client, acme.alice, UPDATE_ROLE, {"userId": acme.admin.id, "role": "ADMIN"}))
    assert ok(await gql(client, acme.alice, REMOVE, {"userId": acme.alice.id})) == {"removeMember": acme.alice.id}
    assert await roles(engine, acme.admin.company_id) == {acme.admin.id: "admin", acme.bob.id: "member"}


@pytest.mark.parametrize("change", ["demote", "remove"])
async def test_the_last_admin_cannot_be_demoted_or_removed(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, change: str
) -> None:
    before = await roles(engine, acme.admin.company_id)
    if change == "demote":
        result = await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.admin.id, "role": "MEMBER"})
    else:
        result = await gql(client, acme.admin, REMOVE, {"userId": acme.admin.id})
    error = expect(result, "CONFLICT")
    assert LAST_ADMIN in error["message"].lower()
    assert await roles(engine, acme.admin.company_id) == before


async def wait_for_lock_waiters(engine: AsyncEngine, count: int) -> None:
    """Until `count` sessions wait on a lock inside fluxopus.change_membership."""
    query = text(
        "select count(*) from pg_stat_activity"
        " where wait_event_type = 'Lock' and query ilike '%change_membership%' and pid <> pg_backend_pid()"
    )
    for _ in range(2000):
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar_one() >= count:
                return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{count} requests never reached fluxopus.change_membership")


@pytest.mark.parametrize("change", ["demote", "remove"])
async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, change: str
) -> None:
    ok(await gql(client, acme.admin, UPDATE_ROLE, {"userId": acme.alice.id, "role": "ADMIN"}))

    async def demote(caller: User, target: User) -> dict[str, Any]:
        if change == "demote":
            return await gql(client, caller, UPDATE_ROLE, {"userId": target.id, "role": "MEMBER"})
        return await gql(client, caller, REMOVE, {"userId": target.id})

    # Hold the company's admin rows so both requests are inside the database, past their own admin
    # check, before either can change anything: they really overlap, whatever the event loop does.
    async with engine.connect() as holder:
        await holder.begin()
        await holder.execute(
            text("select 1 from members where company_id = cast(:c as uuid) and role = 'admin' for update"),
            {"c": acme.admin.company_id},
        )
        both = asyncio.gather(demote(acme.admin, acme.alice), demote(acme.alice, acme.admin))
        await wait_for_lock_waiters(engine, 2)
        await holder.rollback()
        results = await both

    codes = sorted(error_codes(r)[0] if "errors" in r else "ok" for r in results)
    assert codes == ["CONFLICT", "ok"], results
    stored = await roles(engine, acme.admin.company_id)
    admins = [user_id for user_id, role in stored.items() if role == "admin"]
    assert len(admins) == 1, stored
    winner = acme.admin if results[0].get("data") else acme.alice
    assert admins == [winner.id]
    # The survivor is still an admin through the API, the loser's refusal changed nothing of theirs.
    assert ok(await gql(client, winner, "{ me { role } }"))["me"]["role"] == "ADMIN"


async def test_update_member_role_and_remove_member_not_found(
    client: httpx.AsyncClient, engine: AsyncEngine, database_url: str, acme: Company, globex: Company
) -> None:
    loner = await make_companyless(engine, database_url)
    before_acme = await roles(engine, acme.admin.company_id)
    before_globex = await roles(engine, globex.admin.company_id)
    for target in (globex.alice.id, globex.admin.id, loner.id, NIL, str(uuid.uuid4())):
        expect(await gql(client, acme.admin, UPDATE_ROLE, {"userId": target, "role": "ADMIN"}), "NOT_FOUND")
        expect(await gql(client, acme.admin, REMOVE, {"userId": target}), "NOT_FOUND")
    assert await roles(engine, acme.admin.company_id) == before_acme
    assert await roles(engine, globex.admin.company_id) == before_globex


@pytest.mark.parametrize(
    "document, variables",
    [
        (UPDATE_ROLE, {"userId": "not-a-uuid", "role": "ADMIN"}),
        (UPDATE_ROLE, {"userId": "", "role": "ADMIN"}),
        (UPDATE_ROLE, {"userId": "BOB", "role": "owner"}),
        (UPDATE_ROLE, {"userId": "BOB", "role": "admin"}),
        (UPDATE_ROLE, {"userId": "BOB", "role": None}),
        (UPDATE_ROLE, {"userId": "BOB"}),
        (UPDATE_ROLE, {"userId": None, "role": "ADMIN"}),
        (REMOVE, {"userId": "12345"}),
        (REMOVE, {"userId": "BOB" + "0"}),
        (REMOVE, {"userId": None}),
        (REMOVE, {"userId": ["BOB"]}),
    ],
)
async def test_update_member_role_and_remove_member_bad_input(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, document: str, variables: dict[str, Any]
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.replace("BOB", acme.bob.id) if isinstance(value, str) else value

    before = await roles(engine, acme.admin.company_id)
    expect(await gql(client, acme.admin, document, {k: fill(v) for k, v in variables.items()}), "BAD_USER_INPUT")
    assert await roles(engine, acme.admin.company_id) == before


# ---------------------------------------------------------------------------------------------
# FORBIDDEN: members (and users without a company) calling admin operations


def admin_operations(acme: Company, invitation_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "inviteMember": (INVITE, {"email": new_email(), "role": "ADMIN"}),
        "cancelInvitation": (CANCEL, {"id": invitation_id}),
        "cancelInvitation(random id)": (CANCEL, {"id": str(uuid.uuid4())}),
        "updateMemberRole(bob)": (UPDATE_ROLE, {"userId": acme.bob.id, "role": "ADMIN"}),
        "updateMemberRole(self)": (UPDATE_ROLE, {"userId": acme.alice.id, "role": "ADMIN"}),
        "updateMemberRole(admin)": (UPDATE_ROLE, {"userId": acme.admin.id, "role": "MEMBER"}),
        "updateMemberRole(random id)": (UPDATE_ROLE, {"userId": str(uuid.uuid4()), "role": "ADMIN"}),
        "removeMember(bob)": (REMOVE, {"userId": acme.bob.id}),
        "removeMember(admin)": (REMOVE, {"userId": acme.admin.id}),
        "removeMember(random id)": (REMOVE, {"userId": str(uuid.uuid4())}),
        "invitations": (INVITATIONS, {}),
    }


async def test_members_get_forbidden_on_admin_operations(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    pending = await invite(client, acme.admin, new_email())
    before_roles = await roles(engine, acme.admin.company_id)
    before_invitations = await all_invitations(engine, acme.admin.company_id)
    for name, (document, variables) in admin_operations(acme, pending["id"]).items():
        error = expect(await gql(client, acme.alice, document, variables), "FORBIDDEN")
        assert "admin" in error["message"].lower(), name
    assert await roles(engine, acme.admin.company_id) == before_roles
    assert await all_invitations(engine, acme.admin.company_id) == before_invitations


async def test_users_without_a_company_get_forbidden_on_admin_operations(
    client: httpx.AsyncClient, engine: AsyncEngine, database_url: str, acme: Company
) -> None:
    loner = await make_companyless(engine, database_url)
    pending = await invite(client, acme.admin, new_email())
    before_roles = await roles(engine, acme.admin.company_id)
    before_invitations = await all_invitations(engine, acme.admin.company_id)
    for document, variables in admin_operations(acme, pending["id"]).values():
        expect(await gql(client, loner, document, variables), "FORBIDDEN")
    assert await roles(engine, acme.admin.company_id) == before_roles
    assert await all_invitations(engine, acme.admin.company_id) == before_invitations
    async with engine.connect() as conn:
        joined = await conn.execute(text("select 1 from members where user_id = cast(:u as uuid)"), {"u": loner.id})
        assert joined.first() is None


# ---------------------------------------------------------------------------------------------
# UNAUTHENTICATED on every field


FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "company": (COMPANY, {}),
    "members": (MEMBERS, {}),
    "invitations": (INVITATIONS, {}),
    "inviteMember": (INVITE, {"email": "EMAIL", "role": "ADMIN"}),
    "cancelInvitation": (CANCEL, {"id": "INVITATION"}),
    "updateMemberRole": (UPDATE_ROLE, {"userId": "BOB", "role": "ADMIN"}),
    "removeMember": (REMOVE, {"userId": "BOB"}),
    "me": ("{ me { id } }", {}),
}


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("auth", ["missing", "expired", "malformed"])
async def test_unauthenticated(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, field: str, auth: str
) -> None:
    email = new_email()
    pending = await invite(client, acme.admin, new_email())
    before_roles = await roles(engine, acme.admin.company_id)
    before_invitations = await all_invitations(engine, acme.admin.company_id)
    caller = {
        "missing": None,
        "expired": expired(acme.admin),
        "malformed": dataclasses.replace(acme.admin, token="not-a-jwt"),
    }[auth]
    document, variables = FIELDS[field]
    placeholders = {"EMAIL": email, "INVITATION": pending["id"], "BOB": acme.bob.id}
    result = await gql(client, caller, document, {k: placeholders.get(v, v) for k, v in variables.items()})
    error = expect(result, "UNAUTHENTICATED")
    assert error["path"] == [field]
    assert await roles(engine, acme.admin.company_id) == before_roles
    assert await all_invitations(engine, acme.admin.company_id) == before_invitations
    assert await invitation_rows(engine, email) == []
