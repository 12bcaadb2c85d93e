"""`fluxopus.live_visibility` against the real read policies: the SQL mirror stays honest.

Live events decide who saw a row before a change from the few columns the change log keeps of it
(migration 015: `old`), with `fluxopus.could_read` re-stating each table's read policy over them; the
company half is change_log's own policy. Nothing forces the two statements to stay alike when a policy
changes, so this test compares them on real rows: tasks, knowledge items, skill runs and tags of two
companies, written through the API by random users (admins, members, and a member since removed), with
random assignees, statuses and visibilities. For every (user, row) pair, as that user — a transaction as
`authenticated` with their claims, as the app opens one (db/session.py `_begin_as`) — it checks that

    exists (select 1 from <table> where id = row)                          -- the table's policy
  = exists (select 1 from change_log where id = <the row's change>)        -- change_log_read
    and fluxopus.could_read(kind, <the row's columns as the trigger keeps them>, uid(), is_admin())

and that `fluxopus.live_visibility` — what the hub runs, as the service, for every identity at once —
answers `visible_now` as the policy does for each row's last change.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.db.engine import operator_engine
from tests.utils.builders import Company, User, create_skill, gql, make_user, unique

SEED = 1515
TASKS, ITEMS, RUNS = 24, 12, 8  # per company

# The row's columns as each trigger of migration 015 keeps them in `old`, read as the superuser; and
# the row's last change, whose visibility under change_log_read is the company half of the mirror.
ROWS = """
select 'task' as kind, t.id, t.company_id,
       jsonb_build_object('created_by', t.created_by, 'assignee_id', t.assignee_id, 'status', t.status) as old
  from tasks t where t.company_id = any(:companies)
union all
select 'knowledge', k.id, k.company_id, jsonb_build_object('owner_id', k.owner_id, 'visibility', k.visibility)
  from knowledge k where k.company_id = any(:companies)
union all
select 'skill_run', r.id, r.company_id, jsonb_build_object('user_id', r.user_id, 'skill_id', r.skill_id)
  from skill_runs r where r.company_id = any(:companies)
union all
select 'tag', g.id, g.company_id, '{}'::jsonb from tags g where g.company_id = any(:companies)
"""
LAST_CHANGE = "select max(id) from change_log where kind = :kind and entity_id = :id"

# As one user: the policy's answer and the mirror's, for every row.
COMPARE = """
select r.kind, r.id,
       case r.kind
         when 'task' then exists (select 1 from tasks t where t.id = r.id)
         when 'knowledge' then exists (select 1 from knowledge k where k.id = r.id)
         when 'skill_run' then exists (select 1 from skill_runs s where s.id = r.id)
         when 'tag' then exists (select 1 from tags g where g.id = r.id)
       end as policy,
       exists (select 1 from change_log c where c.id = r.change_id)
         and fluxopus.could_read(r.kind, r.old, fluxopus.uid(), fluxopus.is_admin()) as mirror
  from jsonb_to_recordset(cast(:rows as jsonb)) as r(kind text, id uuid, change_id bigint, old jsonb)
"""


async def _post(client: httpx.AsyncClient, user: User, path: str, body: dict[str, Any], **headers: str) -> Any:
    response = await client.post(path, json=body, headers={**user.headers, **headers})
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _populate(client: httpx.AsyncClient, rng: random.Random, company: Company, users: list[User]) -> None:
    """Random rows written by the company's users through the API, some changed after they were made."""
    for _ in range(TASKS):
        author = rng.choice(users)
        body = {
            "title": unique("task"),
            "status": rng.choice(["todo", "in_progress", "done", "cancelled"]),
            "assignee_id": rng.choice([None, *(u.id for u in users)]),
        }
        task = await _post(client, author, "/api/tasks", body)
        if rng.random() < 0.3:  # handed on by an admin, who may change any task
            change = {"assignee_id": rng.choice([None, *(u.id for u in users)])}
            response = await client.patch(f"/api/tasks/{task['id']}", json=change, headers=company.admin.headers)
            assert response.status_code == 200, response.text
    for _ in range(ITEMS):
        body = {"title": unique("item"), "content": "x", "visibility": rng.choice(["company", "private"])}
        await _post(client, rng.choice(users), "/api/knowledge", body)
    skill = await create_skill(client, company.admin, visibility="company")
    for _ in range(RUNS):
        await _post(
            client,
            rng.choice(users),
            f"/api/skills/{skill['id']}/run",
            {"input": {"name": "Ada"}},
            Accept="application/json",
        )
    await _post(client, rng.choice(users), "/api/tags", {"name": unique("tag")[:40]})


