"""Live events over graphql-transport-ws (and graphql-sse), against a real server: what each subscriber
receives, and what they never do.

What these tests prove, each against one real uvicorn server and the real database (no mocks):

- every kind of change arrives with its type: tasks CREATED/UPDATED/DELETED whether written over REST or
  GraphQL (time logged is an UPDATED with the new total), knowledge items CREATED/UPDATED/DELETED and
  STATUS once the real indexer has embedded them, skill runs CREATED (RUNNING) then UPDATED (finished,
  with usage), tags CREATED/UPDATED/DELETED and ASSIGNED/UNASSIGNED;
- delivery follows each subscriber's row-level security at the time of delivery: nothing crosses
  companies, a private knowledge item reaches only its owner (not even admins), a row that stops being
  readable (reassigned, made private) arrives as DELETED and then never again, one that becomes readable
  arrives as UPDATED, runs reach their runner and admins only, tag assignments only those who can read
  the tagged entity;
- an event's nested fields (`task { tags assignee timeLogs }`) read as the same query would;
- filters (status, assigneeId, taskId, itemId, skillId) keep exactly what matches before or after the
  change: a task leaving the filter still gets its last event;
- bad arguments end the subscription with the query's error codes and leave the connection usable;
- lastEventId replays exactly what was missed, in order, then live events, with increasing eventIds.

Absence is proved with fences wherever possible: changes fan out in commit order, so when a later
event arrives, an earlier one that should not have arrived would have come first. Writes that must
produce no event for a subscription are followed by a `barrier`: an unfiltered subscription of the
same user whose next event shows the change was fanned out before the test goes on (rows are read
at delivery, so a write must be fanned out before the next one changes the row again).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, User, create_skill, unique
from tests.utils.fake_llm import FakeOpenAI, Script
from tests.utils.live import (
    TIMEOUT,
    listening,
    live_connection,
    live_sub,
    sse_subscription,
)
from tests.utils.server import ThreadedServer

Json = dict[str, Any]

TASK_EVENTS = (
    "subscription($f: TaskEventFilter, $last: ID) { taskEvents(filter: $f, lastEventId: $last) {"
    " type eventId taskId task { id title status assigneeId totalMinutes } } }"
)
KNOWLEDGE_EVENTS = (
    "subscription($item: ID, $last: ID) { knowledgeEvents(itemId: $item, lastEventId: $last) {"
    " type eventId itemId status error item { id title visibility status ownerId } } }"
)
RUN_EVENTS = (
    "subscription($skill: ID, $last: ID) { skillRunEvents(skillId: $skill, lastEventId: $last) {"
    " type eventId runId skillId run { id skillId userId status inputTokens outputTokens output } } }"
)
TAG_EVENTS = (
    "subscription($last: ID) { tagEvents(lastEventId: $last) {"
    " type eventId tagId tag { id name color } entityType entityId } }"
)
NESTED = "id title totalMinutes tags { name } assignee { userId email } timeLogs { minutes userId }"
NESTED_EVENTS = f"subscription {{ taskEvents {{ type taskId task {{ {NESTED} }} }} }}"
NESTED_QUERY = f"query($id: ID!) {{ task(id: $id) {{ {NESTED} }} }}"
INDEXING_TIMEOUT = 120.0  # embedding the first item loads the local model


@pytest.fixture(scope="module")
def server(ai_settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    """Runs use the fake OpenAI (scripted per model); no indexer, so knowledge items stay PENDING and
    only the writes of a test change them (STATUS has its own server, below)."""
    quiet = ai_settings.model_copy(update={"indexer": False})
    with ThreadedServer(create_app(quiet, database_url=database_url)) as running:
        yield running


@pytest.fixture
async def http(server: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


# --------------------------------------------------------------------------- writers


async def rest(
    http: httpx.AsyncClient, user: User, method: str, path: str, body: Json | None = None, status: int = 200
) -> Json:
    response = await http.request(method, path, json=body, headers=user.headers)
    assert response.status_code == status, response.text
    found: Json = response.json()
    return found


async def gql(http: httpx.AsyncClient, user: User, query: str, variables: Json | None = None) -> Json:
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    data: Json = body["data"]
    return data


async def new_task(http: httpx.AsyncClient, user: User, **fields: Any) -> Json:
    return await rest(http, user, "POST", "/api/tasks", {"title": unique("task"), **fields}, 201)


async def update_task(http: httpx.AsyncClient, user: User, task_id: str, **fields: Any) -> Json:
    return await rest(http, user, "PATCH", f"/api/tasks/{task_id}", fields)


async def log_time(http: httpx.AsyncClient, user: User, task_id: str, minutes: int) -> Json:
    return await rest(http, user, "POST", f"/api/tasks/{task_id}/time-logs", {"minutes": minutes}, 201)


async def new_item(http: httpx.AsyncClient, user: User, visibility: str = "company", **fields: Any) -> Json:
    body = {"title": unique("item"), "content": "Live events in commit order.", "visibility": visibility, **fields}
    return await rest(http, user, "POST", "/api/knowledge", body, 201)


async def tag_entity(http: httpx.AsyncClient, user: User, kind: str, entity_id: str, tags: list[str]) -> Json:
    body = {"entityType": kind, "entityId": entity_id, "tagIds": tags, "replace": True}
    response = await http.post("/api/tags/entity", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    return {"tags": response.json()}


def summary(events: list[Json], id_key: str = "taskId") -> list[tuple[str, str]]:
    return [(e["type"], e[id_key]) for e in events]


def increasing(events: list[Json]) -> bool:
    ids = [int(e["eventId"]) for e in events]
    return all(a < b for a, b in zip(ids, ids[1:], strict=False))


# --------------------------------------------------------------------------- every event type


async def test_task_events_follow_rls(server: ThreadedServer, acme: Company) -> None:
    async with (
        live_connection(server.url, acme.alice.token) as alice,
        live_connection(server.url, acme.admin.token) as admin,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        a = await live_sub(server, alice, acme.alice, TASK_EVENTS)
        ad = await live_sub(server, admin, acme.admin, TASK_EVENTS)
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


async def test_task_created_updated_deleted_over_rest_and_graphql(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    async with live_connection(server.url, acme.alice.token) as conn:
        sub = await live_sub(server, conn, acme.alice, TASK_EVENTS)
        seen: list[Json] = []

        async def expect(kind: str, task_id: str) -> Json:
            event = await sub.next()
            assert (event["type"], event["taskId"]) == (kind, task_id), event
            seen.append(event)
            return event

        # REST
        task = await new_task(http, acme.alice, title="over rest")
        created = await expect("CREATED", task["id"])
        assert created["task"] == {
            "id": task["id"],
            "title": "over rest",
            "status": "TODO",
            "assigneeId": None,
            "totalMinutes": 0,
        }
        await update_task(http, acme.alice, task["id"], status="in_progress")
        assert (await expect("UPDATED", task["id"]))["task"]["status"] == "IN_PROGRESS"
        await log_time(http, acme.alice, task["id"], 30)
        assert (await expect("UPDATED", task["id"]))["task"]["totalMinutes"] == 30

        # GraphQL
        made = await gql(http, acme.alice, 'mutation { createTask(input: {title: "over graphql"}) { id } }')
        other = made["createTask"]["id"]
        assert (await expect("CREATED", other))["task"]["title"] == "over graphql"
        await gql(
            http,
            acme.alice,
            'mutation($id: ID!) { updateTask(id: $id, input: {title: "renamed", status: DONE}) { id } }',
            {"id": other},
        )
        renamed = await expect("UPDATED", other)
        assert (renamed["task"]["title"], renamed["task"]["status"]) == ("renamed", "DONE")
        await gql(
            http,
            acme.alice,
            "mutation($id: ID!) { addTimeLog(taskId: $id, input: {minutes: 15}) { id } }",
            {"id": other},
        )
        assert (await expect("UPDATED", other))["task"]["totalMinutes"] == 15
        await gql(http, acme.alice, "mutation($id: ID!) { deleteTask(id: $id) }", {"id": other})
        assert (await expect("DELETED", other))["task"] is None

        await rest(http, acme.alice, "DELETE", f"/api/tasks/{task['id']}")
        assert (await expect("DELETED", task["id"]))["task"] is None
        assert increasing(seen), seen
        await sub.nothing(0.3)


async def test_a_row_changed_then_deleted_before_delivery_is_deleted_once(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    """Rows are read at delivery: an update delivered after its row was deleted is already the deletion,
    and the deletion's own event must not say it again. One GraphQL mutation changes and deletes the task
    in one transaction, so both changes reach the hub in one batch, the row gone."""
    async with live_connection(server.url, acme.alice.token) as conn:
        sub = await live_sub(server, conn, acme.alice, TASK_EVENTS)
        task = await new_task(http, acme.alice, title="short-lived")
        assert (await sub.next())["type"] == "CREATED"
        await gql(
            http,
            acme.alice,
            'mutation($id: ID!) { updateTask(id: $id, input: {title: "renamed"}) { id } deleteTask(id: $id) }',
            {"id": task["id"]},
        )
        gone = await sub.next()
        assert (gone["type"], gone["taskId"], gone["task"]) == ("DELETED", task["id"], None)
        marker = await new_task(http, acme.alice, title="after")
        after = await sub.next()  # not a second DELETED
        assert (after["type"], after["taskId"]) == ("CREATED", marker["id"]), after


async def test_knowledge_events_and_private_items(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    """A private item reaches only its owner — not another member, not an admin; an item made private
    is DELETED for everyone else."""
    async with (
        live_connection(server.url, acme.alice.token) as alice_conn,
        live_connection(server.url, acme.bob.token) as bob_conn,
        live_connection(server.url, acme.admin.token) as admin_conn,
    ):
        alice = await live_sub(server, alice_conn, acme.alice, KNOWLEDGE_EVENTS)
        others = [
            await live_sub(server, bob_conn, acme.bob, KNOWLEDGE_EVENTS),
            await live_sub(server, admin_conn, acme.admin, KNOWLEDGE_EVENTS),
        ]
        everyone = [alice, *others]

        shared = await new_item(http, acme.alice, title="shared")
        for sub in everyone:
            event = await sub.next()
            assert summary([event], "itemId") == [("CREATED", shared["id"])]
            assert event["item"] == {
                "id": shared["id"],
                "title": "shared",
                "visibility": "COMPANY",
                "status": "PENDING",
                "ownerId": acme.alice.id,
            }
            assert (event["status"], event["error"]) == (None, None)
        await rest(http, acme.alice, "PATCH", f"/api/knowledge/{shared['id']}", {"title": "shared, renamed"})
        for sub in everyone:
            event = await sub.next()
            assert (event["type"], event["item"]["title"]) == ("UPDATED", "shared, renamed")

        secret = await new_item(http, acme.alice, visibility="private")
        assert summary([await alice.next()], "itemId") == [("CREATED", secret["id"])]
        await rest(http, acme.alice, "PATCH", f"/api/knowledge/{secret['id']}", {"title": "still secret"})
        assert summary([await alice.next()], "itemId") == [("UPDATED", secret["id"])]

        await rest(http, acme.alice, "PATCH", f"/api/knowledge/{shared['id']}", {"visibility": "private"})
        made_private = await alice.next()
        assert (made_private["type"], made_private["item"]["visibility"]) == ("UPDATED", "PRIVATE")
        for sub in others:
            hidden = await sub.next()
            assert (hidden["type"], hidden["itemId"], hidden["item"]) == ("DELETED", shared["id"], None)

        await rest(http, acme.alice, "DELETE", f"/api/knowledge/{secret['id']}")
        assert summary([await alice.next()], "itemId") == [("DELETED", secret["id"])]
        await rest(http, acme.alice, "PATCH", f"/api/knowledge/{shared['id']}", {"title": "private now"})
        assert summary([await alice.next()], "itemId") == [("UPDATED", shared["id"])]

        # the fence: the others' next event is this one, so none of the private changes reached them
        fence = await new_item(http, acme.alice)
        for sub in everyone:
            assert summary([await sub.next()], "itemId") == [("CREATED", fence["id"])]
        await rest(http, acme.alice, "DELETE", f"/api/knowledge/{fence['id']}")
        for sub in everyone:
            event = await sub.next()
            assert (event["type"], event["itemId"], event["item"]) == ("DELETED", fence["id"], None)


@pytest.fixture
def indexing_server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    """The default settings: the app's lifespan runs the real indexer with the local embedding model."""
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


