"""Live events through the real graphql-ws client (tests/js/live_task_events.mjs under Node), as a
frontend subscribes: the bearer token in connectionParams, a nested selection, and the README's
resumable() helper, which keeps the last eventId in the payload graphql-ws sends again on reconnect, and
subscribes again when the server ends a subscription (an expired token, SLOW_CONSUMER). Against a real
server and the real database:

- alice subscribes to taskEvents from Node; bob, a colleague, changes over REST a task assigned to alice
  and one of his own she cannot read. Alice gets the UPDATED event with the new values (and nothing for
  bob's task); then her socket drops, bob changes her task while she is away, and the retry graphql-ws
  makes resubscribes after her last event, so the change is replayed — once — before the live ones;
- alice's token expires: the server ends her subscription (which of its two signals comes first
  varies), and the helper subscribes again on a new connection with a fresh token, after her last
  event, so the change bob made in between is replayed;
- a subscription that falls behind (FLUXOPUS_LIVE_QUEUE) is ended with SLOW_CONSUMER, and the helper
  subscribes again after its last event: what overflowed is replayed, once.

`npm ci --prefix tests/js` installs the client.

Absence is proved by commit order: changes fan out in the order they were committed, so an event for
bob's task, committed first, would have been received before alice's."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.auth.jwt import mint_token
from fluxopus.config import Settings
from tests.utils.builders import SECRET, Company, User
from tests.utils.live import TIMEOUT, listening
from tests.utils.server import ThreadedServer

pytestmark = [pytest.mark.js, pytest.mark.slow]

JS = Path(__file__).resolve().parent / "js"
SCRIPT = JS / "live_task_events.mjs"
Json = dict[str, Any]


def node() -> str:
    path = shutil.which("node")
    assert path, "Node.js is required for tests/test_live_js.py"
    assert (JS / "node_modules" / "graphql-ws").is_dir(), "run: npm ci --prefix tests/js"
    return path


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    quiet = settings.model_copy(update={"indexer": False})
    with ThreadedServer(create_app(quiet, database_url=database_url)) as running:
        yield running


class Subscriber:
    """The Node process: what it prints, line by line, and the commands it reads."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> Json:
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"node printed nothing for {TIMEOUT} s") from None
        assert raw, f"node exited ({await self.failure()})"
        found: Json = json.loads(raw)
        return found

    async def event(self) -> Json:
        line = await self.line()
        assert "event" in line, line
        event: Json = line["event"]
        return event

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()

    async def failure(self) -> str:
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.read(), TIMEOUT)).decode()


