"""Live events under load: delivery latency, CPU per event, and how many subscribers one process holds.

Starts an embedded PostgreSQL and two `fluxopus serve` processes on it: A holds the WebSocket
subscribers, B takes the writes (as replicas behind a load balancer would: the change reaches A through
the database's NOTIFY, never through B). With a core to spare A is pinned to core 1 and everything
else (this client, B) to core 0; PostgreSQL runs where the kernel puts it. Seeds companies of admins and
members (each member assigned a few tasks: a member sees those, an admin all of the company's), then
for each subscriber count of `--steps`:

1. opens that many `taskEvents` subscriptions on A (`--per-connection` on each graphql-transport-ws
   connection, the connections spread over the users in turn, so over both companies and both roles);
2. PATCHes tasks (title and status) through B's REST API at a steady `--rate` for `--seconds`,
   round robin over the tasks, as each task's company admin;
3. waits until every expected event has arrived (or nothing came for a while), then prints a row.

Latency is from the moment the PATCH's 200 reached this client (its commit was done by then) to the
moment the event reached this client: writer and subscribers run in this one process, on one clock.
An event is matched to its write by its `eventId` (the change log's id, in commit order: the k-th change
of a task is its k-th PATCH), not by the title it carries — the hub sends the row as it is when the
change is fanned out, which under load may already be a later write's. Every subscription must receive
exactly the changes its user may see (RLS: admins all of their company's, members their own tasks):
`undelivered` counts those that had not come when the step ended (`--drain` s after the last write at
most; `hub behind` says how many changes A's hub had still to fan out then: late, not dropped, unless
subscriptions were cut off as SLOW_CONSUMER), `extra` those it should never get. CPU is A's user +
system time (/proc/<pid>/stat) over the step, per event delivered and per change committed. The steps
stop after the first one whose p99 is over `--max-p99`.

    python3 bench/live.py [--steps 25,50,100,250,500,1000,2000,4000] [--rate 200] [--seconds 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from harness import embedded_database, free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from fluxopus.auth.jwt import mint_token
from fluxopus.db.engine import asyncpg_dsn, operator_engine
from fluxopus.db.users import ensure_member

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
QUERY = "subscription { taskEvents { type eventId taskId task { id title status assigneeId updatedAt } } }"
STATUSES = ("todo", "in_progress", "done")
TTL = 6 * 3600


@dataclass(frozen=True)
class User:
    id: str
    company: str
    admin: bool
    token: str


@dataclass(frozen=True)
class Task:
    id: str
    company: str
    assignee: str


@dataclass(eq=False)
class Sub:
    user: User
    got: int = 0


@dataclass
class Step:
    """What one step saw: each event's arrival (change id, time), each write's (task, sent, answered)."""

    arrivals: list[tuple[int, float, str]] = field(default_factory=list)  # change id, time, user id
    extra: int = 0  # events for a task the user may not see
    wrong: Counter[str] = field(default_factory=Counter)  # events of an unexpected shape, errors, closes
    writes: list[tuple[Task, float, float]] = field(default_factory=list)
    write_errors: Counter[str] = field(default_factory=Counter)
    last_arrival: float = 0.0


# -- processes


def cpu_seconds(pid: int) -> float:
    utime, stime = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def core_busy() -> list[tuple[float, float]]:
    """Per core: (busy, total) jiffies so far."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            cores.append((sum(values) - idle, sum(values)))
    return cores


def postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the postmaster and its live children (backends that exited are not counted)."""
    pid = postmaster(pgdata)
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                total += t.user + t.system
    return total


@asynccontextmanager
async def serve(
    env: dict[str, str], name: str, pin: str | None, logs: Path, nice: int | None = None
) -> AsyncIterator[tuple[str, int]]:
    """`fluxopus serve` (on the cores `pin` names, at niceness `nice`, when given); yields its URL and
    PID once healthy."""
    port = free_port()
    prefix = ["taskset", "-c", pin] if pin is not None else []
    if nice is not None:
        prefix = ["nice", "-n", str(nice - os.nice(0)), *prefix]
    stderr = (logs / f"{name}.stderr").open("wb")
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "fluxopus.cli", "serve", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as probe:
            for _ in range(600):
                if proc.poll() is not None:
                    raise RuntimeError(f"serve {name} exited with {proc.returncode}: see {logs / name}.stderr")
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"serve {name} did not become healthy in 60 s")
        if nice is not None:
            # With autogroup scheduling (sched_autogroup_enabled) niceness only counts within a session's
            # group: give the server's own group (start_new_session) the same weight.
            with contextlib.suppress(OSError):
                Path(f"/proc/{proc.pid}/autogroup").write_text(str(nice))
        yield base, proc.pid  # nice and taskset exec the server: same PID
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        stderr.close()


async def metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(rf"^{name}(?:_total)? ([0-9.e+-]+)$", text, re.M)
    return float(found[1]) if found else float("nan")


# -- seeding


async def seed(url: str, writer: str, args: argparse.Namespace) -> tuple[list[User], list[Task]]:
    users: list[User] = []
    async with operator_engine(url) as engine:
        for c in range(args.companies):
            for i in range(args.admins + args.members):
                admin = i < args.admins
                m = await ensure_member(
                    engine, email=f"u{i}@c{c}.bench.test", company=f"Live {c}", role="admin" if admin else "member"
                )
                token = mint_token(
                    SECRET, user_id=m.user_id, email=m.email, role=m.role, company_id=m.company_id, ttl=TTL
                )
                users.append(User(str(m.user_id), str(m.company_id), admin, token))
    tasks: list[Task] = []
    async with httpx.AsyncClient(base_url=writer, timeout=60) as client:
        for company in dict.fromkeys(u.company for u in users):
            admin = next(u for u in users if u.company == company and u.admin)
            members = [u for u in users if u.company == company and not u.admin]
            bodies = [
                {"title": f"seed {m.id[:8]} {k}", "assignee_id": m.id} for m in members for k in range(args.tasks)
            ]

            async def create(body: dict[str, str], admin: User = admin) -> Task:
                r = await client.post("/api/tasks", json=body, headers={"Authorization": f"Bearer {admin.token}"})
                r.raise_for_status()
                return Task(r.json()["id"], admin.company, body["assignee_id"])

            tasks += await asyncio.gather(*(create(b) for b in bodies))
    # Round robin alternating companies, members, tasks: consecutive writes hit different rows.
    by_company = [[t for t in tasks if t.company == c] for c in dict.fromkeys(t.company for t in tasks)]
    interleaved = [t for group in itertools.zip_longest(*by_company) for t in group if t is not None]
    return users, interleaved


def spread(users: list[User]) -> list[User]:
    """Users in the order connections are given to them: companies and roles interleaved evenly."""
    groups = [[u for u in users if u.company == c] for c in dict.fromkeys(u.company for u in users)]
    mixed = []
    for group in groups:
        admins, members = [u for u in group if u.admin], [u for u in group if not u.admin]
        every = len(group) / max(len(admins), 1)  # admins spaced out among the members
        at = {round(k * every): admin for k, admin in enumerate(admins)}
        rest = iter(members)
        order = [at[i] if i in at else next(rest) for i in range(len(group))]
        mixed.append(order)
    return [u for row in itertools.zip_longest(*mixed) for u in row if u is not None]


# -- subscribers


class Connection:
    def __init__(self, ws: ClientConnection, user: User, subs: dict[str, Sub], step: Step, tasks: dict[str, Task]):
        self.ws, self.user, self.subs, self.step, self.tasks = ws, user, subs, step, tasks
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        step, user, tasks = self.step, self.user, self.tasks
        try:
            async for raw in self.ws:
                now = time.monotonic()
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        codes = {e.get("extensions", {}).get("code", "?") for e in payload["errors"]}
                        step.wrong[f"error {','.join(sorted(codes))}"] += 1
                        continue
                    event = payload["data"]["taskEvents"]
                    if event["type"] != "UPDATED":
                        step.wrong[f"event {event['type']}"] += 1
                        continue
                    task = tasks.get(event["taskId"])
                    if task is None or not (task.assignee == user.id or (user.admin and task.company == user.company)):
                        step.extra += 1
                        continue
                    step.arrivals.append((int(event["eventId"]), now, user.id))
                    step.last_arrival = now
                elif kind == "ping":
                    await self.ws.send('{"type":"pong"}')
                elif kind in ("error", "complete"):
                    step.wrong[f"{kind} {str(message.get('payload'))[:120]}"] += 1
        except ConnectionClosed as exc:
            step.wrong[f"connection closed {exc.rcvd.code if exc.rcvd else '?'}"] += 1

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


async def open_connection(
    base: str, user: User, count: int, step: Step, tasks: dict[str, Task], compression: str | None
) -> Connection:
    ws = await connect(
        base.replace("http://", "ws://") + "/graphql",
        subprotocols=[Subprotocol("graphql-transport-ws")],
        compression=compression,
        max_queue=None,
        ping_interval=None,  # as a browser: the server pings, this client answers
        proxy=None,
        open_timeout=60,
    )
    await ws.send(
        orjson.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {user.token}"}}).decode()
    )
    ack = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no connection_ack: {ack}")
    subs = {uuid.uuid4().hex: Sub(user) for _ in range(count)}
    for op_id in subs:
        await ws.send(orjson.dumps({"id": op_id, "type": "subscribe", "payload": {"query": QUERY}}).decode())
    return Connection(ws, user, subs, step, tasks)


# -- writer


class Http1:
    """One keep-alive HTTP/1.1 connection, as little client as a PATCH needs: httpx's pool costs
    this process more CPU than the server spends on the request once requests queue (it scans every
    waiting request for every connection), and this process also reads every event."""

    def __init__(self, base: str) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, headers: str, body: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head)
            if length is None:
                raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
            return int(head[9:12]), await reader.readexactly(int(length[1]))
        except BaseException:
            writer.close()
            self.streams = None
            raise


async def write(base: str, tasks: list[Task], admins: dict[str, User], step: Step, rate: float, seconds: float) -> None:
    """PATCHes at a steady rate over 32 keep-alive connections: each is queued on time, whether or
    not earlier ones were answered (then it waits for a free connection)."""
    jobs: asyncio.Queue[tuple[Task, int, str] | None] = asyncio.Queue()
    auth = {company: f"Authorization: Bearer {admin.token}\r\n" for company, admin in admins.items()}

    async def worker() -> None:
        http = Http1(base)
        while (job := await jobs.get()) is not None:
            task, n, status = job
            body = orjson.dumps({"title": f"live write {n}", "status": status})
            sent = time.monotonic()
            try:
                code, answer = await http.request("PATCH", f"/api/tasks/{task.id}", auth[task.company], body)
            except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
                step.write_errors[type(exc).__name__] += 1
                continue
            if code != 200:
                step.write_errors[f"HTTP {code} {answer[:100]!r}"] += 1
                continue
            step.writes.append((task, sent, time.monotonic()))
        if http.streams is not None:
            http.streams[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(32)]
    cursor = itertools.cycle(tasks)
    statuses = itertools.cycle(STATUSES)
    began = time.monotonic()
    for n in range(round(rate * seconds)):
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait((next(cursor), n, next(statuses)))
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)


# -- one step


async def lag(lags: list[float], every: float = 0.01) -> None:
    """How late this client's event loop wakes up: events wait that long before they are read."""
    while True:
        began = time.monotonic()
        await asyncio.sleep(every)
        lags.append(time.monotonic() - began - every)


