from __future__ import annotations

import httpx

from tests.utils.builders import Company, create_task, gql


async def test_create_and_list_task_over_rest_and_graphql(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, title="Write the spine")
    listed = await client.get("/api/tasks", headers=acme.alice.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [task["id"]]
    assert listed.headers["X-Total-Count"] == "1"
    result = await gql(client, acme.alice, "{ tasks { id title } }")
    assert result == {"data": {"tasks": [{"id": task["id"], "title": "Write the spine"}]}}
