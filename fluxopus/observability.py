"""Access logs and /metrics.

`AccessLog` is a pure ASGI middleware, the outermost of the app: one log line per HTTP request (per
WebSocket connection, when it ends) with its request id, caller, route or GraphQL operation, status
and duration, and the same numbers into Prometheus metrics. What only code deep inside the request
learns (who the token names, which operation it is) comes through `fluxopus.requestinfo`.

Log lines are human by default, JSON lines with FLUXOPUS_LOG_FORMAT=json (`configure_logging`).
Tokens, passwords, query strings and GraphQL variables are never logged: only the path is.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import secrets
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxopus.config import Settings
from fluxopus.db.session import pool_stats
from fluxopus.db.stats import database_stats
from fluxopus.requestinfo import RequestInfo, current
from fluxopus.runtime import Runtime

access_log = logging.getLogger("fluxopus.access")
log = logging.getLogger(__name__)
DATABASE_STATS_TIMEOUT = 5.0  # seconds; a scrape must not hang on a stuck database

# An incoming X-Request-Id is kept when it is short and plain (it is written into every log line);
# anything else is replaced by one of ours.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_PATH = 512
MAX_OPERATION_NAMES = 200  # distinct GraphQL operation names kept as labels; later ones are "other"
_OPERATION_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (one process may build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fluxopus_http_requests",
            "HTTP requests (and WebSocket connections) answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "fluxopus_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template (streams: until they end)",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.operations = Counter(
            "fluxopus_graphql_operations",
            "GraphQL operations over HTTP, by operation name",
            ["operation", "type"],
            registry=r,
        )
        self.operation_latency = Histogram(
            "fluxopus_graphql_operation_duration_seconds",
            "Time to answer a GraphQL operation over HTTP, by operation name",
            ["operation", "type"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.sign_in_failures = Counter(
            "fluxopus_sign_in_failures",
            "Password sign-ins refused (/auth/v1/token), by GoTrue error code",
            ["reason"],
            registry=r,
        )
        self.pool_size = Gauge("fluxopus_db_pool_size", "Connections the pool may open", ["pool"], registry=r)
        self.pool_in_use = Gauge("fluxopus_db_pool_in_use", "Connections checked out of the pool", ["pool"], registry=r)
        self.pool_waiting = Gauge("fluxopus_db_pool_waiting", "Requests waiting for a connection", ["pool"], registry=r)
        self.queue_depth = Gauge("fluxopus_indexer_queue_depth", "Knowledge items waiting to be embedded", registry=r)
        self.oldest_pending = Gauge(
            "fluxopus_indexer_oldest_pending_seconds", "Age of the oldest item waiting to be embedded", registry=r
        )
        self.runs = Gauge("fluxopus_skill_runs", "Skill runs recorded, by status", ["status"], registry=r)
        self.tokens_used = Gauge(
            "fluxopus_tokens_used", "Model tokens spent (runs and indexing), all companies", registry=r
        )
        self.database_up = Gauge(
            "fluxopus_database_up", "1 when the last scrape read the database's numbers, else 0", registry=r
        )
        self.tokens_reserved = Gauge(
            "fluxopus_tokens_reserved", "Model tokens reserved by runs and indexing in progress", registry=r
        )
        self.live_subscribers = Gauge(
            "fluxopus_live_subscribers", "Live subscriptions open in this process", registry=r
        )
        self.live_listening = Gauge(
            "fluxopus_live_listening", "1 while this process' LISTEN connection for live events is up", registry=r
        )
        self.live_events = Counter(
            "fluxopus_live_events", "Live events queued for this process' subscribers", registry=r
        )
        self.live_cut_off = Counter(
            "fluxopus_live_cut_off", "Live subscriptions closed for falling behind (SLOW_CONSUMER)", registry=r
        )
        self.live_lag = Gauge(
            "fluxopus_live_lag_changes",
            "Changes committed that this process has not fanned out yet (the change log's last id minus its own)",
            registry=r,
        )
        self._live_counted = (0, 0)  # the hub's totals at the last scrape (the counters grow by the difference)
        # Children by label values: `.labels()` takes a lock and builds a key each time; this is a dict hit.
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._graphql: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._names: set[str] = set()

    def observe(self, method: str, route: str, status: int, seconds: float, info: RequestInfo) -> None:
        key = (method, route, status)
        children = self._http.get(key)
        if children is None:
            children = self._http[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route) if method != "WEBSOCKET" else None,
            )
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)
        if info.operation is not None and method != "WEBSOCKET":
            op_key = (self._operation_label(info.operation), info.operation_type or "query")
            op_children = self._graphql.get(op_key)
            if op_children is None:
                op_children = self._graphql[op_key] = (
                    self.operations.labels(*op_key),
                    self.operation_latency.labels(*op_key),
                )
            op_children[0].inc()
            op_children[1].observe(seconds)
        if info.sign_in_failure is not None:
            self.sign_in_failures.labels(info.sign_in_failure).inc()

    def _operation_label(self, name: str) -> str:
        """Operation names are the client's to choose: bounded, so a client cannot grow /metrics at will."""
        if name in self._names:
            return name
        if len(self._names) < MAX_OPERATION_NAMES and _OPERATION_NAME.fullmatch(name):
            self._names.add(name)
            return name
        return "other"

    async def render(self, runtime: Runtime) -> bytes:
        for pool, engine in (("requests", runtime.engine), ("service", runtime.service_engine)):
            if engine is None:
                continue
            stats = pool_stats(engine, requests=pool == "requests")
            self.pool_size.labels(pool).set(stats.size)
            self.pool_in_use.labels(pool).set(stats.in_use)
            self.pool_waiting.labels(pool).set(stats.waiting)
        hub = runtime.live
        if hub is not None:
            self.live_subscribers.set(hub.subscriber_count)
            self.live_listening.set(1 if hub.listening.is_set() else 0)
            events, cut_off = self._live_counted
            self.live_events.inc(hub.events_sent - events)
            self.live_cut_off.inc(hub.cut_off - cut_off)
            self._live_counted = (hub.events_sent, hub.cut_off)
        engine = runtime.service_engine or runtime.engine
        if engine is None:
            return generate_latest(self.registry)
        try:
            async with asyncio.timeout(DATABASE_STATS_TIMEOUT):
                db = await database_stats(engine)
        except Exception:  # noqa: BLE001 - the request metrics are still worth a scrape
            log.warning("/metrics could not read the database's numbers", exc_info=True)
            self.database_up.set(0)
        else:
            self.database_up.set(1)
            self.queue_depth.set(db.queue_depth)
            self.oldest_pending.set(db.oldest_pending_seconds)
            self.tokens_used.set(db.tokens_used)
            self.tokens_reserved.set(db.tokens_reserved)
            self.runs.clear()  # a status no run has any more is dropped, not left at its last count
            for status, count in db.runs.items():
                self.runs.labels(status).set(count)
            if hub is not None and hub.last_id is not None:
                self.live_lag.set(max(db.latest_change - hub.last_id, 0))
        return generate_latest(self.registry)


