"""Connections: OAuth 2.0 authorization-code flows (with PKCE) to third-party tools, and their tokens.

Authorize stores a single-use state bound to the user, company, provider and PKCE verifier; the
provider sends the browser back to the callback, which trusts nothing but that state. Tokens are
sealed with AES-GCM (integrations/crypto.py) before they reach the database, are readable only by
the connecting user's own transaction, and leave this module only through `get_access_token`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from sqlalchemy import RowMapping, Select, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from fluxopus.db import queries as sql
from fluxopus.db.session import call_as_service
from fluxopus.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from fluxopus.integrations.crypto import DecryptError, connection_context, state_context
from fluxopus.integrations.oauth import reason_code
from fluxopus.integrations.providers import Grant, OAuthFailure, OAuthProvider
from fluxopus.models.common import Page, PageQuery
from fluxopus.models.connections import (
    AuthorizationUrl,
    AuthorizeQuery,
    CallbackQuery,
    Connection,
    ConnectionState,
    ConnectionStatus,
    Disconnected,
    connections,
    oauth_states,
)
from fluxopus.resolvers._sql import fetch_page
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import require_membership

log = logging.getLogger(__name__)

# Everything but the sealed tokens, which `authenticated` may not select anyway.
PUBLIC = [c for c in connections.c if c.name not in ("access_token", "refresh_token")]

# A token this close to expiry counts as expired: what get_access_token returns stays usable a while.
EXPIRY_MARGIN = dt.timedelta(seconds=60)
MAX_PENDING_STATES = 20  # per user; older ones are dropped, so a script cannot grow the table


async def list_connections(ctx: Context, *, query: PageQuery) -> Page[Connection]:
    """The caller's connections; an admin's list holds the whole company's."""
    return await fetch_page(ctx, connection_rows, Connection, limit=query.limit, offset=query.offset, row=_connection)


def connection_rows() -> Select[Any]:
    return select(*PUBLIC).order_by(connections.c.created_at.desc(), connections.c.id)


async def connection_status(ctx: Context, *, provider: str) -> ConnectionStatus:
    """The caller's own connection to `provider`, refreshed first when its access token has expired."""
    await require_membership(ctx)  # 401 before 404: an anonymous caller learns nothing about providers
    configured = await ctx.oauth.provider(provider)
    row = await _own(ctx, provider)
    if row is not None and _needs_refresh(row):
        row = await _refresh(ctx, configured, row)
    if row is None:
        return ConnectionStatus(
            provider=provider,
            connected=False,
            status=None,
            connection_id=None,
            account=None,
            scopes=[],
            expires_at=None,
            error=None,
        )
    state = _state(row)
    return ConnectionStatus(
        provider=provider,
        connected=state is ConnectionState.connected,
        status=state,
        connection_id=row["id"],
        account=row["account"],
        scopes=row["scopes"],
        expires_at=row["expires_at"],
        error=row["error"],
    )


async def get_access_token(ctx: Context, provider: str) -> str:
    """A usable access token of the caller's connection to `provider` (refreshed if it had expired),
    for code that calls the provider's API on the user's behalf."""
    await require_membership(ctx)
    configured = await ctx.oauth.provider(provider)
    row = await _own(ctx, provider)
    if row is None:
        raise NotFound(f"You have not connected {configured.title}")
    if _needs_refresh(row):
        row = await _refresh(ctx, configured, row)
    state = _state(row)
    if state is not ConnectionState.connected:
        raise Conflict(f"The {configured.title} connection is {state.value}: {row['error'] or 'reconnect it'}")
    sealed = (await ctx.db.execute(sql.CONNECTION_SECRETS, {"id": row["id"]})).mappings().one()
    try:
        return ctx.oauth.cipher.decrypt(sealed["access_token"], _aad(row, "access"))
    except DecryptError as exc:
        raise Conflict(f"The {configured.title} token cannot be read ({exc}); reconnect it") from None


