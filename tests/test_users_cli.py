"""`fluxopus users create|list|set-role` and `fluxopus anon-key`, run as a user would (a subprocess).

The users commands run against the session database (DATABASE_URL) with unique emails and company
names; what they stored is read back as superuser. The anon key needs no database: it is signed with
the data dir's ES256 key.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.auth.keys import SigningKey
from fluxopus.auth.passwords import verify_password
from fluxopus.db.users import ensure_member
from tests.utils.builders import unique
from tests.utils.cli import CliResult, cli_env, run_cli

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

GOOD_PASSWORD = "correct horse battery"
Users = Callable[..., Awaitable[CliResult]]


@pytest.fixture
def users(tmp_path: Path, database_url: str) -> Users:
    """`python -m fluxopus.cli users …` against the session database, in an empty dir."""

    async def run(*args: str) -> CliResult:
        return await run_cli(cli_env(tmp_path, database_url), tmp_path, "users", *args)

    return run


def email() -> str:
    return f"{unique('user')}@example.com"


async def stored(engine: AsyncEngine, address: str) -> dict[str, Any] | None:
    """The user's row and membership, read as superuser (RLS does not apply)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select u.id, u.email, u.password_hash, u.email_confirmed_at, c.name as company, m.role"
                    " from users u left join members m on m.user_id = u.id"
                    " left join companies c on c.id = m.company_id where lower(u.email) = lower(:email)"
                ),
                {"email": address},
            )
        ).first()
    return None if row is None else dict(row._mapping)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    assert result.code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], result.stderr


async def create(users: Users, address: str, *extra: str) -> CliResult:
    return await users("create", "--email", address, "--password", GOOD_PASSWORD, *extra)


# --------------------------------------------------------------------------------------------
# users create
# --------------------------------------------------------------------------------------------


async def test_create_makes_a_new_companys_first_user_its_admin_and_hashes_with_argon2(
    users: Users, engine: AsyncEngine
) -> None:
    company = unique("company")
    first, second = email(), email()

    result = await create(users, first, "--company", company)
    assert result.code == 0, result.stderr
    assert first in result.stdout and "admin" in result.stdout and company in result.stdout
    row = await stored(engine, first)
    assert row is not None
    assert (row["company"], row["role"]) == (company, "admin")
    assert row["password_hash"].startswith("$argon2id$")
    assert GOOD_PASSWORD not in row["password_hash"]
    assert await verify_password(row["password_hash"], GOOD_PASSWORD)
    assert not await verify_password(row["password_hash"], GOOD_PASSWORD + "!")
    assert row["email_confirmed_at"] is not None  # an operator vouches for the address

    # The company exists now: the next user joins it as a member (matched case-insensitively).
    result = await create(users, second, "--company", company.upper())
    assert result.code == 0, result.stderr
    row = await stored(engine, second)
    assert row is not None and (row["company"], row["role"]) == (company, "member")


async def test_create_with_an_explicit_role(users: Users, engine: AsyncEngine) -> None:
    company = unique("company")
    await create(users, email(), "--company", company)
    second = email()
    result = await create(users, second, "--company", company, "--role", "admin")
    assert result.code == 0, result.stderr
    row = await stored(engine, second)
    assert row is not None and row["role"] == "admin"


async def run_with_input(tmp_path: Path, database_url: str, stdin: str, *args: str) -> CliResult:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fluxopus.cli",
        *args,
        env=cli_env(tmp_path, database_url),
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=120)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


async def test_create_asks_for_the_password_twice_without_echoing_it(
    tmp_path: Path, database_url: str, engine: AsyncEngine
) -> None:
    address = email()
    result = await run_with_input(
        tmp_path, database_url, f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}\n", "users", "create", "--email", address
    )
    assert result.code == 0, result.stderr
    assert "Password" in result.stdout and GOOD_PASSWORD not in result.stdout + result.stderr
    row = await stored(engine, address)
    assert row is not None and await verify_password(row["password_hash"], GOOD_PASSWORD)

    # Two different answers: asked again; no input left, so nothing is created.
    other = email()
    result = await run_with_input(
        tmp_path, database_url, f"{GOOD_PASSWORD}\nsomething else\n", "users", "create", "--email", other
    )
    assert result.code != 0
    assert "Traceback" not in result.stderr
    assert await stored(engine, other) is None


