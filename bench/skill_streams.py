"""Skill-run streaming over real HTTP: time to first token, and many streams open at once.

Starts an embedded PostgreSQL in a temp dir, the fake OpenAI server of tests/utils/fake_llm.py
(a process of its own) and `fluxopus serve` configured against it, then
1. times the first text token of N sequential runs: straight from the fake with the openai SDK,
   and through POST /api/skills/{id}/run (SSE) with the fake and with the offline echo provider;
2. opens C concurrent run streams on a slow scripted model, counts how they end, samples the
   server (CPU, RSS, open fds) and checks the skill_runs rows and reserved tokens left behind.
Prints numbers; asserts nothing. Run from the repository root (see --help):

    python3 bench/skill_streams.py [--runs 50] [--streams 100 500 1000] [--ramp 0] [--companies 1] [--db-pool 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import httpx
import openai

from fluxopus.auth.jwt import mint_token
from fluxopus.db.embedded import EmbeddedPostgres
from fluxopus.db.engine import asyncpg_dsn, operator_engine
from fluxopus.db.migrate import migrate
from fluxopus.db.users import ensure_member

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
API_KEY = "bench-key"
Target = tuple[dict[str, str], str]  # a member's headers and a skill id
# Runs in its own process (cwd = ROOT, so `tests` imports): the scripted fake, until stdin closes.
FAKE_MAIN = """
import sys
from tests.utils.fake_llm import FakeOpenAI, Script
ttft_delay, chunks, delay = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with FakeOpenAI(api_key=sys.argv[4]) as fake:
    fake.script("ttft", Script(chunks=["Hello ", "from ", "the ", "fake ", "model"], delay=ttft_delay))
    fake.script("slow", Script(chunks=[f"w{i} " for i in range(chunks)], delay=delay))
    print(fake.url, flush=True)
    sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(pid: int) -> tuple[float, float, int]:
    """A process's CPU seconds so far, RSS in MB and open file descriptors."""
    utime, stime = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    rss = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    cpu = (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    return cpu, int(rss.group(1)) / 1024 if rss else 0.0, len(os.listdir(f"/proc/{pid}/fd"))


def percentiles(name: str, seconds: list[float]) -> float:
    q = statistics.quantiles(seconds, n=100)
    print(f"  {name:<44} p50 {q[49] * 1000:7.1f} ms   p95 {q[94] * 1000:7.1f} ms")
    return q[49]


def new_errors(log: TextIO) -> Counter[str]:
    """Exception lines the server logged since the last call (the file is read on from where it stopped)."""
    return Counter(m.group(0)[:150] for m in re.finditer(r"^[\w.]+(Error|Exception|Timeout)\b.*$", log.read(), re.M))


def stop(process: subprocess.Popen[Any] | None, *, terminate: bool = True) -> None:
    if process is not None:
        if terminate and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Streams:
    """Open-stream gauge and outcome tally shared by concurrent runs."""

    def __init__(self) -> None:
        self.open = self.peak = 0
        self.outcomes: Counter[str] = Counter()

    async def run(self, client: httpx.AsyncClient, target: Target) -> float | None:
        """One SSE run to its end; returns the seconds to the first `delta` event."""
        start, first, outcome, event = time.perf_counter(), None, "stream ended without a final event", ""
        headers, skill_id = target
        try:
            async with client.stream(
                "POST", f"/api/skills/{skill_id}/run", json={"input": {"name": "bench"}}, headers=headers
            ) as response:
                if response.status_code != 200:
                    self.outcomes[f"HTTP {response.status_code}: {(await response.aread())[:120]!r}"] += 1
                    return None
                self.open += 1
                self.peak = max(self.peak, self.open)
                try:
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                            if event == "delta" and first is None:
                                first = time.perf_counter() - start
                        elif line.startswith("data: ") and event == "run.completed":
                            outcome = event
                        elif line.startswith("data: ") and event == "run.failed":
                            outcome = f"run.failed: {json.loads(line[6:])['error']}"
                finally:
                    self.open -= 1
        except httpx.HTTPError as exc:
            outcome = f"{type(exc).__name__}: {str(exc)[:100]}"
        self.outcomes[outcome] += 1
        return first


async def direct_ttft(base_url: str, runs: int) -> list[float]:
    times = []
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url, max_retries=0) as client:
        for _ in range(runs + 1):  # the first one opens the connection: a warm-up, dropped
            start, first = time.perf_counter(), 0.0
            messages: Any = [{"role": "user", "content": "Say hello to bench"}]
            async with await client.chat.completions.create(model="ttft", messages=messages, stream=True) as chunks:
                async for chunk in chunks:
                    if not first and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - start
            times.append(first)
    return times[1:]


