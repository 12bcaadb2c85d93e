"""/auth/v1: the subset of Supabase Auth (GoTrue) that the official clients use to sign in.

Mounted only for the self-hosted default (no FLUXOPUS_JWT_SECRET or FLUXOPUS_JWKS_URL): with
an external identity provider, sign-in happens there. Request and response shapes are GoTrue's,
so `@supabase/supabase-js` works unchanged; errors are `{"code", "error_code", "msg"}` as GoTrue
sends them. The `apikey` header Supabase's gateway requires is accepted and not needed.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter
from jwt.algorithms import ECAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fluxopus.auth.sessions import Accounts, AuthError, Client
from fluxopus.errors import Unauthorized
from fluxopus.runtime import Runtime

JSON_BODY_LIMIT = 64 * 1024


def gotrue_router() -> APIRouter:
    router = APIRouter()

    @router.post("/signup")
    async def signup(request: Request) -> Response:
        async def run(accounts: Accounts, body: dict[str, Any]) -> Any:
            email, password = _text(body, "email"), _text(body, "password")
            data = body.get("data") or (body.get("options") or {}).get("data") or {}
            if not isinstance(data, dict):
                raise AuthError(400, "validation_failed", "data must be an object")
            return await accounts.sign_up(email, password, data, _client(request))

        return await _answer(request, run)

    @router.post("/token")
    async def token(request: Request) -> Response:
        grant = request.query_params.get("grant_type")

        async def run(accounts: Accounts, body: dict[str, Any]) -> Any:
            if grant == "password":
                return await accounts.sign_in(_text(body, "email"), _text(body, "password"), _client(request))
            if grant == "refresh_token":
                return await accounts.refresh(_text(body, "refresh_token"), _client(request))
            raise AuthError(400, "validation_failed", "grant_type must be password or refresh_token")

        return await _answer(request, run)

    @router.get("/user")
    async def user(request: Request) -> Response:
        async def run(accounts: Accounts, body: dict[str, Any]) -> Any:
            return await accounts.user(await _claims(request))

        return await _answer(request, run, body=False)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        scope = request.query_params.get("scope", "global")

        async def run(accounts: Accounts, body: dict[str, Any]) -> Any:
            if scope not in ("global", "local", "others"):
                raise AuthError(400, "validation_failed", "scope must be global, local or others")
            await accounts.sign_out(await _claims(request), _scope(scope))
            return None

        return await _answer(request, run, body=False)

    @router.get("/settings")
    async def settings() -> Response:
        return JSONResponse(
            {
                "external": {"email": True, "phone": False, "anonymous_users": False},
                "disable_signup": False,
                "mailer_autoconfirm": True,
                "phone_autoconfirm": False,
                "sms_provider": "",
                "saml_enabled": False,
            }
        )

    @router.get("/.well-known/jwks.json")
    async def jwks(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        key = runtime.verifier.local_key
        assert key is not None  # mounted only with the server's own key
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key))
        jwk |= {"kid": key.kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"]}
        return JSONResponse({"keys": [jwk]}, headers={"Cache-Control": "public, max-age=600"})

    return router


async def _answer(request: Request, run: Any, *, body: bool = True) -> Response:
    runtime: Runtime = request.app.state.runtime
    assert runtime.engine is not None and runtime.verifier.local_key is not None
    accounts = Accounts(runtime.engine, runtime.verifier.local_key, issuer=f"{runtime.settings.base_url}/auth/v1")
    try:
        result = await run(accounts, await _json(request) if body else {})
    except AuthError as exc:
        return _error(exc)
    if result is None:
        return Response(status_code=204)
    return JSONResponse(result)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > JSON_BODY_LIMIT:
        raise AuthError(413, "request_too_large", "Request body is too large")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise AuthError(400, "bad_json", "Could not parse request body as JSON") from None
    if not isinstance(data, dict):
        raise AuthError(400, "bad_json", "Request body must be a JSON object")
    return data


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise AuthError(400, "validation_failed", f"{field} is required")
    return value


async def _claims(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    try:
        return await runtime.verifier.verify_header(request.headers.get("authorization"))
    except Unauthorized as exc:
        code = "no_authorization" if not request.headers.get("authorization") else "bad_jwt"
        raise AuthError(401 if code == "no_authorization" else 403, code, exc.message) from None


def _client(request: Request) -> Client:
    address = request.client.host if request.client else "unknown"
    return Client(address=address[:64], user_agent=request.headers.get("user-agent"))


def _scope(value: str) -> Literal["global", "local", "others"]:
    return "local" if value == "local" else "others" if value == "others" else "global"


def _error(exc: AuthError) -> Response:
    body: dict[str, Any] = {"code": exc.status, "error_code": exc.code, "msg": exc.message}
    headers = {"Retry-After": "900"} if exc.status == 429 else {}
    return JSONResponse(body, status_code=exc.status, headers=headers)
