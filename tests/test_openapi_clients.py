"""Clients generated from openapi.json, unmodified, run every operation against a real server:
openapi-python-client (Python) and openapi-typescript + openapi-fetch (TypeScript, type-checked with
tsc, then run by Node.js). Lists show their `X-Total-Count`, asked for with the `Prefer` header parameter;
a skill runs in JSON mode (the `Accept` parameter the document declares); the OAuth connection flow goes
through the fake provider."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.rest_compat.table import ROUTES
from tests.utils.builders import Company
from tests.utils.connections import new_key, oauth_settings
from tests.utils.fake_oauth import FakeOAuth
from tests.utils.server import ThreadedServer

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
JS = REPO_ROOT / "tests" / "js"
DOCUMENT = REPO_ROOT / "openapi.json"
OPERATIONS = {route.operation_id for route in ROUTES}
PACKAGE = "fluxopus_generated_client"


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str, fake_oauth: FakeOAuth) -> Iterator[ThreadedServer]:
    """A real server with one OAuth provider, `fake` (the fake provider on loopback)."""
    configured = oauth_settings(settings, fake_oauth, fake_oauth.client(), key=new_key())
    with ThreadedServer(create_app(configured, database_url=database_url)) as server:
        yield server


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The Python client openapi-python-client generates from the committed document, imported."""
    out = tmp_path_factory.mktemp("python-client")
    generate = [sys.executable, "-m", "openapi_python_client", "generate"]
    command = [*generate, "--path", str(DOCUMENT), "--output-path", str(out / PACKAGE)]
    result = subprocess.run([*command, "--meta", "none"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # Anything it could not generate, it says it skipped: nothing may be.
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def consent(authorize_url: str) -> dict[str, str]:
    """The user's browser at the fake provider, sent back with a code: the callback's query."""
    response = httpx.get(authorize_url)
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


@pytest.fixture
def client(generated: ModuleType, server: ThreadedServer, acme: Company) -> Iterator[Any]:
    """The generated client, signed in as acme's Alice."""
    with generated.AuthenticatedClient(base_url=server.url, token=acme.alice.token) as client:
        yield client


def test_the_python_client_runs_every_operation(
    client: Any, generated: ModuleType, server: ThreadedServer, acme: Company
) -> None:
    m = importlib.import_module(f"{PACKAGE}.models")
    called: set[str] = set()
    admin = generated.AuthenticatedClient(base_url=server.url, token=acme.admin.token)
    with admin:
        run_every_operation(client, admin, m, called)
    assert called == OPERATIONS, OPERATIONS - called


def run_every_operation(client: Any, admin: Any, m: Any, called: set[str]) -> None:
    """Every operation, as the member `client` (and, where only an admin may, as `admin`)."""

    def call(tag: str, operation: str, expect: int, /, *args: Any, as_: Any = None, **kwargs: Any) -> Any:
        module = importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}")
        response = module.sync_detailed(*args, client=as_ or client, **kwargs)
        assert response.status_code == expect, (operation, response.status_code, response.content[:500])
        assert not isinstance(response.parsed, m.Error), (operation, response.parsed)
        called.add(operation)
        return response

    def listed(tag: str, operation: str, /, *args: Any, **kwargs: Any) -> list[Any]:
        # The documented Prefer header parameter: the total is counted only when asked.
        response = call(tag, operation, 200, *args, prefer="count=exact", **kwargs)
        assert response.headers["X-Total-Count"] == str(len(response.parsed)), operation
        assert response.headers["Preference-Applied"] == "count=exact", operation
        return list(response.parsed)

    # Tasks and time logs
    task = call("tasks", "create_task", 201, body=m.TaskCreate(title="Write the report")).parsed
    assert isinstance(task, m.Task) and task.status == m.TaskStatus.TODO
    assert [t.id for t in listed("tasks", "list_tasks", status=m.TaskStatus.TODO)] == [task.id]
    assert call("tasks", "get_task", 200, task.id).parsed.title == "Write the report"
    updated = call("tasks", "update_task", 200, task.id, body=m.TaskUpdate(status=m.TaskStatus.IN_PROGRESS)).parsed
    assert updated.status == m.TaskStatus.IN_PROGRESS
    log = call("tasks", "add_time_log", 201, task.id, body=m.TimeLogCreate(minutes=25, note="draft")).parsed
    assert [entry.id for entry in listed("tasks", "list_time_logs", task.id)] == [log.id]

    # Tags
    tag = call("tags", "create_tag", 201, body=m.TagCreate(name="urgent", color="#ff0000")).parsed
    assert call("tags", "update_tag", 200, tag.id, body=m.TagUpdate(color="#00ff00")).parsed.color == "#00ff00"
    assert tag.id in [t.id for t in listed("tags", "list_tags")]
    body = m.AssignTags(entity_type=m.EntityType.TASK, entity_id=task.id, tag_ids=[tag.id])
    assert [t.id for t in call("tags", "assign_tags", 200, body=body).parsed] == [tag.id]
    on_task = call("tags", "entity_tags_of", 200, entity_type=m.EntityType.TASK, entity_id=task.id).parsed
    assert [t.id for t in on_task] == [tag.id]

    # Skills: versions, a run in JSON mode, its record, the budget
    skill = call(
        "skills", "create_skill", 201, body=m.SkillCreate(name="greeter", instructions="Say hello to {{ input.name }}")
    ).parsed
    assert skill.version == 1 and skill.id in [s.id for s in listed("skills", "list_skills")]
    assert call("skills", "get_skill", 200, skill.id).parsed.name == "greeter"
    changed = m.SkillUpdate(instructions="Greet {{ input.name }} warmly")
    assert call("skills", "update_skill", 200, skill.id, body=changed).parsed.version == 2
    assert [v.version for v in listed("skills", "list_skill_versions", skill.id)] == [2, 1]
    run_input = m.RunInput(input_=m.RunInputInput.from_dict({"name": "Ada"}))  # `input` is a builtin
    run = call("skills", "run_skill", 200, skill.id, body=run_input, accept=m.RunSkillAccept.APPLICATIONJSON).parsed
    assert isinstance(run, m.SkillRun) and run.status == m.RunStatus.SUCCEEDED and "Ada" in run.output, run
    assert [r.id for r in listed("skills", "list_skill_runs", skill.id)] == [run.id]
    budget = call("skills", "token_budget", 200).parsed
    assert budget.used + budget.reserved > 0
    off = call("skills", "update_tool_settings", 200, as_=admin, body=m.ToolSettingsInput(enabled=False)).parsed
    assert off.enabled is False and "github.list_issues" in off.built_in
    assert call("skills", "tool_settings", 200).parsed.enabled is False
    call("skills", "update_tool_settings", 200, as_=admin, body=m.ToolSettingsInput(enabled=True))

    # Knowledge
    item = call(
        "knowledge", "create_knowledge", 201, body=m.KnowledgeCreate(title="Reset a password", content="Use the link.")
    ).parsed
    assert item.status == m.IndexStatus.PENDING
    assert item.id in [k.id for k in listed("knowledge", "list_knowledge")]
    assert call("knowledge", "get_knowledge", 200, item.id).parsed.title == "Reset a password"
    renamed = m.KnowledgeUpdate(title="Resetting a password")
    assert call("knowledge", "update_knowledge", 200, item.id, body=renamed).parsed.title == "Resetting a password"
    hits = call("knowledge", "search_knowledge", 200, q="password", mode=m.SearchMode.KEYWORD).parsed
    assert all(isinstance(hit, m.SearchHit) for hit in hits)

    # Connections: authorize, the provider's consent, the callback, then status, listing, disconnect
    authorize = call(
        "connections", "authorize_connection", 200, "fake", accept=m.AuthorizeConnectionAccept.APPLICATIONJSON
    ).parsed
    query = consent(authorize.url)
    landed = call(
        "connections",
        "connection_callback",
        200,
        "fake",
        code=query["code"],
        state=query["state"],
        accept=m.ConnectionCallbackAccept.APPLICATIONJSON,
    ).parsed
    assert parse_qs(urlsplit(landed.url).query)["status"] == ["connected"], landed.url
    status = call("connections", "connection_status", 200, "fake").parsed
    assert status.connected is True and status.status == m.ConnectionState.CONNECTED
    assert [c.id for c in listed("connections", "list_connections")] == [status.connection_id]
    assert call("connections", "disconnect", 200, status.connection_id).parsed.deleted is True

    # Deletes last, then an error as the client reads it: its code is the declared enum's
    for tag_name, operation, item_id in [
        ("tags", "delete_tag", tag.id),
        ("knowledge", "delete_knowledge", item.id),
        ("skills", "delete_skill", skill.id),
        ("tasks", "delete_task", task.id),
    ]:
        assert call(tag_name, operation, 200, item_id).parsed.id == item_id
    gone = importlib.import_module(f"{PACKAGE}.api.tasks.get_task").sync_detailed(task.id, client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, m.Error), gone.content
    assert gone.parsed.code == m.ErrorCode.NOT_FOUND


# --- TypeScript: openapi-typescript + openapi-fetch ------------------------------------------


def npx(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    path = shutil.which("npx")
    assert path, "Node.js and npm are required for the TypeScript client"
    command = [path, "--no-install", "--prefix", str(JS), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def typescript_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/js/openapi_client.ts beside the types openapi-typescript generates, type-checked by tsc
    (strict) and compiled to JavaScript: the directory to run it from."""
    for package in ("openapi-typescript", "openapi-fetch", "typescript"):
        assert (JS / "node_modules" / package).is_dir(), "run: npm ci --prefix tests/js"
    work = tmp_path_factory.mktemp("ts-client")
    (work / "node_modules").symlink_to(JS / "node_modules")  # openapi-fetch and its types, as installed
    (work / "package.json").write_text('{"type": "module"}\n')
    shutil.copy(JS / "openapi_client.ts", work / "client.ts")
    # By default openapi-typescript makes a property with a `default` required, as if every schema were
    # an answer (the server fills defaults in); request bodies have defaults for what may be left out.
    command = ["openapi-typescript", str(DOCUMENT), "--default-non-nullable", "false", "--output", "api.d.ts"]
    generated = npx(*command, cwd=work)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    tsconfig = {
        "compilerOptions": {
            "strict": True,
            "target": "es2022",
            "module": "nodenext",
            "moduleResolution": "nodenext",
            "outDir": "out",
            "lib": ["es2022", "dom"],
            "skipLibCheck": True,
        },
        "files": ["client.ts"],
    }
    (work / "tsconfig.json").write_text(json.dumps(tsconfig))
    checked = npx("tsc", "--noEmit", "-p", str(work), cwd=work)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compiled = npx("tsc", "-p", str(work), cwd=work)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return work


@pytest.mark.js
def test_the_typescript_client_type_checks_and_runs_every_operation(
    typescript_client: Path, server: ThreadedServer, acme: Company
) -> None:
    node = shutil.which("node")
    assert node, "Node.js is required for the TypeScript client"
    env = os.environ | {"API_URL": server.url, "API_TOKEN": acme.bob.token, "ADMIN_TOKEN": acme.admin.token}
    result = subprocess.run(
        [node, "out/client.js"], capture_output=True, text=True, timeout=120, cwd=typescript_client, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["called"]) == OPERATIONS, OPERATIONS - set(report["called"])
    # What it saw, as the server sent it: totals of lists, the run's output, the error's code.
    totals: dict[str, int] = report["totals"]
    assert set(totals) == {route.operation_id for route in ROUTES if route.paginated}, totals
    assert totals["list_tasks"] == 1 and totals["list_skill_versions"] == 2 and totals["list_skill_runs"] == 1
    assert "Grace" in report["run"]["output"] and report["run"]["status"] == "succeeded", report["run"]
    assert report["notFound"] == {"status": 404, "code": "not_found"}
    UUID(report["run"]["id"])


@pytest.mark.js
def test_the_typescript_types_are_not_any(typescript_client: Path) -> None:
    """tsc refuses a call the document does not allow: the types constrain (and the check can fail)."""
    wrong = (
        'import createClient from "openapi-fetch";\n'
        'import type { paths } from "./api.js";\n'
        'const api = createClient<paths>({ baseUrl: "http://127.0.0.1:1" });\n'
        'await api.POST("/api/tasks", { body: { priority: "high" } });\n'  # no title
        'await api.GET("/api/tasks", { params: { query: { status: "someday" } } });\n'  # not a TaskStatus
    )
    (typescript_client / "wrong.ts").write_text(wrong)
    options = ["--noEmit", "--strict", "--module", "nodenext", "--target", "es2022", "--skipLibCheck"]
    checked = npx("tsc", *options, "wrong.ts", cwd=typescript_client)
    assert checked.returncode != 0
    assert "wrong.ts(4," in checked.stdout and "Property 'title' is missing" in checked.stdout, checked.stdout
    assert "wrong.ts(5," in checked.stdout and "Type '\"someday\"' is not assignable" in checked.stdout, checked.stdout