@pytest.mark.parametrize("password", ["short", "x" * 1025], ids=["too-short", "too-long"])
async def test_create_refuses_a_weak_password_and_creates_nothing(
    users: Users, engine: AsyncEngine, password: str
) -> None:
    address = email()
    result = await users("create", "--email", address, "--password", password)
    assert_one_line_error(result, "Password should be")
    assert await stored(engine, address) is None


@pytest.mark.parametrize("bad", ["not-an-email", "a@" + "b" * 320])
async def test_create_refuses_what_is_not_an_email(users: Users, engine: AsyncEngine, bad: str) -> None:
    result = await create(users, bad)
    assert_one_line_error(result, "Not an email address")
    assert await stored(engine, bad) is None


async def test_an_existing_user_gets_a_new_password_only_with_reset_password(users: Users, engine: AsyncEngine) -> None:
    address = email()
    assert (await create(users, address)).code == 0
    before = await stored(engine, address)
    assert before is not None

    result = await users("create", "--email", address.upper(), "--password", "another password")
    assert_one_line_error(result, address, "--reset-password")
    assert await stored(engine, address) == before

    result = await users("create", "--email", address, "--password", "another password", "--reset-password")
    assert result.code == 0, result.stderr
    assert "new password" in result.stdout
    after = await stored(engine, address)
    assert after is not None and after["id"] == before["id"]
    assert await verify_password(after["password_hash"], "another password")
    assert not await verify_password(after["password_hash"], GOOD_PASSWORD)
    assert (after["company"], after["role"]) == (before["company"], before["role"])


async def test_a_reset_ends_the_users_sessions(users: Users, engine: AsyncEngine) -> None:
    address = email()
    assert (await create(users, address)).code == 0
    row = await stored(engine, address)
    assert row is not None
    async with engine.begin() as conn:
        session_id = (
            await conn.execute(text("insert into auth_sessions (user_id) values (:id) returning id"), {"id": row["id"]})
        ).scalar_one()

    result = await users("create", "--email", address, "--password", "a new password", "--reset-password")
    assert result.code == 0, result.stderr
    async with engine.connect() as conn:
        revoked = (
            await conn.execute(text("select revoked_at from auth_sessions where id = :id"), {"id": session_id})
        ).scalar_one()
    assert revoked is not None


async def test_a_reset_refuses_another_company_or_role(users: Users, engine: AsyncEngine) -> None:
    company = unique("company")
    address = email()
    assert (await create(users, address, "--company", company)).code == 0
    before = await stored(engine, address)

    result = await users(
        "create", "--email", address, "--password", "new password!", "--reset-password", "--company", unique("other")
    )
    assert_one_line_error(result, "already belongs to company", company)
    result = await users(
        "create", "--email", address, "--password", "new password!", "--reset-password", "--role", "member"
    )
    assert_one_line_error(result, "set-role")
    assert await stored(engine, address) == before  # the transaction rolled back: old password kept


async def test_create_refuses_an_unknown_role(users: Users, engine: AsyncEngine) -> None:
    address = email()
    result = await create(users, address, "--role", "owner")
    assert result.code == 2, result.stdout + result.stderr
    assert await stored(engine, address) is None


# --------------------------------------------------------------------------------------------
# users list
# --------------------------------------------------------------------------------------------


def table(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.strip().splitlines()]


async def test_list_shows_a_companys_users_as_a_table(users: Users, engine: AsyncEngine) -> None:
    company = unique("company")
    admin, member = sorted([email(), email()])
    assert (await create(users, admin, "--company", company)).code == 0
    assert (await create(users, member, "--company", company)).code == 0
    # A user made by `fluxopus token` has no password.
    tokened = await ensure_member(engine, email=email(), company=company, role=None)

    result = await users("list", "--company", company.upper())
    assert result.code == 0, result.stderr
    header, *rows = table(result.stdout)
    assert header == ["EMAIL", "COMPANY", "ROLE", "PASSWORD", "CREATED"]
    by_email = {row[0]: row for row in rows}
    assert set(by_email) == {admin, member, tokened.email}
    assert by_email[admin][1:4] == [company, "admin", "yes"]
    assert by_email[member][1:4] == [company, "member", "yes"]
    assert by_email[tokened.email][1:4] == [company, "member", "no"]
    assert all(row[6] == "UTC" and len(row[4]) == 10 for row in rows)  # 2026-01-31 12:00 UTC

    everyone = await users("list")
    assert everyone.code == 0, everyone.stderr
    assert {admin, member, tokened.email} <= {row[0] for row in table(everyone.stdout)[1:]}