async def test_knowledge_status_when_the_indexer_has_embedded_an_item(
    indexing_server: ThreadedServer, acme: Company
) -> None:
    server = indexing_server
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http,
        live_connection(server.url, acme.alice.token) as alice_conn,
        live_connection(server.url, acme.bob.token) as bob_conn,
    ):
        alice = await live_sub(server, alice_conn, acme.alice, KNOWLEDGE_EVENTS)
        bob = await live_sub(server, bob_conn, acme.bob, KNOWLEDGE_EVENTS)
        item = await new_item(http, acme.alice)
        for sub in (alice, bob):
            assert summary([await sub.next()], "itemId") == [("CREATED", item["id"])]
            indexed = await sub.next(INDEXING_TIMEOUT)
            assert (indexed["type"], indexed["itemId"], indexed["status"], indexed["error"]) == (
                "STATUS",
                item["id"],
                "INDEXED",
                None,
            ), indexed
            assert indexed["item"]["status"] == "INDEXED"
        secret = await new_item(http, acme.alice, visibility="private")
        assert summary(await alice.take(2, INDEXING_TIMEOUT), "itemId") == [
            ("CREATED", secret["id"]),
            ("STATUS", secret["id"]),
        ]
        fence = await new_item(http, acme.alice)
        assert summary([await bob.next()], "itemId") == [("CREATED", fence["id"])]


