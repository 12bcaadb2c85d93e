"""REST lists are written to JSON straight from the rows (models.common.Rows), without a model per row.
The bytes must be exactly those the models gave before — same keys and order, timestamps, enums,
nulls, escapes, numbers — for every list route, on data chosen to hit the awkward cases."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import TypeAdapter
from sqlalchemy import text

from fluxopus.db.engine import operator_engine
from fluxopus.models.common import Page, Rows, parse
from fluxopus.rest_compat.table import ROUTES
from tests.utils.builders import Company, create_skill, create_tag, create_task

AWKWARD = 'Ünïcödé "quoted" \\ back\tslash\nnew line \x01\x1f 😀 \u2028 </script>'
# Lists whose models are more than their columns (a connection's status is worked out per row).
MADE_PER_ROW = {"/connections"}


async def _seed(client: httpx.AsyncClient, database_url: str, acme: Company) -> dict[str, str]:
    admin = acme.admin
    first = await create_task(client, admin, title=AWKWARD, priority="high", due_date="2026-12-31")
    await create_task(client, admin, title="plain", description=AWKWARD, assignee_id=acme.bob.id)
    for minutes, note in ((1, AWKWARD), (480, None)):
        body: dict[str, Any] = {"minutes": minutes, "note": note} if note else {"minutes": minutes}
        response = await client.post(f"/api/tasks/{first['id']}/time-logs", json=body, headers=admin.headers)
        assert response.status_code == 201, response.text
    await create_tag(client, admin, name="Ünï 😀", color="#a1B2c3")
    schema = {
        "type": "object",
        "properties": {"n": {"type": "number", "maximum": 1e20, "minimum": 0.1, "description": AWKWARD}},
    }
    grounding = {"mode": "keyword", "top_k": 3, "query": AWKWARD, "tags": None, "enabled": False}
    skill = await create_skill(client, admin, input_schema=schema, description=AWKWARD, knowledge=grounding)
    patched = await client.patch(
        f"/api/skills/{skill['id']}", json={"instructions": "v2 {{ input.n }}"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    run = await client.post(
        f"/api/skills/{skill['id']}/run",
        json={"input": {"n": 2.5}},
        headers={**admin.headers, "Accept": "application/json"},
    )
    assert run.status_code == 200, run.text
    item = {"title": AWKWARD, "content": "Some content " + AWKWARD}
    assert (await client.post("/api/knowledge", json=item, headers=admin.headers)).status_code == 201
    # Timestamps without a fraction, and with trailing zeros in it, are written differently by
    # naive formatters: pin some.
    async with operator_engine(database_url) as engine, engine.begin() as conn:
        stamps = "created_at = '2026-01-01T00:00:00Z', updated_at = '2026-01-01T00:00:00.120000Z'"
        await conn.execute(text(f"update tasks set {stamps} where id = :id"), {"id": first["id"]})  # noqa: S608
    return {"task_id": first["id"], "id": skill["id"]}


async def test_every_list_route_writes_the_bytes_its_models_would(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, acme: Company
) -> None:
    params = await _seed(client, database_url, acme)
    runtime = app.state.runtime
    claims = await runtime.authenticate(f"Bearer {acme.admin.token}")
    lists = [r for r in ROUTES if r.method == "GET" and r.paginated]
    assert len(lists) >= 8, "the route table changed shape: this test no longer sees the lists"
    for route in lists:
        path = route.path.format(**params)
        response = await client.get(f"/api{path}", headers=acme.admin.headers)
        assert response.status_code == 200, (path, response.text)

        ctx = runtime.context(claims)
        try:
            kwargs = {name: params[name] for name in route.path_params}
            page = await route.resolver(ctx, **kwargs, query=parse(route.query, {}))
        finally:
            await ctx.db.rollback()
        assert isinstance(page, Page)
        if route.path in MADE_PER_ROW:
            assert not isinstance(page.items, Rows)
        else:
            assert isinstance(page.items, Rows), f"{path} makes a model per row"
            assert page.items.raw, f"{path}: the seed left this list empty, so it proves nothing"
        models = list(page.items)
        assert response.content == TypeAdapter(route.response).dump_json(models), path
