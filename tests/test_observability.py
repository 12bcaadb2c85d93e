"""Access logs (one line per request, human or JSON), request ids, /metrics, and the root redirect."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.db.engine import create_engine
from fluxopus.observability import MAX_OPERATION_NAMES, AccessLog, Metrics, formatter
from fluxopus.requestinfo import RequestInfo
from fluxopus.schema.compiled import stats as compiled_stats
from tests.utils.builders import Company, create_skill, create_task, gql
from tests.utils.server import ThreadedServer

ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def access_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """The access log lines written since the last call (the logger at INFO, as `fluxopus serve` sets it)."""
    logger = logging.getLogger("fluxopus.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    capsys.readouterr()

    def read() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if line]

    yield read
    logger.setLevel(level)


def client_for(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://test")


@pytest.fixture(scope="module")
def json_app(settings: Settings, engine: AsyncEngine) -> FastAPI:
    return create_app(settings.model_copy(update={"log_format": "json"}), engine=engine)


@pytest.fixture
async def json_client(json_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(json_app) as c:
        yield c


async def test_a_rest_request_logs_one_human_line_with_its_id_caller_status_and_duration(
    client: httpx.AsyncClient, acme: Company, access_lines: Any
) -> None:
    task = await create_task(client, acme.alice)
    access_lines()
    response = await client.get(f"/api/tasks/{task['id']}", headers={**acme.alice.headers, "X-Request-Id": "req-42.a"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42.a"
    [line] = access_lines()
    pattern = (
        rf"{ISO_UTC} INFO  GET /api/tasks/{task['id']} 200 \d+\.\dms id=req-42\.a"
        rf" user={acme.alice.id} company={acme.alice.company_id}"
    )
    assert re.fullmatch(pattern, line), line
    assert acme.alice.token not in line


async def test_a_request_without_a_sane_request_id_gets_one_generated(
    client: httpx.AsyncClient, acme: Company, access_lines: Any
) -> None:
    for given in (None, "x" * 129, "two words", "new\nline", ""):
        headers = {**acme.bob.headers, **({"X-Request-Id": given} if given is not None else {})}
        response = await client.get("/api/tasks", headers=headers)
        assert response.status_code == 200
        generated = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", generated), (given, generated)
        [line] = access_lines()
        assert f" id={generated} " in line
    first = (await client.get("/healthz")).headers["x-request-id"]
    assert (await client.get("/healthz")).headers["x-request-id"] != first


async def test_an_anonymous_request_logs_no_caller(client: httpx.AsyncClient, access_lines: Any) -> None:
    assert (await client.get("/api/tasks")).status_code == 401
    [line] = access_lines()
    assert re.fullmatch(rf"{ISO_UTC} INFO  GET /api/tasks 401 \d+\.\dms id=[0-9a-f]{{16}}", line), line


async def test_graphql_lines_name_the_operation_on_both_paths(
    client: httpx.AsyncClient, acme: Company, access_lines: Any
) -> None:
    named = {"query": "query MyTasks { tasks(limit: 3) { id title } }", "operationName": "MyTasks"}
    for _ in range(2):
        before = compiled_stats["fast"]
        response = await client.post("/graphql", json=named, headers=acme.alice.headers)
        assert response.status_code == 200 and "errors" not in response.json(), response.text
    assert compiled_stats["fast"] == before + 1, "the second was answered without Strawberry"
    lines = access_lines()
    assert len(lines) == 2
    for line in lines:  # Strawberry's answer, then the compiled fast path's
        assert re.fullmatch(
            rf"{ISO_UTC} INFO  POST /graphql query MyTasks 200 \d+\.\dms id=\S+ user={acme.alice.id}"
            rf" company={acme.alice.company_id}",
            line,
        ), line

    # No operationName in the request: the document's single operation names it, or "anonymous".
    unnamed_request = {"query": "query Mine { tasks(limit: 2) { id } }"}
    for _ in range(2):
        assert (await client.post("/graphql", json=unnamed_request, headers=acme.alice.headers)).status_code == 200
    await gql(client, acme.alice, "{ tags { id } }")
    await gql(client, acme.alice, 'mutation { createTag(input: {name: "obs"}) { id } }')
    lines = access_lines()
    assert [line.split()[4:6] for line in lines] == [
        ["query", "Mine"],
        ["query", "Mine"],
        ["query", "anonymous"],
        ["mutation", "anonymous"],
    ], lines


async def test_json_lines_carry_every_field_and_no_secret(
    json_client: httpx.AsyncClient, acme: Company, access_lines: Any
) -> None:
    secret_title = "variable-value-that-must-not-be-logged"
    response = await json_client.post(
        "/graphql",
        json={
            "query": "query Find($q: String!) { tasks(search: $q) { id } }",
            "operationName": "Find",
            "variables": {"q": secret_title},
        },
        headers={**acme.admin.headers, "X-Request-Id": "abc:123"},
    )
    assert response.status_code == 200, response.text
    [line] = access_lines()
    entry = json.loads(line)
    assert re.fullmatch(ISO_UTC, entry.pop("time"))
    assert isinstance(entry.pop("duration_ms"), float)
    assert entry == {
        "level": "INFO",
        "logger": "fluxopus.access",
        "message": "POST /graphql 200",
        "request_id": "abc:123",
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "user_id": acme.admin.id,
        "company_id": acme.admin.company_id,
        "operation": "Find",
        "operation_type": "query",
    }
    assert secret_title not in line and acme.admin.token not in line

    await json_client.get("/api/connections/callback/github?code=one-time-code&state=secret-state")
    [line] = access_lines()
    assert json.loads(line)["path"] == "/api/connections/callback/github"
    assert "one-time-code" not in line and "secret-state" not in line


@pytest.fixture(scope="module")
def auth_app(settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The built-in sign-in (/auth/v1), as the self-hosted default has it."""
    data_dir = tmp_path_factory.mktemp("observability")
    return create_app(
        settings.model_copy(update={"jwt_secret": None, "jwks_url": None, "data_dir": data_dir}), engine=engine
    )


