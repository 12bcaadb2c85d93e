"""Platform guarantees: error shape, the generated OpenAPI document, the route table, layering,
RLS in PostgreSQL itself, health and migrations."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import OpenAPIV30SpecValidator, validate
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.routing import Match

import fluxopus
import fluxopus.schema
from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.db.engine import create_engine, operator_engine, sqlalchemy_url
from fluxopus.db.migrate import migrate, migration_files
from fluxopus.db.session import RlsTransaction, _kept_of
from fluxopus.models.common import Deleted
from fluxopus.resolvers.context import Context
from fluxopus.rest_compat.generate import rest_routes
from fluxopus.rest_compat.openapi import build_openapi
from fluxopus.rest_compat.table import ROUTES, Route
from fluxopus.schema.root import schema
from tests.utils.builders import Company, User, create_tag, create_task, error_codes, gql
from tests.utils.http import assert_error

PACKAGE_DIR = Path(fluxopus.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# --- errors -------------------------------------------------------------------------------


async def test_unknown_route_is_404_error(client: httpx.AsyncClient, acme: Company) -> None:
    assert_error(await client.get("/api/nope", headers=acme.alice.headers), 404)
    assert_error(await client.get("/api/nope"), 404)
    assert_error(await client.get("/nope/at/all"), 404)


async def test_wrong_method_is_405_error(client: httpx.AsyncClient, acme: Company) -> None:
    listing = await client.put("/api/tasks", json={"title": "x"}, headers=acme.alice.headers)
    assert_error(listing, 405)
    task_path = "/api/tasks/00000000-0000-4000-8000-000000000000"
    item = await client.put(task_path, json={"title": "x"}, headers=acme.alice.headers)
    assert_error(item, 405)
    # Allow names every method the path serves, as the route table lists them.
    assert sorted(m.strip() for m in listing.headers["allow"].split(",")) == ["GET", "POST"]
    assert sorted(m.strip() for m in item.headers["allow"].split(",")) == ["DELETE", "GET", "PATCH"]


def test_openapi_marks_nullable_only_what_accepts_null() -> None:
    schemas = build_openapi()["components"]["schemas"]
    update = schemas["TaskUpdate"]["properties"]
    assert not update["title"].get("nullable") and not update["status"].get("nullable")
    assert update["description"]["nullable"] is True and update["assignee_id"]["nullable"] is True
    assert not schemas["TagUpdate"]["properties"]["name"].get("nullable")


async def test_malformed_json_is_400_error_and_changes_nothing(client: httpx.AsyncClient, acme: Company) -> None:
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    for body in (b'{"title": "half', b"not json at all", b'{"title": "x",}'):
        assert_error(await client.post("/api/tasks", content=body, headers=headers), 400)
    assert_error(await client.post("/api/tags", content=b"{", headers=headers), 400)
    listed = await client.get("/api/tasks", headers=acme.alice.headers)
    assert listed.status_code == 200
    assert listed.json() == []
    assert listed.headers["X-Total-Count"] == "0"


@pytest.mark.parametrize("path", ["/api/tasks", "/api/tags"])
async def test_offset_beyond_any_list_is_400_not_a_crash(client: httpx.AsyncClient, acme: Company, path: str) -> None:
    response = await client.get(path, params={"offset": str(2**63)}, headers=acme.alice.headers)
    assert_error(response, 400)
    assert "offset" in response.json()["error"]


async def test_bad_uuid_is_400_error(client: httpx.AsyncClient, acme: Company) -> None:
    assert_error(await client.get("/api/tasks/not-a-uuid", headers=acme.alice.headers), 400)


SECRET_TEXT = "kaboom: secret internals 0xDEADBEEF"


async def _explode(ctx: Context) -> Deleted:
    raise RuntimeError(SECRET_TEXT)


async def test_unexpected_exception_in_generated_route_is_500_without_details(
    settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    app = create_app(settings, engine=engine)
    boom = Route("GET", "/explode", _explode, "Always fails", "Boom", Deleted)
    app.router.routes.extend(rest_routes("/boom", [boom]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom/explode", headers=acme.alice.headers)
    message = assert_error(response, 500)
    assert message == "Internal server error"
    assert SECRET_TEXT not in response.text
    assert "RuntimeError" not in response.text


async def test_unexpected_exception_outside_the_route_table_is_500_without_details(
    settings: Settings, engine: AsyncEngine
) -> None:
    """The app-wide catch-all covers hand-added routes too."""
    app = create_app(settings, engine=engine)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError(SECRET_TEXT)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/crash")
    assert assert_error(response, 500) == "Internal server error"
    assert SECRET_TEXT not in response.text


async def test_exhausted_pool_is_503_with_retry_after(settings: Settings, database_url: str, acme: Company) -> None:
    """A saturated server says so and when to come back, on REST and GraphQL, instead of a 500."""
    busy = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.2})
    engine = create_engine(database_url, busy)
    try:
        transport = httpx.ASGITransport(app=create_app(busy, engine=engine))
        holder = RlsTransaction(engine, _claims(acme.bob))
        await holder.execute(text("select 1"))  # a request in progress holds the only connection
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.get("/api/tasks", headers=acme.alice.headers)
                assert assert_error(response, 503) == "The server is busy; retry in a few seconds"
                assert response.headers["Retry-After"] == "2"
                result = await gql(client, acme.alice, "{ tasks { id } }")
                assert error_codes(result) == ["UNAVAILABLE"]
        finally:
            await holder.rollback()
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/api/tasks", headers=acme.alice.headers)).status_code == 200
    finally:
        await engine.dispose()


# --- OpenAPI ------------------------------------------------------------------------------


def _json_roundtrip(document: Any) -> Any:
    return json.loads(json.dumps(document))


async def test_served_openapi_equals_generated(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == _json_roundtrip(build_openapi())


def test_committed_openapi_json_matches_the_code() -> None:
    committed_path = REPO_ROOT / "openapi.json"
    assert committed_path.is_file(), "openapi.json is missing at the repo root: run `fluxopus openapi > openapi.json`"
    committed = json.loads(committed_path.read_text(encoding="utf-8"))
    assert committed == _json_roundtrip(build_openapi()), (
        "the committed openapi.json differs from what the code generates: run `fluxopus openapi > openapi.json`"
    )


def test_committed_schema_graphql_matches_the_code() -> None:
    committed_path = REPO_ROOT / "schema.graphql"
    assert committed_path.is_file(), "schema.graphql is missing: run `fluxopus graphql-schema > schema.graphql`"
    assert committed_path.read_text(encoding="utf-8") == schema.as_str() + "\n", (
        "the committed schema.graphql differs from the code's schema: run `fluxopus graphql-schema > schema.graphql`"
    )


def test_openapi_is_valid_3_0_3() -> None:
    document = build_openapi()
    assert document["openapi"] == "3.0.3"
    validate(document, cls=OpenAPIV30SpecValidator)
    validate(_json_roundtrip(document), cls=OpenAPIV30SpecValidator)


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        parts = node["$ref"].removeprefix("#/").split("/")
        target: Any = document
        for part in parts:
            target = target[part]
        node = target
    return node


def test_every_operation_requires_bearer_and_documents_errors() -> None:
    document = build_openapi()
    schemes = document["components"]["securitySchemes"]
    bearer_names = [n for n, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"]
    assert bearer_names, schemes
    assert any(set(req) & set(bearer_names) for req in document["security"]), document["security"]
    error_schema = _resolve(document, {"$ref": "#/components/schemas/Error"})
    assert error_schema["required"] == ["error", "code"]
    public = {(r.method.lower(), "/api" + r.path) for r in ROUTES if r.public}
    assert public == {("get", "/api/connections/callback/{provider}")}  # the OAuth callback, and only it
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            operations += 1
            where = f"{method.upper()} {path}"
            if (method, path) in public:
                assert operation["security"] == [] and "401" not in operation["responses"], where
            # A per-operation `security` would override the global one; it may only narrow to bearer.
            elif "security" in operation:
                assert operation["security"], f"{where} opts out of authentication"
                assert all(set(req) & set(bearer_names) for req in operation["security"]), where
            for status in ("400", "401", "404", "500"):
                if status == "401" and (method, path) in public:
                    continue
                assert status in operation["responses"], f"{where} does not document {status}"
                response = _resolve(document, operation["responses"][status])
                schema = response["content"]["application/json"]["schema"]
                assert _resolve(document, schema) == error_schema, f"{where} {status} is not an Error"
    assert operations == len(ROUTES)


def test_openapi_paths_are_exactly_the_route_table() -> None:
    document = build_openapi()
    expected: dict[str, set[str]] = {}
    for route in ROUTES:
        expected.setdefault("/api" + route.path, set()).add(route.method.lower())
    documented = {path: {m for m in item if m in HTTP_METHODS} for path, item in document["paths"].items()}
    assert documented == expected
    for route in ROUTES:
        operation = document["paths"]["/api" + route.path][route.method.lower()]
        assert str(route.status) in operation["responses"], (route.method, route.path)


# --- the route table ------------------------------------------------------------------------


def _schema_sources() -> dict[str, str]:
    sources = {}
    for info in pkgutil.walk_packages(fluxopus.schema.__path__, prefix="fluxopus.schema."):
        module = importlib.import_module(info.name)
        sources[info.name] = inspect.getsource(module)
    return sources


def test_every_route_calls_a_resolver_that_graphql_calls_too() -> None:
    sources = _schema_sources()
    assert sources, "no modules found in fluxopus/schema"
    for route in ROUTES:
        module = route.resolver.__module__
        if route.public:
            continue  # a browser's landing point in a protocol (the OAuth callback): nothing to query
        assert module.startswith("fluxopus.resolvers."), f"{route.method} {route.path}: resolver lives in {module}"
        resolver_module = importlib.import_module(module)
        assert getattr(resolver_module, route.resolver.__name__) is route.resolver
        call = f"{module.rsplit('.', 1)[1]}.{route.resolver.__name__}("
        users = [name for name, source in sources.items() if call in source]
        assert users, f"{route.method} {route.path}: no GraphQL field calls {call}...)"


def _matches(app: FastAPI, method: str, path: str) -> Match:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    best = Match.NONE
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return match
        if match == Match.PARTIAL:
            best = match
    return best


def test_every_route_is_served_under_api(app: FastAPI) -> None:
    for route in ROUTES:
        where = f"{route.method} {route.path}"
        sample = {name: f"{name}-value" for name in route.path_params}
        concrete = "/api" + route.path.format(**sample)
        assert _matches(app, route.method, concrete) == Match.FULL, where
        # The route exists only under /api.
        assert _matches(app, route.method, route.path.format(**sample)) == Match.NONE, where


async def test_every_route_answers_with_the_error_shape_without_a_token(client: httpx.AsyncClient) -> None:
    """Each generated route exists (not 404/405) and requires a bearer token, but the public OAuth callback."""
    sample_id = "00000000-0000-4000-8000-000000000000"
    for route in ROUTES:
        if route.public:
            continue
        path = "/api" + route.path
        for name in route.path_params:
            path = path.replace("{" + name + "}", sample_id)
        response = await client.request(route.method, path, json={} if route.body else None)
        assert_error(response, 401)
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")


# --- layering -----------------------------------------------------------------------------


def _imported_modules(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            modules.add(prefix)
            modules |= {f"{prefix}.{alias.name}" for alias in node.names}
    return modules


def test_resolvers_never_import_schema_or_rest_compat() -> None:
    files = sorted((PACKAGE_DIR / "resolvers").rglob("*.py"))
    assert files
    offenders = []
    for path in files:
        for module in _imported_modules(path, "fluxopus.resolvers"):
            if module.split(".")[:2] in (["fluxopus", "schema"], ["fluxopus", "rest_compat"]):
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert offenders == []


def test_import_parser_sees_forbidden_imports() -> None:
    """Guards the layering test itself: schema/ does import resolvers, and is seen doing so."""
    seen = _imported_modules(PACKAGE_DIR / "schema" / "tasks.py", "fluxopus.schema")
    assert "fluxopus.resolvers.tasks" in seen


CONNECTION_OPENERS = ("engine.connect(", "asyncpg.connect(", "asyncpg.create_pool(", ".raw_connection(")


def test_only_db_opens_database_connections() -> None:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    db_dir = PACKAGE_DIR / "db"
    offenders = []
    found_in_db = set()
    for path in files:
        source = path.read_text(encoding="utf-8")
        for opener in CONNECTION_OPENERS:
            if opener in source:
                if db_dir in path.parents:
                    found_in_db.add(opener)
                else:
                    offenders.append(f"{path.relative_to(REPO_ROOT)} uses {opener}")
    assert offenders == []
    assert found_in_db, "fluxopus/db opens no connection: the scan is looking for the wrong thing"


# --- RLS in PostgreSQL ----------------------------------------------------------------------


def _claims(user: User) -> dict[str, Any]:
    return {"sub": user.id, "role": "authenticated", "aud": "authenticated", "email": user.email}


async def _ids_seen_by(engine: AsyncEngine, user: User, table: str) -> set[str]:
    tx = RlsTransaction(engine, _claims(user))
    try:
        rows = (await tx.execute(text(f"select id from {table}"))).scalars().all()  # noqa: S608 - fixed names
    finally:
        await tx.rollback()
    return {str(r) for r in rows}


async def test_unfiltered_select_on_tasks_returns_only_permitted_rows(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    alice_own = await create_task(client, acme.alice)
    bob_for_alice = await create_task(client, acme.bob, assignee_id=acme.alice.id)
    bob_own = await create_task(client, acme.bob)
    admin_own = await create_task(client, acme.admin)
    other_company = await create_task(client, globex.alice)

    assert await _ids_seen_by(engine, acme.alice, "tasks") == {alice_own["id"], bob_for_alice["id"]}
    assert await _ids_seen_by(engine, acme.bob, "tasks") == {bob_for_alice["id"], bob_own["id"]}
    assert await _ids_seen_by(engine, acme.admin, "tasks") == {
        alice_own["id"],
        bob_for_alice["id"],
        bob_own["id"],
        admin_own["id"],
    }
    assert await _ids_seen_by(engine, globex.admin, "tasks") == {other_company["id"]}


async def test_unfiltered_select_on_tags_returns_the_company_tags(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    by_alice = await create_tag(client, acme.alice)
    by_admin = await create_tag(client, acme.admin)
    other_company = await create_tag(client, globex.bob)

    company_tags = {by_alice["id"], by_admin["id"]}
    for user in (acme.alice, acme.bob, acme.admin):
        assert await _ids_seen_by(engine, user, "tags") == company_tags
    assert await _ids_seen_by(engine, globex.alice, "tags") == {other_company["id"]}


async def test_unknown_user_sees_nothing(client: httpx.AsyncClient, engine: AsyncEngine, acme: Company) -> None:
    await create_task(client, acme.alice)
    await create_tag(client, acme.alice)
    stranger = User("00000000-0000-4000-8000-00000000beef", "nobody@example.com", "", "", "member", "")
    assert await _ids_seen_by(engine, stranger, "tasks") == set()
    assert await _ids_seen_by(engine, stranger, "tags") == set()


@pytest.mark.parametrize("end", ["commit", "rollback", "failed"])
async def test_claims_and_role_do_not_leak_to_the_next_user_of_a_connection(
    database_url: str, acme: Company, end: str
) -> None:
    # One kept connection, so the one lent afterwards is the one the RLS transaction used.
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    try:
        tx = RlsTransaction(engine, _claims(acme.alice))
        probe = text("select pg_backend_pid(), current_user, current_setting('request.jwt.claims', true)")
        backend, role, claims = list((await tx.execute(probe)).one())
        if end == "failed":  # a statement fails: the transaction is aborted, then rolled back
            with pytest.raises(DBAPIError):
                await tx.execute(text("select 1 / 0"))
        await (tx.commit() if end == "commit" else tx.rollback())
        assert role == "authenticated"
        assert json.loads(claims)["sub"] == acme.alice.id

        # What the next transaction finds before its own BEGIN: the connection as the kept pool lends it.
        kept = _kept_of(engine)
        lease = await kept.take()
        try:
            backend_after, role_after, claims_after = await lease.driver.fetchrow(str(probe))
        finally:
            await kept.give_back(lease)
        assert backend_after == backend, "the pool handed out a different connection; the check proves nothing"
        assert role_after != "authenticated"
        assert claims_after in (None, "")
    finally:
        await engine.dispose()


async def test_a_pooled_connection_the_database_dropped_is_replaced_not_an_error(
    settings: Settings, database_url: str, acme: Company
) -> None:
    """The pool does not ping before each checkout (a round trip per request): the transaction's
    BEGIN finds a dead connection and opens on a fresh one, so a restart costs no failed request."""
    engine = create_engine(database_url, settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    pid = text("select pg_backend_pid()")
    try:
        tx = RlsTransaction(engine, _claims(acme.alice))
        backend = (await tx.execute(pid)).scalar_one()
        await tx.commit()
        async with operator_engine(database_url) as operator, operator.connect() as conn:
            assert (await conn.execute(text("select pg_terminate_backend(:pid)"), {"pid": backend})).scalar_one()
        transport = httpx.ASGITransport(app=create_app(settings, engine=engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/api/tasks", headers=acme.alice.headers)
        assert response.status_code == 200, response.text
        tx = RlsTransaction(engine, _claims(acme.alice))
        assert (await tx.execute(pid)).scalar_one() != backend
        await tx.rollback()
    finally:
        await engine.dispose()


async def test_every_public_table_has_row_level_security(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select c.relname, c.relrowsecurity from pg_class c"
                    " join pg_namespace n on n.oid = c.relnamespace"
                    " where n.nspname = 'public' and c.relkind in ('r', 'p')"
                )
            )
        ).all()
    tables = {name: rls for name, rls in rows}
    assert {"companies", "members", "tasks", "time_logs", "tags"} <= set(tables)
    without = sorted(name for name, rls in tables.items() if not rls and name != "fluxopus_migrations")
    assert without == []


# --- health and migrations ------------------------------------------------------------------


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_503_when_the_database_does_not_answer(settings: Settings) -> None:
    dead = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/postgres")
    try:
        app = create_app(settings, engine=dead)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/healthz")
    finally:
        await dead.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and body.get("status") != "ok"
    assert body.get("code") == "unavailable", body
    assert "Traceback" not in response.text


async def test_cors_lets_configured_origins_read_the_api(
    settings: Settings, engine: AsyncEngine, acme: Company
) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["http://app.test"]}), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        preflight = await client.options(
            "/api/tasks",
            headers={
                "Origin": "http://app.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://app.test"
        listed = await client.get("/api/tasks", headers={"Origin": "http://app.test", **acme.alice.headers})
        assert listed.headers["access-control-allow-origin"] == "http://app.test"
        assert "x-total-count" in listed.headers["access-control-expose-headers"].lower()
        assert "preference-applied" in listed.headers["access-control-expose-headers"].lower()
        other = await client.get("/api/tasks", headers={"Origin": "http://evil.test", **acme.alice.headers})
        assert "access-control-allow-origin" not in other.headers


async def test_migrations_are_idempotent(database_url: str, engine: AsyncEngine) -> None:
    assert await migrate(database_url) == []
    assert await migrate(database_url) == []
    async with engine.connect() as conn:
        recorded = (await conn.execute(text("select name from fluxopus_migrations order by name"))).scalars().all()
    assert list(recorded) == [name for name, _ in migration_files()]


def test_every_package_folder_is_a_regular_package() -> None:
    """setuptools' find_packages skips a folder without __init__.py, and a wheel then ships without it
    (an editable install hides that)."""
    folders = [d for d in PACKAGE_DIR.rglob("*") if d.is_dir() and any(d.glob("*.py"))]
    assert [str(d) for d in folders if not (d / "__init__.py").exists()] == []
    assert len(folders) >= 8  # ai, auth, db, integrations, models, resolvers, rest_compat, schema


async def test_a_transaction_cancelled_while_it_opens_leaves_nothing_open_in_the_pool(
    database_url: str, acme: Company
) -> None:
    """A failing non-null field ends a GraphQL operation, and graphql-core cancels the fields still
    running — one may be in the middle of BEGIN, whose statement PostgreSQL then cancels. That
    connection must not go back to the pool inside a (failed) transaction, or the next request on it
    finds "current transaction is aborted". Cancelled at many points of opening, on a pool of one."""
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    probe = text("select current_setting('request.jwt.claims', true)")
    try:
        for attempt in range(150):
            tx = RlsTransaction(engine, _claims(acme.alice))
            opening = asyncio.create_task(tx.execute(probe))
            await asyncio.sleep(attempt % 15 * 0.0002)
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            await tx.rollback()  # what the edge does next
            async with engine.connect() as pooled:  # the pool's one connection, as the next request gets it
                driver = (await pooled.get_raw_connection()).driver_connection
                assert driver is not None and not driver.is_in_transaction(), attempt
            after = RlsTransaction(engine, _claims(acme.bob))
            claims = (await after.execute(probe)).scalar_one()
            await after.rollback()
            assert json.loads(claims)["sub"] == acme.bob.id, attempt
    finally:
        await engine.dispose()


async def test_connections_go_to_requests_in_the_order_they_asked(
    settings: Settings, database_url: str, acme: Company
) -> None:
    """SQLAlchemy's async pool gives a returned connection to whoever asks next, before those already
    waiting; the kept pool lends first come, first served (db/session._Kept). A request asking at the very moment
    a connection comes back waits behind the three that were waiting for it."""
    engine = create_engine(database_url, settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    order: list[str] = []

    async def request(name: str) -> None:
        tx = RlsTransaction(engine, _claims(acme.alice))
        await tx.execute(text("select 1"))
        order.append(name)
        await tx.commit()

    try:
        holder = RlsTransaction(engine, _claims(acme.alice))
        await holder.execute(text("select 1"))
        waiting = []
        for i in range(3):
            waiting.append(asyncio.create_task(request(f"waited {i}")))
            await asyncio.sleep(0.02)  # each asks in turn and waits
        await holder.commit()  # the connection goes back, and at once (same task, no pause):
        await request("came last")
        await asyncio.gather(*waiting)
        assert order == ["waited 0", "waited 1", "waited 2", "came last"]
    finally:
        await engine.dispose()


async def test_a_turn_waited_too_long_is_503_and_an_abandoned_one_is_passed_on(
    settings: Settings, database_url: str, acme: Company
) -> None:
    busy = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.2})
    engine = create_engine(database_url, busy)
    try:
        holder = RlsTransaction(engine, _claims(acme.alice))
        await holder.execute(text("select 1"))
        transport = httpx.ASGITransport(app=create_app(busy, engine=engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/api/tasks", headers=acme.alice.headers)
            assert assert_error(response, 503) == "The server is busy; retry in a few seconds"
            # A waiter that gives up (a client gone) leaves no turn behind, taken or lost.
            gone = asyncio.create_task(RlsTransaction(engine, _claims(acme.alice)).execute(text("select 1")))
            await asyncio.sleep(0.05)
            gone.cancel()
            await holder.commit()
            for _ in range(3):
                assert (await client.get("/api/tasks", headers=acme.alice.headers)).status_code == 200
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        await engine.dispose()
