"""A REST list's total on request: `Prefer: count=exact|planned|estimated` (RFC 7240, as PostgREST).

Without the preference a list counts nothing: X-Total-Count is sent only when the page itself tells the
total (a short page that has rows, an empty first page). `exact` counts the filtered rows the caller may
see; `planned` is the planner's estimate, never below the rows up to the page's end; `estimated` counts
when the planner expects few rows. A preference honoured is echoed in Preference-Applied; an unknown one
is ignored, as if none was sent. The statements each mode runs are read off the database connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from fluxopus.db.engine import asyncpg_dsn
from fluxopus.resolvers._sql import ESTIMATED_EXACT_UP_TO
from tests.conftest import StatementCounter
from tests.utils.builders import Company, User, create_tag, create_task, unique
from tests.utils.rls import value_as

Prefer = str | Sequence[str] | None


async def listing(
    client: httpx.AsyncClient, user: User | None, path: str = "/api/tasks", prefer: Prefer = None, **params: Any
) -> httpx.Response:
    """GET a list; `prefer` one Prefer header's value, or several headers' values."""
    headers: list[tuple[str, str]] = list(user.headers.items()) if user is not None else []
    values = [prefer] if isinstance(prefer, str) else list(prefer or [])
    headers += [("Prefer", value) for value in values]
    return await client.get(path, params=params, headers=headers)


def total(response: httpx.Response, mode: str | None) -> int | None:
    """The response's X-Total-Count (None when absent), after checking it is a 200 and echoes `mode`."""
    assert response.status_code == 200, response.text
    assert response.headers.get("preference-applied") == (f"count={mode}" if mode else None), response.headers
    found = response.headers.get("x-total-count")
    return None if found is None else int(found)


def counts(statements: list[str]) -> list[str]:
    """The statements that count rows: a count of their own, or a page with the count beside it."""
    return [s for s in statements if "count(*)" in s.lower() and not s.upper().startswith("EXPLAIN")]


def explains(statements: list[str]) -> list[str]:
    return [s for s in statements if s.upper().startswith("EXPLAIN (FORMAT JSON)")]


async def seed_tasks(client: httpx.AsyncClient, acme: Company, globex: Company, marker: str) -> None:
    """acme: alice 6 tasks (4 with `marker`, 2 of them done), bob 2, the admin 3 (1 with `marker`);
    globex: the admin 5 with `marker`, done."""
    for i in range(6):
        await create_task(
            client, acme.alice, title=f"{marker} {i}" if i < 4 else unique("plain"), status="done" if i < 2 else "todo"
        )
    for _ in range(2):
        await create_task(client, acme.bob)
    for i in range(3):
        await create_task(client, acme.admin, title=f"{marker} admin" if i == 0 else unique("plain"))
    for _ in range(5):
        await create_task(client, globex.admin, title=f"{marker} globex", status="done")


async def everything(client: httpx.AsyncClient, user: User, path: str = "/api/tasks", **params: Any) -> int:
    """How many rows the caller can see, read (not counted): the whole list in one page."""
    response = await listing(client, user, path, limit=200, **params)
    assert response.status_code == 200 and len(response.json()) < 200, response.text
    return len(response.json())


