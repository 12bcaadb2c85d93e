"""`fluxopus serve` as a real process: embedded PostgreSQL lifecycle, signals, crash recovery.

Every process a test starts (serve, and the PostgreSQL it starts) is stopped by PID in a
fixture finalizer (`processes`, in conftest.py), also when the test fails.
"""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.utils.fake_oauth import FakeOAuth
from tests.utils.http import bearer
from tests.utils.serve import (
    STOP_SECONDS,
    Processes,
    clean_env,
    is_alive,
    is_postgres_of,
    postmaster_pid,
    provision_token,
    stopped,
    wait_until,
)

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_embedded_banner_token_and_clean_stop(processes: Processes, work_dir: Path, signum: int) -> None:
    data_dir = work_dir / "data"
    server = processes.serve(data_dir)
    server.wait_healthy()
    pg_pid = processes.remember_postgres(server)
    assert is_alive(pg_pid) and is_postgres_of(pg_pid, server.pgdata)

    banner = server.stdout
    for needle in ("/graphql", "/api", "/openapi.json", "fluxopus token", "no LLM is configured"):
        assert needle in banner, f"banner lacks {needle!r}:\n{banner}"
    assert f"127.0.0.1:{server.port}" in banner

    token = server.token("x@y.z")
    response = httpx.get(f"{server.url}/api/tasks", headers=bearer(token), timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"
    # With no LLM configured, a skill runs on the labelled echo provider.
    skill = httpx.post(
        f"{server.url}/api/skills", json={"name": "Hi", "instructions": "Hi {{ input.who }}"}, headers=bearer(token)
    )
    assert skill.status_code == 201, skill.text
    run = httpx.post(
        f"{server.url}/api/skills/{skill.json()['id']}/run",
        json={"input": {"who": "there"}},
        headers={**bearer(token), "Accept": "application/json"},
        timeout=10,
    )
    assert run.status_code == 200, run.text
    assert (run.json()["status"], run.json()["model"], run.json()["output"]) == ("succeeded", "echo", "Hi there")
    # The token command attached to the running server and left it running.
    assert is_alive(pg_pid)
    health = server.healthz()
    assert health is not None and health.status_code == 200

    server.stop(signum)
    wait_until(stopped(pg_pid), STOP_SECONDS, f"embedded PostgreSQL {pg_pid} to stop\n{server.logs()}")
    assert "Traceback" not in server.stderr, server.logs()


async def test_serve_recovers_from_a_killed_predecessor(processes: Processes, work_dir: Path) -> None:
    data_dir = work_dir / "data"
    first = processes.serve(data_dir)
    first.wait_healthy()
    orphan_pid = processes.remember_postgres(first)
    token = await provision_token(first, "crash@example.com")
    created = httpx.post(f"{first.url}/api/tasks", json={"title": "survives a crash"}, headers=bearer(token), timeout=5)
    assert created.status_code == 201, created.text

    first.proc.kill()
    first.proc.wait(timeout=STOP_SECONDS)
    # The state the next start has to cope with: an orphaned server and a stale handle.
    assert is_alive(orphan_pid)
    assert first.proc.pid in json.loads((first.pgdata / ".handle_pids.json").read_text())

    second = processes.serve(data_dir)
    second.wait_healthy()
    pg_pid = processes.remember_postgres(second)
    listed = httpx.get(f"{second.url}/api/tasks", headers=bearer(token), timeout=5)
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json()] == [created.json()["id"]]

    second.stop(signal.SIGTERM)
    for pid in {orphan_pid, pg_pid}:
        wait_until(stopped(pid), STOP_SECONDS, f"PostgreSQL {pid} to stop\n{second.logs()}")


def test_serve_with_database_url_starts_no_embedded_server(
    processes: Processes, work_dir: Path, database_url: str, data_dir: Path
) -> None:
    external_pid = postmaster_pid(data_dir / "pgdata")
    assert external_pid is not None and is_alive(external_pid)

    own_dir = work_dir / "data"
    server = processes.serve(own_dir, clean_env(DATABASE_URL=database_url))
    server.wait_healthy()
    assert not (own_dir / "pgdata").exists()

    server.stop(signal.SIGTERM)
    # Stopping serve leaves an external database alone.
    assert is_alive(external_pid)
    assert not (own_dir / "pgdata").exists()


def test_serve_connects_a_provider_seals_with_a_generated_key_and_hides_codes_from_logs(
    processes: Processes, work_dir: Path, fake_oauth: FakeOAuth
) -> None:
    """The embedded default end to end: providers from the environment, the key generated into the data
    dir, the browser's round trip over real HTTP, and no authorization code in the access log."""
    provider = fake_oauth.client()
    data_dir = work_dir / "data"
    env = clean_env(
        FLUXOPUS_OAUTH_ACME_SSO_CLIENT_ID=provider.client_id,
        FLUXOPUS_OAUTH_ACME_SSO_CLIENT_SECRET=provider.client_secret,
        FLUXOPUS_OAUTH_ACME_SSO_DISCOVERY_URL=f"{fake_oauth.url}/.well-known/openid-configuration",
        FLUXOPUS_APP_URL="https://app.example.com",
    )
    server = processes.serve(data_dir, env)
    server.wait_healthy()
    processes.remember_postgres(server)
    assert "acme_sso" in server.stdout and "/api/connections/callback/<provider>" in server.stdout, server.logs()
    token = server.token("oauth@example.com")

    authorize = httpx.get(
        f"{server.url}/api/connections/authorize/acme_sso",
        headers={**bearer(token), "Accept": "application/json"},
        timeout=10,
    )
    assert authorize.status_code == 200, authorize.text
    at_provider = httpx.get(authorize.json()["url"], timeout=10)
    callback = at_provider.headers["location"]
    assert callback.startswith(f"{server.url}/api/connections/callback/acme_sso?"), callback
    back = httpx.get(callback, timeout=10)
    assert back.status_code == 302, back.text
    assert back.headers["location"] == "https://app.example.com/?connection=acme_sso&status=connected"
    status = httpx.get(f"{server.url}/api/connections/status/acme_sso", headers=bearer(token), timeout=10)
    assert status.json()["connected"] is True and status.json()["account"] == provider.account["email"]

    key = data_dir / "encryption-key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    server.stop(signal.SIGTERM)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    logs = server.logs()
    assert " GET /api/connections/callback/acme_sso 302 " in logs  # the request was logged, without its query
    assert code not in logs and all(t not in logs for t in provider.issued)
