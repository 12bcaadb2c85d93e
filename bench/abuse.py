"""How well the server contains one abusive request: the worst /healthz latency while it is in
flight, how it was answered, and the server's memory before and after.

Starts an embedded PostgreSQL in a temp dir and `fluxopus serve` against it (a separate process,
so the client does not share its event loop), seeds two companies, then sends each abusive
request of issue 11 while a probe asks /healthz every 25 ms. Nothing is asserted; it prints a
table. Run it on two checkouts to compare before and after a change.

    python3 bench/abuse.py [--only NAME ...] [--timeout 60] [--unbounded]

`--unbounded` adds `range(100000)` twice in a template, which a server without a render bound
spends about 15 minutes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
from harness import embedded_database, serve_process

MB = 1024 * 1024
PASSWORD = "correct horse battery staple"


@dataclass
class Seeded:
    base: str
    admin: dict[str, str]  # headers of company A's admin
    other: dict[str, str]  # headers of company B's admin
    data_dir: str
    env: dict[str, str]
    notes: dict[str, Any] = field(default_factory=dict)


def cli_token(env: dict[str, str], email: str, company: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "fluxopus.cli", "token", "--email", email, "--company", company],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip()


async def seed(base: str, env: dict[str, str]) -> Seeded:
    tokens = await asyncio.gather(
        asyncio.to_thread(cli_token, env, "admin@a.test", "Abuse A"),
        asyncio.to_thread(cli_token, env, "admin@b.test", "Abuse B"),
    )
    admin, other = ({"Authorization": f"Bearer {t}"} for t in tokens)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(20):
            r = await client.post("/api/tasks", json={"title": f"task {i}"}, headers=admin)
            r.raise_for_status()
            r = await client.post("/api/tasks", json={"title": f"task {i}"}, headers=other)
            r.raise_for_status()
        items = []
        for i in range(5):
            body = {"title": f"Policy {i}", "content": f"Parental leave lasts {10 + i} weeks. " * 20}
            response = await client.post("/api/knowledge", json=body, headers=admin)
            response.raise_for_status()
            items.append(response.json()["id"])
        # Indexed before the first measurement: loading the embedding model (~150 MB) is start-up, not abuse.
        for item in items:
            for _ in range(600):
                if (await client.get(f"/api/knowledge/{item}", headers=admin)).json()["status"] != "pending":
                    break
                await asyncio.sleep(0.2)
    return Seeded(base, admin, other, env["FLUXOPUS_DATA_DIR"], env)


async def probe(base: str, stop: asyncio.Event) -> tuple[float, int]:
    """The worst /healthz latency (a request that does not come back counts for as long as it waited)
    and how many probes did not answer 200."""
    worst, failed = 0.0, 0
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        while not stop.is_set():
            began = time.perf_counter()
            try:
                ok = (await client.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                ok = False
            worst = max(worst, time.perf_counter() - began)
            failed += not ok
            try:
                await asyncio.wait_for(stop.wait(), 0.025)
            except TimeoutError:
                pass
    return worst, failed


def rss_mb(process: psutil.Process) -> tuple[float, float]:
    """The server's own RSS and that of its process tree (template workers, not PostgreSQL)."""
    own = process.memory_info().rss
    tree = own
    for child in process.children(recursive=True):
        try:
            if "postgres" not in child.name():
                tree += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return own / MB, tree / MB


# --- the abusive requests -------------------------------------------------------------------------


def gql(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"query": query, "variables": variables or {}}


def describe(response: httpx.Response) -> str:
    text = response.text[:120].replace("\n", " ")
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            body = response.json()
            errors = body.get("errors") or []
            if errors:
                code = errors[0].get("extensions", {}).get("code")
                return f"{response.status_code} {code}: {errors[0].get('message', '')[:70]}"
            if isinstance(body.get("error"), str):
                return f"{response.status_code} {body['error'][:80]}"
        except ValueError:
            pass
    return f"{response.status_code} {text[:80]}"


async def post(s: Seeded, path: str, body: Any, headers: dict[str, str] | None, timeout: float) -> str:
    async with httpx.AsyncClient(base_url=s.base, timeout=timeout) as client:
        try:
            return describe(await client.post(path, json=body, headers=headers or {}))
        except httpx.TimeoutException:
            return f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"


async def repeated_me(s: Seeded, timeout: float) -> str:
    return await post(s, "/graphql", gql("{" + "me{id} " * 1234 + "}"), None, timeout)


async def typename_aliases(s: Seeded, timeout: float) -> str:
    query = "{" + " ".join(f"a{i}:__typename" for i in range(60_000)) + "}"
    return await post(s, "/graphql", gql(query), None, timeout)


async def include_directives(s: Seeded, timeout: float) -> str:
    query = "{ __typename " + "@include(if: true) " * 50_000 + "}"
    return await post(s, "/graphql", gql(query), None, timeout)


async def task_list_aliases(s: Seeded, timeout: float) -> str:
    query = "{" + " ".join(f"t{i}: tasks(limit: 200) {{ id title }}" for i in range(1000)) + "}"
    return await post(s, "/graphql", gql(query), s.admin, timeout)


