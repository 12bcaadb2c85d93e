"""A page of a list costs what its rows cost, not what the caller can see.

The statement the REST list runs is captured and explained (EXPLAIN ANALYZE, BUFFERS) as its caller,
first with 10,000 visible tasks, then with 100,000: a task's `total_minutes` is computed for the
page's rows only, and the blocks the page reads do not grow with the visible set. By default that
statement is all the list runs: it counts nothing. With `Prefer: count=exact` the statement also
counts the total (X-Total-Count, in the same round trip): an exact count reads every visible row, so
it is checked apart — once, over the filtered rows alone. (Timings are for bench/; blocks and loops
are what the plan did, not how fast the machine was.)
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest

from fluxopus.db.engine import asyncpg_dsn
from tests.conftest import StatementCounter
from tests.utils.builders import Company, User
from tests.utils.rls import value_as

pytestmark = pytest.mark.slow  # seeds 100,000 tasks

PAGE = 50


async def seed(database_url: str, owner: User, tasks: int) -> None:
    """`tasks` tasks of the owner's company, each with a time log, written as the superuser."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "insert into tasks (company_id, title, created_by, created_at)"
            " select $1, 'bulk ' || g, $2, now() - make_interval(secs => g) from generate_series(1, $3) g",
            owner.company_id,
            owner.id,
            tasks,
        )
        await conn.execute(
            "insert into time_logs (task_id, company_id, user_id, minutes)"
            " select t.id, t.company_id, t.created_by, 5 from tasks t"
            " where t.company_id = $1 and not exists (select 1 from time_logs l where l.task_id = t.id)",
            owner.company_id,
        )
        await conn.execute("analyze tasks; analyze time_logs")
    finally:
        await conn.close()