async def authorize_connection(ctx: Context, *, provider: str, query: AuthorizeQuery) -> AuthorizationUrl:
    await require_membership(ctx)  # 401 before 404, and no discovery request for an anonymous caller
    configured = await ctx.oauth.provider(provider)
    redirect_to = app_redirect(query.redirect_to, ctx.oauth.app_url)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43–128
    state_hash = _hash(state)
    keep = select(oauth_states.c.state_hash).order_by(oauth_states.c.created_at.desc()).limit(MAX_PENDING_STATES - 1)
    await ctx.db.execute(
        delete(oauth_states).where(
            (oauth_states.c.expires_at < func.now()) | oauth_states.c.state_hash.not_in(keep.scalar_subquery())
        )
    )
    await ctx.db.execute(
        insert(oauth_states).values(
            state_hash=state_hash,
            provider=provider,
            code_verifier=ctx.oauth.cipher.encrypt(verifier, state_context(state_hash)),
            redirect_to=redirect_to,
        )
    )
    async with ctx.oauth.session(configured) as session:
        url = session.authorization_url(state, verifier if configured.pkce else None)
    return AuthorizationUrl(url=url)


async def connection_callback(ctx: Context, *, provider: str, query: CallbackQuery) -> AuthorizationUrl:
    """Where the provider sends the browser back. Every outcome but an unknown provider is a
    redirect to the app, with `status=connected`, or `status=error&reason=<code>` and nothing stored."""
    configured = ctx.oauth.configured(provider)
    app_url = ctx.oauth.app_url
    if not query.state:
        return _failed(app_url, provider, "invalid_state", "no state")
    taken = await call_as_service(ctx.db.service_engine, sql.TAKE_OAUTH_STATE, {"hash": _hash(query.state)})
    if not taken:
        return _failed(app_url, provider, "invalid_state", "unknown or already used state")
    pending = taken[0]
    target = pending["redirect_to"] or app_url
    if pending["provider"] != provider:
        return _failed(target, provider, "invalid_state", f"state was issued for {pending['provider']}")
    if pending["expired"]:
        return _failed(target, provider, "expired_state", "state expired")
    if query.error:
        return _failed(target, provider, reason_code(query.error), f"provider said {query.error}")
    if not query.code:
        return _failed(target, provider, "missing_code", "no code")
    try:
        verifier = ctx.oauth.cipher.decrypt(pending["code_verifier"], state_context(_hash(query.state)))
        configured = await ctx.oauth.provider(provider)
        async with ctx.oauth.session(configured) as session:
            grant = await session.exchange(query.code, verifier if configured.pkce else None)
            account = await configured.identify(session, configured, grant)
    except OAuthFailure as exc:
        return _failed(target, provider, exc.reason, exc.message)
    except (DecryptError, DomainError) as exc:
        return _failed(target, provider, "server_error", str(exc))
    # The state proves this browser came back from a flow that this user started, moments ago.
    ctx.assume({"sub": str(pending["user_id"]), "role": "authenticated", "aud": "authenticated"})
    try:
        async with ctx.db.savepoint():  # a refused store leaves nothing behind
            await _store(ctx, configured, grant, account.id, account.label)
    except DomainError as exc:
        await _abandon(ctx, configured, grant)
        return _failed(target, provider, "not_allowed", exc.message)
    return AuthorizationUrl(url=with_query(target, connection=provider, status="connected"))


async def _abandon(ctx: Context, provider: OAuthProvider, grant: Grant) -> None:
    """A grant that will not be stored is revoked, so it does not live on at the provider unused."""
    if provider.revoke is None or not provider.revoke_url:
        return
    try:
        async with ctx.oauth.session(provider) as session:
            await provider.revoke(session, provider, grant)
    except OAuthFailure as exc:
        log.warning("revoking an unstored %s grant failed: %s", provider.name, exc.message)