async def test_skill_run_events_reach_the_runner_and_admins(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company, fake_openai: FakeOpenAI
) -> None:
    gated, free = unique("m"), unique("m")
    gate = threading.Event()
    fake_openai.script(gated, Script(chunks=["hi ", "there"], gate=gate, gate_at=1, input_tokens=7, output_tokens=2))
    fake_openai.script(free, Script(chunks=["ok"]))
    watched = await create_skill(http, acme.alice, provider="openai", model=gated, visibility="company")
    other = await create_skill(http, acme.alice, provider="openai", model=free)
    bobs = await create_skill(http, acme.bob, provider="openai", model=free)

    async def run(user: User, skill: Json) -> Json:
        headers = {**user.headers, "Accept": "application/json"}
        response = await http.post(f"/api/skills/{skill['id']}/run", json={"input": {"name": "Ada"}}, headers=headers)
        assert response.status_code == 200, response.text
        found: Json = response.json()
        return found

    async with (
        live_connection(server.url, acme.alice.token) as alice_conn,
        live_connection(server.url, acme.bob.token) as bob_conn,
        live_connection(server.url, acme.admin.token) as admin_conn,
    ):
        alice = await live_sub(server, alice_conn, acme.alice, RUN_EVENTS)
        alice_watched = await live_sub(server, alice_conn, acme.alice, RUN_EVENTS, {"skill": watched["id"]})
        bob = await live_sub(server, bob_conn, acme.bob, RUN_EVENTS)
        admin = await live_sub(server, admin_conn, acme.admin, RUN_EVENTS)

        running = asyncio.create_task(run(acme.alice, watched))
        try:
            for sub in (alice, alice_watched, admin):
                started = await sub.next()
                assert (started["type"], started["skillId"]) == ("CREATED", watched["id"]), started
                assert started["run"]["status"] == "RUNNING"  # the provider is held: the run is under way
                assert (started["run"]["userId"], started["run"]["inputTokens"]) == (acme.alice.id, None)
        finally:
            gate.set()
        finished = await running
        assert finished["status"] == "succeeded", finished
        for sub in (alice, alice_watched, admin):
            done = await sub.next()
            assert (done["type"], done["runId"], done["skillId"]) == ("UPDATED", finished["id"], watched["id"])
            assert done["run"] == {
                "id": finished["id"],
                "skillId": watched["id"],
                "userId": acme.alice.id,
                "status": "SUCCEEDED",
                "inputTokens": 7,
                "outputTokens": 2,
                "output": "hi there",
            }

        unwatched = await run(acme.alice, other)
        for sub in (alice, admin):
            assert summary(await sub.take(2), "runId") == [("CREATED", unwatched["id"]), ("UPDATED", unwatched["id"])]
        again = await run(acme.alice, watched)  # the fence of the skillId filter: `other`'s run came before
        assert summary(await alice_watched.take(2), "runId") == [("CREATED", again["id"]), ("UPDATED", again["id"])]

        own = await run(acme.bob, bobs)  # the fence of bob's: alice's runs came before
        assert summary(await bob.take(2), "runId") == [("CREATED", own["id"]), ("UPDATED", own["id"])]
        assert summary(await admin.take(4), "runId") == [
            ("CREATED", again["id"]),
            ("UPDATED", again["id"]),
            ("CREATED", own["id"]),
            ("UPDATED", own["id"]),
        ]
        assert summary(await alice.take(2), "runId") == [("CREATED", again["id"]), ("UPDATED", again["id"])]


