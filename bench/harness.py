"""What the benchmarks share: a `fluxopus serve` process on a free port, ready when healthy."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.db.embedded import EmbeddedPostgres
from fluxopus.db.engine import create_engine
from fluxopus.db.migrate import migrate

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def embedded_database() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A migrated embedded PostgreSQL in a temp dir, removed afterwards. Yields its URL and the
    environment for `serving` against it (the caller's FLUXOPUS_* settings left out)."""
    workdir = Path(tempfile.mkdtemp(prefix="fluxopus-bench-"))
    pg = EmbeddedPostgres(workdir)
    url = pg.start()
    try:
        await migrate(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXOPUS_") and k != "DATABASE_URL"}
        env |= {"DATABASE_URL": url, "FLUXOPUS_DATA_DIR": str(workdir), "FLUXOPUS_LOG_LEVEL": "warning"}
        yield url, env
    finally:
        pg.close()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class InProcess:
    url: str
    settings: Settings
    engine: AsyncEngine
    app: FastAPI


@asynccontextmanager
async def in_process_app(workdir: Path, secret: str) -> AsyncIterator[InProcess]:
    """An embedded database in `workdir`, migrated, and an app on it called in-process (no indexer
    of its own: the benchmarks run the worker when they mean to)."""
    pg = EmbeddedPostgres(workdir)
    url = pg.start()
    try:
        await migrate(url)
        settings = Settings(data_dir=workdir, database_url=url, jwt_secret=secret, token_budget=10**12, indexer=False)
        engine = create_engine(url, settings)
        app = create_app(settings, engine=engine)
        try:
            yield InProcess(url, settings, engine, app)
        finally:
            await engine.dispose()
            await app.state.runtime.ai.aclose()
    finally:
        pg.close()


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]


@asynccontextmanager
async def serve_process(env: dict[str, str], stderr: IO[str] | None = None) -> AsyncIterator[Server]:
    """`fluxopus serve` with this environment, in its own process (so the benchmark's client does
    not share its event loop); yields it once /healthz answers, stops it on exit."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fluxopus.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as probe:
            for _ in range(600):
                if server.poll() is not None:
                    raise RuntimeError(f"fluxopus serve exited with {server.returncode}")
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("fluxopus serve did not become healthy in 60 s")
        yield Server(base, server)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server stalled by the benchmark's abuse
            server.kill()
            server.wait(timeout=30)


@asynccontextmanager
async def serving(env: dict[str, str], stderr: IO[str] | None = None) -> AsyncIterator[str]:
    """`serve_process`, when only its URL matters."""
    async with serve_process(env, stderr) as server:
        yield server.url


def report(name: str, latencies: list[float], elapsed: float | None, errors: int) -> None:
    """One line: throughput (when `elapsed` is known), p50, p95 and errors."""
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 100
    rate = f"{len(latencies) / elapsed:7.0f} /s" if elapsed else " " * 10
    print(f"{name:<44} {rate}   p50 {q[49] * 1000:6.1f} ms   p95 {q[94] * 1000:6.1f} ms   errors {errors}")


async def drive(name: str, items: Sequence[T], step: Callable[[T], Awaitable[bool]], concurrency: int) -> None:
    """Runs `step` once per item, `concurrency` at a time, and reports; a step answers whether it succeeded."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            item = queue.get_nowait()
            began = time.perf_counter()
            errors += not await step(item)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    report(name, latencies, time.perf_counter() - began, errors)
