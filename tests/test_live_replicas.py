"""Live events across real `fluxopus serve` processes on one database, and when things go wrong.

Every process has its own LISTEN hub; a change committed through one reaches the subscribers of all.
What these tests prove, against real processes and their embedded PostgreSQL (no mocks):

- across replicas: subscribers on A (two companies, an admin and a member each) receive the changes
  made over REST on B, each exactly what their row-level security lets them read, per task in commit
  order (eventIds strictly increasing, the final state last), also for PATCHes racing each other;
- a subscriber that reconnects to another process with lastEventId gets exactly what it missed, in
  order, then live events;
- a lastEventId the log has pruned (FLUXOPUS_LIVE_RETENTION=1) answers RESYNC, then live events;
- a LISTEN connection killed by the database (pg_terminate_backend): what was committed while the
  hub was not listening still arrives, in order, once it listens again — never silence;
- a subscriber that stops reading its socket is cut off (SLOW_CONSUMER, naming the lastEventId to
  resume from) once FLUXOPUS_LIVE_QUEUE events wait for it, while another subscriber of the same
  process receives every event;
- and no process logs a traceback meanwhile.

The first process starts the embedded PostgreSQL in its data dir; the others reach it with
DATABASE_URL. All of them share FLUXOPUS_JWT_SECRET, so the tests' users (tests/utils/builders.py,
created in that database) sign in on each. A process's live subscriptions are counted on its
/metrics (fluxopus_live_subscribers): a test waits for that instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from fluxopus.db.engine import operator_engine
from tests.utils.builders import SECRET, Company, User, make_company, unique
from tests.utils.live import TIMEOUT, Connection, Subscription, live_connection
from tests.utils.serve import Processes, Serve, clean_env, embedded_url, wait_until

pytestmark = pytest.mark.slow

Json = dict[str, Any]

TASK_EVENTS = (
    "subscription($f: TaskEventFilter, $last: ID) { taskEvents(filter: $f, lastEventId: $last) {"
    " type eventId taskId task { id title status assigneeId } } }"
)
BIG_EVENTS = "subscription { taskEvents { type eventId taskId task { id title description } } }"
STARTUP_SECONDS = 90  # the first start runs initdb, slow on a busy machine


# --------------------------------------------------------------------------- processes


def healthy(server: Serve) -> None:
    """Waits for /healthz, longer than Serve.wait_healthy: initdb on a busy machine takes a while."""
    wait_until(
        lambda: server.proc.poll() is not None or getattr(server.healthz(), "status_code", None) == 200,
        STARTUP_SECONDS,
        f"{server.url} to start\n{server.logs()}",
    )
    server.wait_healthy()  # also: it did not exit


class Cluster:
    """Serve processes on one database: `a` started the embedded PostgreSQL, `b` uses it."""

    def __init__(self, work_dir: Path, processes: Processes) -> None:
        self.work_dir = work_dir
        self.processes = processes
        self.a = self.processes.serve(work_dir / "a", self.env())
        healthy(self.a)
        self.database_url = embedded_url(self.a)
        self.b = self.start()

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(FLUXOPUS_JWT_SECRET=SECRET, FLUXOPUS_INDEXER="false", **extra)

    def start(self, **extra: str) -> Serve:
        """One more process on the database, with FLUXOPUS_* settings of its own."""
        env = self.env(DATABASE_URL=self.database_url, **extra)
        server = self.processes.serve(self.work_dir / f"p{len(self.processes.started)}", env)
        healthy(server)
        return server

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        async with operator_engine(self.database_url) as engine, engine.begin() as conn:
            return list(await conn.execute(text(statement), params))

    async def latest_change(self) -> int:
        [(latest,)] = await self.sql("select coalesce(max(id), 0) from change_log")
        return int(latest)

    def assert_no_tracebacks(self) -> None:
        for server in self.processes.started:
            logs = server.logs()
            assert "Traceback" not in logs, f"{server.url} logged a traceback\n{logs}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Outside pytest's basetemp: the embedded server runs as a user of its own and must traverse it.
    work_dir = Path(tempfile.mkdtemp(prefix="fluxopus-live-replicas-"))
    processes = Processes(work_dir)
    try:
        yield Cluster(work_dir, processes)
    finally:
        # The replicas first, gracefully; A then stops its PostgreSQL. Whatever is left is stopped by PID.
        for server in reversed(processes.started):
            if server.proc.poll() is None:
                with contextlib.suppress(AssertionError):
                    server.stop(signal.SIGTERM)
        processes.close()
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture
async def acme(cluster: Cluster) -> Company:
    return await make_company(cluster.database_url)


@pytest.fixture
async def globex(cluster: Cluster) -> Company:
    return await make_company(cluster.database_url)


def metric(server: Serve, name: str) -> float:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    match = re.search(rf"^{name} (\S+)$", response.text, re.MULTILINE)
    assert match is not None, f"no {name} on /metrics of {server.url}"
    return float(match[1])


async def subscriptions(server: Serve, count: int, timeout: float = TIMEOUT) -> None:
    """Waits until `server` fans changes out to exactly `count` live subscriptions."""
    async with asyncio.timeout(timeout):
        while await asyncio.to_thread(metric, server, "fluxopus_live_subscribers") != count:
            await asyncio.sleep(0.05)


async def live_subs(server: Serve, subscribing: list[tuple[Connection, str, Json | None]]) -> list[Subscription]:
    """Subscribes on each connection (to `server`) and returns once the server listens for them all."""
    before = await asyncio.to_thread(metric, server, "fluxopus_live_subscribers")
    subs = [await conn.subscribe(query, variables) for conn, query, variables in subscribing]
    await subscriptions(server, int(before) + len(subs))
    return subs


# --------------------------------------------------------------------------- writers (REST)


class Rest:
    def __init__(self, server: Serve) -> None:
        self.http = httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT)

    async def call(self, user: User, method: str, path: str, body: Json | None = None, status: int = 200) -> Json:
        response = await self.http.request(method, path, json=body, headers=user.headers)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        found: Json = response.json()
        return found

    async def new_task(self, user: User, **fields: Any) -> Json:
        return await self.call(user, "POST", "/api/tasks", {"title": unique("task"), **fields}, 201)

    async def update(self, user: User, task_id: str, **fields: Any) -> Json:
        return await self.call(user, "PATCH", f"/api/tasks/{task_id}", fields)

    async def delete(self, user: User, task_id: str) -> Json:
        return await self.call(user, "DELETE", f"/api/tasks/{task_id}")


@contextlib.asynccontextmanager
async def rest(server: Serve) -> AsyncIterator[Rest]:
    writer = Rest(server)
    try:
        yield writer
    finally:
        await writer.http.aclose()


def summary(events: list[Json]) -> list[tuple[str, str | None]]:
    return [(e["type"], e["taskId"]) for e in events]


def increasing(events: list[Json]) -> bool:
    ids = [int(e["eventId"]) for e in events]
    return all(a < b for a, b in zip(ids, ids[1:], strict=False))


# --------------------------------------------------------------------------- across replicas


async def test_changes_made_on_one_replica_reach_the_subscribers_of_another_under_their_rls(
    cluster: Cluster, acme: Company, globex: Company
) -> None:
    a, b = cluster.a, cluster.b
    async with (
        live_connection(a.url, acme.admin.token) as acme_admin,
        live_connection(a.url, acme.alice.token) as acme_alice,
        live_connection(a.url, globex.admin.token) as globex_admin,
        live_connection(a.url, globex.alice.token) as globex_alice,
        rest(b) as api,
    ):
        subs = await live_subs(
            a,
            [(conn, TASK_EVENTS, None) for conn in (acme_admin, acme_alice, globex_admin, globex_alice)],
        )
        acme_admin_sub, acme_alice_sub, globex_admin_sub, globex_alice_sub = subs

        # Each company: a task for alice, one alice may not read (bob's own), writes interleaved.
        hers = await api.new_task(acme.bob, assignee_id=acme.alice.id)
        g_hers = await api.new_task(globex.bob, assignee_id=globex.alice.id)
        bobs = await api.new_task(acme.bob)
        g_bobs = await api.new_task(globex.bob)
        # Several PATCHes of one task in a row, each a commit of its own.
        for i in range(1, 6):
            await api.update(acme.bob, hers["id"], title=f"v{i}")
            await api.update(globex.bob, g_bobs["id"], title=f"g{i}")
        await api.update(acme.bob, bobs["id"], status="done")
        await api.update(acme.bob, hers["id"], status="done", title="final")
        # alice's task handed away: DELETED for alice, UPDATED for the admin.
        await api.update(globex.bob, g_hers["id"], assignee_id=globex.bob.id)
        await api.delete(acme.bob, bobs["id"])

        acme_admin_events = await acme_admin_sub.take(10)
        assert summary(acme_admin_events) == [
            ("CREATED", hers["id"]),
            ("CREATED", bobs["id"]),
            *[("UPDATED", hers["id"])] * 5,
            ("UPDATED", bobs["id"]),
            ("UPDATED", hers["id"]),
            ("DELETED", bobs["id"]),
        ]
        alice_events = await acme_alice_sub.take(7)
        assert summary(alice_events) == [("CREATED", hers["id"]), *[("UPDATED", hers["id"])] * 6]
        globex_admin_events = await globex_admin_sub.take(8)
        assert summary(globex_admin_events) == [
            ("CREATED", g_hers["id"]),
            ("CREATED", g_bobs["id"]),
            *[("UPDATED", g_bobs["id"])] * 5,
            ("UPDATED", g_hers["id"]),
        ]
        g_alice_events = await globex_alice_sub.take(2)
        assert summary(g_alice_events) == [("CREATED", g_hers["id"]), ("DELETED", g_hers["id"])]
        assert g_alice_events[1]["task"] is None

        for events in (acme_admin_events, alice_events, globex_admin_events, g_alice_events):
            assert increasing(events), events
        # A row is read at delivery: an event never shows an older state than the one before it, and the
        # last one shows the final state.
        titles = [e["task"]["title"] for e in alice_events]
        order = [hers["title"], "v1", "v2", "v3", "v4", "v5", "final"]
        assert [order.index(t) for t in titles] == sorted(order.index(t) for t in titles), titles
        assert (alice_events[-1]["task"]["title"], alice_events[-1]["task"]["status"]) == ("final", "DONE")
        assert [e["task"]["title"] for e in globex_admin_events[2:7]][-1] == "g5"

        # PATCHes racing each other (on two replicas): one event each, in commit order, the final state last.
        async with rest(a) as api_a:
            racing = await asyncio.gather(
                *((api, api_a)[i % 2].update(acme.bob, hers["id"], title=f"race {i}") for i in range(8))
            )
        assert len(racing) == 8
        raced = await acme_alice_sub.take(8)
        assert summary(raced) == [("UPDATED", hers["id"])] * 8 and increasing([*alice_events, *raced]), raced
        final = await api.call(acme.bob, "GET", f"/api/tasks/{hers['id']}")
        assert raced[-1]["task"]["title"] == final["title"]
        committed = await cluster.sql(
            "select id from change_log where kind = 'task' and entity_id = cast(:id as uuid) order by id desc limit 1",
            id=hers["id"],
        )
        assert raced[-1]["eventId"] == str(committed[0][0])

        # A fence: nothing else was on its way to anyone (nothing crossed companies, nothing hidden came).
        fence = await api.new_task(acme.admin, assignee_id=acme.alice.id)
        g_fence = await api.new_task(globex.admin, assignee_id=globex.alice.id)
        admin_tail = await acme_admin_sub.take(9)
        assert summary(admin_tail) == [*[("UPDATED", hers["id"])] * 8, ("CREATED", fence["id"])]
        assert summary([await acme_alice_sub.next()]) == [("CREATED", fence["id"])]
        assert summary([await globex_admin_sub.next()]) == [("CREATED", g_fence["id"])]
        assert summary([await globex_alice_sub.next()]) == [("CREATED", g_fence["id"])]
    cluster.assert_no_tracebacks()


# --------------------------------------------------------------------------- lastEventId on another process


async def test_resuming_on_another_replica_with_last_event_id_replays_exactly_what_was_missed(
    cluster: Cluster, acme: Company
) -> None:
    a, b = cluster.a, cluster.b
    async with rest(b) as api:
        async with live_connection(a.url, acme.alice.token) as on_a:
            [first] = await live_subs(a, [(on_a, TASK_EVENTS, None)])
            task = await api.new_task(acme.bob, assignee_id=acme.alice.id)
            seen = await first.next()
            assert summary([seen]) == [("CREATED", task["id"])]
        await subscriptions(a, 0)  # the socket is gone: A no longer fans out to her

        await api.update(acme.bob, task["id"], title="missed 1")
        await api.new_task(acme.bob)  # not hers: never replayed to her
        other = await api.new_task(acme.bob, assignee_id=acme.alice.id)
        await api.update(acme.bob, task["id"], status="in_progress")
        await api.delete(acme.bob, other["id"])

        async with live_connection(b.url, acme.alice.token) as on_b:
            [resumed] = await live_subs(b, [(on_b, TASK_EVENTS, {"last": seen["eventId"]})])
            missed = await resumed.take(3)
            # Rows are read when replayed, as they are now: `other` no longer exists, so its creation has
            # nothing to show (nobody can read it now) and only its deletion, which she could read before,
            # is replayed.
            assert summary(missed) == [("UPDATED", task["id"]), ("UPDATED", task["id"]), ("DELETED", other["id"])]
            assert [(e["task"]["title"], e["task"]["status"]) for e in missed[:2]] == [("missed 1", "IN_PROGRESS")] * 2
            assert missed[2]["task"] is None
            live_task = await api.new_task(acme.admin, assignee_id=acme.alice.id)
            await api.update(acme.admin, task["id"], title="live again")
            live = await resumed.take(2)
            assert summary(live) == [("CREATED", live_task["id"]), ("UPDATED", task["id"])]
            assert live[1]["task"]["title"] == "live again"
            assert increasing([seen, *missed, *live]), [seen, *missed, *live]
            await resumed.nothing(0.5)
    cluster.assert_no_tracebacks()


# --------------------------------------------------------------------------- RESYNC


async def test_a_last_event_id_pruned_from_the_log_answers_resync_then_live_events(
    cluster: Cluster, acme: Company
) -> None:
    # A process that keeps changes one second (and prunes every second): the other processes' changes too,
    # the log being the database's. It is stopped before the other tests resume from the log.
    short = cluster.start(FLUXOPUS_LIVE_RETENTION="1")
    try:
        async with rest(cluster.b) as api:
            async with live_connection(short.url, acme.alice.token) as conn:
                [first] = await live_subs(short, [(conn, TASK_EVENTS, None)])
                task = await api.new_task(acme.bob, assignee_id=acme.alice.id)
                seen = await first.next()
                assert summary([seen]) == [("CREATED", task["id"])]
            await subscriptions(short, 0)
            await api.update(acme.bob, task["id"], title="missed, then pruned")
            missed = await cluster.latest_change()
            assert missed > int(seen["eventId"])

            async def pruned_upto() -> int:
                [(upto,)] = await cluster.sql("select pruned_upto from change_log_horizon")
                return int(upto)

            async with asyncio.timeout(TIMEOUT):
                while await pruned_upto() < missed:
                    await asyncio.sleep(0.2)

            async with live_connection(short.url, acme.alice.token) as conn:
                [resumed] = await live_subs(short, [(conn, TASK_EVENTS, {"last": seen["eventId"]})])
                resync = await resumed.next()
                assert (resync["type"], resync["taskId"], resync["task"]) == ("RESYNC", None, None), resync
                assert int(resync["eventId"]) >= missed
                await api.update(acme.bob, task["id"], title="live after resync")
                live = await resumed.next()
                assert (live["type"], live["taskId"], live["task"]["title"]) == (
                    "UPDATED",
                    task["id"],
                    "live after resync",
                )
                assert int(live["eventId"]) > int(resync["eventId"])

            # Up to date when everything was pruned (a quiet log emptied): no RESYNC, the next change.
            async with asyncio.timeout(TIMEOUT):
                while await pruned_upto() < int(live["eventId"]):
                    await asyncio.sleep(0.2)
            assert await cluster.sql("select id from change_log") == []
            async with live_connection(short.url, acme.alice.token) as conn:
                [current] = await live_subs(short, [(conn, TASK_EVENTS, {"last": live["eventId"]})])
                await api.update(acme.bob, task["id"], title="after the quiet")
                after_quiet = await current.next()
                assert (after_quiet["type"], after_quiet["task"]["title"]) == ("UPDATED", "after the quiet")
    finally:
        short.stop(signal.SIGTERM)
    cluster.assert_no_tracebacks()


# --------------------------------------------------------------------------- a lost LISTEN connection


async def test_changes_committed_while_the_listen_connection_is_down_arrive_once_it_listens_again(
    cluster: Cluster, acme: Company, globex: Company
) -> None:
    a, b = cluster.a, cluster.b
    running = [s for s in cluster.processes.started if s.proc.poll() is None]
    listeners = "select pid, backend_start from pg_stat_activity where application_name = 'fluxopus-live'"
    before = await cluster.sql(listeners)
    assert len(before) == len(running), (before, running)  # one LISTEN connection per process
    async with (
        live_connection(a.url, acme.admin.token) as on_a,
        live_connection(b.url, acme.alice.token) as on_b,
        live_connection(a.url, globex.admin.token) as globex_on_a,
        rest(b) as api,
    ):
        admin, globex_admin = await live_subs(a, [(on_a, TASK_EVENTS, None), (globex_on_a, TASK_EVENTS, None)])
        [alice] = await live_subs(b, [(on_b, TASK_EVENTS, None)])
        task = await api.new_task(acme.bob, assignee_id=acme.alice.id)
        assert summary([await admin.next()]) == summary([await alice.next()]) == [("CREATED", task["id"])]

        # Every process's LISTEN connection killed; changes made at once, while nobody listens (the hubs
        # open a new one half a second later). Should the changes have been slower than that, once more.
        other: Json = {}
        for attempt in range(1, 4):
            killed = await cluster.sql(
                "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'fluxopus-live'"
            )
            assert [ok for (ok,) in killed] == [True] * len(running)
            for i in range(5):
                await api.update(acme.bob, task["id"], title=f"while down {attempt}.{i}")
            other = await api.new_task(acme.bob, assignee_id=acme.alice.id)
            await api.update(acme.bob, other["id"], status="done")

            missed = await admin.take(7)
            assert summary(missed) == [
                *[("UPDATED", task["id"])] * 5,
                ("CREATED", other["id"]),
                ("UPDATED", other["id"]),
            ]
            assert [(e["type"], e["eventId"]) for e in await alice.take(7)] == [
                (e["type"], e["eventId"]) for e in missed
            ]
            assert increasing(missed)
            assert missed[-1]["task"]["status"] == "DONE"

            # Each process listens on a new connection, opened after the first of these changes was
            # committed (its transaction began 0.1 s before): only the catch-up from the log delivered it.
            after = await cluster.sql(listeners)
            assert len(after) == len(running) and not {pid for pid, _ in after} & {pid for pid, _ in before}, after
            before = after
            [(first_at,)] = await cluster.sql("select at from change_log where id = :id", id=int(missed[0]["eventId"]))
            if first_at + dt.timedelta(seconds=0.1) < min(started for _, started in after):
                break
        else:
            raise AssertionError("the LISTEN connections were back before any change was committed, three times")
        for server in running:
            assert "the LISTEN connection was lost; reconnecting" in server.logs()

        # Live again.
        await api.update(acme.bob, other["id"], title="live again")
        assert summary([await admin.next()]) == summary([await alice.next()]) == [("UPDATED", other["id"])]
        # Nothing of acme's crossed to globex in the catch-up: its own change is the next it gets.
        fence = await api.new_task(globex.bob)
        assert summary([await globex_admin.next()]) == [("CREATED", fence["id"])]
    cluster.assert_no_tracebacks()


# --------------------------------------------------------------------------- a slow consumer


def noise(n: int) -> str:
    """Text that does not compress: each event carries about `n` bytes over the socket."""
    return base64.b64encode(os.urandom(n * 3 // 4)).decode()[:n]


async def next_messages(ws: ClientConnection, op_id: str) -> AsyncIterator[Json]:
    """The messages of one operation on a raw graphql-transport-ws socket, as read."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif message.get("id") == op_id:
            yield message