async def test_tag_events_and_assignments_follow_the_tagged_entity(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    async with (
        live_connection(server.url, acme.alice.token) as alice_conn,
        live_connection(server.url, acme.bob.token) as bob_conn,
    ):
        alice = await live_sub(server, alice_conn, acme.alice, TAG_EVENTS)
        bob = await live_sub(server, bob_conn, acme.bob, TAG_EVENTS)
        both = (alice, bob)

        tag = await rest(http, acme.admin, "POST", "/api/tags", {"name": unique("t")[:40], "color": "#112233"}, 201)
        for sub in both:
            event = await sub.next()
            assert (event["type"], event["tagId"], event["tag"]) == (
                "CREATED",
                tag["id"],
                {"id": tag["id"], "name": tag["name"], "color": "#112233"},
            )
            assert (event["entityType"], event["entityId"]) == (None, None)
        await rest(http, acme.admin, "PATCH", f"/api/tags/{tag['id']}", {"name": "renamed"})
        for sub in both:
            event = await sub.next()
            assert (event["type"], event["tag"]["name"]) == ("UPDATED", "renamed")

        alices = await new_task(http, acme.alice)  # bob cannot read it
        shared = await new_task(http, acme.alice, assignee_id=acme.bob.id)
        await tag_entity(http, acme.alice, "task", alices["id"], [tag["id"]])
        assigned = await alice.next()
        assert (assigned["type"], assigned["tagId"], assigned["entityType"], assigned["entityId"]) == (
            "ASSIGNED",
            tag["id"],
            "TASK",
            alices["id"],
        )
        assert assigned["tag"]["name"] == "renamed"
        await tag_entity(http, acme.alice, "task", shared["id"], [tag["id"]])
        for sub in both:  # bob's fence: the assignment on alice's own task came before
            event = await sub.next()
            assert (event["type"], event["entityId"]) == ("ASSIGNED", shared["id"])
        await tag_entity(http, acme.alice, "task", alices["id"], [])
        event = await alice.next()
        assert (event["type"], event["entityType"], event["entityId"]) == ("UNASSIGNED", "TASK", alices["id"])
        await tag_entity(http, acme.alice, "task", shared["id"], [])
        for sub in both:
            event = await sub.next()
            assert (event["type"], event["entityId"]) == ("UNASSIGNED", shared["id"])

        await tag_entity(http, acme.alice, "task", shared["id"], [tag["id"]])
        for sub in both:
            assert (await sub.next())["type"] == "ASSIGNED"
        await rest(http, acme.admin, "DELETE", f"/api/tags/{tag['id']}")  # its assignments go unannounced
        for sub in both:
            event = await sub.next()
            assert (event["type"], event["tagId"], event["tag"]) == ("DELETED", tag["id"], None)
            await sub.nothing(0.3)


# --------------------------------------------------------------------------- RLS on delivery


async def test_nothing_crosses_companies(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    queries = {"task": TASK_EVENTS, "tag": TAG_EVENTS, "knowledge": KNOWLEDGE_EVENTS}
    async with (
        live_connection(server.url, acme.admin.token) as acme_conn,
        live_connection(server.url, globex.admin.token) as globex_conn,
    ):
        subs = {
            (company.name, kind): await live_sub(server, conn, company.admin, query)
            for company, conn in ((acme, acme_conn), (globex, globex_conn))
            for kind, query in queries.items()
        }
        made: dict[str, list[tuple[str, str]]] = {}
        for company in (acme, globex):  # interleaved: each company's changes between the other's
            made.setdefault(company.name, [])
            task = await new_task(http, company.alice)
            made[company.name].append(("task", task["id"]))
            tag = await rest(http, company.alice, "POST", "/api/tags", {"name": unique("t")[:40]}, 201)
            made[company.name].append(("tag", tag["id"]))
            item = await new_item(http, company.alice)
            made[company.name].append(("knowledge", item["id"]))
        for company in (acme, globex):  # and a last one each: anything leaked would come before it
            task = await new_task(http, company.bob)
            made[company.name].append(("task", task["id"]))
        id_keys = {"task": "taskId", "tag": "tagId", "knowledge": "itemId"}
        for company in (acme, globex):
            for kind, id_key in id_keys.items():
                wanted = [entity for k, entity in made[company.name] if k == kind]
                got = await subs[(company.name, kind)].take(len(wanted))
                assert [e[id_key] for e in got] == wanted, (company.name, kind)
                assert {e["type"] for e in got} == {"CREATED"}
        for sub in subs.values():
            await sub.nothing(0.2)


async def test_reassignment_hides_and_shows_a_task_mid_stream(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    """A member sees a task while they created it or are assigned it: losing it is one DELETED and then
    silence, whatever happens to it later; getting it is an UPDATED. An admin sees it all."""
    async with (
        live_connection(server.url, acme.alice.token) as alice_conn,
        live_connection(server.url, acme.admin.token) as admin_conn,
    ):
        alice = await live_sub(server, alice_conn, acme.alice, TASK_EVENTS)
        admin = await live_sub(server, admin_conn, acme.admin, TASK_EVENTS)

        admin_saw: list[Json] = []

        async def change(write: Any) -> Json:
            """Writes, and waits for the admin's event of it: fanned out before the next write."""
            written: Json = await write
            admin_saw.append(await admin.next())
            return written

        lost = await change(new_task(http, acme.bob, assignee_id=acme.alice.id))
        assert summary([await alice.next()]) == [("CREATED", lost["id"])]
        await change(update_task(http, acme.bob, lost["id"], assignee_id=acme.bob.id))
        hidden = await alice.next()
        assert (hidden["type"], hidden["taskId"], hidden["task"]) == ("DELETED", lost["id"], None)
        await change(update_task(http, acme.bob, lost["id"], title="alice must not see this"))
        await change(log_time(http, acme.bob, lost["id"], 5))
        await change(update_task(http, acme.bob, lost["id"], status="done"))

        gained = await change(new_task(http, acme.bob))
        await change(update_task(http, acme.bob, gained["id"], assignee_id=acme.alice.id))
        shown = await alice.next()  # the fence: none of the changes to `lost` came before it
        assert (shown["type"], shown["taskId"]) == ("UPDATED", gained["id"])
        assert (shown["task"]["assigneeId"], shown["task"]["title"]) == (acme.alice.id, gained["title"])
        await change(update_task(http, acme.bob, lost["id"], title="still not"))
        await change(update_task(http, acme.bob, gained["id"], title="hers now"))
        assert summary([await alice.next()]) == [("UPDATED", gained["id"])]

        assert summary(admin_saw) == [
            ("CREATED", lost["id"]),
            ("UPDATED", lost["id"]),
            ("UPDATED", lost["id"]),
            ("UPDATED", lost["id"]),
            ("UPDATED", lost["id"]),
            ("CREATED", gained["id"]),
            ("UPDATED", gained["id"]),
            ("UPDATED", lost["id"]),
            ("UPDATED", gained["id"]),
        ]
        assert admin_saw[1]["task"]["assigneeId"] == acme.bob.id


# --------------------------------------------------------------------------- nested selections


async def test_nested_fields_read_as_the_subscriber_would_query_them(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    async with live_connection(server.url, acme.alice.token) as conn:
        sub = await live_sub(server, conn, acme.alice, NESTED_EVENTS)

        async def as_queried(task_id: str) -> Json:
            task: Json = (await gql(http, acme.alice, NESTED_QUERY, {"id": task_id}))["task"]
            return task

        task = await new_task(http, acme.bob, assignee_id=acme.alice.id)
        created = await sub.next()
        assert created["task"] == await as_queried(task["id"])
        assert created["task"]["assignee"] == {"userId": acme.alice.id, "email": acme.alice.email}
        assert (created["task"]["tags"], created["task"]["timeLogs"]) == ([], [])

        tags = [await rest(http, acme.bob, "POST", "/api/tags", {"name": name}, 201) for name in ("zeta", "alpha")]
        await tag_entity(http, acme.bob, "task", task["id"], [t["id"] for t in tags])  # no task event
        await log_time(http, acme.bob, task["id"], 20)
        logged = await sub.next()
        assert logged["task"] == await as_queried(task["id"])
        assert logged["task"]["tags"] == [{"name": "alpha"}, {"name": "zeta"}]
        assert (logged["task"]["totalMinutes"], logged["task"]["timeLogs"]) == (
            20,
            [{"minutes": 20, "userId": acme.bob.id}],
        )

        await log_time(http, acme.alice, task["id"], 10)
        again = await sub.next()
        assert again["task"] == await as_queried(task["id"])
        assert again["task"]["totalMinutes"] == 30 and len(again["task"]["timeLogs"]) == 2


# --------------------------------------------------------------------------- filters


async def test_status_filter_keeps_a_tasks_last_event_leaving_it(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    async with live_connection(server.url, acme.admin.token) as conn:
        barrier = await live_sub(server, conn, acme.admin, TASK_EVENTS)
        filtered = await live_sub(server, conn, acme.admin, TASK_EVENTS, {"f": {"status": "IN_PROGRESS"}})

        async def change(write: Any) -> None:
            await write
            await barrier.next()

        task = await new_task(http, acme.alice)
        await barrier.next()
        await change(update_task(http, acme.alice, task["id"], status="in_progress"))
        await change(update_task(http, acme.alice, task["id"], title="working on it"))
        await change(update_task(http, acme.alice, task["id"], status="done"))
        await change(update_task(http, acme.alice, task["id"], title="done, renamed"))
        await change(new_task(http, acme.alice, status="todo"))
        fence = await new_task(http, acme.alice, status="in_progress")
        got = await filtered.take(4)
        assert summary(got) == [
            ("UPDATED", task["id"]),
            ("UPDATED", task["id"]),
            ("UPDATED", task["id"]),
            ("CREATED", fence["id"]),
        ]
        assert [e["task"]["status"] for e in got] == ["IN_PROGRESS", "IN_PROGRESS", "DONE", "IN_PROGRESS"]


async def test_assignee_filter_keeps_a_task_handed_away(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    async with live_connection(server.url, acme.admin.token) as conn:
        barrier = await live_sub(server, conn, acme.admin, TASK_EVENTS)
        filtered = await live_sub(server, conn, acme.admin, TASK_EVENTS, {"f": {"assigneeId": acme.bob.id}})

        await new_task(http, acme.alice, assignee_id=acme.alice.id)
        await barrier.next()
        task = await new_task(http, acme.alice, assignee_id=acme.bob.id)
        await barrier.next()
        await update_task(http, acme.alice, task["id"], assignee_id=acme.alice.id)
        await barrier.next()
        await update_task(http, acme.alice, task["id"], title="alice's now")
        await barrier.next()
        fence = await new_task(http, acme.alice, assignee_id=acme.bob.id)
        got = await filtered.take(3)
        assert summary(got) == [("CREATED", task["id"]), ("UPDATED", task["id"]), ("CREATED", fence["id"])]
        assert got[1]["task"]["assigneeId"] == acme.alice.id


async def test_task_id_filter(server: ThreadedServer, http: httpx.AsyncClient, acme: Company) -> None:
    watched = await new_task(http, acme.alice)
    other = await new_task(http, acme.alice)
    async with live_connection(server.url, acme.alice.token) as conn:
        barrier = await live_sub(server, conn, acme.alice, TASK_EVENTS)
        filtered = await live_sub(server, conn, acme.alice, TASK_EVENTS, {"f": {"taskId": watched["id"]}})
        for write in (
            update_task(http, acme.alice, other["id"], title="not watched"),
            log_time(http, acme.alice, other["id"], 5),
            update_task(http, acme.alice, watched["id"], title="watched"),
            rest(http, acme.alice, "DELETE", f"/api/tasks/{other['id']}"),
            rest(http, acme.alice, "DELETE", f"/api/tasks/{watched['id']}"),
        ):
            await write
            await barrier.next()
        got = await filtered.take(2)
        assert summary(got) == [("UPDATED", watched["id"]), ("DELETED", watched["id"])]
        assert got[0]["task"]["title"] == "watched"


async def test_item_id_filter(server: ThreadedServer, http: httpx.AsyncClient, acme: Company) -> None:
    watched = await new_item(http, acme.alice)
    other = await new_item(http, acme.alice)
    async with live_connection(server.url, acme.bob.token) as conn:
        filtered = await live_sub(server, conn, acme.bob, KNOWLEDGE_EVENTS, {"item": watched["id"]})
        await rest(http, acme.alice, "PATCH", f"/api/knowledge/{other['id']}", {"title": "not watched"})
        await rest(http, acme.alice, "PATCH", f"/api/knowledge/{watched['id']}", {"title": "watched"})
        event = await filtered.next()  # the fence: `other`'s change came before
        assert (event["type"], event["itemId"], event["item"]["title"]) == ("UPDATED", watched["id"], "watched")


# --------------------------------------------------------------------------- bad input


async def test_bad_arguments_end_the_subscription_with_an_error_code(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company, globex: Company, subtests: pytest.Subtests
) -> None:
    bobs_task = await new_task(http, acme.bob)
    globex_task = await new_task(http, globex.alice)
    bobs_item = await new_item(http, acme.bob, visibility="private")
    bobs_skill = await create_skill(http, acme.bob)  # private
    missing = str(uuid.uuid4())
    cases: list[tuple[str, str, Json, str]] = [
        ("unknown taskId", TASK_EVENTS, {"f": {"taskId": missing}}, "NOT_FOUND"),
        ("another member's taskId", TASK_EVENTS, {"f": {"taskId": bobs_task["id"]}}, "NOT_FOUND"),
        ("another company's taskId", TASK_EVENTS, {"f": {"taskId": globex_task["id"]}}, "NOT_FOUND"),
        ("another company's assigneeId", TASK_EVENTS, {"f": {"assigneeId": globex.alice.id}}, "BAD_USER_INPUT"),
        ("malformed taskId", TASK_EVENTS, {"f": {"taskId": "not-a-uuid"}}, "BAD_USER_INPUT"),
        ("malformed assigneeId", TASK_EVENTS, {"f": {"assigneeId": "42"}}, "BAD_USER_INPUT"),
        ("lastEventId abc", TASK_EVENTS, {"last": "abc"}, "BAD_USER_INPUT"),
        ("lastEventId -1", TAG_EVENTS, {"last": "-1"}, "BAD_USER_INPUT"),
        ("invisible itemId", KNOWLEDGE_EVENTS, {"item": bobs_item["id"]}, "NOT_FOUND"),
        ("malformed itemId", KNOWLEDGE_EVENTS, {"item": "x"}, "BAD_USER_INPUT"),
        ("invisible skillId", RUN_EVENTS, {"skill": bobs_skill["id"]}, "NOT_FOUND"),
        ("unknown skillId", RUN_EVENTS, {"skill": missing}, "NOT_FOUND"),
    ]
    async with live_connection(server.url, acme.alice.token) as conn:
        for name, query, variables, code in cases:
            with subtests.test(case=name):
                errors = await (await conn.subscribe(query, variables)).errors()
                assert [e.get("extensions", {}).get("code") for e in errors] == [code], errors
        # the connection still serves
        sub = await live_sub(server, conn, acme.alice, TASK_EVENTS)
        task = await new_task(http, acme.bob, assignee_id=acme.alice.id)
        assert summary([await sub.next()]) == [("CREATED", task["id"])]


async def test_no_token_is_unauthenticated(server: ThreadedServer, acme: Company) -> None:
    """Over graphql-transport-ws a connection_init without a token closes the socket (4403, as for
    every operation: tests/test_graphql.py); over graphql-sse the subscription answers UNAUTHENTICATED."""
    url = server.url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send('{"type": "connection_init", "payload": {}}')
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 4403
    body = {"query": TASK_EVENTS}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http,
        aconnect_sse(http, "POST", "/graphql", json=body, headers={"Accept": "text/event-stream"}) as source,
    ):
        assert source.response.status_code == 200
        messages = [(m.event, m.data) async for m in source.aiter_sse()]
    assert [event for event, _ in messages] == ["next", "complete"], messages
    payload = json.loads(messages[0][1])
    assert payload["data"] is None
    assert [e["extensions"]["code"] for e in payload["errors"]] == ["UNAUTHENTICATED"], payload


# --------------------------------------------------------------------------- lastEventId replay


async def test_last_event_id_replays_exactly_what_was_missed(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    async with live_connection(server.url, acme.alice.token) as conn:
        first = await live_sub(server, conn, acme.alice, TASK_EVENTS)
        task = await new_task(http, acme.bob, assignee_id=acme.alice.id)
        seen = await first.next()
        await first.stop()
        await listening(server, acme.alice, 0)

        await update_task(http, acme.bob, task["id"], title="missed 1")
        await new_task(http, acme.bob)  # alice cannot read it: not hers to replay
        await log_time(http, acme.bob, task["id"], 7)
        second = await new_task(http, acme.bob, assignee_id=acme.alice.id)

        resumed = await live_sub(server, conn, acme.alice, TASK_EVENTS, {"last": seen["eventId"]})
        missed = await resumed.take(3)
        assert summary(missed) == [("UPDATED", task["id"]), ("UPDATED", task["id"]), ("CREATED", second["id"])]
        assert missed[1]["task"]["totalMinutes"] == 7
        await update_task(http, acme.bob, second["id"], title="live again")
        live = await resumed.next()
        assert (live["type"], live["taskId"], live["task"]["title"]) == ("UPDATED", second["id"], "live again")
        assert increasing([seen, *missed, live]), [seen, *missed, live]
        await resumed.nothing(0.3)


# --------------------------------------------------------------------------- graphql-sse


async def test_graphql_sse_receives_task_events(server: ThreadedServer, http: httpx.AsyncClient, acme: Company) -> None:
    async with sse_subscription(server, acme.alice, TASK_EVENTS) as payloads:
        task = await new_task(http, acme.bob, assignee_id=acme.alice.id)
        async with asyncio.timeout(TIMEOUT):
            payload = await anext(payloads)
        event = payload["data"]["taskEvents"]
        assert (event["type"], event["taskId"], event["task"]["title"]) == ("CREATED", task["id"], task["title"])


async def test_one_users_subscriptions_share_an_event_but_each_gets_its_own_selection(
    server: ThreadedServer, http: httpx.AsyncClient, acme: Company
) -> None:
    """The hub hands one event object to all of a user's subscriptions that want it, and GraphQL
    resolves it once per document and variables (schema/live.SharedEvents): subscriptions with the
    same document get the same answer, others their own selection — never another's."""
    tag = (await http.post("/api/tags", json={"name": unique("shared")[:40]}, headers=acme.alice.headers)).json()
    nested = "subscription { taskEvents { type taskId task { title tags { name } } } }"
    flat = "subscription { taskEvents { type taskId task { title } } }"
    by_status = (
        "subscription($f: TaskEventFilter, $t: Boolean!) { taskEvents(filter: $f) {"
        " taskId task { status title @include(if: $t) } } }"
    )
    async with (
        live_connection(server.url, acme.alice.token) as alice,
        live_connection(server.url, acme.admin.token) as admin,
    ):
        same = [await live_sub(server, alice, acme.alice, nested) for _ in range(2)]
        plain = await live_sub(server, alice, acme.alice, flat)
        todo = await live_sub(server, alice, acme.alice, by_status, {"f": {"status": "TODO"}, "t": False})
        titled = await live_sub(server, alice, acme.alice, by_status, {"f": {"status": "TODO"}, "t": True})
        done = await live_sub(server, alice, acme.alice, by_status, {"f": {"status": "DONE"}, "t": False})
        other = await live_sub(server, admin, acme.admin, nested)
        task = await new_task(http, acme.alice, title="shared")
        tagged = await http.post(
            "/api/tags/entity",
            json={"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]},
            headers=acme.alice.headers,
        )
        assert tagged.status_code in (200, 201), tagged.text
        await update_task(http, acme.alice, task["id"], title="shared, tagged")
        for sub in (*same, other):
            created, updated = await sub.take(2)
            assert created["task"]["title"] == "shared" and updated["task"]["title"] == "shared, tagged"
            assert updated["task"]["tags"] == [{"name": tag["name"]}]
        for created, updated in [await plain.take(2)]:
            assert created["task"] == {"title": "shared"} and updated["task"] == {"title": "shared, tagged"}
        assert [e["task"] for e in await todo.take(2)] == [{"status": "TODO"}, {"status": "TODO"}]
        titles = [e["task"] for e in await titled.take(2)]
        assert titles == [{"status": "TODO", "title": "shared"}, {"status": "TODO", "title": "shared, tagged"}]
        marker = await new_task(http, acme.alice, title="done", status="done")
        assert (await done.next()) == {"taskId": marker["id"], "task": {"status": "DONE"}}
