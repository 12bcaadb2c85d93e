"""/auth/v1: the subset of Supabase Auth (GoTrue) that the official clients use to sign in.

Mounted only for the self-hosted default (no FLUXOPUS_JWT_SECRET or FLUXOPUS_JWKS_URL): with
an external identity provider, sign-in happens there. Request and response shapes are GoTrue's,
so `@supabase/supabase-js` works unchanged; errors are `{"code", "error_code", "msg"}` as GoTrue
sends them. The `apikey` header Supabase's gateway requires is accepted and not needed.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter
from jwt.algorithms import ECAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from fluxopus.auth.sessions import AuthError, Client, SignIn
from fluxopus.errors import DomainError, Invalid, Unauthorized
from fluxopus.http_limits import decode_json
from fluxopus.models.common import parse
from fluxopus.models.members import InvitationCreate
from fluxopus.requestinfo import note_sign_in_failure
from fluxopus.resolvers.connections import app_redirect
from fluxopus.resolvers.members import invite_member
from fluxopus.runtime import Runtime

JSON_BODY_LIMIT = 64 * 1024
MAX_JSON_DEPTH = 16  # credentials and a little metadata


def gotrue_router() -> APIRouter:
    router = APIRouter()

    @router.post("/signup")
    async def signup(request: Request) -> Response:
        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            email, password = _text(body, "email"), _text(body, "password")
            data = body.get("data") or (body.get("options") or {}).get("data") or {}
            if not isinstance(data, dict):
                raise AuthError(400, "validation_failed", "data must be an object")
            return await auth.sign_up(email, password, data, _client(request))

        return await _answer(request, run)

    @router.post("/token")
    async def token(request: Request) -> Response:
        grant = request.query_params.get("grant_type")

        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            if grant == "password":
                try:
                    return await auth.sign_in(_text(body, "email"), _text(body, "password"), _client(request))
                except AuthError as exc:  # counted in /metrics (fluxopus_sign_in_failures_total)
                    note_sign_in_failure(exc.code)
                    raise
            if grant == "refresh_token":
                return await auth.refresh(_text(body, "refresh_token"), _client(request))
            raise AuthError(400, "validation_failed", "grant_type must be password or refresh_token")

        return await _answer(request, run)

    @router.post("/verify")
    async def verify(request: Request) -> Response:
        """supabase-js `verifyOtp({token_hash, type})` or `({email, token, type})`: a session."""

        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            secret = body.get("token_hash") or body.get("token")
            if not isinstance(secret, str) or not secret:
                raise AuthError(400, "validation_failed", "token_hash (or email and token) is required")
            return await auth.verify(_text(body, "type"), secret, _client(request))

        return await _answer(request, run)

    @router.get("/verify")
    async def verify_link(request: Request) -> Response:
        """The emailed link: signs the browser in and lands it on the app with the session in the URL's
        fragment (never sent to a server), or with GoTrue's error there."""
        runtime: Runtime = request.app.state.runtime
        params = request.query_params
        try:
            target = app_redirect(params.get("redirect_to"), runtime.settings.frontend_url)
        except Invalid:
            target = runtime.settings.frontend_url
        try:
            session = await _sign_in(runtime).verify(params.get("type", ""), params.get("token", ""), _client(request))
            fragment = {k: str(session[k]) for k in ("access_token", "expires_at", "expires_in", "refresh_token")}
            fragment |= {"token_type": "bearer", "type": params.get("type", "")}
        except AuthError as exc:
            fragment = {"error": "access_denied", "error_code": exc.code, "error_description": exc.message}
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        return RedirectResponse(f"{target}#{urlencode(fragment)}", status_code=303, headers=headers)

    @router.post("/resend")
    async def resend(request: Request) -> Response:
        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            await auth.resend(_text(body, "type"), _text(body, "email"))
            return {}

        return await _answer(request, run)

    @router.post("/invite")
    async def invite(request: Request) -> Response:
        """GoTrue's invite, for a company admin's token: `{email, data: {role}}`. The answer is the
        invitation, with `action_link` when the server sends no email (as GoTrue's generate_link)."""
        runtime: Runtime = request.app.state.runtime

        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            claims = await _claims(request)
            await auth.sessions.require(claims)
            data = body.get("data") or {}
            try:
                wanted = parse(InvitationCreate, {"email": _text(body, "email"), "role": data.get("role", "member")})
            except Invalid as exc:
                raise AuthError(400, "validation_failed", exc.message) from None
            ctx = runtime.context(claims)
            try:
                invitation = await invite_member(ctx, data=wanted)
            except DomainError as exc:
                await ctx.db.rollback()
                raise AuthError(exc.status, exc.code.lower(), exc.message) from None
            await ctx.db.commit()
            return {
                "id": str(invitation.id),
                "email": invitation.email,
                "role": invitation.role.value,
                "invited_at": invitation.created_at.isoformat(),
                "expires_at": invitation.expires_at.isoformat(),
                **({"action_link": invitation.accept_url} if invitation.accept_url else {}),
            }

        return await _answer(request, run)

    @router.put("/user")
    async def update_user(request: Request) -> Response:
        """supabase-js `updateUser({password, data})`: an invited user sets their first password here."""

        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            return await auth.update(await _claims(request), body)

        return await _answer(request, run)

    @router.get("/user")
    async def user(request: Request) -> Response:
        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            return await auth.user(await _claims(request))

        return await _answer(request, run, body=False)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        scope = request.query_params.get("scope", "global")

        async def run(auth: SignIn, body: dict[str, Any]) -> Any:
            if scope not in ("global", "local", "others"):
                raise AuthError(400, "validation_failed", "scope must be global, local or others")
            await auth.sign_out(await _claims(request), _scope(scope))
            return None

        return await _answer(request, run, body=False)

    @router.get("/settings")
    async def settings(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        return JSONResponse(
            {
                "external": {"email": True, "phone": False, "anonymous_users": False},
                "disable_signup": False,
                "mailer_autoconfirm": not runtime.mail.configured,
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
        # The kid comes from the public key, so replicas given one key publish the same document; keys
        # rotated out stay listed while tokens they signed may still be presented.
        public = {key.kid: key.public_key, **runtime.verifier.previous_keys}
        keys = [
            json.loads(ECAlgorithm.to_jwk(k)) | {"kid": kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"]}
            for kid, k in public.items()
        ]
        return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=600"})

    return router


def _sign_in(runtime: Runtime) -> SignIn:
    assert runtime.engine is not None and runtime.verifier.local_key is not None
    return SignIn(
        runtime.engine,
        runtime.verifier.local_key,
        issuer=runtime.verifier.issuer,
        mail=runtime.mail,
        sessions=runtime.sessions,
        signups_per_address=runtime.settings.signups_per_address,
    )


async def _answer(request: Request, run: Any, *, body: bool = True) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        result = await run(_sign_in(runtime), await _json(request) if body else {})
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
        data = decode_json(raw or b"{}", MAX_JSON_DEPTH)
    except ValueError as exc:  # json.JSONDecodeError, with what was wrong
        raise AuthError(400, "bad_json", f"Could not parse request body as JSON: {exc}") from None
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