async def disconnect(ctx: Context, *, id: UUID) -> Disconnected:
    """Revoke the grant at the provider when it can be, then delete the connection either way."""
    row = (await ctx.db.execute(select(*PUBLIC).where(connections.c.id == id).with_for_update())).mappings().first()
    if row is None:
        visible = (await ctx.db.execute(select(connections.c.id).where(connections.c.id == id))).first()
        if visible is None:
            raise NotFound("Connection not found")
        raise Forbidden("Only the user who made a connection can disconnect it")
    revoked, problem = await _revoke(ctx, row)
    await ctx.db.execute(delete(connections).where(connections.c.id == id))
    return Disconnected(id=id, revoked=revoked, revoke_error=problem)


async def _revoke(ctx: Context, row: RowMapping) -> tuple[bool, str | None]:
    provider = ctx.oauth.providers.get(row["provider"])
    if provider is None:
        return False, f"{row['provider']} is no longer configured on this server, so it was not asked to revoke"
    if provider.revoke is None or not provider.revoke_url:
        try:
            provider = await ctx.oauth.provider(provider.name)  # discovery may name a revocation endpoint
        except DomainError as exc:
            return False, exc.message
        if provider.revoke is None or not provider.revoke_url:
            return False, f"{provider.title} offers no revocation: remove the app's access in your account settings"
    try:
        grant = await _unseal(ctx, row)
        async with ctx.oauth.session(provider) as session:
            await provider.revoke(session, provider, grant)
    except DecryptError as exc:
        return False, f"The stored tokens cannot be read ({exc})"
    except OAuthFailure as exc:
        log.warning("revoking %s connection %s failed: %s", row["provider"], row["id"], exc.message)
        return False, exc.message
    return True, None


async def _own(ctx: Context, provider: str) -> RowMapping | None:
    await require_membership(ctx)
    stmt = select(*PUBLIC).where(connections.c.user_id == ctx.user_id, connections.c.provider == provider)
    return (await ctx.db.execute(stmt)).mappings().first()


async def _refresh(ctx: Context, provider: OAuthProvider, seen: RowMapping) -> RowMapping:
    """One refresh at a time per connection: the row lock makes a concurrent caller wait, and it
    then finds the fresh token instead of spending the (possibly single-use) refresh token again."""
    id = seen["id"]
    locked = select(*PUBLIC).where(connections.c.id == id).with_for_update()
    row = (await ctx.db.execute(locked)).mappings().one()
    if row["expires_at"] != seen["expires_at"] or not _needs_refresh(row):
        return row  # refreshed (or revoked) by someone else while we waited
    try:
        old = await _unseal(ctx, row)
        assert old.refresh_token is not None  # _needs_refresh checked has_refresh_token
        async with ctx.oauth.session(provider) as session:
            grant = await session.refresh(old.refresh_token)
    except DecryptError as exc:
        changes: dict[str, Any] = {"status": "error", "error": f"The stored tokens cannot be read ({exc}); reconnect"}
    except OAuthFailure as exc:
        status = "revoked" if exc.reason == "invalid_grant" else "error"
        log.warning("refreshing %s connection %s failed: %s", row["provider"], id, exc.message)
        changes = {"status": status, "error": exc.message[:1000]}
    else:
        changes = _sealed(ctx, row, grant) | {"status": "connected", "error": None}
    stmt = update(connections).where(connections.c.id == id).values(**changes).returning(*PUBLIC)
    return (await ctx.db.execute(stmt)).mappings().one()


async def _store(
    ctx: Context, provider: OAuthProvider, grant: Grant, account_id: str | None, label: str | None
) -> None:
    """Insert the connection, or replace the tokens of the caller's existing one to this provider."""
    key = {"user_id": ctx.user_id, "provider": provider.name}
    values = _sealed(ctx, key, grant) | {
        "account_id": (account_id or "")[:500] or None,
        "account": (label or "")[:500] or None,
        "status": "connected",
        "error": None,
    }
    stmt = pg_insert(connections).values(provider=provider.name, **values)
    # Values, not `excluded.*`: reading excluded token columns would need select rights on them.
    stmt = stmt.on_conflict_do_update(index_elements=["user_id", "provider"], set_=values)
    await ctx.db.execute(stmt.returning(connections.c.id))