async def test_exact_counts_what_the_caller_sees_with_the_filters(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    marker = unique("counted")
    await seed_tasks(client, acme, globex, marker)
    expected = {
        # caller, filters: how many rows
        ("alice", ()): 6,
        ("alice", (("status", "done"),)): 2,
        ("alice", (("q", marker),)): 4,
        ("alice", (("q", marker), ("status", "todo"))): 2,
        ("bob", ()): 2,
        ("admin", ()): 11,  # the company's; never globex's
        ("admin", (("q", marker),)): 5,
        ("admin", (("status", "done"),)): 2,
    }
    for (who, filters), rows in expected.items():
        user: User = getattr(acme, who)
        assert await everything(client, user, **dict(filters)) == rows, (who, filters)
        response = await listing(client, user, prefer="count=exact", limit=1, **dict(filters))
        assert len(response.json()) == 1
        assert total(response, "exact") == rows, (who, filters)
    other = await listing(client, globex.admin, prefer="count=exact", limit=1, q=marker)
    assert total(other, "exact") == 5
    # Past the end: the page's statement counted nothing, so the count runs apart — still exact.
    past = await listing(client, acme.admin, prefer="count=exact", limit=2, offset=50)
    assert past.json() == [] and total(past, "exact") == 11


async def test_without_a_preference_the_total_is_sent_only_when_the_page_tells_it(
    client: httpx.AsyncClient, acme: Company, sql_counter: StatementCounter
) -> None:
    for _ in range(5):
        await create_task(client, acme.alice)
    sql_counter.statements.clear()
    full = await listing(client, acme.alice, limit=2)
    assert len(full.json()) == 2 and total(full, None) is None
    # The page and nothing else: no count beside it, no count after it, no EXPLAIN.
    [statement] = sql_counter.statements
    assert "count(" not in statement.lower() and not explains(sql_counter.statements), statement
    last = await listing(client, acme.alice, limit=2, offset=4)  # short, with rows: 4 + 1
    assert len(last.json()) == 1 and total(last, None) == 5
    short = await listing(client, acme.alice, limit=10)
    assert len(short.json()) == 5 and total(short, None) == 5
    past = await listing(client, acme.alice, limit=2, offset=10)
    assert past.json() == [] and total(past, None) is None
    at_end = await listing(client, acme.alice, limit=5)  # exactly full: the page cannot tell
    assert len(at_end.json()) == 5 and total(at_end, None) is None
    empty = await listing(client, acme.bob, limit=2)  # nothing visible: an empty first page
    assert empty.json() == [] and total(empty, None) == 0
    assert not counts(sql_counter.statements) and not explains(sql_counter.statements), sql_counter.statements


async def test_exact_is_counted_in_the_pages_own_statement(
    client: httpx.AsyncClient, acme: Company, sql_counter: StatementCounter
) -> None:
    for _ in range(3):
        await create_task(client, acme.alice)
    sql_counter.statements.clear()
    response = await listing(client, acme.alice, prefer="count=exact", limit=2)
    assert total(response, "exact") == 3
    [statement] = sql_counter.statements  # one round trip: the page, its total beside each row
    assert "count(*)" in statement.lower() and "LIMIT" in statement.upper(), statement


async def test_planned_is_the_planners_estimate_never_below_the_page(
    client: httpx.AsyncClient, acme: Company, sql_counter: StatementCounter
) -> None:
    for _ in range(4):
        await create_task(client, acme.alice, title=unique("planned"))
    sql_counter.statements.clear()
    full = await listing(client, acme.alice, prefer="count=planned", limit=2, offset=1)
    planned = total(full, "planned")
    assert len(full.json()) == 2 and planned is not None and planned >= 1 + 2
    # The page, then the count's plan (not the count).
    assert len(sql_counter.statements) == 2 and not counts(sql_counter.statements), sql_counter.statements
    [explained] = explains(sql_counter.statements)
    assert "count(*)" in explained.lower(), explained
    # A page that tells the total: that exact total, and no EXPLAIN.
    sql_counter.statements.clear()
    short = await listing(client, acme.alice, prefer="count=planned", limit=3, offset=2)
    assert len(short.json()) == 2 and total(short, "planned") == 4
    assert not explains(sql_counter.statements), sql_counter.statements
    # Past the end: at least the offset (the caller has been told of that many rows).
    past = await listing(client, acme.alice, prefer="count=planned", limit=2, offset=40)
    past_total = total(past, "planned")
    assert past.json() == [] and past_total is not None and past_total >= 40


async def superuser(database_url: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def planner_rows(database_url: str, user: User, statement: str, arguments: tuple[Any, ...]) -> int:
    """The rows the planner expects the count `statement` (an EXPLAIN the app ran) to count, asked again
    here as the caller: the plan's aggregate's input."""
    found = await value_as(database_url, user, statement, *arguments)
    plan = json.loads(found)[0]["Plan"]
    assert plan["Node Type"] == "Aggregate" and plan["Plan Rows"] == 1, plan
    [counted] = [p for p in plan["Plans"] if p["Parent Relationship"] == "Outer"]
    return int(counted["Plan Rows"])


def explained(sql_counter: StatementCounter) -> tuple[str, tuple[Any, ...]]:
    [found] = [
        (s, a) for s, a in zip(sql_counter.statements, sql_counter.arguments, strict=True) if s.startswith("EXPLAIN")
    ]
    return found


async def test_estimated_counts_exactly_when_the_planner_expects_few_rows(
    client: httpx.AsyncClient, acme: Company, globex: Company, database_url: str, sql_counter: StatementCounter
) -> None:
    marker = unique("estimated")
    await seed_tasks(client, acme, globex, marker)
    await superuser(database_url, "analyze tasks")  # statistics of the table as it is now (other tests change it)
    sql_counter.statements.clear()
    sql_counter.arguments.clear()
    response = await listing(client, acme.admin, prefer="count=estimated", limit=2)
    assert total(response, "estimated") == 11
    # The plan first (the page does not tell the total); it expects few rows, so the count runs.
    assert await planner_rows(database_url, acme.admin, *explained(sql_counter)) <= ESTIMATED_EXACT_UP_TO
    assert len(counts(sql_counter.statements)) == 1, sql_counter.statements
    filtered = await listing(client, acme.alice, prefer="count=estimated", limit=1, q=marker, status="done")
    assert total(filtered, "estimated") == 2


async def test_estimated_and_planned_do_not_count_a_large_list(
    client: httpx.AsyncClient, acme: Company, database_url: str, sql_counter: StatementCounter
) -> None:
    """Row-level security hides the caller's company from the planner (it is read from the claims when the
    statement runs), so it estimates a company's rows as the table's over the number of companies. Told
    that there is one company (n_distinct), it expects the table: more than the threshold."""
    bulk = 5 * ESTIMATED_EXACT_UP_TO
    try:
        await superuser(
            database_url,
            "insert into tasks (company_id, title, created_by)"
            " select $1, 'bulk ' || g, $2 from generate_series(1, $3) g",
            acme.admin.company_id,
            acme.admin.id,
            bulk,
        )
        await superuser(database_url, "alter table tasks alter column company_id set (n_distinct = 1)")
        await superuser(database_url, "analyze tasks")
        for mode in ("estimated", "planned"):
            sql_counter.statements.clear()
            sql_counter.arguments.clear()
            response = await listing(client, acme.admin, prefer=f"count={mode}", limit=50, offset=100)
            estimate = total(response, mode)
            assert len(response.json()) == 50, mode
            planned = await planner_rows(database_url, acme.admin, *explained(sql_counter))
            assert planned > ESTIMATED_EXACT_UP_TO, planned
            # The planner's figure, never below the rows up to the page's end, and no count ran.
            assert estimate == max(planned, 150), (mode, estimate, planned)
            assert not counts(sql_counter.statements), (mode, sql_counter.statements)
        exact = await listing(client, acme.admin, prefer="count=exact", limit=50)
        assert total(exact, "exact") == bulk
    finally:  # the shared test database goes back to its usual size and statistics
        await superuser(database_url, "delete from tasks where company_id = $1", acme.admin.company_id)
        await superuser(database_url, "alter table tasks alter column company_id reset (n_distinct)")
        await superuser(database_url, "analyze tasks")


async def test_other_lists_count_on_request_too(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    for _ in range(5):
        await create_tag(client, acme.alice)
    for _ in range(3):
        await create_tag(client, globex.alice)
    assert total(await listing(client, acme.bob, "/api/tags", limit=2), None) is None
    assert total(await listing(client, acme.bob, "/api/tags", "count=exact", limit=2), "exact") == 5
    assert total(await listing(client, globex.bob, "/api/tags", "count=exact", limit=2), "exact") == 3
    assert total(await listing(client, acme.bob, "/api/tags", "count=estimated", limit=2), "estimated") == 5
    planned = total(await listing(client, acme.bob, "/api/tags", "count=planned", limit=2, offset=2), "planned")
    assert planned is not None and planned >= 4
    task = await create_task(client, acme.alice)
    logs = f"/api/tasks/{task['id']}/time-logs"
    for minutes in (10, 20, 30):
        response = await client.post(logs, json={"minutes": minutes}, headers=acme.alice.headers)
        assert response.status_code == 201, response.text
    assert total(await listing(client, acme.alice, logs, limit=2), None) is None
    assert total(await listing(client, acme.alice, logs, "count=exact", limit=2), "exact") == 3
    assert total(await listing(client, acme.admin, logs, "count=exact", limit=1), "exact") == 3
    assert total(await listing(client, acme.alice, logs, "count=estimated", limit=2), "estimated") == 3
    # Another company's caller cannot see the task: refused, nothing counted.
    hidden = await listing(client, globex.admin, logs, "count=exact", limit=2)
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found", hidden.text
    assert "x-total-count" not in hidden.headers and "preference-applied" not in hidden.headers


@pytest.mark.parametrize(
    "prefer",
    [
        "return=minimal, count=exact",
        "count=exact,return=minimal",
        ["return=representation", "count=exact"],
        ["count=exact", "count=planned"],  # the first instance counts (RFC 7240 §2)
        "  CoUnT =  exact  ",
        'count="exact"',
        "count=EXACT",
        "count=exact; strict",
        'handling=lenient; note="a, b", count=exact',
        "respond-async,,count=exact",
    ],
)
async def test_the_preference_is_read_however_it_is_written(
    client: httpx.AsyncClient, acme: Company, prefer: Prefer
) -> None:
    for _ in range(3):
        await create_task(client, acme.alice)
    assert total(await listing(client, acme.alice, prefer=prefer, limit=2), "exact") == 3


@pytest.mark.parametrize(
    "prefer",
    [
        "count=bogus",
        "count=",
        "count",
        "count=exactly",
        "counts=exact",
        "return=minimal",
        'note="count=exact"',
        "foo; count=exact",  # a parameter of another preference, not a preference
        ["count=nope", "count=exact"],  # only the first instance is considered: unknown, so ignored
        "count=exact\x7f",
        '=,;;"',
        "",
    ],
)
async def test_an_unknown_preference_is_ignored(client: httpx.AsyncClient, acme: Company, prefer: Prefer) -> None:
    for _ in range(3):
        await create_task(client, acme.alice)
    response = await listing(client, acme.alice, prefer=prefer, limit=2)
    assert len(response.json()) == 2 and total(response, None) is None


async def test_no_token_is_refused_as_before(client: httpx.AsyncClient) -> None:
    plain = await listing(client, None)
    preferred = await listing(client, None, prefer="count=exact")
    assert plain.status_code == preferred.status_code == 401
    assert plain.json() == preferred.json() and preferred.json()["code"] == "unauthorized", preferred.text
    assert "preference-applied" not in preferred.headers and "x-total-count" not in preferred.headers


async def test_other_routes_ignore_the_preference(client: httpx.AsyncClient, acme: Company) -> None:
    headers = {**acme.alice.headers, "Prefer": "return=minimal, count=exact"}
    created = await client.post("/api/tasks", json={"title": unique("preferred")}, headers=headers)
    assert created.status_code == 201 and created.json()["id"], created.text  # the body, not `minimal`
    got = await client.get(f"/api/tasks/{created.json()['id']}", headers=headers)
    assert got.status_code == 200, got.text
    entity = await client.get(
        "/api/tags/entity", params={"entity_type": "task", "entity_id": created.json()["id"]}, headers=headers
    )
    assert entity.status_code == 200 and entity.json() == [], entity.text
    for response in (created, got, entity):
        assert "preference-applied" not in response.headers and "x-total-count" not in response.headers


async def test_graphql_totals_stay_exact(client: httpx.AsyncClient, acme: Company) -> None:
    for _ in range(3):
        await create_task(client, acme.alice)
    query = "{ tasksConnection(first: 1) { totalCount } }"
    response = await client.post(
        "/graphql", json={"query": query}, headers={**acme.alice.headers, "Prefer": "count=planned"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"tasksConnection": {"totalCount": 3}}}
    assert "preference-applied" not in response.headers