async def search_aliases(s: Seeded, timeout: float) -> str:
    query = "{" + " ".join(f's{i}: searchKnowledge(q: "leave {i}") {{ score }}' for i in range(500)) + "}"
    return await post(s, "/graphql", gql(query), s.admin, timeout)


async def huge_bodies(s: Seeded, timeout: float) -> str:
    """4 × 100 MB to /graphql without a token, each announced by its Content-Length."""

    async def chunks() -> Any:
        block = b" " * MB
        for _ in range(100):
            yield block

    async def one(client: httpx.AsyncClient) -> str:
        headers = {"Content-Type": "application/json", "Content-Length": str(100 * MB)}
        try:
            return describe(await client.post("/graphql", content=chunks(), headers=headers))
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__

    async with httpx.AsyncClient(base_url=s.base, timeout=timeout) as client:
        answers = await asyncio.gather(*(one(client) for _ in range(4)))
    return ", ".join(sorted(set(answers)))


async def chunked_body(s: Seeded, timeout: float) -> str:
    """100 MB to /api/tasks with a token, chunked (no Content-Length to refuse it by)."""

    async def chunks() -> Any:
        yield b'{"title": "'
        block = b"x" * MB
        for _ in range(100):
            yield block
        yield b'"}'

    async with httpx.AsyncClient(base_url=s.base, timeout=timeout) as client:
        headers = {**s.admin, "Content-Type": "application/json"}
        try:
            return describe(await client.post("/api/tasks", content=chunks(), headers=headers))
        except httpx.HTTPError as exc:
            return type(exc).__name__


async def slow_headers(s: Seeded, timeout: float) -> str:
    """200 connections that send half a request line and never finish their headers: how many
    the server still holds open after 20 s."""
    host, port = s.base.removeprefix("http://").split(":")
    socks = []
    for _ in range(200):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.setblocking(False)
        socks.append(sock)
    await asyncio.sleep(min(20.0, timeout))
    open_ = 0
    for sock in socks:
        try:
            open_ += sock.recv(1) != b""  # b"" = closed by the server
        except BlockingIOError:
            open_ += 1  # nothing to read: still open
        except OSError:
            pass
        finally:
            sock.close()
    return f"{open_} of 200 still open after 20 s"


async def run_template(s: Seeded, instructions: str, timeout: float) -> str:
    async with httpx.AsyncClient(base_url=s.base, timeout=timeout) as client:
        r = await client.post("/api/skills", json={"name": "abuse", "instructions": instructions}, headers=s.admin)
        if r.status_code != 201:
            return f"create: {describe(r)}"
        headers = {**s.admin, "Accept": "application/json"}
        try:
            return describe(await client.post(f"/api/skills/{r.json()['id']}/run", json={"input": {}}, headers=headers))
        except httpx.TimeoutException:
            return f"no answer within {timeout:g} s"


NESTED_LOOPS = (
    "{% for a in range(250) %}{% for b in range(250) %}{% for c in range(250) %}{% endfor %}{% endfor %}{% endfor %}x"
)
HUGE_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"
LIPSUM = "{{ lipsum(20000) }}"
DOUBLING = (
    "{% set ns = namespace(s='x') %}{% for i in range(27) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}"
)


async def many_searches(s: Seeded, timeout: float) -> str:
    """60 concurrent searches by one user, and meanwhile another company's task list."""
    async with httpx.AsyncClient(base_url=s.base, timeout=timeout, limits=httpx.Limits(max_connections=100)) as c:

        async def search(i: int) -> int:
            try:
                return (await c.get("/api/knowledge/search", params={"q": f"leave {i}"}, headers=s.admin)).status_code
            except httpx.HTTPError:
                return 0

        async def other() -> tuple[float, int]:
            await asyncio.sleep(0.2)
            began = time.perf_counter()
            try:
                status = (await c.get("/api/tasks", headers=s.other)).status_code
            except httpx.HTTPError:
                status = 0
            return time.perf_counter() - began, status

        results, (latency, status) = await asyncio.gather(asyncio.gather(*(search(i) for i in range(60))), other())
    counts = {code: results.count(code) for code in sorted(set(results))}
    return f"searches {counts}; other company's /api/tasks {status} in {latency * 1000:.0f} ms"


async def big_item_then_small(s: Seeded, timeout: float) -> str:
    """Company A stores a 1 MB item, then company B a small one: how long B waits for `indexed`."""
    words = "policy leave budget travel expense approval laptop security holiday onboarding".split()
    content = " ".join(words[i % len(words)] + str(i % 97) for i in range(150_000))[: MB - 1000]
    async with httpx.AsyncClient(base_url=s.base, timeout=60) as client:
        r = await client.post("/api/knowledge", json={"title": "Big", "content": content}, headers=s.admin)
        big = describe(r) if r.status_code != 201 else "stored"
        await asyncio.sleep(1)
        r = await client.post("/api/knowledge", json={"title": "Small", "content": "Lunch at noon."}, headers=s.other)
        if r.status_code != 201:
            return f"big: {big}; small: {describe(r)}"
        item = r.json()["id"]
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            status = (await client.get(f"/api/knowledge/{item}", headers=s.other)).json()["status"]
            if status != "pending":
                return f"big: {big}; B's small item {status} after {time.perf_counter() - began:.1f} s"
            await asyncio.sleep(0.25)
    return f"big: {big}; B's small item still pending after {timeout:g} s"


