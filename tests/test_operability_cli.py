"""The command line an operator meets: --version, progress on a first start, the banner once the port
listens, a taken port, JSON access logs of a real server, and `demo` printing the running server's URL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fluxopus import demo
from fluxopus.cli import app
from tests.utils.serve import (
    STARTUP_SECONDS,
    Processes,
    clean_env,
    fluxopus_command,
    is_postgres_of,
    postmaster_pid,
    stopped,
    wait_until,
)
from tests.utils.server import free_port


def test_version_comes_from_the_package_metadata() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"fluxopus {version('fluxopus')}\n"


@pytest.mark.slow
def test_a_taken_port_is_one_clear_line_and_exit_1_before_anything_starts(work_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*fluxopus_command(), "serve", "--data-dir", str(work_dir / "data"), "--port", str(port)],
            env=clean_env(),
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr == f"port {port} is in use on 127.0.0.1; pass --port <another port> (or set FLUXOPUS_PORT)\n"
    assert result.stdout == ""
    assert not (work_dir / "data" / "pgdata").exists(), "the port is checked before the database is created"


@pytest.mark.slow
def test_a_first_start_says_what_it_does_then_the_banner_once_it_listens(processes: Processes, work_dir: Path) -> None:
    data_dir = work_dir / "data"
    server = processes.serve(data_dir, clean_env(FLUXOPUS_LOG_FORMAT="json"))
    # Watch stdout closely: the moment the banner shows, the port must already answer.
    deadline = time.monotonic() + STARTUP_SECONDS * 3  # a first start runs initdb
    while "Fluxopus is running" not in server.stdout:
        assert server.proc.poll() is None, server.logs()
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.005)
    with socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass  # connected: the banner came after the socket listened
    assert f"GraphQL    {server.url}/graphql" in server.stdout
    server.wait_healthy()

    progress = [line for line in server.stderr.splitlines() if not line.startswith("{")]
    assert progress[0] == f"first start: creating the database in {data_dir / 'pgdata'} (initdb, a few seconds)…"
    assert re.fullmatch(r"database created and started \(\d+\.\d s\)", progress[1]), progress
    logged = [json.loads(line) for line in server.stderr.splitlines() if line.startswith("{")]
    assert {"fluxopus.db.migrate", "uvicorn.error"} <= {entry["logger"] for entry in logged}
    assert any(entry["message"] == "applied migration 001_spine" for entry in logged)

    token = server.token("operator@example.com")
    answered = httpx.get(
        f"{server.url}/api/tasks", headers={"Authorization": f"Bearer {token}", "X-Request-Id": "op-check-1"}
    )
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "op-check-1"
    assert httpx.get(f"{server.url}/metrics").status_code == 200
    time.sleep(0.2)
    [line] = [json.loads(text) for text in server.stderr.splitlines() if '"op-check-1"' in text]
    assert line["logger"] == "fluxopus.access" and line["path"] == "/api/tasks" and line["status"] == 200
    assert re.fullmatch(r"[0-9a-f-]{36}", line["user_id"]) and re.fullmatch(r"[0-9a-f-]{36}", line["company_id"])
    assert token not in server.stderr and token.split(".")[2] not in server.stderr
    assert not any('"/healthz"' in text and "uvicorn.access" in text for text in server.stderr.splitlines())

    # `demo` without --port prints the URL of the server running on its data dir.
    seeded = server.run_cli("demo")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert f"{server.url}/api/tasks" in seeded.stdout and ":8000" not in seeded.stdout
    assert "seeding the demo: users and passwords…" in seeded.stderr

    assert server.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert not (data_dir / "server.json").exists(), "a stopped server is not the demo's any more"
    seeded = server.run_cli("demo")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "http://127.0.0.1:8000/api/tasks" in seeded.stdout

    reindex = server.run_cli("reindex")
    assert reindex.returncode == 0, reindex.stdout + reindex.stderr
    pattern = r"^(\d+) item\(s\) queued for embedding; embedding those due with \S+…$"
    [waiting] = re.findall(pattern, reindex.stderr, re.MULTILINE)
    [done] = re.findall(r"^queued 0 item\(s\) made by another model; embedded (\d+) item\(s\)$", reindex.stdout)
    if int(done):  # what the server had not embedded yet (and holds no lease on) is embedded now, and said so
        assert f"embedded {done} of {waiting}" in reindex.stderr, reindex.stderr


@pytest.mark.slow
def test_demo_prints_the_port_of_the_settings(work_dir: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [*fluxopus_command(), "demo", "--data-dir", str(work_dir / "data")],
        env=clean_env(FLUXOPUS_PORT=str(port)),
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"http://127.0.0.1:{port}/graphql" in result.stdout and ":8000" not in result.stdout
        assert "applying migration 001_spine" in result.stderr  # said while a new database is migrated

        # No server ran: the demo's knowledge is still queued, and reindex embeds it, saying how far it is.
        reindex = subprocess.run(
            [*fluxopus_command(), "reindex", "--data-dir", str(work_dir / "data")],
            env=clean_env(),
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert reindex.returncode == 0, reindex.stdout + reindex.stderr
        queued = len(demo.KNOWLEDGE)
        assert f"{queued} item(s) queued for embedding; embedding those due with " in reindex.stderr
        assert f"embedded {queued} of {queued}\n" in reindex.stderr
        assert reindex.stdout == f"queued 0 item(s) made by another model; embedded {queued} item(s)\n"
    finally:
        _stop_postgres(work_dir / "data" / "pgdata")


def _stop_postgres(pgdata: Path) -> None:
    """`demo` stops the embedded server it started when it ends; should it not have, it is stopped by PID."""
    pid = postmaster_pid(pgdata)
    if pid is not None and is_postgres_of(pid, pgdata):
        os.kill(pid, signal.SIGINT)
        wait_until(stopped(pid), 15, "the demo's PostgreSQL to stop")
