"""Least privilege in SQL: every function and table privilege `authenticated` and `anon` hold, against an
allowlist (a new grant must be added here, on purpose), and what the removed ones used to allow.

Wherever `authenticated` can run SQL (Supabase exposes it through PostgREST), these are what it can do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from fluxopus.db.engine import asyncpg_dsn
from tests.utils.builders import Company, create_skill, create_task, set_budget

# Functions of ours (schema fluxopus, and public outside extensions) that `authenticated` may execute.
FUNCTIONS = {
    "fluxopus.can_read_entity(kind text, entity uuid)",
    "fluxopus.could_read(kind text, old jsonb, me uuid, admin boolean)",
    "fluxopus.change_membership(target uuid, new_role text)",
    "fluxopus.claims()",
    "fluxopus.company_id()",
    "fluxopus.connection_secrets(connection uuid)",
    "fluxopus.invite_member(invitee text, invited_role text, secret_hash text, valid_for interval)",
    "fluxopus.is_admin()",
    "fluxopus.json_time(t timestamp with time zone)",
    "fluxopus.matching_chunks(query tsquery, pool integer)",
    "fluxopus.set_task_assignee(task uuid, assignee uuid)",
    "fluxopus.uid()",
}
# Whole-table privileges of `authenticated`; `anon` holds none, and no function either.
TABLES = {
    "change_log": {"SELECT"},
    "companies": {"SELECT"},
    "connections": {"DELETE"},
    "entity_tags": {"SELECT", "INSERT", "DELETE"},
    "invitations": {"SELECT", "DELETE"},
    "knowledge": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "knowledge_chunks": {"SELECT"},
    "members": {"SELECT"},
    "oauth_states": {"SELECT", "INSERT", "DELETE"},
    "skill_runs": {"SELECT"},
    "skill_versions": {"SELECT"},
    "skills": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "taggable_types": {"SELECT"},
    "tags": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "tasks": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "time_logs": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "token_usage": {"SELECT"},
}
# Column privileges of `authenticated` on tables it holds no such whole-table privilege on.
_CONNECTION_READ = "account account_id company_id created_at error expires_at has_refresh_token id provider"
COLUMNS = {
    ("connections", "SELECT"): set(f"{_CONNECTION_READ} scopes status token_type updated_at user_id".split()),
    ("connections", "INSERT"): set(
        "access_token account account_id error expires_at provider refresh_token scopes status token_type".split()
    ),
    ("connections", "UPDATE"): set(
        "access_token account account_id error expires_at refresh_token scopes status token_type".split()
    ),
    ("users", "SELECT"): {"id", "email", "created_at"},
    # Admins turn their company's skill tools on or off (policy companies_admin_update, migration 017).
    ("companies", "UPDATE"): {"tools_enabled"},
}


@pytest.fixture
async def superuser(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    yield conn
    await conn.close()


async def test_function_privileges_are_the_allowlist(superuser: asyncpg.Connection) -> None:
    rows = await superuser.fetch(
        """
        select r.rolname, n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' as fn
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         cross join pg_roles r
         where r.rolname in ('authenticated', 'anon') and n.nspname in ('fluxopus', 'public')
           and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
           and has_function_privilege(r.oid, p.oid, 'EXECUTE')
        """
    )
    granted = {(r["rolname"], r["fn"]) for r in rows}
    assert {fn for role, fn in granted if role == "anon"} == set()
    assert {fn for role, fn in granted if role == "authenticated"} == FUNCTIONS


async def test_table_and_column_privileges_are_the_allowlist(superuser: asyncpg.Connection) -> None:
    rows = await superuser.fetch(
        """
        select r.rolname, c.relname, privilege
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         cross join pg_roles r
         cross join unnest(array['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) privilege
         where n.nspname in ('public', 'fluxopus') and c.relkind in ('r', 'v', 'm', 'S', 'p')
           and r.rolname in ('authenticated', 'anon') and has_table_privilege(r.oid, c.oid, privilege)
        """
    )
    tables: dict[str, set[str]] = {}
    for row in rows:
        assert row["rolname"] == "authenticated", dict(row)
        tables.setdefault(row["relname"], set()).add(row["privilege"])
    assert tables == TABLES
    rows = await superuser.fetch(
        """
        select r.rolname, c.relname, a.attname, privilege
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
          join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
         cross join pg_roles r
         cross join unnest(array['SELECT','INSERT','UPDATE','REFERENCES']) privilege
         where n.nspname in ('public', 'fluxopus') and c.relkind in ('r', 'p')
           and r.rolname in ('authenticated', 'anon')
           and has_column_privilege(r.oid, c.oid, a.attnum, privilege)
           and not has_table_privilege(r.oid, c.oid, privilege)
        """
    )
    columns: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        assert row["rolname"] == "authenticated", dict(row)
        columns.setdefault((row["relname"], row["privilege"]), set()).add(row["attname"])
    assert columns == COLUMNS


@asynccontextmanager
async def as_user(database_url: str, user_id: str) -> AsyncIterator[asyncpg.Connection]:
    """SQL as `authenticated` with this user's claims, the way PostgREST would run it."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            await conn.execute(
                "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
                json.dumps({"sub": user_id, "role": "authenticated"}),
            )
            yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "call",
    [
        "select fluxopus.charge_tokens(jsonb_build_object('sub', $1::text), 1000000, 1000000)",
        "select fluxopus.start_run(jsonb_build_object('sub', $1::text), gen_random_uuid(), 1, '{}', 'echo', 'e',"
        " 1, 1000000, interval '1 hour')",
        "select fluxopus.finish_run(jsonb_build_object('sub', $1::text), gen_random_uuid(), 'succeeded', '', 0, 0,"
        " null) where $1::text is not null",
        "select fluxopus.take_oauth_state($1::text)",
        "select fluxopus.reserve_tokens(1, 1000000, interval '1 hour') where $1::text is not null",
        "select fluxopus.cite_run(jsonb_build_object('sub', $1::text), gen_random_uuid(), '[]')",
        "select fluxopus.record_tool_call(jsonb_build_object('sub', $1::text), gen_random_uuid(), '{}')",
    ],
    ids=[
        "charge_tokens",
        "start_run",
        "finish_run",
        "take_oauth_state",
        "reserve_tokens",
        "cite_run",
        "record_tool_call",
    ],
)
async def test_service_functions_are_refused_to_users(
    database_url: str, acme: Company, globex: Company, call: str
) -> None:
    """Acting for someone else (charging Globex's budget as an Acme member) is refused outright."""
    async with as_user(database_url, acme.alice.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(call, globex.admin.id)


async def test_only_an_admin_turns_tools_off_and_only_for_their_company(
    database_url: str, acme: Company, globex: Company
) -> None:
    """companies: UPDATE of tools_enabled alone, by an admin, on their own company (migration 017)."""
    async with as_user(database_url, acme.alice.id) as conn:
        assert await conn.execute("update companies set tools_enabled = false") == "UPDATE 0"
    async with as_user(database_url, acme.admin.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("update companies set name = 'renamed'")
    async with as_user(database_url, acme.admin.id) as conn:
        other = uuid.UUID(globex.admin.company_id)
        assert await conn.execute("update companies set tools_enabled = false where id = $1", other) == "UPDATE 0"
        assert await conn.execute("update companies set tools_enabled = tools_enabled") == "UPDATE 1"


async def test_a_user_cannot_insert_a_run_record(client: httpx.AsyncClient, database_url: str, acme: Company) -> None:
    skill = await create_skill(client, acme.alice)
    async with as_user(database_url, acme.alice.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "insert into skill_runs (skill_id, company_id, user_id, version, status, input, provider, model,"
                " output, input_tokens, output_tokens) values ($1, $2, $3, 1, 'succeeded', '{}', 'echo', 'e', 'x', 0,"
                " 0)",
                uuid.UUID(skill["id"]),
                uuid.UUID(acme.alice.company_id),
                uuid.UUID(acme.alice.id),
            )


async def test_a_time_log_cannot_be_moved_to_a_task_its_author_cannot_read(
    client: httpx.AsyncClient, database_url: str, acme: Company
) -> None:
    mine = await create_task(client, acme.alice)
    hidden = await create_task(client, acme.bob)  # Alice neither created nor is assigned it
    log = (
        await client.post(f"/api/tasks/{mine['id']}/time-logs", json={"minutes": 5}, headers=acme.alice.headers)
    ).json()
    async with as_user(database_url, acme.alice.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "update time_logs set task_id = $1 where id = $2", uuid.UUID(hidden["id"]), uuid.UUID(log["id"])
            )
    async with as_user(database_url, acme.alice.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "update time_logs set user_id = $1 where id = $2", uuid.UUID(acme.bob.id), uuid.UUID(log["id"])
            )
    async with as_user(database_url, acme.alice.id) as conn:
        assert (
            await conn.execute("update time_logs set note = 'fine' where id = $1", uuid.UUID(log["id"])) == "UPDATE 1"
        )


async def test_the_api_still_charges_runs_through_the_service(
    client: httpx.AsyncClient, database_url: str, acme: Company
) -> None:
    """The same functions, called by the service for the caller, still work: a run is recorded and charged."""
    await set_budget(database_url, acme, 100_000)
    skill = await create_skill(client, acme.alice)
    response = await client.post(
        f"/api/skills/{skill['id']}/run",
        json={"input": {"name": "Ada"}},
        headers={**acme.alice.headers, "Accept": "application/json"},
    )
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    usage = (await client.get("/api/usage", headers=acme.alice.headers)).json()
    assert usage["used"] > 0