async def service_ttft(client: httpx.AsyncClient, target: Target, runs: int) -> list[float]:
    streams = Streams()
    times = [t for _ in range(runs + 1) if (t := await streams.run(client, target)) is not None][1:]
    if streams.outcomes["run.completed"] != runs + 1:
        print(f"  !! outcomes: {dict(streams.outcomes)}")
    return times


async def concurrent(base: str, targets: list[Target], count: int, server_pid: int, ramp: float) -> None:
    streams = Streams()
    cpu, rss, fds = sample(server_pid)
    peak_rss, peak_fds = rss, fds
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(120, pool=None)) as client:
        began = time.perf_counter()

        async def opened_at(i: int) -> float | None:  # with a ramp, stream i starts i/count of the way in
            await asyncio.sleep(ramp * i / count)
            return await streams.run(client, targets[i % len(targets)])

        runs = asyncio.gather(*(opened_at(i) for i in range(count)))
        while not runs.done():
            _, now_rss, now_fds = sample(server_pid)
            peak_rss, peak_fds = max(peak_rss, now_rss), max(peak_fds, now_fds)
            await asyncio.wait([runs], timeout=0.25)
        wall = time.perf_counter() - began
    cpu = (sample(server_pid)[0] - cpu) / wall
    ok = streams.outcomes.pop("run.completed", 0)
    print(
        f"  C={count:<5} completed {ok:5}   errors {sum(streams.outcomes.values()):5}   peak open {streams.peak:5}"
        f"   wall {wall:5.1f} s   server: CPU {cpu:4.0%}, RSS {rss:4.0f} → {peak_rss:4.0f} MB, fds {peak_fds}"
    )
    if len(firsts := [t for t in runs.result() if t is not None]) > 1:
        percentiles("    time to first delta", firsts)
    for outcome, n in streams.outcomes.most_common(5):
        print(f"      {n:5} × {outcome}")