async def test_a_failed_sign_in_is_counted_and_its_password_never_logged(auth_app: FastAPI, access_lines: Any) -> None:
    async with client_for(auth_app) as c:
        before = _sample(await _scrape(c), "fluxopus_sign_in_failures_total", reason="invalid_credentials")
        password = "Wrong-password-123-never-logged"
        for _ in range(2):
            response = await c.post(
                "/auth/v1/token?grant_type=password", json={"email": "nobody@example.com", "password": password}
            )
            assert response.status_code == 400, response.text
        after = _sample(await _scrape(c), "fluxopus_sign_in_failures_total", reason="invalid_credentials")
    assert after == before + 2
    lines = access_lines()
    assert any(" POST /auth/v1/token 400 " in line for line in lines), lines
    assert all(password not in line and "grant_type" not in line for line in lines)


async def _scrape(c: httpx.AsyncClient, **headers: str) -> str:
    response = await c.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {family.name for family in text_string_to_metric_families(response.text)}  # parses, or raises
    assert {"fluxopus_http_requests", "fluxopus_http_request_duration_seconds", "fluxopus_db_pool_in_use"} <= families
    return response.text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 when it is not there yet)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if metric == name and found == labels:
            return float(value)
    return 0.0


async def test_metrics_count_requests_by_route_template_and_operation(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    text = await _scrape(client)
    route = {"method": "GET", "route": "/api/tasks/{id}"}
    requests_before = _sample(text, "fluxopus_http_requests_total", **route, status="200")
    fast_bucket_before = _sample(text, "fluxopus_http_request_duration_seconds_bucket", **route, le="+Inf")
    op = {"operation": "Counted", "type": "query"}
    ops_before = _sample(text, "fluxopus_graphql_operations_total", **op)

    for _ in range(3):
        assert (await client.get(f"/api/tasks/{task['id']}", headers=acme.alice.headers)).status_code == 200
    for _ in range(2):  # Strawberry, then the compiled fast path
        body = {"query": "query Counted { tasks(limit: 1) { id } }", "operationName": "Counted"}
        assert (await client.post("/graphql", json=body, headers=acme.alice.headers)).status_code == 200
    assert (await client.get("/no/such/path/4711")).status_code == 404

    text = await _scrape(client)
    assert _sample(text, "fluxopus_http_requests_total", **route, status="200") == requests_before + 3
    assert _sample(text, "fluxopus_http_request_duration_seconds_bucket", **route, le="+Inf") == fast_bucket_before + 3
    assert _sample(text, "fluxopus_http_request_duration_seconds_count", **route) == fast_bucket_before + 3
    assert _sample(text, "fluxopus_graphql_operations_total", **op) == ops_before + 2
    assert _sample(text, "fluxopus_graphql_operation_duration_seconds_count", **op) == ops_before + 2
    assert _sample(text, "fluxopus_http_requests_total", method="GET", route="unmatched", status="404") >= 1
    # (Not "4711" alone: a latency sum may well contain those digits.)
    assert task["id"] not in text and "/no/such/path" not in text, "route templates, never raw paths"
    # Scraped, not counted per request: the pool, the indexing queue, runs and tokens.
    assert _sample(text, "fluxopus_db_pool_size", pool="requests") >= 1
    assert _sample(text, "fluxopus_db_pool_in_use", pool="requests") >= 0
    assert 'fluxopus_db_pool_waiting{pool="requests"}' in text
    assert _sample(text, "fluxopus_indexer_queue_depth") >= 0
    assert "fluxopus_indexer_oldest_pending_seconds " in text
    assert "fluxopus_tokens_used " in text and "fluxopus_tokens_reserved " in text
    assert _sample(text, "fluxopus_database_up") == 1


async def test_metrics_read_the_indexing_queue_runs_and_tokens_from_the_database(
    client: httpx.AsyncClient, acme: Company
) -> None:
    before = await _scrape(client)
    # A run (the echo provider here) is recorded and spends tokens; a new knowledge item is queued for
    # embedding (this app runs no indexer).
    skill = await create_skill(client, acme.alice)
    ran = await client.post(
        f"/api/skills/{skill['id']}/run",
        json={"input": {"name": "metrics"}},
        headers={**acme.alice.headers, "Accept": "application/json"},
    )
    assert ran.status_code == 200 and ran.json()["status"] == "succeeded", ran.text
    spent = ran.json()["input_tokens"] + ran.json()["output_tokens"]
    assert spent > 0
    queued = await client.post(
        "/api/knowledge", json={"title": "queued", "content": "metrics count me"}, headers=acme.alice.headers
    )
    assert queued.status_code == 201, queued.text
    after = await _scrape(client)
    # Counted over the whole database, whatever earlier tests left in it.
    assert (
        _sample(after, "fluxopus_skill_runs", status="succeeded")
        >= _sample(before, "fluxopus_skill_runs", status="succeeded") + 1
    )
    assert _sample(after, "fluxopus_tokens_used") >= _sample(before, "fluxopus_tokens_used") + spent
    assert _sample(after, "fluxopus_indexer_queue_depth") >= _sample(before, "fluxopus_indexer_queue_depth") + 1
    assert _sample(after, "fluxopus_indexer_oldest_pending_seconds") > 0


async def test_metrics_answer_private_networks_or_the_token_holder(
    app: FastAPI, settings: Settings, engine: AsyncEngine
) -> None:
    async with client_for(app, "10.1.2.3") as private, client_for(app, "93.184.216.34") as public:
        assert (await private.get("/metrics")).status_code == 200
        refused = await public.get("/metrics")
        assert refused.status_code == 403 and "FLUXOPUS_METRICS_TOKEN" in refused.json()["error"]
    guarded = create_app(
        settings.model_copy(update={"metrics_token": SecretStr("scrape-token-0123456789")}), engine=engine
    )
    async with client_for(guarded, "93.184.216.34") as public:
        assert (await public.get("/metrics")).status_code == 401
        assert (await public.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert "fluxopus_http_requests_total" in await _scrape(public, Authorization="Bearer scrape-token-0123456789")
    off = create_app(settings.model_copy(update={"metrics": False}), engine=engine)
    async with client_for(off) as c:
        assert (await c.get("/metrics")).status_code == 404


def test_operation_names_are_bounded_labels() -> None:
    metrics = Metrics()
    names = [f"Op{i}" for i in range(MAX_OPERATION_NAMES + 20)] + ["not a name", "x" * 100]
    for name in names:
        info = RequestInfo("id")
        info.operation, info.operation_type = name, "query"
        metrics.observe("POST", "/graphql", 200, 0.001, info)
    labels = {child[0] for child in metrics._graphql}
    assert len(labels) == MAX_OPERATION_NAMES + 1
    assert "other" in labels and "Op0" in labels and f"Op{MAX_OPERATION_NAMES}" not in labels


async def test_the_root_redirects_to_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/graphql"
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text.lower()


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


async def test_a_websocket_logs_one_line_when_it_ends(server: ThreadedServer, acme: Company, access_lines: Any) -> None:
    url = server.url.replace("http://", "ws://") + "/graphql"
    async with connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")], additional_headers={"X-Request-Id": "ws-1"}
    ) as ws:
        assert ws.response is not None and ws.response.headers["x-request-id"] == "ws-1"
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {acme.bob.token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "query WsTasks { tasks(limit: 1) { id } }"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        assert json.loads(await ws.recv())["type"] == "next"
        assert json.loads(await ws.recv())["type"] == "complete"
        assert access_lines() == [], "nothing until the connection ends"
    lines: list[str] = []
    for _ in range(100):  # the server thread writes the line as it sees the close
        lines += access_lines()
        if lines:
            break
        await asyncio.sleep(0.05)
    [line] = lines
    assert re.fullmatch(
        rf"{ISO_UTC} INFO  WEBSOCKET /graphql query WsTasks 101 \d+\.\dms id=ws-1 user={acme.bob.id}"
        rf" company={acme.bob.company_id}",
        line,
    ), line
    assert acme.bob.token not in line


async def test_no_access_lines_below_the_log_level(client: httpx.AsyncClient, access_lines: Any) -> None:
    logging.getLogger("fluxopus.access").setLevel(logging.WARNING)  # FLUXOPUS_LOG_LEVEL=warning
    assert (await client.get("/healthz")).status_code == 200
    assert access_lines() == []


def test_other_log_lines_in_both_formats(settings: Settings) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("fluxopus.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    record.created = 1764838124.5
    human = formatter(settings).format(record)
    assert human.startswith("2025-12-04T08:48:44.500Z ERROR fluxopus.x: failed here\nTraceback"), human
    entry = json.loads(formatter(settings.model_copy(update={"log_format": "json"})).format(record))
    assert entry.pop("exception").endswith("ValueError: boom\n")
    assert entry == {
        "time": "2025-12-04T08:48:44.500Z",
        "level": "ERROR",
        "logger": "fluxopus.x",
        "message": "failed here",
    }


async def test_metrics_still_answer_when_the_database_does_not(settings: Settings) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{port}/none", settings)
    try:
        async with client_for(create_app(settings, engine=engine)) as c:
            assert (await c.get("/no-such-page")).status_code == 404
            text = await _scrape(c)
    finally:
        await engine.dispose()
    assert _sample(text, "fluxopus_database_up") == 0
    assert _sample(text, "fluxopus_http_requests_total", method="GET", route="unmatched", status="404") == 1


@pytest.mark.parametrize(("raised", "status"), [(RuntimeError("bug"), 500), (asyncio.CancelledError(), 499)])
async def test_a_request_that_never_answered_is_logged_and_counted(
    raised: BaseException, status: int, access_lines: Any
) -> None:
    """An app failing before its answer (500, what ServerErrorMiddleware then sends), or a request
    cancelled because its client left (499)."""

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise raised

    metrics = Metrics()
    logged = AccessLog(failing, metrics=metrics, json_lines=False)
    scope = {"type": "http", "method": "GET", "path": "/api/tasks", "headers": [], "app": None}
    with pytest.raises(type(raised)):
        await logged(scope, None, None)
    [line] = access_lines()
    assert f" GET /api/tasks {status} " in line
    labels = {"method": "GET", "route": "unmatched", "status": str(status)}
    assert metrics.registry.get_sample_value("fluxopus_http_requests_total", labels) == 1


async def test_a_graphql_sse_subscription_logs_one_line_when_it_ends(
    client: httpx.AsyncClient, acme: Company, access_lines: Any
) -> None:
    skill = await create_skill(client, acme.alice)
    access_lines()
    query = "subscription RunIt($id: ID!, $input: JSON!) { runSkill(id: $id, input: $input) { __typename } }"
    response = await client.post(
        "/graphql",
        json={"query": query, "operationName": "RunIt", "variables": {"id": skill["id"], "input": {"name": "x"}}},
        headers={**acme.alice.headers, "Accept": "text/event-stream"},
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "event: complete" in response.text, response.text
    [line] = access_lines()
    assert re.fullmatch(
        rf"{ISO_UTC} INFO  POST /graphql subscription RunIt 200 \d+\.\dms id=[0-9a-f]{{16}} user={acme.alice.id}"
        rf" company={acme.alice.company_id}",
        line,
    ), line
