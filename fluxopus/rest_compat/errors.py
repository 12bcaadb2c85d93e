"""Every REST error is {"error": "<message>", "code": "<code>"} with its status: domain errors,
routing errors, crashes. `error` is for people; `code`, one of `ErrorCode`, for programs."""

from __future__ import annotations

import logging
from enum import StrEnum

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxopus.db.session import DATABASE_UNAVAILABLE, database_gone
from fluxopus.errors import DomainError, Malformed, Unavailable

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """The closed set of REST error codes. A code names the condition, so a client can branch on it
    without reading messages; each status carries the codes of `CODES_BY_STATUS`. The same conditions
    are GraphQL's `extensions.code` (UPPER_CASE there, `DOMAIN_CODES`)."""

    bad_request = "bad_request"
    validation_failed = "validation_failed"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    conflict = "conflict"
    quota_exceeded = "quota_exceeded"
    payload_too_large = "payload_too_large"
    unsupported_media_type = "unsupported_media_type"
    budget_exceeded = "budget_exceeded"
    internal = "internal"
    unavailable = "unavailable"


# What each code means, by the status it comes with: the OpenAPI document and the README's
# "Errors" table are this table.
CODES_BY_STATUS: dict[int, dict[ErrorCode, str]] = {
    400: {
        ErrorCode.bad_request: "The request could not be read: malformed JSON, no body, an id that is not a UUID",
        ErrorCode.validation_failed: "Read, and refused: a value out of range or of the wrong type, an unknown field,"
        " or a rule of the domain (an assignee from another company, an input against the skill's input_schema)",
    },
    401: {ErrorCode.unauthorized: "Missing, malformed, expired or wrongly signed bearer token, or an ended session"},
    403: {ErrorCode.forbidden: "Visible to the caller, who may not change it"},
    404: {ErrorCode.not_found: "No such record visible to the caller, an unknown or unconfigured provider, no route"},
    405: {ErrorCode.method_not_allowed: "The path exists, the method does not (`Allow` lists those it has)"},
    409: {
        ErrorCode.conflict: "Conflicts with an existing record (a tag name, a version)",
        ErrorCode.quota_exceeded: "The company's knowledge storage is full: nothing was stored",
    },
    413: {ErrorCode.payload_too_large: "The body is over the server's limit (1 MiB; 8 MiB for knowledge writes)"},
    415: {
        ErrorCode.unsupported_media_type: "The body is sent as something else than JSON (a form, `text/plain`;"
        " no `Content-Type` is read as JSON)"
    },
    429: {ErrorCode.budget_exceeded: "The company's monthly model tokens are used up; no model was called"},
    500: {ErrorCode.internal: "Unexpected server error (logged; the message says nothing more)"},
    503: {
        ErrorCode.unavailable: "No database connection came free in time, or the database is not answering;"
        " retry after `Retry-After` seconds"
    },
}

# By a domain error's `code`, which GraphQL answers as `extensions.code` (fluxopus/errors.py): one
# condition, one name in both APIs, in each API's case.
DOMAIN_CODES: dict[str, ErrorCode] = {
    "BAD_USER_INPUT": ErrorCode.validation_failed,  # or bad_request, for a Malformed one (rest_code)
    "UNAUTHENTICATED": ErrorCode.unauthorized,
    "FORBIDDEN": ErrorCode.forbidden,
    "NOT_FOUND": ErrorCode.not_found,
    "CONFLICT": ErrorCode.conflict,
    "QUOTA_EXCEEDED": ErrorCode.quota_exceeded,
    "PAYLOAD_TOO_LARGE": ErrorCode.payload_too_large,
    "BUDGET_EXCEEDED": ErrorCode.budget_exceeded,
    "UNAVAILABLE": ErrorCode.unavailable,
    "SLOW_CONSUMER": ErrorCode.unavailable,  # a live subscription cut off (GraphQL only)
    "UNSUPPORTED_MEDIA_TYPE": ErrorCode.unsupported_media_type,
}

# Starlette's own refusals (no route, wrong method), by status: the first code of the status.
_HTTP_CODES = {status: next(iter(codes)) for status, codes in CODES_BY_STATUS.items()}


class UnsupportedMediaType(DomainError):
    """A body sent as something other than JSON (a form, text/plain). REST only: GraphQL's transport
    answers its own way."""

    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"

    def __init__(self, content_type: str) -> None:
        super().__init__(f"The body must be JSON (Content-Type: application/json), not {content_type[:100]!r}")


def rest_code(exc: DomainError) -> ErrorCode:
    if isinstance(exc, Malformed):
        return ErrorCode.bad_request
    return DOMAIN_CODES[exc.code]


def error_response(status: int, message: str, code: ErrorCode, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code.value}, status_code=status, headers=headers)


def domain_error_response(exc: DomainError) -> JSONResponse:
    headers = None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    elif exc.status == 503:
        headers = {"Retry-After": "2"}
    return error_response(exc.status, exc.message, rest_code(exc), headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail) if exc.detail else "Request failed"
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.internal if exc.status_code >= 500 else ErrorCode.bad_request)
    return error_response(exc.status_code, message, code, dict(exc.headers or {}))


async def domain_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


class CatchAll:
    """Last line of defence: an unexpected exception becomes a 500 {"error"}, never a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except DomainError as exc:  # raised below the routes (a body over its limit, as it is read)
            if started:
                raise
            await domain_error_response(exc)(scope, receive, send)
        except Exception as exc:
            if started:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                raise
            if database_gone(exc):
                log.warning("%s %s: the database is not available (%s)", scope.get("method"), scope.get("path"), exc)
                await domain_error_response(Unavailable(DATABASE_UNAVAILABLE))(scope, receive, send)
                return
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await error_response(500, "Internal server error", ErrorCode.internal)(scope, receive, send)
