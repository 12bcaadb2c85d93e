"""Every REST error is {"error": "<message>"} with its status: domain errors, routing errors, crashes."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxopus.db.session import DATABASE_UNAVAILABLE, database_gone
from fluxopus.errors import DomainError, Unavailable

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def domain_error_response(exc: DomainError) -> JSONResponse:
    headers = None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    elif exc.status == 503:
        headers = {"Retry-After": "2"}
    return error_response(exc.status, exc.message, headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail) if exc.detail else _HTTP_MESSAGES.get(exc.status_code, "Request failed")
    return error_response(exc.status_code, message, dict(exc.headers or {}))


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
            await error_response(500, "Internal server error")(scope, receive, send)
