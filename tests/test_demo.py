"""`fluxopus demo` on the embedded default, as a user runs it: seeded twice (nothing changes the second
time), then served by a real `fluxopus serve`, and the commands it printed run with bash and curl.

One data dir for the module: the demo runs twice with no server (each run starts and stops the
embedded PostgreSQL), the database is read as superuser in between, then `fluxopus serve` runs on it
for the remaining tests, which call it over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from fluxopus import demo
from fluxopus.auth.keys import SigningKey
from fluxopus.db.embedded import EmbeddedPostgres
from fluxopus.db.engine import asyncpg_dsn
from tests.utils.cli import CliResult, cli_env, run_cli
from tests.utils.http import bearer
from tests.utils.serve import Processes, Serve, clean_env

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

INDEXING_SECONDS = 90  # the server loads the embedding model, then embeds the demo's knowledge

# Every row the demo writes, with what would show a change to it.
SNAPSHOT = {
    "users": "select id, email, password_hash, email_confirmed_at from users",
    "companies": "select id, name from companies",
    "members": "select user_id, company_id, role from members",
    "tasks": "select id, title, assignee_id, updated_at from tasks",
    "time_logs": "select id, task_id, user_id, minutes, note from time_logs",
    "tags": "select id, name, color from tags",
    "entity_tags": "select tag_id, entity_type, entity_id, created_at from entity_tags",
    "skills": "select id, name, version, updated_at from skills",
    "skill_versions": "select id, skill_id, version from skill_versions",
    "knowledge": "select id, title, revision, updated_at from knowledge",
}


async def snapshot(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The demo's tables, read as superuser from the data dir's embedded server (no DATABASE_URL)."""
    pg = EmbeddedPostgres(data_dir)
    url = await asyncio.to_thread(pg.start)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return {
                table: sorted((tuple(r) for r in await conn.fetch(sql)), key=str) for table, sql in SNAPSHOT.items()
            }
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(pg.close)


