"""What the benchmarks share: a `fluxopus serve` process on a free port, ready when healthy."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(env: dict[str, str], stderr: IO[str] | None = None) -> AsyncIterator[str]:
    """`fluxopus serve` with this environment, in its own process (so the benchmark's client does
    not share its event loop); yields the base URL once /healthz answers, stops it on exit."""
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
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
