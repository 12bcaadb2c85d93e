"""ASGI app factory: FastAPI + GraphQL router + generated REST router."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Scope

from fluxopus.ai.indexer import Indexer
from fluxopus.ai.services import ai_services
from fluxopus.config import Settings
from fluxopus.db.engine import create_engine, create_service_engine
from fluxopus.db.listen import listen_dsn
from fluxopus.db.session import ping
from fluxopus.errors import DomainError
from fluxopus.gotrue import JSON_BODY_LIMIT as GOTRUE_BODY_LIMIT
from fluxopus.gotrue import gotrue_router
from fluxopus.http_cors import Cors
from fluxopus.http_limits import BodyLimit
from fluxopus.integrations.oauth import OAuth
from fluxopus.observability import AccessLog, Metrics, metrics_endpoint
from fluxopus.resolvers import live
from fluxopus.resolvers.live_hub import LiveHub
from fluxopus.rest_compat.errors import CatchAll, ErrorCode, domain_exception_handler, http_exception_handler
from fluxopus.rest_compat.generate import RestFirst, rest_routes
from fluxopus.rest_compat.openapi import build_openapi
from fluxopus.runtime import Runtime, build_mail, build_verifier
from fluxopus.schema.compiled import Statements
from fluxopus.schema.router import CompiledFirst, graphql_router


@asynccontextmanager
async def _indexing(runtime: Runtime) -> AsyncIterator[None]:
    """The knowledge embedding worker, for as long as the app serves (FLUXOPUS_INDEXER)."""
    if not runtime.settings.indexer or runtime.engine is None:
        yield
        return
    indexer = Indexer(runtime.engine, runtime.ai.embedder, token_budget=runtime.ai.token_budget)
    indexer.start()
    try:
        yield
    finally:
        await indexer.stop()


@asynccontextmanager
async def _live(runtime: Runtime) -> AsyncIterator[None]:
    """The process' live events hub (FLUXOPUS_LIVE): one LISTEN connection, fanning changes out."""
    settings = runtime.settings
    if not settings.live or runtime.engine is None or runtime.service_engine is None:
        yield
        return
    hub = LiveHub(
        runtime.service_engine,
        listen_dsn(runtime.engine),
        live.KINDS,
        queue_limit=settings.live_queue,
        retention=dt.timedelta(seconds=settings.live_retention),
    )
    await hub.start()
    runtime.live = hub
    try:
        yield
    finally:
        runtime.live = None
        await hub.stop()


@asynccontextmanager
async def _background(runtime: Runtime) -> AsyncIterator[None]:
    async with _indexing(runtime), _live(runtime):
        yield


def _body_limits(settings: Settings) -> Callable[[Scope], int]:
    def limit_for(scope: Scope) -> int:
        path, method = scope["path"], scope["method"]
        if path.startswith("/auth/v1/"):
            return GOTRUE_BODY_LIMIT  # credentials and metadata
        # Where a knowledge item's content (1 MB of UTF-8, up to 6 MB as JSON escapes) may travel.
        if path.rstrip("/") == "/graphql" and any(name == b"authorization" for name, _ in scope["headers"]):
            return settings.max_upload_bytes
        if method in ("POST", "PATCH") and (path == "/api/knowledge" or path.startswith("/api/knowledge/")):
            return settings.max_upload_bytes
        return settings.max_body_bytes

    return limit_for


def create_app(settings: Settings, *, engine: AsyncEngine | None = None, database_url: str | None = None) -> FastAPI:
    """`engine` (tests) is used as given (with a service pool of its own to the same database);
    otherwise both are created from `database_url` for the app's lifetime."""
    runtime = Runtime(
        settings=settings,
        verifier=build_verifier(settings),
        ai=ai_services(settings),
        oauth=OAuth(settings),
        mail=build_mail(settings),
        engine=engine,
        service_engine=(
            create_service_engine(engine.url.render_as_string(hide_password=False), settings) if engine else None
        ),
    )
    url = database_url or settings.database_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if runtime.engine is not None:
                async with _background(runtime):
                    yield
                return
            if url is None:
                raise RuntimeError("no database: set DATABASE_URL or start the app with `fluxopus serve`")
            runtime.engine = create_engine(url, settings)
            runtime.service_engine = create_service_engine(url, settings)
            try:
                async with _background(runtime):
                    yield
            finally:
                await runtime.engine.dispose()
                await runtime.service_engine.dispose()
                runtime.engine = runtime.service_engine = None
        finally:
            # Pooled provider connections belong to this event loop; an app served again (tests
            # do that) gets fresh clients.
            await runtime.ai.aclose()
            runtime.ai = ai_services(settings)

    app = FastAPI(
        title="Fluxopus",
        lifespan=lifespan,
        openapi_url=None,  # the static document below is generated from the route table
        docs_url=None,
        redoc_url=None,
        # Our own metrics and logs (observability.py) describe requests; FastAPI's native OpenTelemetry
        # would otherwise ask the global providers whether it is wanted on every request (5 µs).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(DomainError, domain_exception_handler)
    rest = rest_routes("/api")
    app.add_middleware(RestFirst, routes=rest, prefix="/api/")  # added first: innermost, past the rest
    statements = Statements() if settings.graphql_compiled_reads else None
    graphql = graphql_router(settings, statements)
    if statements is not None:
        # Added first, so innermost: behind the body limits, CORS and the error handling below.
        app.add_middleware(
            CompiledFirst, statements=statements, max_json_depth=settings.max_json_depth, encode=graphql.encode_json
        )
    app.add_middleware(CatchAll)
    app.add_middleware(BodyLimit, limit_for=_body_limits(settings), message_limit=settings.max_ws_message_bytes)
    # Always, so preflights are answered (allowed or refused) whatever FLUXOPUS_CORS_ORIGINS says.
    app.add_middleware(Cors, origins=settings.cors_origins)
    openapi_document = build_openapi()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        if runtime.engine is not None and await ping(runtime.engine):
            return JSONResponse({"status": "ok"})
        return JSONResponse(
            {"status": "unavailable", "error": "Database is not answering", "code": ErrorCode.unavailable.value},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> Response:
        return JSONResponse(openapi_document)

    if settings.uses_dev_signing_key:  # an external JWT secret or JWKS means sign-in happens elsewhere
        app.include_router(gotrue_router(), prefix="/auth/v1")
    app.router.routes.extend(rest)  # also here: OpenAPI's and the access log's route table, and 405s
    app.include_router(graphql, prefix="/graphql")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/graphql", status_code=307)  # GraphiQL, for whoever opens the server's URL

    metrics = Metrics()
    if settings.metrics:
        app.add_route("/metrics", metrics_endpoint(settings, metrics), methods=["GET"], include_in_schema=False)
    # Added last, so outermost: it times, counts and logs everything, CORS refusals and errors included.
    app.add_middleware(AccessLog, metrics=metrics, json_lines=settings.log_format == "json")
    return app
