"""A fake OAuth 2.0 / OpenID Connect provider speaking the real HTTP protocol on 127.0.0.1.

Real OAuth client code (Authlib's httpx client) runs unmodified against it: discovery, the authorization code
grant with PKCE (RFC 7636), refresh with rotation, userinfo and revocation (RFC 7009). Behaviour is configured
per registered client, so concurrent tests that register their own clients do not interfere.

A client's `dialect` makes it answer as a provider that departs from the standards does (see DIALECTS):
GitHub (errors in HTTP 200, `GET /user`, `DELETE /applications/{client_id}/grant`), Slack (`ok` envelopes,
the workspace in the token response, `auth.revoke` by bearer token) and Notion (a JSON token body with HTTP
Basic and a Notion-Version header, the workspace in the token response, JSON revocation).

A few of their APIs too, for skill tools, authenticated by the access tokens this fake issued: GitHub's
`GET`/`POST /repos/{owner}/{repo}/issues`, Slack's `POST /api/chat.postMessage` (errors in HTTP 200) and
Notion's `POST /v1/search`. `api_calls` records what they were asked; `hold` (an Event) keeps them
answering until it is set or the client goes away.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.utils.server import ThreadedServer

Json = dict[str, Any]
CODE_TTL = 60.0  # seconds an authorization code stays redeemable
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 4.1


Dialect = Literal["standard", "github", "slack", "notion"]
DIALECTS: tuple[Dialect, ...] = ("standard", "github", "slack", "notion")
# Token prefixes as the real providers issue them, so a test can tell whose token it holds.
_PREFIXES = {
    "standard": ("at-", "rt-"),
    "github": ("gho_", "ghr_"),
    "slack": ("xoxb-", "xoxe-1-"),
    "notion": ("ntn_", "nrt_"),
}
# How providers that answer token errors with HTTP 200 name RFC 6749's errors.
_ERRORS_IN_200 = {
    "github": {"invalid_grant": "bad_verification_code", "invalid_client": "incorrect_client_credentials"},
    "slack": {"invalid_grant": "invalid_code", "invalid_client": "bad_client_secret"},
}


def _account() -> Json:
    name = secrets.token_hex(6)
    return {"sub": f"user-{name}", "email": f"{name}@example.com", "name": "Test User"}


def _dialect_account(dialect: Dialect) -> Json:
    """The consenting user as the provider describes them: in `GET /user`, or in the token response."""
    name = secrets.token_hex(6)
    if dialect == "github":
        return {"id": secrets.randbelow(10**8), "login": f"user-{name}", "name": "Test User", "email": None}
    if dialect == "slack":
        return {"team": {"id": f"T{name.upper()}", "name": f"Team {name}"}, "authed_user": {"id": f"U{name.upper()}"}}
    if dialect == "notion":
        return {
            "workspace_id": f"ws-{name}",
            "workspace_name": f"Workspace {name}",
            "workspace_icon": None,
            "bot_id": f"bot-{name}",
            "owner": {
                "type": "user",
                "user": {"object": "user", "id": f"u-{name}", "person": {"email": f"{name}@example.com"}},
            },
        }
    return _account()


# What differs from the standard client defaults, as the real providers issue tokens.
_DIALECT_DEFAULTS: dict[str, Json] = {
    "github": {"expires_in": None, "issue_refresh": False},  # OAuth apps' tokens do not expire
    "slack": {"expires_in": None, "issue_refresh": False, "require_pkce": False},  # without token rotation
    "notion": {"expires_in": None, "issue_refresh": False, "require_pkce": False},
}


@dataclass(frozen=True)
class Received:
    """One request to the token endpoint, a revocation endpoint or GitHub's `/user`, as it arrived."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Json  # form fields or the JSON object; {} when empty

    @property
    def auth_scheme(self) -> str | None:
        scheme = self.headers.get("authorization", "").partition(" ")[0].lower()
        return scheme or None

    def basic_credentials(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return unquote_plus(user), unquote_plus(password)


@dataclass
class FakeClient:
    """A registered client: its behaviour (tests may change it at any time) and what it was asked."""

    client_id: str
    client_secret: str
    expires_in: int | None = 3600  # None = omit expires_in (and access tokens never expire)
    issue_refresh: bool = True
    rotate_refresh: bool = True  # a refresh returns a new refresh token and invalidates the old one
    require_pkce: bool = True
    scope: str | None = None  # granted scope; None = the requested one
    deny: bool = False  # the user refuses consent: authorize redirects back with error=access_denied
    token_status: int | None = None  # the token endpoint answers this status (both grants)
    refresh_error: str | None = None  # e.g. "invalid_grant": the refresh grant answers 400 with it
    refresh_delay: float = 0.0  # seconds slept in the refresh grant, so concurrent refreshes overlap
    revoke_status: int | None = None
    userinfo_status: int | None = None
    account: Json = field(default_factory=_account)  # the consenting user's claims
    dialect: Dialect = "standard"  # answer as this provider does where it departs from the standards
    # Records, written by the server thread under FakeOAuth's lock.
    authorize_requests: list[Json] = field(default_factory=list)
    token_requests: list[Json] = field(default_factory=list)  # form fields, grant_type included
    refreshes: int = 0  # successful refresh grants
    revoked: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # every access and refresh token ever issued
    received: list[Received] = field(default_factory=list)  # token, revocation and /user requests


@dataclass
class _Code:
    client: FakeClient
    redirect_uri: str
    scope: str
    challenge: str | None
    account: Json
    expires_at: float = field(default_factory=lambda: time.monotonic() + CODE_TTL)
    used: bool = False
    grant: str | None = None  # set once redeemed, so a replay can revoke what it issued


@dataclass
class _Token:
    client: FakeClient
    kind: str  # "access" or "refresh"
    grant: str  # one per redeemed code; revoking a refresh token revokes the whole grant (RFC 7009 2.1)
    scope: str
    account: Json
    expires_at: float | None = None
    rotated: bool = False


def _error(status: int, error: str, description: str | None = None, headers: dict[str, str] | None = None) -> Response:
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _with_query(uri: str, params: dict[str, str | None]) -> str:
    """Add params to uri, keeping any query it already has (RFC 6749 3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class FakeOAuth:
    def __init__(self) -> None:
        self.client_by_id: dict[str, FakeClient] = {}
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()  # the server thread writes, the test thread reads
        routes = [
            Route("/.well-known/openid-configuration", self._discovery),
            Route("/authorize", self._authorize),
            Route("/token", self._token, methods=["POST"]),
            Route("/userinfo", self._userinfo),
            Route("/revoke", self._revoke, methods=["POST"]),
            Route("/user", self._github_user),  # GitHub's "who am I"
            Route("/applications/{client_id}/grant", self._github_delete_grant, methods=["DELETE"]),
            Route("/api/auth.revoke", self._slack_revoke, methods=["GET", "POST"]),
            Route("/repos/{owner}/{repo}/issues", self._github_issues, methods=["GET", "POST"]),
            Route("/api/chat.postMessage", self._slack_post, methods=["POST"]),
            Route("/v1/search", self._notion_search, methods=["POST"]),
        ]
        self.issues: dict[tuple[str, str], list[Json]] = {}
        self.slack_messages: list[Json] = []
        self.api_calls: list[Received] = []
        self.hold: threading.Event | None = None
        self._server = ThreadedServer(Starlette(routes=routes))
        self._server.__enter__()

    @property
    def url(self) -> str:
        return self._server.url

    def client(self, **behaviour: Any) -> FakeClient:
        """Register a client with a random id and secret (both overridable) and the given behaviour.

        A `dialect` brings that provider's usual defaults (e.g. GitHub's tokens do not expire) and account shape."""
        defaults = {"client_id": f"client-{secrets.token_hex(6)}", "client_secret": secrets.token_urlsafe(24)}
        dialect = behaviour.get("dialect", "standard")
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        if dialect != "standard":
            defaults |= _DIALECT_DEFAULTS[dialect] | {"account": _dialect_account(dialect)}
        client = FakeClient(**(defaults | behaviour))
        with self._lock:
            self.client_by_id[client.client_id] = client
        return client

    def endpoints(self, dialect: Dialect = "standard") -> dict[str, str]:
        """This fake's endpoints as a provider of `dialect` names them: OAuthProviderSettings' URL fields."""
        urls = {"authorize_url": f"{self.url}/authorize", "token_url": f"{self.url}/token"}
        if dialect == "github":  # the revocation URL is a prefix: GitHub's client appends /{client_id}/grant
            return urls | {"userinfo_url": f"{self.url}/user", "revoke_url": f"{self.url}/applications"}
        if dialect == "slack":
            return urls | {"revoke_url": f"{self.url}/api/auth.revoke"}
        if dialect == "notion":
            return urls | {"revoke_url": f"{self.url}/revoke"}
        return urls | {"userinfo_url": f"{self.url}/userinfo", "revoke_url": f"{self.url}/revoke"}

    def uninstall(self, client: FakeClient) -> None:
        """The user removes the app at the provider: every token ever issued to `client` stops working."""
        with self._lock:
            client.revoked.update(client.issued)

    def close(self) -> None:
        self._server.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "revocation_endpoint": f"{self.url}/revoke",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "scopes_supported": ["openid", "email", "profile", "offline_access"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        client = self.client_by_id.get(q.get("client_id", ""))
        redirect_uri, state = q.get("redirect_uri"), q.get("state")
        # Never redirect to an unverified redirect_uri (RFC 6749 4.1.2.1): tell the user instead.
        if client is None or not redirect_uri or urlsplit(redirect_uri).fragment:
            return PlainTextResponse("invalid client_id or redirect_uri", status_code=400)
        with self._lock:
            client.authorize_requests.append(dict(q))

        def back(**params: str | None) -> Response:
            return RedirectResponse(_with_query(redirect_uri, {**params, "state": state}), status_code=302)

        challenge, method = q.get("code_challenge"), q.get("code_challenge_method", "plain")
        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if (challenge or client.require_pkce) and not (challenge and method == "S256"):
            return back(error="invalid_request", error_description="code_challenge with method S256 is required")
        if client.deny:
            return back(error="access_denied", error_description="The user denied the request")
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = _Code(client, redirect_uri, q.get("scope", ""), challenge, dict(client.account))
        return back(code=code)

    def _authenticate(self, request: Request, form: Json) -> tuple[FakeClient | None, Response | None]:
        """The client the request names, and the error to answer unless it proved its secret.

        By client_secret_basic (id and secret form-urlencoded first, RFC 6749 2.3.1) or client_secret_post.
        """
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if scheme.lower() == "basic":
            if secret is not None:  # one method per request (RFC 6749 2.3)
                return None, _error(400, "invalid_request", "more than one client authentication method")
            try:
                basic_id, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                basic_id = ""
            basic_id, secret = unquote_plus(basic_id), unquote_plus(secret)
            client_id = basic_id if client_id in (None, basic_id) else ""
        client = self.client_by_id.get(client_id or "")
        if (
            client is None
            or secret is None
            or not secrets.compare_digest(secret.encode(), client.client_secret.encode())
        ):
            return client, _error(401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="fake-oauth"'})
        return client, None

    async def _token(self, request: Request) -> Response:
        form = await _read_body(request)
        if form is None:
            return _error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        client, denied = self._authenticate(request, form)
        if client is not None:
            with self._lock:
                client.token_requests.append(form)
                client.received.append(_received(request, form))
        if client is None or denied is not None:
            return _in_dialect(client, denied or _error(401, "invalid_client"))
        if (problem := _dialect_problem(client, request)) is not None:
            return problem
        if client.token_status is not None:
            return _error(client.token_status, "server_error")
        if form.get("grant_type") == "authorization_code":
            return _in_dialect(client, self._code_grant(client, form))
        if form.get("grant_type") == "refresh_token":
            return _in_dialect(client, await self._refresh_grant(client, form))
        return _in_dialect(client, _error(400, "unsupported_grant_type" if "grant_type" in form else "invalid_request"))

    def _code_grant(self, client: FakeClient, form: Json) -> Response:
        with self._lock:  # codes are single-use: mark it used before checking anything else
            code = self._codes.get(form.get("code", ""))
            replayed = code is not None and code.used
            if code is not None:
                if replayed and code.grant:  # RFC 6749 4.1.2: a replayed code revokes what it issued
                    self._revoke_grant(code.grant)
                code.used = True
        if code is None or replayed or code.client is not client or time.monotonic() > code.expires_at:
            return _error(400, "invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != code.redirect_uri:
            return _error(400, "invalid_grant", "redirect_uri does not match the authorization request")
        verifier = form.get("code_verifier", "")
        if code.challenge is not None and not (_VERIFIER.fullmatch(verifier) and s256(verifier) == code.challenge):
            return _error(400, "invalid_grant", "PKCE verification failed")
        code.grant = secrets.token_hex(8)
        scope = code.scope if client.scope is None else client.scope
        return self._issue(client, code.grant, scope, code.account, refresh=client.issue_refresh)

    async def _refresh_grant(self, client: FakeClient, form: Json) -> Response:
        with self._lock:  # check and rotate in one step, as a database transaction would
            rt = form.get("refresh_token", "")
            old = self._tokens.get(rt)
            if old is None or old.kind != "refresh" or old.client is not client or old.rotated or rt in client.revoked:
                return _error(400, "invalid_grant", "unknown, rotated or revoked refresh token")
            if client.refresh_error is not None:
                return _error(400, client.refresh_error)
            old.rotated = client.rotate_refresh
        await asyncio.sleep(client.refresh_delay)
        with self._lock:
            client.refreshes += 1
        return self._issue(client, old.grant, old.scope, old.account, refresh=client.rotate_refresh)

    def _issue(self, client: FakeClient, grant: str, scope: str, account: Json, *, refresh: bool) -> Response:
        access_prefix, refresh_prefix = _PREFIXES[client.dialect]
        access = access_prefix + secrets.token_urlsafe(24)
        expires_at = None if client.expires_in is None else time.monotonic() + client.expires_in
        body: Json = {"access_token": access, "token_type": "Bearer"}
        with self._lock:
            self._tokens[access] = _Token(client, "access", grant, scope, account, expires_at)
            client.issued.append(access)
            if refresh:
                body["refresh_token"] = refresh_prefix + secrets.token_urlsafe(24)
                self._tokens[body["refresh_token"]] = _Token(client, "refresh", grant, scope, account)
                client.issued.append(body["refresh_token"])
        if client.expires_in is not None:
            body["expires_in"] = client.expires_in
        if scope:
            body["scope"] = scope
        if client.dialect == "github":  # GitHub lists the granted scopes with commas
            body |= {"token_type": "bearer"} | ({"scope": ",".join(scope.split())} if scope else {})
        elif client.dialect == "slack":  # oauth.v2.access: a bot token, the workspace it is for
            body = {"ok": True, "app_id": "A0FAKE", **body, "token_type": "bot", "bot_user_id": "B0FAKE"}
            body |= {"enterprise": None, "is_enterprise_install": False} | account
        elif client.dialect == "notion":  # the workspace and its owner come with the token, no scope
            body = {k: v for k, v in body.items() if k != "scope"} | {"token_type": "bearer"} | account
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _userinfo(self, request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            token = self._tokens.get(value) if scheme.lower() == "bearer" else None
        if token is not None and token.client.userinfo_status is not None:
            return _error(token.client.userinfo_status, "server_error")
        if (
            token is None
            or token.kind != "access"
            or value in token.client.revoked
            or (token.expires_at is not None and time.monotonic() > token.expires_at)
        ):
            return _error(401, "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse(token.account)

    async def _revoke(self, request: Request) -> Response:
        form = await _read_body(request) or {}
        client, denied = self._authenticate(request, form)
        if client is not None:
            with self._lock:
                client.received.append(_received(request, form))
        if client is None or denied is not None:
            return denied or _error(401, "invalid_client")
        if (problem := _dialect_problem(client, request)) is not None:
            return problem
        if client.revoke_status is not None:
            return _error(client.revoke_status, "server_error")
        if "token" not in form:
            return _error(400, "invalid_request", "token is required")
        with self._lock:
            token = self._tokens.get(form["token"])
            # Unknown tokens and other clients' tokens are not revoked, but still answer 200 (RFC 7009 2.2).
            if token is not None and token.client is client:
                client.revoked.add(form["token"])
                if token.kind == "refresh":
                    self._revoke_grant(token.grant)
        return Response(status_code=200)

    def _revoke_grant(self, grant: str) -> None:
        """Revoke every token issued under one grant. The caller holds the lock."""
        for value, token in self._tokens.items():
            if token.grant == grant:
                token.client.revoked.add(value)

    def _live_token(self, value: str, kind: str = "access") -> _Token | None:
        """The token, unless unknown, of another kind, revoked or expired. The caller holds the lock."""
        token = self._tokens.get(value)
        if token is None or token.kind != kind or value in token.client.revoked:
            return None
        if token.expires_at is not None and time.monotonic() > token.expires_at:
            return None
        return token

    async def _github_user(self, request: Request) -> Response:
        """GitHub's `GET /user`: the account, for `Authorization: Bearer` (or GitHub's older `token`) scheme."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            token = self._live_token(value) if scheme.lower() in ("bearer", "token") else None
            if token is not None:
                token.client.received.append(_received(request, {}))
        if token is not None and token.client.userinfo_status is not None:
            return JSONResponse({"message": "Server Error"}, status_code=token.client.userinfo_status)
        if token is None:
            return JSONResponse({"message": "Bad credentials", "documentation_url": _GITHUB_DOCS}, status_code=401)
        return JSONResponse(token.account)

    async def _github_delete_grant(self, request: Request) -> Response:
        """GitHub's `DELETE /applications/{client_id}/grant`: the app's client id and secret by HTTP Basic,
        `{"access_token"}` in a JSON body; 204, and every token of that authorization stops working."""
        body = await _read_body(request) or {}
        client, denied = self._authenticate(request, {})
        if client is not None:
            with self._lock:
                client.received.append(_received(request, body))
        if client is None or denied is not None or client.client_id != request.path_params["client_id"]:
            return JSONResponse({"message": "Not Found", "documentation_url": _GITHUB_DOCS}, status_code=404)
        if client.revoke_status is not None:
            return JSONResponse({"message": "Server Error"}, status_code=client.revoke_status)
        if not request.headers.get("content-type", "").startswith("application/json") or "access_token" not in body:
            return JSONResponse({"message": "Invalid request.", "documentation_url": _GITHUB_DOCS}, status_code=422)
        with self._lock:
            token = self._live_token(str(body["access_token"]))
            if token is None or token.client is not client:
                return JSONResponse({"message": "Not Found", "documentation_url": _GITHUB_DOCS}, status_code=404)
            self._revoke_grant(token.grant)
        return Response(status_code=204)

    async def _slack_revoke(self, request: Request) -> Response:
        """Slack's `auth.revoke`: authenticated by the very token it revokes; errors are HTTP 200 `ok: false`."""
        form = await _read_body(request) or {}
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        value = value if scheme.lower() == "bearer" else str(form.get("token", ""))
        with self._lock:
            known = self._tokens.get(value)
            if known is not None:
                known.client.received.append(_received(request, form))
            if known is None:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            if value in known.client.revoked:
                return JSONResponse({"ok": False, "error": "token_revoked"})
        if known.client.revoke_status is not None:
            return JSONResponse({"ok": False, "error": "internal_error"}, status_code=known.client.revoke_status)
        with self._lock:
            self._revoke_grant(known.grant)
        return JSONResponse({"ok": True, "revoked": True})

    async def _api_token(self, request: Request, body: Json) -> _Token | None:
        """The live access token of an API request's `Authorization: Bearer`; records the request and waits
        while `hold` is set up (until released, or the client goes away)."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            self.api_calls.append(_received(request, body))
            token = self._live_token(value) if scheme.lower() == "bearer" else None
        hold = self.hold
        while hold is not None and not hold.is_set():
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.02)
        return token

    async def _github_issues(self, request: Request) -> Response:
        body = (await _read_body(request) or {}) if request.method == "POST" else {}
        token = await self._api_token(request, body)
        if token is None:
            return JSONResponse({"message": "Bad credentials", "documentation_url": _GITHUB_DOCS}, status_code=401)
        key = (request.path_params["owner"], request.path_params["repo"])
        with self._lock:
            issues = self.issues.setdefault(key, [])
            if request.method == "GET":
                state = request.query_params.get("state", "open")
                shown = [i for i in reversed(issues) if state == "all" or i["state"] == state]
                return JSONResponse(shown[: int(request.query_params.get("per_page", 30))])
            if not isinstance(body.get("title"), str) or not body["title"]:
                return JSONResponse({"message": "Validation Failed", "documentation_url": _GITHUB_DOCS}, 422)
            number = len(issues) + 1
            issue = {
                "number": number,
                "title": body["title"],
                "body": body.get("body"),
                "state": "open",
                "html_url": f"https://github.com/{key[0]}/{key[1]}/issues/{number}",
                "user": {"login": token.account.get("login", "someone")},
            }
            issues.append(issue)
        return JSONResponse(issue, status_code=201)

    async def _slack_post(self, request: Request) -> Response:
        body = await _read_body(request) or {}
        token = await self._api_token(request, body)
        if token is None:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if not body.get("channel"):
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        message = {"channel": body["channel"], "text": body.get("text"), "ts": f"{time.time():.6f}"}
        with self._lock:
            self.slack_messages.append(message)
        return JSONResponse({"ok": True, "channel": message["channel"], "ts": message["ts"]})

    async def _notion_search(self, request: Request) -> Response:
        body = await _read_body(request) or {}
        token = await self._api_token(request, body)
        if token is None or request.headers.get("notion-version") is None:
            return JSONResponse({"object": "error", "status": 401, "code": "unauthorized"}, status_code=401)
        title = {"type": "title", "title": [{"plain_text": f"Notes on {body.get('query', '')}"}]}
        page = {"object": "page", "id": "page-1", "url": "https://www.notion.so/page-1", "properties": {"Name": title}}
        return JSONResponse({"object": "list", "results": [page], "has_more": False})


_GITHUB_DOCS = "https://docs.github.com/rest"


async def _read_body(request: Request) -> Json | None:
    """Form fields or a JSON object; {} for an empty body; None for anything else."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: str(v) for k, v in (await request.form()).items()}
    raw = await request.body()
    if content_type.startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    return {} if not raw else None