def quantile(values: Sequence[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run_step(
    n: int,
    args: argparse.Namespace,
    users: list[User],
    tasks: list[Task],
    a: tuple[str, int],
    b: tuple[str, int],
    url: str,
    pgdata: Path,
) -> dict[str, Any]:
    a_url, a_pid = a
    b_url, b_pid = b
    step = Step()
    by_id = {t.id: t for t in tasks}
    admins = {c: next(u for u in users if u.company == c and u.admin) for c in dict.fromkeys(u.company for u in users)}
    order = spread(users)
    counts = [args.per_connection] * (n // args.per_connection) + (
        [n % args.per_connection] if n % args.per_connection else []
    )
    gate = asyncio.Semaphore(32)

    async def opened(i: int, count: int) -> Connection:
        async with gate:
            return await open_connection(a_url, order[i % len(order)], count, step, by_id, args.compression)

    conns: list[Connection] = []
    db = await asyncpg.connect(asyncpg_dsn(url))
    metrics = httpx.AsyncClient(base_url=a_url, timeout=60)
    try:
        began = time.monotonic()
        conns = list(await asyncio.gather(*(opened(i, c) for i, c in enumerate(counts))))
        while await metric(metrics, "fluxopus_live_subscribers") != n:
            if time.monotonic() - began > 120:
                raise RuntimeError(
                    f"A holds {await metric(metrics, 'fluxopus_live_subscribers')} subscriptions, not {n}"
                )
            await asyncio.sleep(0.2)
        subscribed = time.monotonic() - began
        await asyncio.sleep(1.0)  # let the subscription burst settle before measuring
        # A hub still fanning out an earlier step's changes would send them to these subscribers too.
        while await metric(metrics, "fluxopus_live_lag_changes") > 0 and time.monotonic() - began < 600:
            await asyncio.sleep(0.5)

        async def sessions() -> int:
            await db.execute("select pg_stat_clear_snapshot()")
            return int(await db.fetchval("select sessions from pg_stat_database where datname = current_database()"))

        first_change = int(await db.fetchval("select coalesce(max(id), 0) from change_log"))
        sessions0, events0 = await sessions(), await metric(metrics, "fluxopus_live_events")
        a0, b0, me0, pg0, cores0 = (
            cpu_seconds(a_pid),
            cpu_seconds(b_pid),
            cpu_seconds(os.getpid()),
            postgres_cpu(pgdata),
            core_busy(),
        )
        t0 = time.monotonic()
        lags: list[float] = []
        watch = asyncio.create_task(lag(lags))
        await write(b_url, tasks, admins, step, args.rate, args.seconds)
        wrote = time.monotonic() - t0

        # Who should get what: the log's changes of this step, in commit order.
        changes = await db.fetch("select id, entity_id from change_log where id > $1 order by id", first_change)
        visible_to: dict[int, Task] = {int(r["id"]): by_id[str(r["entity_id"])] for r in changes}
        expected: Counter[str] = Counter()
        per_company = Counter(t.company for t in visible_to.values())
        per_assignee = Counter(t.assignee for t in visible_to.values())
        for conn in conns:
            for _sub in conn.subs.values():
                u = conn.user
                expected[u.id] += per_company[u.company] if u.admin else per_assignee[u.id]
        want = sum(expected.values())
        # Wait for the rest: until every expected event came, or the hub has fanned out the whole log
        # and nothing came for `--quiet` s, or `--drain` s passed.
        quiet_since, drain_until = time.monotonic(), time.monotonic() + args.drain
        while sum(1 for a in step.arrivals if a[0] in visible_to) < want and time.monotonic() < drain_until:
            await asyncio.sleep(0.2)
            quiet_since = max(quiet_since, step.last_arrival)
            if time.monotonic() - quiet_since > args.quiet and await metric(metrics, "fluxopus_live_lag_changes") == 0:
                break
        behind = await metric(metrics, "fluxopus_live_lag_changes")
        elapsed = time.monotonic() - t0
        watch.cancel()
        a1, b1, me1, pg1, cores1 = (
            cpu_seconds(a_pid),
            cpu_seconds(b_pid),
            cpu_seconds(os.getpid()),
            postgres_cpu(pgdata),
            core_busy(),
        )
        sessions1, events1 = await sessions(), await metric(metrics, "fluxopus_live_events")
        cut_off = await metric(metrics, "fluxopus_live_cut_off")
    finally:
        await asyncio.gather(*(c.close() for c in conns))
        with contextlib.suppress(Exception):
            deadline = time.monotonic() + 60
            while await metric(metrics, "fluxopus_live_subscribers") > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        await metrics.aclose()
        await db.close()

    # k-th change of a task in commit order <-> k-th PATCH of that task (writes to a task are seconds apart)
    answered_by_task: dict[str, list[float]] = defaultdict(list)
    for task, _sent, answered in sorted(step.writes, key=lambda w: w[1]):
        answered_by_task[task.id].append(answered)
    committed: dict[int, float] = {}
    seen: Counter[str] = Counter()
    for change_id, task in visible_to.items():
        k = seen[task.id]
        seen[task.id] += 1
        if k < len(answered_by_task[task.id]):
            committed[change_id] = answered_by_task[task.id][k]
    latencies = [t - committed[cid] for cid, t, _ in step.arrivals if cid in committed]
    received = Counter(user for cid, _, user in step.arrivals if cid in visible_to)
    if args.timeline:
        by_second: dict[int, list[float]] = defaultdict(list)
        for cid, t, _ in step.arrivals:
            if cid in committed:
                by_second[int(t - t0)].append(t - committed[cid])
        admin_ids = {u.id for u in users if u.admin}
        for role, ids in (("admins", admin_ids), ("members", {u.id for u in users} - admin_ids)):
            values = [t - committed[cid] for cid, t, user in step.arrivals if cid in committed and user in ids]
            print(
                f"    {n} subscribers, {role}' subscriptions: {len(values):,} events"
                f"  p50 {quantile(values, 50) * 1000:8.1f} ms  p99 {quantile(values, 99) * 1000:8.1f} ms"
            )
        for second, values in sorted(by_second.items()):
            print(
                f"    {n} subscribers, second {second:3d}: {len(values):6,} events"
                f"  p50 {quantile(values, 50) * 1000:8.1f} ms  p99 {quantile(values, 99) * 1000:8.1f} ms"
            )
    got = sum(received.values())
    lost = sum(max(expected[u] - received[u], 0) for u in expected)
    extra = step.extra + sum(max(received[u] - expected[u], 0) for u in expected)
    patch = [answered - sent for _t, sent, answered in step.writes]
    busy = [(b1_ - b0_) / max(t1_ - t0_, 1) * 100 for (b0_, t0_), (b1_, t1_) in zip(cores0, cores1, strict=True)]
    return {
        "subscribers": n,
        "connections": len(conns),
        "subscribed_s": subscribed,
        "changes": len(visible_to),
        "write_rate": len(step.writes) / wrote,
        "write_errors": dict(step.write_errors),
        "patch_p50": quantile(patch, 50),
        "patch_p99": quantile(patch, 99),
        "expected": want,
        "received": got,
        "lost": lost,
        "extra": extra,
        "hub_events": events1 - events0,
        "cut_off": cut_off,
        "behind": behind,
        "wrong": dict(step.wrong),
        "events_per_s": got / max(step.last_arrival - t0, wrote),
        "p50": quantile(latencies, 50),
        "p90": quantile(latencies, 90),
        "p99": quantile(latencies, 99),
        "max": max(latencies, default=float("nan")),
        "elapsed": elapsed,
        "cpu_a": a1 - a0,
        "cpu_b": b1 - b0,
        "cpu_client": me1 - me0,
        "cpu_pg": pg1 - pg0,
        "busy": busy,
        "lag_p99": quantile(lags, 99),
        "new_sessions": sessions1 - sessions0,
    }


def row(r: dict[str, Any]) -> str:
    per_event = r["cpu_a"] / r["received"] * 1e6 if r["received"] else float("nan")
    # PostgreSQL's backends are counted while they live: one that exited mid-step takes its time along.
    pg = f"{r['cpu_pg'] / r['elapsed'] * 100:.0f}%" if r["cpu_pg"] >= 0 else "n/a"
    ours = r["cpu_a"] + r["cpu_b"] + max(r["cpu_pg"], 0) + r["cpu_client"]
    other = max(sum(r["busy"]) - ours / r["elapsed"] * 100, 0)
    per_change = r["cpu_a"] / r["changes"] * 1e3 if r["changes"] else float("nan")
    return (
        f"| {r['subscribers']:,} | {r['connections']:,} | {r['write_rate']:.0f} | {r['events_per_s']:,.0f}"
        f" | {r['p50'] * 1000:,.1f} | {r['p99'] * 1000:,.1f} | {r['max'] * 1000:,.0f}"
        f" | {r['patch_p50'] * 1000:.0f} / {r['patch_p99'] * 1000:.0f}"
        f" | {r['expected']:,} / {r['received']:,} | {r['lost']:,} | {r['behind']:,.0f} | {r['extra']:,}"
        f" | {r['cpu_a'] / r['elapsed'] * 100:.0f}% | {per_event:.0f} µs | {per_change:.2f} ms"
        f" | {r['cpu_b'] / r['elapsed'] * 100:.0f}% | {pg}"
        f" | {r['cpu_client'] / r['elapsed'] * 100:.0f}% | {r['lag_p99'] * 1000:.0f} ms"
        f" | {' / '.join(f'{b:.0f}%' for b in r['busy'])} | {other:.0f}%"
        f" | {r['new_sessions']} |"
    )


HEADER = (
    "| subscribers | WS conns | writes/s | events/s | p50 ms | p99 ms | max ms | PATCH p50 / p99 ms"
    " | expected / received | undelivered | hub behind (changes) | extra"
    " | A CPU | A CPU / event | A CPU / change | B CPU | PG CPU | client CPU | client lag p99 | cores busy"
    " | other CPU | new PG sessions |\n"
    "|" + "---:|" * 22
)


async def main(args: argparse.Namespace) -> None:
    pin = shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2 and not args.no_pin
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    async with embedded_database() as (url, env):
        pgdata = Path(env["FLUXOPUS_DATA_DIR"]) / "pgdata"
        env |= {"FLUXOPUS_JWT_SECRET": SECRET, "FLUXOPUS_INDEXER": "false"}
        a_env = env | {"FLUXOPUS_DATA_DIR": str(logs / "a")}
        b_env = env | {"FLUXOPUS_DATA_DIR": str(logs / "b")}
        if pin:
            os.sched_setaffinity(0, {0})  # this client; PostgreSQL, started before, runs anywhere
        if args.nice_rest is not None:  # this client and PostgreSQL (started from it)
            os.setpriority(os.PRIO_PROCESS, 0, args.nice_rest)
            for proc in [
                psutil.Process(),
                *psutil.Process(postmaster(pgdata)).children(),
                psutil.Process(postmaster(pgdata)),
            ]:
                with contextlib.suppress(OSError, psutil.Error):
                    proc.nice(args.nice_rest)
                    Path(f"/proc/{proc.pid}/autogroup").write_text(str(args.nice_rest))
        async with (
            serve(a_env, "a", "1" if pin else None, logs, args.nice) as a,
            serve(b_env, "b", "0" if pin else None, logs, args.nice_rest) as b,
        ):
            users, tasks = await seed(url, b[0], args)
            admins = sum(u.admin for u in users)
            print(
                f"{len(users)} users in {args.companies} companies ({admins} admins), {len(tasks)} tasks"
                f" ({args.tasks} per member); {args.rate:g} PATCH/s through B for {args.seconds:g} s a step;"
                f" {args.per_connection} subscriptions per WebSocket ({args.compression or 'no compression'});"
                + (" A on core 1, client and B on core 0" if pin else " unpinned")
                + (f", A at nice {args.nice}" if args.nice is not None else "")
                + (f", the rest at nice {args.nice_rest}" if args.nice_rest is not None else "")
                + f" (A pid {a[1]}, B pid {b[1]}, this client pid {os.getpid()})",
                flush=True,
            )
            print(HEADER, flush=True)
            results = []
            for n in (int(s) for s in args.steps.split(",")):
                r = await run_step(n, args, users, tasks, a, b, url, pgdata)
                results.append(r)
                print(row(r), flush=True)
                notes = {k: r[k] for k in ("write_errors", "wrong") if r[k]}
                if r["cut_off"]:
                    notes["cut off so far (SLOW_CONSUMER)"] = r["cut_off"]
                if r["hub_events"] != r["received"] + r["extra"]:
                    notes["hub queued"] = r["hub_events"]
                if notes:
                    print(f"  {n}: {notes}", flush=True)
                if (r["p99"] > args.max_p99 or r["lost"]) and not args.all:
                    break
            crossed = next((r["subscribers"] for r in results if r["p99"] > args.max_p99 or r["lost"]), None)
            print(
                f"p99 over {args.max_p99:g} s (or events undelivered) from {crossed:,} subscribers"
                if crossed
                else f"p99 stayed under {args.max_p99:g} s up to {results[-1]['subscribers']:,} subscribers"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="25,50,100,250,500,1000,2000,4000", help="subscriber counts, in order")
    parser.add_argument("--rate", type=float, default=200.0, help="PATCHes per second through B")
    parser.add_argument("--seconds", type=float, default=25.0, help="how long each step writes")
    parser.add_argument("--companies", type=int, default=2)
    parser.add_argument("--admins", type=int, default=5, help="per company")
    parser.add_argument("--members", type=int, default=45, help="per company")
    parser.add_argument("--tasks", type=int, default=4, help="per member")
    parser.add_argument("--per-connection", type=int, default=10, help="subscriptions per WebSocket")
    parser.add_argument("--compression", default="deflate", help="permessage-deflate as browsers offer it; none: off")
    parser.add_argument(
        "--quiet", type=float, default=3.0, help="seconds without events (hub caught up) that end a step"
    )
    parser.add_argument("--drain", type=float, default=60.0, help="seconds a step waits at most for late events")
    parser.add_argument("--max-p99", type=float, default=1.0, help="seconds; the steps stop after the first over")
    parser.add_argument("--timeline", action="store_true", help="also print each second's latencies")
    parser.add_argument("--all", action="store_true", help="run every step, also after p99 crossed --max-p99")
    parser.add_argument(
        "--nice", type=int, help="A's niceness, also of its autogroup (e.g. -20 where other work shares the machine)"
    )
    parser.add_argument("--nice-rest", type=int, help="the same for this client, B and PostgreSQL (e.g. -10)")
    parser.add_argument("--no-pin", action="store_true", help="leave the processes unpinned")
    parser.add_argument("--logs", default="/tmp/fluxopus-bench-live", help="the servers' stderr and data dirs")
    parsed = parser.parse_args()
    if parsed.compression == "none":
        parsed.compression = None
    asyncio.run(main(parsed))