async def test_list_refuses_an_unknown_company(users: Users) -> None:
    missing = unique("no-such-company")
    assert_one_line_error(await users("list", "--company", missing), missing)


# --------------------------------------------------------------------------------------------
# users set-role
# --------------------------------------------------------------------------------------------


async def test_set_role_promotes_and_demotes_but_keeps_the_last_admin(users: Users, engine: AsyncEngine) -> None:
    company = unique("company")
    admin, member = email(), email()
    assert (await create(users, admin, "--company", company)).code == 0
    assert (await create(users, member, "--company", company)).code == 0

    result = await users("set-role", "--email", admin, "--role", "member")
    # The API's words too (tests/test_members.py): both come from fluxopus.set_membership's answer.
    assert_one_line_error(result, "last admin cannot be removed or demoted", company)
    row = await stored(engine, admin)
    assert row is not None and row["role"] == "admin"

    result = await users("set-role", "--email", member.upper(), "--role", "admin")
    assert result.code == 0, result.stderr
    assert f"{member}: admin of {company}" in result.stdout
    row = await stored(engine, member)
    assert row is not None and row["role"] == "admin"

    # Two admins now: either may step down, but not both.
    assert (await users("set-role", "--email", admin, "--role", "member")).code == 0
    assert_one_line_error(await users("set-role", "--email", member, "--role", "member"), "last admin")
    roles = [(await stored(engine, a) or {}).get("role") for a in (admin, member)]
    assert roles == ["member", "admin"]

    # Setting the role someone already has is fine and changes nothing.
    assert (await users("set-role", "--email", member, "--role", "admin")).code == 0


async def test_members_made_at_once_join_one_new_company(engine: AsyncEngine) -> None:
    """Two users provisioned into the same new company at the same moment: one creates it (and is its
    admin), the other waits for that and joins it, instead of getting a company of its own."""
    company = unique("company")
    first, second = await asyncio.gather(
        *(ensure_member(engine, email=email(), company=company, role=None) for _ in range(2))
    )
    assert first.company_id == second.company_id and first.company == second.company == company
    assert sorted([first.role, second.role]) == ["admin", "member"]


async def test_set_role_refuses_an_unknown_user_and_an_unknown_role(users: Users, engine: AsyncEngine) -> None:
    missing = email()
    assert_one_line_error(await users("set-role", "--email", missing, "--role", "admin"), missing)
    address = email()
    assert (await create(users, address)).code == 0
    result = await users("set-role", "--email", address, "--role", "superuser")
    assert result.code == 2, result.stdout + result.stderr


async def test_set_role_refuses_a_user_without_a_company(users: Users, engine: AsyncEngine) -> None:
    address = email()
    async with engine.begin() as conn:
        await conn.execute(text("insert into users (email) values (:email)"), {"email": address})
    assert_one_line_error(await users("set-role", "--email", address, "--role", "admin"), "no company")
    listed = await users("list")
    assert [address, "-", "-", "no"] in [row[:4] for row in table(listed.stdout)]


# --------------------------------------------------------------------------------------------
# anon-key
# --------------------------------------------------------------------------------------------


async def test_anon_key_is_signed_by_the_data_dirs_key(tmp_path: Path) -> None:
    env = cli_env(tmp_path, None)
    result = await run_cli(env, tmp_path, "anon-key")
    assert result.code == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == key + "\n"
    signing_key = SigningKey.load_or_create(tmp_path / "jwt-signing-key.pem")  # created by the command
    assert jwt.get_unverified_header(key)["kid"] == signing_key.kid
    claims = jwt.decode(key, signing_key.public_key, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["role"] == "anon" and "exp" not in claims

    # The same key file next time: a second key is still signed by it.
    again = await run_cli(env, tmp_path, "anon-key")
    assert again.code == 0, again.stderr
    jwt.decode(again.stdout.strip(), signing_key.public_key, algorithms=["ES256"], options={"verify_aud": False})


async def test_anon_key_is_refused_when_sign_in_happens_elsewhere(tmp_path: Path) -> None:
    env = cli_env(tmp_path, None, FLUXOPUS_JWT_SECRET="s" * 40)
    assert_one_line_error(await run_cli(env, tmp_path, "anon-key"), "FLUXOPUS_JWT_SECRET")
    assert not (tmp_path / "jwt-signing-key.pem").exists()