async def page_statement(
    client: httpx.AsyncClient, sql_counter: StatementCounter, user: User, prefer: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT that GET /api/tasks runs for the page, with its parameters."""
    sql_counter.statements.clear()
    sql_counter.arguments.clear()
    headers = user.headers if prefer is None else {**user.headers, "Prefer": prefer}
    response = await client.get("/api/tasks", params={"limit": PAGE}, headers=headers)
    assert response.status_code == 200 and response.json(), response.text
    assert len(sql_counter.statements) == 1, sql_counter.statements  # the page and nothing else
    assert ("x-total-count" in response.headers) == (prefer is not None), response.headers
    [page] = [
        (statement, arguments)
        for statement, arguments in zip(sql_counter.statements, sql_counter.arguments, strict=True)
        if statement.upper().startswith("SELECT")
        and "TOTAL_MINUTES" in statement.upper()
        and "LIMIT" in statement.upper()
    ]
    return page


def nodes(plan: dict[str, Any], *, skip: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The plan's nodes, but for the subtree `skip`."""
    if plan is skip:
        return []
    return [plan, *(n for child in plan.get("Plans", []) for n in nodes(child, skip=skip))]


def blocks(nodes: list[dict[str, Any]]) -> int:
    """Blocks the nodes read themselves (EXPLAIN gives each node's blocks with its children's)."""
    own = 0
    for node in nodes:
        children = node.get("Plans", [])
        total = node["Shared Hit Blocks"] + node["Shared Read Blocks"]
        own += total - sum(c["Shared Hit Blocks"] + c["Shared Read Blocks"] for c in children)
    return own


async def explain(database_url: str, user: User, statement: str, parameters: tuple[Any, ...]) -> dict[str, Any]:
    found = await value_as(database_url, user, f"explain (analyze, buffers, format json) {statement}", *parameters)
    plan: dict[str, Any] = json.loads(found)[0]["Plan"]
    return plan


async def test_a_page_costs_its_rows_not_the_visible_set(
    client: httpx.AsyncClient, sql_counter: StatementCounter, database_url: str, acme: Company
) -> None:
    try:
        await _measure(client, sql_counter, database_url, acme)
    finally:  # the shared test database goes back to its usual size
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await conn.execute("delete from tasks where company_id = $1", acme.admin.company_id)
            await conn.execute("analyze tasks; analyze time_logs")  # and its statistics (count=planned reads them)
        finally:
            await conn.close()


async def _measure(client: httpx.AsyncClient, sql_counter: StatementCounter, database_url: str, acme: Company) -> None:
    costs: list[dict[str, Any]] = []
    for visible in (10_000, 100_000):
        await seed(database_url, acme.admin, visible - sum(c["visible"] for c in costs))
        # No preference: the page, no count at all (in the statement or beside it).
        statement, parameters = await page_statement(client, sql_counter, acme.admin)
        assert "count(" not in statement.lower() and "over ()" not in statement.lower(), statement
        uncounted = await explain(database_url, acme.admin, statement, parameters)
        assert not [n for n in nodes(uncounted) if n.get("Parent Relationship") == "InitPlan" and _aggregates(n)]
        assert not [n for n in nodes(uncounted) if n["Node Type"] == "Aggregate" and n["Actual Loops"] == 1]
        # count=exact: the page with its total beside it.
        statement, parameters = await page_statement(client, sql_counter, acme.admin, "count=exact")
        assert "over ()" not in statement.lower(), statement  # no window count over everything visible
        plan = await explain(database_url, acme.admin, statement, parameters)
        # The total: the one uncorrelated subquery that aggregates, run once.
        [count] = [n for n in nodes(plan) if n.get("Parent Relationship") == "InitPlan" and _aggregates(n)]
        page = nodes(plan, skip=count)
        subplans = [n for n in page if n.get("Parent Relationship") == "SubPlan"]
        costs.append(
            {
                "visible": visible,
                "rows": plan["Actual Rows"],
                "blocks": blocks(page),
                "uncounted": {"rows": uncounted["Actual Rows"], "blocks": blocks(nodes(uncounted))},
                "subplans": subplans,
                "count": count,
            }
        )
    for cost in costs:
        assert cost["rows"] == cost["uncounted"]["rows"] == PAGE, cost
        # total_minutes is computed for the page's rows only
        assert cost["subplans"] and all(s["Actual Loops"] <= PAGE for s in cost["subplans"]), cost["subplans"]
        # The count runs once, over the filtered rows alone: no derived columns (subplans), no sort.
        # Its scan is the planner's cheapest: here, where one company is nearly the whole table, the
        # table; where it is a part (the peer bench's 5,000 of 100,000), tasks_visibility_idx.
        counted = nodes(cost["count"])
        assert cost["count"]["Actual Loops"] == 1, cost["count"]
        assert not [n for n in counted if n.get("Parent Relationship") == "SubPlan" or n["Node Type"] == "Sort"]
        [aggregate] = [n for n in counted if n["Node Type"] == "Aggregate"]
        [rows] = [n for n in aggregate["Plans"] if n["Parent Relationship"] == "Outer"]
        assert rows["Actual Rows"] == cost["visible"] and rows["Actual Loops"] == 1, rows
    small, large = costs
    print(f"page of {PAGE}: {small['blocks']} blocks with 10,000 visible, {large['blocks']} with 100,000")
    print(f"uncounted: {small['uncounted']['blocks']} blocks, {large['uncounted']['blocks']} blocks")


def _aggregates(plan: dict[str, Any]) -> bool:
    return any(n["Node Type"] == "Aggregate" for n in nodes(plan))


async def test_the_total_still_counts_every_visible_row(client: httpx.AsyncClient, acme: Company) -> None:
    """With count=exact, X-Total-Count is exact: counted with a page that has rows, apart when past the
    end. Without it, only the short page, which tells its total, has one."""
    for _ in range(3):
        response = await client.post("/api/tasks", json={"title": "counted"}, headers=acme.alice.headers)
        assert response.status_code == 201
    exact = {**acme.alice.headers, "Prefer": "count=exact"}
    for headers, counted in ((exact, True), (acme.alice.headers, False)):
        full = await client.get("/api/tasks", params={"limit": 2}, headers=headers)
        short = await client.get("/api/tasks", params={"limit": 10}, headers=headers)
        past = await client.get("/api/tasks", params={"limit": 2, "offset": 10}, headers=headers)
        assert (len(full.json()), full.headers.get("x-total-count")) == (2, "3" if counted else None)
        assert (len(short.json()), short.headers["x-total-count"]) == (3, "3")
        assert (past.json(), past.headers.get("x-total-count")) == ([], "3" if counted else None)