class AccessLog:
    """Outermost ASGI middleware: request id, access log line, request metrics.

    The line is formatted here and written straight to stderr: through `logging` (a LogRecord, the
    caller's frame, a handler lock) it cost 10 to 20 µs a request, as much as the rest together.
    It is written when the `fluxopus.access` logger is enabled for INFO (FLUXOPUS_LOG_LEVEL)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, json_lines: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.line = json_access_line if json_lines else human_access_line
        self._templates: dict[Any, str] | None = None  # the app's Starlette routes: endpoint -> path template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        header = (b"x-request-id", request_id.encode())
        info = RequestInfo(request_id)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif kind == "websocket.accept":
                status = 101
                message["headers"] = [*message.get("headers", ()), header]
            elif kind == "websocket.close" and status == 0:
                status = 403  # refused before it was accepted: the client sees 403
            await send(message)

        reset = current.set(info)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            if status == 0:
                # An error ServerErrorMiddleware answers 500; a cancellation: the client went away first
                # (499, as nginx logs it).
                status = 500 if isinstance(exc, Exception) else 499
            raise
        finally:
            current.reset(reset)
            seconds = time.perf_counter() - started
            method = scope["method"] if kind == "http" else "WEBSOCKET"
            if method not in _METHODS and kind == "http":
                method = "OTHER"  # any token is a method to the HTTP parser: keep the label set bounded
            self.metrics.observe(method, self._template(scope, info), status, seconds, info)
            if access_log.isEnabledFor(logging.INFO):
                path = scope["path"]
                if len(path) > _MAX_PATH:
                    path = path[:_MAX_PATH] + "…"
                if not path.isprintable():  # no line breaks or escapes from the client into the log
                    path = path.encode("unicode_escape").decode("ascii")
                sys.stderr.write(self.line(time.time(), info, method, path, status, seconds * 1000.0))

    def _template(self, scope: Scope, info: RequestInfo) -> str:
        """The route's path template (`/api/tasks/{id}`), never the raw path: a metric label per id would
        grow without end."""
        path = getattr(scope.get("route"), "path", "")
        if path:
            return str(path)  # FastAPI's own routes (APIRoute)
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "/graphql" if info.operation is not None else "unmatched"  # the compiled fast path, or a 404
        if self._templates is None:
            self._templates = {r.endpoint: r.path for r in scope["app"].routes if isinstance(r, Route)}
        template = self._templates.get(endpoint)
        if template is not None:
            return template  # Starlette's routes (the REST table)
        # A route of an included router (GraphQL, /auth/v1): FastAPI does not say its template, but one
        # without path parameters is its own template, and there are only so many of those.
        return "other" if scope.get("path_params") else str(scope["path"])


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(text):
                return text
            break
    return secrets.token_hex(8)


# --- log formats -----------------------------------------------------------------------------------

# The last second formatted and its text: one strftime a second. Replaced whole (one rebinding), so a
# thread logging meanwhile reads a consistent pair.
_second: tuple[int, str] = (-1, "")


def iso_time(now: float) -> str:
    """`2026-12-04T08:48:44.123Z`"""
    global _second
    second = int(now)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1000):03d}Z"


def human_access_line(now: float, info: RequestInfo, method: str, path: str, status: int, ms: float) -> str:
    """`2026-12-04T08:48:44.123Z INFO  POST /graphql query TaskList 200 3.1ms id=… user=… company=…`"""
    line = f"{iso_time(now)} INFO  {method} {path}"
    if info.operation is not None:
        line += f" {info.operation_type} {info.operation}"
    line += f" {status} {ms:.1f}ms id={info.request_id}"
    if info.user_id is not None:
        line += f" user={info.user_id}"
    if info.company_id is not None:
        line += f" company={info.company_id}"
    return line + "\n"


def json_access_line(now: float, info: RequestInfo, method: str, path: str, status: int, ms: float) -> str:
    entry = {
        "time": iso_time(now),
        "level": "INFO",
        "logger": "fluxopus.access",
        "message": f"{method} {path} {status}",
        "request_id": info.request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(ms, 3),
        "user_id": info.user_id,
        "company_id": info.company_id,
        "operation": info.operation,
        "operation_type": info.operation_type,
    }
    return json.dumps(entry, ensure_ascii=False) + "\n"


class HumanFormatter(logging.Formatter):
    """Every other log line: `2026-12-04T08:48:44.123Z WARNING fluxopus.db.embedded: …`"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname:<5} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `time`, `level`, `logger`, `message` (and `exception`); access lines
    (json_access_line) add `request_id`, `method`, `path`, `status`, `duration_ms`, `user_id`,
    `company_id`, `operation`, `operation_type`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else HumanFormatter()


def configure_logging(settings: Settings) -> None:
    """Every log line of the process (ours, uvicorn's, the libraries') to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


# --- /metrics --------------------------------------------------------------------------------------


def metrics_endpoint(settings: Settings, metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """With FLUXOPUS_METRICS_TOKEN, for whoever sends it as a bearer token; without, for clients on
    this host or a private network only (where Prometheus scrapes from)."""
    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    async def endpoint(request: Request) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
                return JSONResponse(
                    {"error": "Send FLUXOPUS_METRICS_TOKEN as 'Authorization: Bearer <token>'", "code": "unauthorized"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif not _private(request.client.host if request.client else None):
            return JSONResponse(
                {
                    "error": "/metrics answers this host and private networks only;"
                    " set FLUXOPUS_METRICS_TOKEN to scrape it from elsewhere",
                    "code": "forbidden",
                },
                403,
            )
        return Response(await metrics.render(request.app.state.runtime), media_type=CONTENT_TYPE_LATEST)

    return endpoint


def _private(host: str | None) -> bool:
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a test client's made-up name, a Unix socket: not an address we know
    return address.is_loopback or address.is_private