async def run_rows(url: str) -> tuple[Counter[str], int]:
    """skill_runs by status, and the tokens still reserved (0 once every run is settled)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("select status, count(*) from skill_runs group by status")
        reserved = await conn.fetchval("select coalesce(sum(reserved), 0) from token_usage")
    finally:
        await conn.close()
    return Counter({row["status"]: row["count"] for row in rows}), int(reserved)


async def wait_healthy(base: str, log_path: Path) -> None:
    async with httpx.AsyncClient(base_url=base) as probe:
        for _ in range(300):
            try:
                if (await probe.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the server did not start:\n{log_path.read_text()[-2000:]}")


async def tenant(url: str, base: str, company: str) -> dict[str, Target]:
    """A member of a new company with a skill per scripted model and one on echo: model → (headers, skill id)."""
    async with operator_engine(url) as engine:
        m = await ensure_member(engine, email=f"runner@{company}.test", company=company, role="member")
    token = mint_token(SECRET, user_id=m.user_id, email=m.email, role=m.role, company_id=m.company_id, ttl=7200)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    targets = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for model in ("ttft", "slow", "echo"):
            fields = {"provider": "echo"} if model == "echo" else {"provider": "openai", "model": model}
            body = {"name": model, "instructions": "Say hello to {{ input.name }}", "max_tokens": 64, **fields}
            response = await client.post("/api/skills", json=body)
            response.raise_for_status()
            targets[model] = (headers, str(response.json()["id"]))
    return targets


async def main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the fake and the server
    workdir = Path(tempfile.mkdtemp(prefix="fluxopus-bench-"))
    pg = EmbeddedPostgres(workdir)
    url = pg.start()
    fake = server = None
    log_path = workdir / "server.log"
    log_path.touch()
    server_log = log_path.open()  # our own read offset; the server writes through its own descriptor
    try:
        await migrate(url)
        command = [sys.executable, "-c", FAKE_MAIN, str(args.ttft_delay), str(args.chunks), str(args.chunk_delay)]
        fake = subprocess.Popen([*command, API_KEY], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        fake_url = fake.stdout.readline().strip() if fake.stdout else ""
        port = free_port()
        settings = {
            "JWT_SECRET": SECRET,
            "DATA_DIR": workdir,
            "LOG_LEVEL": "warning",
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": fake_url,
            "LLM_MAX_RETRIES": 0,
            "TOKEN_BUDGET": 10**12,
            "DB_POOL_SIZE": args.db_pool,
            "DB_MAX_OVERFLOW": args.db_overflow,
        }
        env = {**os.environ, "DATABASE_URL": url} | {f"FLUXOPUS_{k}": str(v) for k, v in settings.items()}
        with log_path.open("w") as stderr:
            command = [sys.executable, "-m", "fluxopus.cli", "serve", "--port", str(port)]
            server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(base, log_path)
        tenants = [await tenant(url, base, f"bench{i}") for i in range(args.companies)]
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            print(f"Time to first token, {args.runs} sequential runs (fake: {args.ttft_delay * 1000:.0f} ms a chunk)")
            direct = percentiles("openai SDK → fake", await direct_ttft(fake_url, args.runs))
            fast, echo = tenants[0]["ttft"], tenants[0]["echo"]
            through = percentiles("POST /api/skills/{id}/run SSE → fake", await service_ttft(client, fast, args.runs))
            percentiles("POST /api/skills/{id}/run SSE → echo", await service_ttft(client, echo, args.runs))
            print(f"  overhead of the service at p50: {(through - direct) * 1000:.1f} ms")
        print(
            f"\nConcurrent streams ({args.chunks} chunks {args.chunk_delay:g} s apart; "
            f"companies: {args.companies}; DB pool {args.db_pool}+{args.db_overflow}; fd limit {hard}; "
            f"opened over {args.ramp:g} s)"
        )
        for count in args.streams:
            runs_before, _ = await run_rows(url)
            await concurrent(base, [t["slow"] for t in tenants], count, server.pid, args.ramp)
            for line, n in new_errors(server_log).most_common(3):
                print(f"      server log: {n} × {line}")
            await asyncio.sleep(1)  # settlements still in flight
            runs_after, reserved = await run_rows(url)
            print(f"      database: new runs {dict(runs_after - runs_before)}, tokens still reserved {reserved}")
    finally:
        stop(server)
        if fake is not None and fake.stdin is not None:
            fake.stdin.close()  # the fake closes its server and exits
            stop(fake, terminate=False)
        server_log.close()
        pg.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="sequential runs per time-to-first-token row")
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 500, 1000], help="concurrency levels")
    parser.add_argument("--ttft-delay", type=float, default=0.05, help="seconds before each chunk of `ttft`")
    parser.add_argument("--chunks", type=int, default=20, help="chunks of the slow model")
    parser.add_argument("--chunk-delay", type=float, default=0.5, help="seconds before each slow chunk")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which the streams are opened")
    parser.add_argument("--companies", type=int, default=1, help="spread streams over companies (budget rows)")
    parser.add_argument("--db-pool", type=int, default=10, help="server's FLUXOPUS_DB_POOL_SIZE")
    parser.add_argument("--db-overflow", type=int, default=20, help="server's FLUXOPUS_DB_MAX_OVERFLOW")
    asyncio.run(main(parser.parse_args()))