def _received(request: Request, body: Json) -> Received:
    return Received(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()}, body)


def _dialect_problem(client: FakeClient, request: Request) -> Response | None:
    """What the client's dialect requires of a request to its token or revocation endpoint, when missing."""
    json_body = request.headers.get("content-type", "").startswith("application/json")
    if client.dialect != "notion":
        if json_body:
            return _in_dialect(
                client, _error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
            )
        return None
    if request.headers.get("notion-version") is None:
        message = "Notion-Version header failed validation: Notion-Version header should be defined"
        return JSONResponse({"object": "error", "status": 400, "code": "missing_version", "message": message}, 400)
    if not json_body:
        return _error(400, "invalid_request", "the body must be JSON")
    if not request.headers.get("authorization", "").lower().startswith("basic "):
        return _error(401, "invalid_client", "client credentials go in an HTTP Basic Authorization header")
    return None


def _in_dialect(client: FakeClient | None, response: Response) -> Response:
    """A token endpoint's 400/401 as GitHub (HTTP 200, GitHub's error names) or Slack (HTTP 200, `ok: false`)."""
    if client is None or client.dialect not in _ERRORS_IN_200 or response.status_code not in (400, 401):
        return response
    body = json.loads(bytes(response.body))
    error = _ERRORS_IN_200[client.dialect].get(body["error"], body["error"])
    if "redirect_uri" in body.get("error_description", ""):
        error = {"github": "redirect_uri_mismatch", "slack": "bad_redirect_uri"}[client.dialect]
    if client.dialect == "slack":
        return JSONResponse({"ok": False, "error": error})
    return JSONResponse({"error": error, "error_description": body.get("error_description", error)})