Answer = tuple[User, dict[str, Any]]  # a user, and one row's answers for them (policy, mirror, now)


async def _answers(client: httpx.AsyncClient, database_url: str, acme: Company, globex: Company) -> list[Answer]:
    """Every (user, row) pair of two freshly populated companies, with the three answers."""
    rng = random.Random(SEED)
    people: list[User] = []
    for company in (acme, globex):
        second_admin = await make_user(database_url, company=company.name, role="admin")
        leaver = await make_user(database_url, company=company.name)
        users = [company.admin, second_admin, company.alice, company.bob, leaver]
        await _populate(client, rng, company, users)
        removed = await gql(
            client, company.admin, "mutation($id: ID!) { removeMember(userId: $id) }", {"id": leaver.id}
        )
        assert not removed.get("errors"), removed  # their rows stay; they see none of them any more
        people += users
    async with operator_engine(database_url) as engine:
        rows = await _rows(engine, [acme.admin.company_id, globex.admin.company_id])
        now = await _visible_now(engine, people, rows)
        return [
            (user, {**found, "now": now[(user.id, found["kind"], str(found["id"]))]})
            for user in people
            for found in await _compare_as(engine, user, rows)
        ]


async def _visible_now(engine: AsyncEngine, people: list[User], rows: list[dict[str, Any]]) -> dict[Any, bool]:
    """`visible_now` of each row's last change for each user, from one call as the hub makes it."""
    identities = [json.dumps({"sub": user.id, "role": "authenticated"}) for user in people]
    by_change = {row["change_id"]: row for row in rows}
    async with engine.connect() as conn, conn.begin():
        result = await conn.execute(
            text("select * from fluxopus.live_visibility(:identities, :ids)"),
            {"identities": identities, "ids": list(by_change)},
        )
        seen = {(people[r.identity - 1].id, r.change_id): r.visible_now for r in result}
    # A change of another company is not the identity's to see at all (change_log_read): not visible.
    return {
        (user.id, row["kind"], row["id"]): seen.get((user.id, row["change_id"]), False)
        for user in people
        for row in rows
    }


async def test_could_read_agrees_with_the_read_policies(
    client: httpx.AsyncClient, database_url: str, acme: Company, globex: Company
) -> None:
    """Strictly: true or false, never NULL (a NULL `before` would read as false in resolvers/live.py,
    but not under `not could_read(...)`)."""
    answers = await _answers(client, database_url, acme, globex)
    disagreements = [
        f"{user.email} ({user.role}): {found}"
        for user, found in answers
        if not (found["mirror"] is found["policy"] and found["now"] is found["policy"])
    ]
    assert not disagreements, "\n".join(disagreements)
    # the comparison met both answers for every kind of row
    outcomes: dict[str, set[bool]] = {}
    for _, found in answers:
        outcomes.setdefault(found["kind"], set()).add(found["policy"])
    assert outcomes == {kind: {True, False} for kind in ("task", "knowledge", "skill_run", "tag")}, outcomes


async def _rows(engine: AsyncEngine, companies: list[str]) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        found = [dict(r) for r in (await conn.execute(text(ROWS), {"companies": companies})).mappings()]
        for row in found:
            row["change_id"] = (await conn.execute(text(LAST_CHANGE), row)).scalar_one()
            assert row["change_id"] is not None, row  # every row was written since migration 015
            row["id"], row["company_id"] = str(row["id"]), str(row["company_id"])
    return found


async def _compare_as(engine: AsyncEngine, user: User, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The policy's and the mirror's answers for each row, in a transaction as `user`."""
    async with engine.connect() as conn, conn.begin():
        await conn.execute(
            text("select set_config('role', 'authenticated', true), set_config('request.jwt.claims', :claims, true)"),
            {"claims": json.dumps({"sub": user.id, "role": "authenticated"})},
        )
        result = await conn.execute(text(COMPARE), {"rows": json.dumps(rows)})
        return [dict(r) for r in result.mappings()]