async def sign_in_race(s: Seeded, timeout: float) -> str:
    """40 parallel wrong passwords for one email, the right one in the middle: how many were
    checked (answered invalid_credentials rather than 429) and whether the right one got in."""
    email = f"victim-{time.time_ns()}@a.test"
    async with httpx.AsyncClient(base_url=s.base, timeout=timeout) as client:
        r = await client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
        if r.status_code != 200:
            return f"sign-up: {describe(r)}"
        guesses = [f"wrong guess {i}" for i in range(40)]
        guesses.insert(20, PASSWORD)
        answers = await asyncio.gather(
            *(client.post("/auth/v1/token?grant_type=password", json={"email": email, "password": p}) for p in guesses)
        )
    checked = sum(a.status_code == 400 for a in answers)
    limited = sum(a.status_code == 429 for a in answers)
    right = answers[20].status_code
    return f"{checked} wrong passwords checked, {limited} refused (429); the right one answered {right}"


async def malformed(s: Seeded, timeout: float) -> str:
    deep = "[" * 1000 + "1" + "]" * 1000  # json.dumps would refuse to write it
    async with httpx.AsyncClient(base_url=s.base, timeout=timeout) as client:
        headers = {**s.admin, "Content-Type": "application/json"}
        utf8 = await client.post("/graphql", content=b'{"query": "{ me { id } }", "x": "\xff\xfe"}', headers=headers)
        document = json.dumps("query($v: JSON) { __typename }")
        nested = await client.post(
            "/graphql", content=f'{{"query": {document}, "variables": {{"v": {deep}}}}}', headers=headers
        )
    return f"invalid UTF-8: {utf8.status_code}; variables 1000 deep: {nested.status_code}"


Scenario = Callable[[Seeded, float], Awaitable[str]]

SCENARIOS: dict[str, Scenario] = {
    "graphql: 1234 x me{id}, no token": repeated_me,
    "graphql: 60000 aliases, no token": typename_aliases,
    "graphql: 50000 @include, no token": include_directives,
    "graphql: 1000 x tasks(limit:200)": task_list_aliases,
    "graphql: 500 x searchKnowledge": search_aliases,
    "body: 4 x 100 MB /graphql, no token": huge_bodies,
    "body: 100 MB chunked /api/tasks": chunked_body,
    "slow headers: 200 connections": slow_headers,
    "template: range(250) three deep": lambda s, t: run_template(s, NESTED_LOOPS, t),
    "template: lipsum(20000)": lambda s, t: run_template(s, LIPSUM, t),
    "template: namespace doubling x27": lambda s, t: run_template(s, DOUBLING, t),
    "pool: 60 concurrent searches": many_searches,
    "indexing: 1 MB item, then another's": big_item_then_small,
    "sign-in: 40 parallel guesses": sign_in_race,
    "malformed: bad UTF-8, deep variables": malformed,
}


async def main(args: argparse.Namespace) -> None:
    scenarios = dict(SCENARIOS)
    if args.unbounded:
        scenarios["template: range(100000) twice"] = lambda s, t: run_template(s, HUGE_LOOPS, t)
    if args.only:
        scenarios = {k: v for k, v in scenarios.items() if any(o in k for o in args.only)}
    async with embedded_database() as (_, env):
        async with serve_process(env) as server:
            process = psutil.Process(server.process.pid)
            seeded = await seed(server.url, env)
            print(f"{'abusive request':<40} {'worst /healthz':>14} {'failed':>6} {'RSS MB before→after':>22}  answer")
            for name, scenario in scenarios.items():
                before = rss_mb(process)
                stop = asyncio.Event()
                watcher = asyncio.create_task(probe(server.url, stop))
                await asyncio.sleep(0.1)
                try:
                    outcome = await asyncio.wait_for(scenario(seeded, args.timeout), args.timeout * 2 + 30)
                except TimeoutError:
                    outcome = "the benchmark gave up waiting"
                except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
                    outcome = f"{type(exc).__name__}: {exc}"[:100]
                stop.set()
                worst, failed = await watcher
                after = rss_mb(process)
                workers = f" (+{after[1] - after[0]:.0f})" if after[1] > after[0] else ""
                rss = f"{before[0]:.0f}→{after[0]:.0f}{workers}"
                print(f"{name:<40} {worst * 1000:11.0f} ms {failed:>6} {rss:>22}  {outcome}", flush=True)
                await asyncio.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="run the scenarios whose name contains one of these")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each abusive request")
    parser.add_argument("--unbounded", action="store_true", help="also a template that stalls an old server ~15 min")
    asyncio.run(main(parser.parse_args()))