def _sealed(ctx: Context, row: Any, grant: Grant) -> dict[str, Any]:
    cipher = ctx.oauth.cipher
    return {
        "access_token": cipher.encrypt(grant.access_token, _aad(row, "access")),
        "refresh_token": cipher.encrypt(grant.refresh_token, _aad(row, "refresh")) if grant.refresh_token else None,
        "token_type": (grant.token_type or "")[:40] or None,
        "expires_at": grant.expires_at,
        "scopes": grant.scopes,
    }


async def _unseal(ctx: Context, row: RowMapping) -> Grant:
    sealed = (await ctx.db.execute(sql.CONNECTION_SECRETS, {"id": row["id"]})).mappings().one()
    cipher = ctx.oauth.cipher
    refresh = sealed["refresh_token"]
    return Grant(
        access_token=cipher.decrypt(sealed["access_token"], _aad(row, "access")),
        refresh_token=cipher.decrypt(refresh, _aad(row, "refresh")) if refresh is not None else None,
        token_type=row["token_type"],
        expires_at=row["expires_at"],
        scopes=list(row["scopes"]),
        raw={},
    )


def _aad(row: Any, kind: str) -> str:
    return connection_context(row["user_id"], row["provider"], kind)


def _expired(row: Mapping[Any, Any], margin: dt.timedelta = dt.timedelta(0)) -> bool:
    expires_at = row["expires_at"]
    return expires_at is not None and expires_at <= dt.datetime.now(dt.UTC) + margin


def _needs_refresh(row: Mapping[Any, Any]) -> bool:
    return _expired(row, EXPIRY_MARGIN) and bool(row["has_refresh_token"]) and row["status"] != "revoked"


def _state(row: Mapping[Any, Any]) -> ConnectionState:
    if row["status"] == "revoked":
        return ConnectionState.revoked
    if _expired(row):
        return ConnectionState.error if row["status"] == "error" else ConnectionState.expired
    return ConnectionState(row["status"])


def _connection(row: dict[str, Any]) -> Connection:
    # A token that expired with a refresh token to renew it is still a working connection.
    state = _state(row) if not (row["has_refresh_token"] and row["status"] == "connected") else None
    return Connection.model_validate(row | {"status": state or ConnectionState.connected})


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _failed(target: str, provider: str, reason: str, detail: str) -> AuthorizationUrl:
    log.info("connection to %s failed: %s (%s)", provider, reason, detail)
    return AuthorizationUrl(url=with_query(target, connection=provider, status="error", reason=reason))


def app_redirect(redirect_to: str | None, app_url: str) -> str:
    """`redirect_to` as an absolute URL on the app's origin, or 400: never an open redirect."""
    if redirect_to is None:
        return app_url
    if any(ch in redirect_to for ch in "\\\x00\r\n\t") or any(ord(ch) < 32 for ch in redirect_to):
        raise Invalid("redirect_to: must not contain backslashes or control characters")
    app = urlsplit(app_url)
    if redirect_to.startswith("/") and not redirect_to.startswith("//"):
        target = urlsplit(f"{app.scheme}://{app.netloc}{redirect_to}")
    else:
        target = urlsplit(redirect_to)
    same_origin = (
        target.scheme.lower() == app.scheme.lower()
        and target.netloc.lower() == app.netloc.lower()
        and "@" not in target.netloc
    )
    if not same_origin:
        raise Invalid(f"redirect_to: must be a path or a URL on the app's origin ({app.scheme}://{app.netloc})")
    return urlunsplit(target)


def with_query(url: str, **params: str) -> str:
    """`url` with these query parameters set (replacing any of the same name), before its fragment."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode([*kept, *params.items()])))
