"""CORS for every HTTP route, configured or not: FLUXOPUS_CORS_ORIGINS (the same list the GraphQL
WebSocket's origin check reads, schema/router.py) says which other origins' pages may call the API.

Always installed, so a preflight is answered whatever the setting: 200 with the allowed methods and
headers for an allowed (or the server's own) origin, 403 with `{"error": ...}` and no
Access-Control-Allow-Origin for any other — never the router's 405 for OPTIONS. Requests without an
Origin header (curl, servers, same-origin GETs) go straight through: nothing to add for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.http.websocket_origin import is_same_origin

ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    # supabase-js, to /auth/v1
    "apikey",
    "x-client-info",
    "x-supabase-api-version",
    # a caller's own request id, echoed in the logs and the response
    "X-Request-Id",
    # graphql-sse's single-connection mode (schema/sse_single.py); Last-Event-ID: EventSource reconnecting
    "X-GraphQL-Event-Stream-Token",
    "Last-Event-ID",
    # a REST list's total on request: `Prefer: count=exact|planned|estimated` (rest_compat/prefer.py)
    "Prefer",
)
EXPOSE_HEADERS = ("X-Total-Count", "Preference-Applied", "X-Request-Id", "Retry-After")


class Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOW_METHODS,
            allow_headers=ALLOW_HEADERS,
            expose_headers=EXPOSE_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(name == b"origin" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self.preflight_response(headers)(scope, receive, send)
            return
        # Access-Control-Allow-Origin for an allowed origin; the server's own needs none.
        await self.simple_response(scope, receive, send, request_headers=headers)

    def preflight_response(self, request_headers: Headers) -> Response:
        origin = request_headers["origin"]
        refused = []
        if not (self.is_allowed_origin(origin) or is_same_origin(origin, request_headers.get("host"))):
            refused.append(f"origin {origin} is not in FLUXOPUS_CORS_ORIGINS")
        method = request_headers["access-control-request-method"]
        if method not in self.allow_methods:
            refused.append(f"method {method} is not allowed")
        requested = (h.strip() for h in request_headers.get("access-control-request-headers", "").split(","))
        unknown = [h for h in requested if h and h.lower() not in self.allow_headers]
        if unknown:
            refused.append(f"header {', '.join(unknown)} is not allowed")
        if "access-control-request-private-network" in request_headers:
            refused.append("private network access is not allowed")
        headers = dict(self.preflight_headers)  # Vary, the methods, headers and max age (and `*`)
        if refused:
            # No Access-Control-Allow-Origin: the browser refuses the request the page meant to send.
            vary = {"Vary": headers["Vary"]}
            # REST's error shape and code (rest_compat/errors.ErrorCode, a layer above this one).
            body = {"error": "CORS preflight refused: " + "; ".join(refused), "code": "forbidden"}
            return JSONResponse(body, 403, headers=vary)
        headers.setdefault("Access-Control-Allow-Origin", origin)
        return Response(status_code=200, headers=headers)