async def read_until_ended(ws: ClientConnection, op_id: str) -> tuple[list[Json], Json]:
    """Reads one operation's events until it ends: the events, and the message that ended it."""
    events: list[Json] = []
    async for message in next_messages(ws, op_id):
        if message["type"] == "next" and not message["payload"].get("errors"):
            events.append(message["payload"]["data"]["taskEvents"])
        else:
            return events, message
    raise AssertionError("unreachable")


async def test_a_subscriber_that_stops_reading_is_cut_off_and_the_others_get_every_event(
    cluster: Cluster, acme: Company
) -> None:
    queue = 20
    small = cluster.start(FLUXOPUS_LIVE_QUEUE=str(queue))
    try:
        # The slow subscriber: a small receive buffer, uncompressed frames, and a client that reads no more
        # than one frame ahead (websockets then stops reading the socket) and sends no pings of its own.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", small.port))
        async with (
            connect(
                small.url.replace("http://", "ws://") + "/graphql",
                sock=sock,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                compression=None,
                max_queue=1,
                ping_interval=None,
            ) as slow,
            live_connection(small.url, acme.alice.token) as normal_conn,
            rest(cluster.b) as api,
        ):
            await slow.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {acme.admin.token}"}})
            )
            assert json.loads(await asyncio.wait_for(slow.recv(), TIMEOUT))["type"] == "connection_ack"
            await slow.send(json.dumps({"id": "slow", "type": "subscribe", "payload": {"query": BIG_EVENTS}}))
            await subscriptions(small, 1)
            [normal] = await live_subs(small, [(normal_conn, BIG_EVENTS, None)])

            task = await api.new_task(acme.bob, assignee_id=acme.alice.id)
            # Large events until the slow one's socket, then its queue, are full and it is cut off.
            writes, began = 0, time.monotonic()
            while await asyncio.to_thread(metric, small, "fluxopus_live_cut_off_total") < 1:
                assert writes < 2000, f"not cut off after {writes} changes of 20 kB\n{small.logs()}"
                for _ in range(10):
                    await api.update(acme.bob, task["id"], description=noise(19_000))
                    writes += 1
            print(f"cut off after {writes} changes in {time.monotonic() - began:.1f} s")
            ids = [
                str(change_id)
                for (change_id,) in await cluster.sql(
                    "select id from change_log where entity_id = cast(:id as uuid) order by id", id=task["id"]
                )
            ]
            assert len(ids) == writes + 1

            # The subscriber that reads got every event, in order.
            got = await normal.take(writes + 1)
            assert [e["eventId"] for e in got] == ids
            assert summary(got) == [("CREATED", task["id"]), *[("UPDATED", task["id"])] * writes]
            assert len(got[-1]["task"]["description"]) == 19_000

            # The slow one, reading again: what was on its way, then its subscription's end, naming the
            # lastEventId to resume from.
            received, ended = await read_until_ended(slow, "slow")
            print(f"the slow subscriber read {len(received)} events before SLOW_CONSUMER")
            assert received and [e["eventId"] for e in received] == ids[: len(received)] < ids
            if ended["type"] == "error":
                errors = ended["payload"]
            else:
                assert ended["type"] == "next" and ended["payload"]["data"] is None, ended
                errors = ended["payload"]["errors"]
                _, complete = await read_until_ended(slow, "slow")
                assert complete["type"] == "complete", complete
            [error] = errors
            assert error["extensions"]["code"] == "SLOW_CONSUMER", error
            assert f'lastEventId: "{received[-1]["eventId"]}"' in error["message"], error

            # Resuming there gets exactly the rest, on the same connection.
            resume = {
                "query": BIG_EVENTS.replace("subscription {", "subscription($last: ID) {").replace(
                    "taskEvents {", "taskEvents(lastEventId: $last) {"
                ),
                "variables": {"last": received[-1]["eventId"]},
            }
            await slow.send(json.dumps({"id": "again", "type": "subscribe", "payload": resume}))
            rest_of_it = []
            async for message in next_messages(slow, "again"):
                assert message["type"] == "next" and not message["payload"].get("errors"), message
                rest_of_it.append(message["payload"]["data"]["taskEvents"]["eventId"])
                if len(rest_of_it) == len(ids) - len(received):
                    break
            assert rest_of_it == ids[len(received) :]
            assert await asyncio.to_thread(metric, small, "fluxopus_live_cut_off_total") == 1
    finally:
        small.stop(signal.SIGTERM)
    cluster.assert_no_tracebacks()