@asynccontextmanager
async def subscriber(server: ThreadedServer, tokens: list[str], events: int) -> AsyncIterator[Subscriber]:
    """The script subscribed with the first token; each new connection waits for "reconnect", then
    uses the next token."""
    url = server.url.replace("http://", "ws://") + "/graphql"
    process = await asyncio.create_subprocess_exec(
        node(),
        str(SCRIPT),
        url,
        ",".join(tokens),
        str(events),
        cwd=JS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Subscriber(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def patch(http: httpx.AsyncClient, user: User, task_id: str, **fields: Any) -> Json:
    response = await http.patch(f"/api/tasks/{task_id}", json=fields, headers=user.headers)
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


async def test_graphql_ws_client_receives_a_colleagues_rest_change_and_resumes_after_a_drop(
    server: ThreadedServer, acme: Company
) -> None:
    alice, bob = acme.alice, acme.bob
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        created = await http.post(
            "/api/tasks", json={"title": "for alice", "assignee_id": alice.id}, headers=bob.headers
        )
        assert created.status_code == 201, created.text
        hers = created.json()["id"]
        created = await http.post("/api/tasks", json={"title": "bob's own"}, headers=bob.headers)
        assert created.status_code == 201, created.text
        his = created.json()["id"]
        assert (await http.get(f"/api/tasks/{his}", headers=alice.headers)).status_code == 404

        async with subscriber(server, [alice.token], events=3) as node_client:
            assert await node_client.line() == {"connected": 1}
            await listening(server, alice, 1)  # the server fans changes out to it from now on

            await patch(http, bob, his, title="not for alice")  # committed first: would arrive first
            await patch(http, bob, hers, title="renamed by bob", status="in_progress")
            updated = await node_client.event()
            assert updated == {
                "type": "UPDATED",
                "eventId": updated["eventId"],
                "taskId": hers,
                "task": {
                    "id": hers,
                    "title": "renamed by bob",
                    "status": "IN_PROGRESS",
                    "assignee": {"email": alice.email},
                },
            }

            # the socket drops; while it is down, bob changes both tasks again
            await node_client.send("drop")
            await listening(server, alice, 0)
            await patch(http, bob, his, title="still not for alice")
            await patch(http, bob, hers, status="done")
            await node_client.send("reconnect")
            assert await node_client.line() == {"connected": 2}
            missed = await node_client.event()  # replayed: it was committed with no subscription open
            assert (missed["type"], missed["taskId"], missed["task"]["status"]) == ("UPDATED", hers, "DONE")
            assert missed["task"]["title"] == "renamed by bob"

            await listening(server, alice, 1)
            await patch(http, bob, his, title="never for alice")
            await patch(http, bob, hers, assignee_id=bob.id)  # handed to bob: hidden from alice now
            hidden = await node_client.event()
            assert (hidden["type"], hidden["taskId"], hidden["task"]) == ("DELETED", hers, None)

            assert await asyncio.wait_for(node_client.process.wait(), TIMEOUT) == 0, await node_client.failure()
            assert int(updated["eventId"]) < int(missed["eventId"]) < int(hidden["eventId"])


async def test_an_expired_token_resubscribes_with_a_fresh_one_after_the_last_event(
    server: ThreadedServer, acme: Company
) -> None:
    """The server ends a subscription when the token that opened it expires (the socket closes with
    4401, or the subscription ends with UNAUTHENTICATED just before); resumable() subscribes again on a
    new connection, whose connectionParams read a fresh token, after the last event received."""
    alice, bob = acme.alice, acme.bob
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        created = await http.post(
            "/api/tasks", json={"title": "for alice", "assignee_id": alice.id}, headers=bob.headers
        )
        assert created.status_code == 201, created.text
        hers = created.json()["id"]

        # it must outlive the first event by a margin (Node starting, a loaded machine)
        short = mint_token(
            SECRET,
            user_id=UUID(alice.id),
            email=alice.email,
            role="member",
            company_id=UUID(alice.company_id),
            ttl=6,
        )
        async with subscriber(server, [short, alice.token], events=2) as node_client:
            assert await node_client.line() == {"connected": 1}
            await listening(server, alice, 1)
            await patch(http, bob, hers, title="before it expired")
            first = await node_client.event()
            assert (first["type"], first["taskId"], first["task"]["title"]) == ("UPDATED", hers, "before it expired")

            await listening(server, alice, 0)  # the token expired: the server let the subscription go
            await patch(http, bob, hers, title="while it was expired")
            await node_client.send("reconnect")
            assert await node_client.line() == {"connected": 2}
            missed = await node_client.event()
            assert (missed["type"], missed["taskId"], missed["task"]["title"]) == (
                "UPDATED",
                hers,
                "while it was expired",
            )
            assert int(first["eventId"]) < int(missed["eventId"])
            assert await asyncio.wait_for(node_client.process.wait(), TIMEOUT) == 0, await node_client.failure()


@pytest.fixture(scope="module")
def cramped(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    """One event may wait for a subscription: a second in the same batch closes it (SLOW_CONSUMER)."""
    own = settings.model_copy(update={"indexer": False, "live_queue": 1})
    with ThreadedServer(create_app(own, database_url=database_url)) as running:
        yield running


async def test_a_slow_consumer_subscribes_again_and_is_replayed_what_it_missed(
    cramped: ThreadedServer, acme: Company
) -> None:
    """Two tasks created by one mutation (one transaction: one batch) overflow a queue of one; the server
    ends the subscription with SLOW_CONSUMER and resumable() subscribes again after the last event
    received, so both tasks arrive, once each."""
    alice, bob = acme.alice, acme.bob
    two = (
        'mutation($a: ID!) { one: createTask(input: {title: "one", assigneeId: $a}) { id }'
        ' two: createTask(input: {title: "two", assigneeId: $a}) { id } }'
    )
    async with httpx.AsyncClient(base_url=cramped.url, timeout=TIMEOUT) as http:
        async with subscriber(cramped, [alice.token], events=3) as node_client:
            assert await node_client.line() == {"connected": 1}
            await listening(cramped, alice, 1)
            created = await http.post(
                "/api/tasks", json={"title": "first", "assignee_id": alice.id}, headers=bob.headers
            )
            assert created.status_code == 201, created.text
            first = await node_client.event()
            assert (first["type"], first["taskId"]) == ("CREATED", created.json()["id"])

            response = await http.post(
                "/graphql", json={"query": two, "variables": {"a": alice.id}}, headers=bob.headers
            )
            assert response.status_code == 200 and not response.json().get("errors"), response.text
            made = response.json()["data"]
            # graphql-ws closes a socket its last subscription left (lazy), and connects again for the next
            await node_client.send("reconnect")
            assert await node_client.line() == {"connected": 2}
            burst = [await node_client.event(), await node_client.event()]
            assert [(e["type"], e["taskId"], e["task"]["title"]) for e in burst] == [
                ("CREATED", made["one"]["id"], "one"),
                ("CREATED", made["two"]["id"], "two"),
            ]
            assert await asyncio.wait_for(node_client.process.wait(), TIMEOUT) == 0, await node_client.failure()
