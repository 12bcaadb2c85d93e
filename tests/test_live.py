"""Live events over graphql-transport-ws, against a real server: what each subscriber receives."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company
from tests.utils.live import live_connection, subscribed
from tests.utils.server import ThreadedServer

TASK_EVENTS = (
    "subscription($f: TaskEventFilter, $last: ID) { taskEvents(filter: $f, lastEventId: $last) {"
    " type eventId taskId task { id title status assigneeId } } }"
)


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


async def test_task_events_follow_rls(server: ThreadedServer, acme: Company) -> None:
    async with (
        live_connection(server.url, acme.alice.token) as alice,
        live_connection(server.url, acme.admin.token) as admin,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        a = await subscribed(await alice.subscribe(TASK_EVENTS))
        ad = await subscribed(await admin.subscribe(TASK_EVENTS))
        mine = (
            await http.post(
                "/api/tasks", json={"title": "for alice", "assignee_id": acme.alice.id}, headers=acme.bob.headers
            )
        ).json()
        other = (await http.post("/api/tasks", json={"title": "bob's own"}, headers=acme.bob.headers)).json()
        event = await a.next()
        assert event["type"] == "CREATED" and event["taskId"] == mine["id"], event
        assert event["task"]["title"] == "for alice"
        assert [(await ad.next())["taskId"] for _ in range(2)] == [mine["id"], other["id"]]
        # handed to bob: alice no longer sees it
        r = await http.patch(f"/api/tasks/{mine['id']}", json={"assignee_id": acme.bob.id}, headers=acme.bob.headers)
        assert r.status_code == 200, r.text
        hidden = await a.next()
        assert (hidden["type"], hidden["taskId"], hidden["task"]) == ("DELETED", mine["id"], None)
        updated = await ad.next()
        assert updated["type"] == "UPDATED" and updated["task"]["assigneeId"] == acme.bob.id
        await a.nothing(0.5)