@dataclass
class DemoRuns:
    data_dir: Path
    first: CliResult
    second: CliResult
    before: dict[str, list[tuple[Any, ...]]]
    after: dict[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def demo_dir() -> Iterator[Path]:
    # Outside pytest's basetemp (see tests/test_serve.py: the embedded server runs as its own user).
    path = Path(tempfile.mkdtemp(prefix="fluxopus-demo-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
async def runs(demo_dir: Path) -> DemoRuns:
    env = cli_env(demo_dir, None)
    first = await run_cli(env, demo_dir, "demo", "--data-dir", str(demo_dir))
    assert first.code == 0, first.stdout + first.stderr
    before = await snapshot(demo_dir)
    second = await run_cli(env, demo_dir, "demo")  # the data dir from FLUXOPUS_DATA_DIR this time
    assert second.code == 0, second.stdout + second.stderr
    return DemoRuns(demo_dir, first, second, before, await snapshot(demo_dir))


@pytest.fixture(scope="module")
def processes(demo_dir: Path) -> Iterator[Processes]:
    logs = Path(tempfile.mkdtemp(prefix="fluxopus-demo-logs-"))
    tracker = Processes(logs)
    yield tracker
    tracker.close()
    shutil.rmtree(logs, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(server: Serve) -> dict[str, str]:
    """Tokens for the demo users from `fluxopus token` (not the sign-in under test)."""
    return {who: server.token(email) for who, email in (("admin", demo.ADMIN_EMAIL), ("member", demo.MEMBER_EMAIL))}


@pytest.fixture(scope="module")
def server(runs: DemoRuns, processes: Processes) -> Serve:
    """`fluxopus serve` on the demo's data dir, once it has embedded the demo's knowledge."""
    running = processes.serve(runs.data_dir)
    running.wait_healthy()
    processes.remember_postgres(running)
    return running


@pytest.fixture(scope="module")
async def indexed(server: Serve, tokens: dict[str, str]) -> Serve:
    deadline = time.monotonic() + INDEXING_SECONDS
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(tokens["admin"]), timeout=10) as client:
        while True:
            response = await client.get("/api/knowledge")
            assert response.status_code == 200, response.text
            statuses = [item["status"] for item in response.json()]
            if statuses and all(s == "indexed" for s in statuses):
                return server
            assert "failed" not in statuses, response.text
            if time.monotonic() > deadline:
                raise AssertionError(f"knowledge not embedded: {statuses}\n{server.logs()}")
            await asyncio.sleep(0.5)


@pytest.fixture
async def http(server: Serve) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def assert_signed_by(key: str, signing_key: SigningKey) -> None:
    assert jwt.get_unverified_header(key)["kid"] == signing_key.kid
    claims = jwt.decode(key, signing_key.public_key, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["role"] == "anon"


def printed_commands(stdout: str) -> str:
    """The shell block under "2. …": its lines are indented by four spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("2. "))
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    script = "\n".join(block).strip()
    assert script, stdout
    return script


# --------------------------------------------------------------------------------------------
# seeding, twice
# --------------------------------------------------------------------------------------------


def test_the_second_run_adds_and_changes_nothing(runs: DemoRuns) -> None:
    assert "added" in runs.first.stdout.splitlines()[0], runs.first.stdout
    assert "nothing to add" in runs.second.stdout.splitlines()[0], runs.second.stdout
    counts = {table: len(rows) for table, rows in runs.after.items()}
    assert counts == {table: len(rows) for table, rows in runs.before.items()}
    assert runs.after == runs.before  # the same rows, ids, versions, timestamps and password hashes
    assert "Traceback" not in runs.first.stderr + runs.second.stderr


def test_the_demo_seeds_every_group(runs: DemoRuns) -> None:
    data = runs.after
    assert sorted(u[1] for u in data["users"]) == [demo.ADMIN_EMAIL, demo.MEMBER_EMAIL]
    assert all(u[2].startswith("$argon2id$") and u[3] is not None for u in data["users"])
    assert [c[1] for c in data["companies"]] == [demo.COMPANY]
    ids = {u[1]: u[0] for u in data["users"]}
    assert sorted((m[0], m[2]) for m in data["members"]) == sorted(
        [(ids[demo.ADMIN_EMAIL], "admin"), (ids[demo.MEMBER_EMAIL], "member")]
    )
    assert len(data["tasks"]) == len(demo.TASKS) >= 3
    assert sum(1 for t in data["tasks"] if t[2] == ids[demo.MEMBER_EMAIL]) >= 2
    assert len(data["time_logs"]) == sum(len(t.logs) for t in demo.TASKS) >= 3
    assert any(log[2] == ids[demo.MEMBER_EMAIL] for log in data["time_logs"])  # logged as the member
    assert len(data["tags"]) == len(demo.TAGS)
    assert len(data["entity_tags"]) == sum(len(t.tags) for t in demo.TASKS)
    assert len(data["skills"]) == len(demo.SKILLS)
    assert len(data["skill_versions"]) == sum(len(s.versions) for s in demo.SKILLS)
    assert max(s[2] for s in data["skills"]) >= 2  # some skill has more than one version
    assert len(data["knowledge"]) == len(demo.KNOWLEDGE) >= 2


def test_the_printout_says_how_to_start_and_sign_in(runs: DemoRuns) -> None:
    out = runs.first.stdout
    for needle in (
        demo.ADMIN_EMAIL,
        demo.MEMBER_EMAIL,
        f"password: {demo.PASSWORD}",
        f"fluxopus serve --data-dir {runs.data_dir}",
        "http://127.0.0.1:8000/auth/v1/token?grant_type=password",
        '-H "apikey: $ANON_KEY"',
        "Content-Type: application/json",
        "http://127.0.0.1:8000/api/tasks",
        "http://127.0.0.1:8000/api/knowledge/search?q=",
        "http://127.0.0.1:8000/graphql",
    ):
        assert needle in out, f"{needle!r} not in:\n{out}"
    [anon_key] = re.findall(r"ANON_KEY=(\S+)", out)
    assert_signed_by(anon_key, SigningKey.load_or_create(runs.data_dir / "jwt-signing-key.pem"))


# --------------------------------------------------------------------------------------------
# what the API shows of it, on a real server
# --------------------------------------------------------------------------------------------


def test_serve_banner_shows_the_built_in_auth_and_its_anon_key(server: Serve) -> None:
    match = re.search(
        rf"auth +{re.escape(server.url)}/auth/v1 +\(Supabase-compatible; anon key: (\S+)\)", server.stdout
    )
    assert match, server.stdout
    assert_signed_by(match.group(1), SigningKey.load_or_create(server.data_dir / "jwt-signing-key.pem"))


async def test_the_demo_data_through_the_api(
    http: httpx.AsyncClient, indexed: Serve, tokens: dict[str, str], runs: DemoRuns
) -> None:
    admin, member = bearer(tokens["admin"]), bearer(tokens["member"])
    tasks = (await http.get("/api/tasks", params={"limit": 200}, headers=admin)).json()
    assert sorted(t["title"] for t in tasks) == sorted(t.title for t in demo.TASKS)
    assert sum(t["total_minutes"] for t in tasks) == sum(m for t in demo.TASKS for m, _, _ in t.logs)

    # RLS applies: the member sees the tasks assigned to them, not the admin's.
    mine = (await http.get("/api/tasks", headers=member)).json()
    assert sorted(t["title"] for t in mine) == sorted(t.title for t in demo.TASKS if t.assignee == "member")
    fix = next(t for t in mine if t["title"] == "Fix the login redirect bug")
    logs = (await http.get(f"/api/tasks/{fix['id']}/time-logs", headers=member)).json()
    assert {log["note"] for log in logs} == {"Reproduced with an expired session", "Fix and regression test"}
    assert {log["user_id"] for log in logs} == {fix["assignee_id"]}
    on_fix = await http.get("/api/tags/entity", params={"entityType": "task", "entityId": fix["id"]}, headers=member)
    assert sorted(t["name"] for t in on_fix.json()) == ["bug", "customer"]

    skills = {s["name"]: s for s in (await http.get("/api/skills", headers=admin)).json()}
    reply = skills["Draft a customer reply"]
    versions = (await http.get(f"/api/skills/{reply['id']}/versions", headers=admin)).json()
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert reply["version"] == 3 and reply["instructions"] == versions[0]["instructions"]
    assert "Daily stand-up notes" not in skills  # the member's private skill
    assert "Daily stand-up notes" in {s["name"] for s in (await http.get("/api/skills", headers=member)).json()}

    hits = (await http.get("/api/knowledge/search", params={"q": demo.SEARCH}, headers=member)).json()
    assert hits and hits[0]["item"]["title"] == "Expense policy"


async def test_the_printed_commands_work_as_printed(indexed: Serve, runs: DemoRuns) -> None:
    """Needs the built-in sign-in (/auth/v1): the printed commands sign in with the demo password."""
    assert shutil.which("curl"), "curl is needed to run the printed commands"
    # Run the demo again against the running server's port: the commands then call that server.
    env = cli_env(runs.data_dir, None)
    result = await run_cli(env, runs.data_dir, "demo", "--port", str(indexed.port))
    assert result.code == 0, result.stdout + result.stderr
    assert "nothing to add" in result.stdout.splitlines()[0]
    script = printed_commands(result.stdout)
    assert "127.0.0.1:8000" not in script and indexed.url in script

    # Printed as is; the preamble makes any failure (an HTTP error included) stop the script.
    preamble = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", preamble + script],
        env=clean_env(),
        cwd=runs.data_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    tasks, hits, graphql = (json.loads(line) for line in done.stdout.splitlines())
    assert sorted(t["title"] for t in tasks) == sorted(t.title for t in demo.TASKS)
    assert hits[0]["item"]["title"] == "Expense policy"
    assert "errors" not in graphql, graphql
    assert sorted(t["title"] for t in graphql["data"]["tasks"]) == sorted(t.title for t in demo.TASKS)
    versions = {s["name"]: s["version"] for s in graphql["data"]["skills"]}
    assert versions == {s.name: len(s.versions) for s in demo.SKILLS if s.owner == "admin"}


# --------------------------------------------------------------------------------------------
# when sign-in happens elsewhere
# --------------------------------------------------------------------------------------------


async def test_with_an_external_secret_the_demo_prints_token_instructions(runs: DemoRuns) -> None:
    secret = "demo-secret-" + "x" * 32
    env = cli_env(runs.data_dir, None, FLUXOPUS_JWT_SECRET=secret)
    result = await run_cli(env, runs.data_dir, "demo", "--data-dir", str(runs.data_dir))
    assert result.code == 0, result.stdout + result.stderr
    assert "nothing to add" in result.stdout.splitlines()[0]
    assert "/auth/v1/token" not in result.stdout and "ANON_KEY" not in result.stdout
    script = printed_commands(result.stdout)
    [token_line] = [line for line in script.splitlines() if line.startswith("TOKEN=")]
    assert f"fluxopus token --email {demo.ADMIN_EMAIL} --data-dir {runs.data_dir}" in token_line

    # The printed command gives a token for the demo admin, signed with the secret.
    command = token_line.removeprefix("TOKEN=$(").removesuffix(")")
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", f"set -euo pipefail; {command}"],
        # `fluxopus` as installed next to this interpreter
        env=clean_env(
            FLUXOPUS_JWT_SECRET=secret, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), secret, algorithms=["HS256"], audience="authenticated")
    assert claims["email"] == demo.ADMIN_EMAIL
    assert claims["app_metadata"]["company_role"] == "admin"

    env = cli_env(runs.data_dir, None, FLUXOPUS_JWKS_URL="http://127.0.0.1:9/jwks.json")
    result = await run_cli(env, runs.data_dir, "demo")
    assert result.code == 0, result.stdout + result.stderr
    assert "identity provider" in result.stdout and "/auth/v1/token" not in result.stdout
