"""The configured OAuth providers, and the one way this service talks OAuth to them (Authlib + httpx).

`OAuth` is built once per app from the settings. A provider is enabled only when its client id
and secret are configured; built-in ones (providers.BUILT_IN) need nothing else, generic ones an
OpenID Connect discovery URL or their endpoints. Each flow step opens an `OAuthSession`: an
Authlib client for that provider, whose failures all become `OAuthFailure`.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any

import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from fluxopus.config import OAuthProviderSettings, Settings, parse_key
from fluxopus.errors import NotFound, Unavailable
from fluxopus.integrations.crypto import TokenCipher, load_or_create_key
from fluxopus.integrations.providers import (
    BUILT_IN,
    Grant,
    Json,
    OAuthFailure,
    OAuthProvider,
    ProviderSpec,
    rfc7009_revoke,
    userinfo_account,
)
from fluxopus.models.connections import PROVIDER_NAME

DISCOVERY_TTL = 3600.0
_REASON = re.compile(r"^[a-z0-9_.-]{1,64}$")


def reason_code(value: object, default: str = "provider_error") -> str:
    """A provider's `error` as a safe short code for a URL; anything odd becomes `default`."""
    text = str(value or "").strip().lower()
    return text if _REASON.match(text) else default


class OAuthSession:
    """One provider's Authlib client for the steps of one request."""

    def __init__(self, provider: OAuthProvider, timeout: float, tls: ssl.SSLContext) -> None:
        self.provider = provider
        self.timeout = timeout
        client_class = _JsonTokenClient if provider.token_body == "json" else AsyncOAuth2Client
        self.client = client_class(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            token_endpoint_auth_method=provider.token_auth,
            revocation_endpoint_auth_method=provider.token_auth,
            scope=provider.scope or None,
            redirect_uri=provider.redirect_uri,
            code_challenge_method="S256" if provider.pkce else None,
            timeout=timeout,
            verify=tls,
            headers={"User-Agent": "fluxopus", "Accept": "application/json", **provider.headers},
        )

    def authorization_url(self, state: str, code_verifier: str | None) -> str:
        url, _ = self.client.create_authorization_url(
            self.provider.authorize_url, state=state, code_verifier=code_verifier, **self.provider.authorize_params
        )
        return str(url)

    async def exchange(self, code: str, code_verifier: str | None) -> Grant:
        async with self._failures("code exchange"):
            extra = {"code_verifier": code_verifier} if code_verifier else {}
            token = await self.client.fetch_token(self.provider.token_url, code=code, **extra)
        return Grant.from_response(dict(token), self.provider)

    async def refresh(self, refresh_token: str) -> Grant:
        async with self._failures("token refresh"):
            # scope=None: no scope parameter, so the grant keeps the scopes it has (RFC 6749 §6).
            token = await self.client.refresh_token(self.provider.token_url, refresh_token=refresh_token, scope=None)
        return Grant.from_response(dict(token), self.provider, previous_refresh=refresh_token)

    async def revoke(self, provider: OAuthProvider, token: str, hint: str) -> None:
        """RFC 7009 revocation; providers answer 200 even for tokens they no longer know."""
        async with self._failures("revocation"):
            response = await self.client.revoke_token(provider.revoke_url, token=token, token_type_hint=hint)
            response.raise_for_status()

    async def get_json(self, url: str, bearer: str | None) -> Json:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return await self.request_json("GET", url, headers=headers)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        client_auth: bool = False,
        **kwargs: Any,
    ) -> Json:
        auth = httpx2.BasicAuth(self.provider.client_id, self.provider.client_secret) if client_auth else None
        async with self._failures("request to " + _path(url)):
            response = await self.client.request(method, url, headers=headers, auth=auth, withhold_token=True, **kwargs)
            response.raise_for_status()
            if response.status_code == 204 or not response.content:
                return {}
            data = response.json()
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            # Slack answers errors with HTTP 200 and {"ok": false, "error": ...}.
            if data.get("ok") is False or ("error" in data and "access_token" not in data):
                raise OAuthError(error=data.get("error") or "error", description=data.get("error_description"))
            return data

    async def aclose(self) -> None:
        await self.client.aclose()

    @asynccontextmanager
    async def _failures(self, step: str) -> AsyncIterator[None]:
        title = self.provider.title
        try:
            yield
        except OAuthFailure:
            raise
        except OAuthError as exc:
            detail = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
            raise OAuthFailure(reason_code(exc.error), f"{title} refused the {step}: {detail[:300]}") from None
        except httpx2.HTTPStatusError as exc:
            status = exc.response.status_code
            raise OAuthFailure("provider_error", f"{title} answered HTTP {status} to the {step}") from None
        except httpx2.TimeoutException:
            raise OAuthFailure("timeout", f"{title} did not answer the {step} within {self.timeout:g} s") from None
        except httpx2.TransportError as exc:
            raise OAuthFailure(
                "unreachable", f"Could not reach {title} for the {step} ({type(exc).__name__})"
            ) from None
        except ValueError:
            raise OAuthFailure("invalid_response", f"{title} sent an unreadable answer to the {step}") from None


def _path(url: str) -> str:
    """Enough of a URL to say what was called, without a query or a token in the path."""
    return httpx2.URL(url).host or "the provider"


class _JsonTokenClient(AsyncOAuth2Client):  # type: ignore[misc]
    """For token endpoints that take JSON instead of a form (Notion): Authlib always posts a form."""

    async def post(self, url: Any, *, data: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        if data is None:
            return await super().post(url, headers=headers, **kwargs)
        headers = {**(headers or {}), "Content-Type": "application/json"}
        return await super().post(url, json=dict(data), headers=headers, **kwargs)


class OAuth:
    """The providers this server may connect to, the cipher for their tokens, and where the app lives."""

    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.oauth_timeout
        self.app_url = settings.frontend_url
        self.providers = {
            name: _configure(name, config, settings.base_url)
            for name, config in sorted(settings.oauth.items())
            if config.client_id or config.client_secret or name not in BUILT_IN
        }
        self._cipher = token_cipher(settings) if self.providers else None
        self._discovered: dict[str, tuple[float, OAuthProvider]] = {}

    @cached_property
    def _tls(self) -> ssl.SSLContext:
        # Loading the CA bundle takes ~50 ms of CPU: once per app, not once per OAuth request.
        return httpx2.create_ssl_context()

    def describe(self, base_url: str) -> str:
        """For the start-up banner: what users can connect, and the callback to register."""
        if not self.providers:
            return "none configured (FLUXOPUS_OAUTH_<PROVIDER>_CLIENT_ID and _CLIENT_SECRET enable one)"
        names = ", ".join(self.providers)
        return f"{names}   (callback {base_url}/api/connections/callback/<provider>)"

    @property
    def cipher(self) -> TokenCipher:
        if self._cipher is None:
            raise RuntimeError("no OAuth provider is configured, so no token cipher exists")
        return self._cipher

    def configured(self, name: str) -> OAuthProvider:
        """The provider, or 404 saying how to enable it."""
        provider = self.providers.get(name)
        if provider is not None:
            return provider
        upper = _env_name(name)
        if name in BUILT_IN:
            raise NotFound(
                f"{BUILT_IN[name].title} is not configured on this server: "
                f"set FLUXOPUS_OAUTH_{upper}_CLIENT_ID and FLUXOPUS_OAUTH_{upper}_CLIENT_SECRET"
            )
        known = ", ".join(self.providers) or "none"
        raise NotFound(f"Unknown provider {name[:40]!r} (configured here: {known})")

    async def provider(self, name: str) -> OAuthProvider:
        """The provider with its endpoints, read from its OpenID Connect discovery document if it has one."""
        provider = self.configured(name)
        if provider.discovery_url is None:
            return provider
        cached = self._discovered.get(name)
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL:
            return cached[1]
        session = OAuthSession(provider, self.timeout, self._tls)
        try:
            document = await session.get_json(provider.discovery_url, None)
        except OAuthFailure as exc:
            raise Unavailable(f"Could not read {provider.title}'s OpenID configuration: {exc.message}") from None
        finally:
            await session.aclose()
        discovered = _apply_discovery(provider, document)
        self._discovered[name] = (time.monotonic(), discovered)
        return discovered

    @asynccontextmanager
    async def session(self, provider: OAuthProvider) -> AsyncIterator[OAuthSession]:
        session = OAuthSession(provider, self.timeout, self._tls)
        try:
            yield session
        finally:
            await session.aclose()


def _env_name(name: str) -> str:
    """How a provider's name appears in its FLUXOPUS_OAUTH_<NAME>_* variables."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()[:40]


def _configure(name: str, config: OAuthProviderSettings, base_url: str) -> OAuthProvider:
    if not PROVIDER_NAME.fullmatch(name):
        raise ValueError(f"OAuth provider name {name!r}: use lower-case letters, digits, - or _ (at most 40)")
    upper = _env_name(name)
    if not config.client_id or config.client_secret is None:
        raise ValueError(f"OAuth provider {name}: set both FLUXOPUS_OAUTH_{upper}_CLIENT_ID and _CLIENT_SECRET")
    spec = BUILT_IN.get(name)
    if spec is None:
        if config.discovery_url is None and not (config.authorize_url and config.token_url):
            raise ValueError(
                f"OAuth provider {name} is not built in: set FLUXOPUS_OAUTH_{upper}_DISCOVERY_URL "
                f"(OpenID Connect) or FLUXOPUS_OAUTH_{upper}_AUTHORIZE_URL and _TOKEN_URL"
            )
        spec = ProviderSpec(
            name=name,
            title=name.replace("_", " ").replace("-", " ").title(),
            authorize_url=config.authorize_url or "",
            token_url=config.token_url or "",
            scopes=("openid", "email", "profile") if config.discovery_url else (),
            identify=userinfo_account,
            revoke=rfc7009_revoke,
        )
    tenant = config.tenant or "common"
    overrides = {
        key: value
        for key, value in {
            "title": config.title,
            "authorize_url": config.authorize_url,
            "token_url": config.token_url,
            "userinfo_url": config.userinfo_url,
            "revoke_url": config.revoke_url,
            "scopes": tuple(config.scopes) if config.scopes is not None else None,
            "pkce": config.pkce,
            "api_url": config.api_url.rstrip("/") if config.api_url else None,
        }.items()
        if value is not None
    }
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ProviderSpec)} | overrides
    for key in ("authorize_url", "token_url"):
        fields[key] = fields[key].replace("{tenant}", tenant)
    for key in ("authorize_url", "token_url", "userinfo_url", "revoke_url", "discovery_url", "api_url"):
        url = fields.get(key) if key != "discovery_url" else config.discovery_url
        if url and not re.match(r"^https?://", url):
            raise ValueError(f"OAuth provider {name}: {key} must be an http(s) URL")
    return OAuthProvider(
        **fields,
        client_id=config.client_id,
        client_secret=config.client_secret.get_secret_value(),
        redirect_uri=f"{base_url}/api/connections/callback/{name}",
        discovery_url=config.discovery_url,
    )


def _apply_discovery(provider: OAuthProvider, document: Json) -> OAuthProvider:
    """Endpoints from the discovery document, unless configured explicitly."""
    changes: dict[str, Any] = {}
    for key, field in (
        ("authorize_url", "authorization_endpoint"),
        ("token_url", "token_endpoint"),
        ("userinfo_url", "userinfo_endpoint"),
        ("revoke_url", "revocation_endpoint"),
    ):
        if not getattr(provider, key) and isinstance(document.get(field), str):
            changes[key] = document[field]
    if not (changes.get("authorize_url") or provider.authorize_url) or not (
        changes.get("token_url") or provider.token_url
    ):
        raise Unavailable(f"{provider.title}'s OpenID configuration names no authorization or token endpoint")
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        changes["pkce"] = False
    return dataclasses.replace(provider, **changes)


def token_cipher(settings: Settings) -> TokenCipher:
    """The cipher of FLUXOPUS_ENCRYPTION_KEY (and the old keys); embedded, the data dir's generated key."""
    old = [parse_key(k.get_secret_value()) for k in settings.encryption_old_keys]
    if settings.encryption_key is not None:
        return TokenCipher(parse_key(settings.encryption_key.get_secret_value()), old)
    if not settings.embedded:
        raise ValueError(
            "FLUXOPUS_ENCRYPTION_KEY is required when OAuth providers are configured with DATABASE_URL: "
            "every replica must seal tokens with the same key (make one with: openssl rand -base64 32)"
        )
    return TokenCipher(load_or_create_key(settings.encryption_key_path), old)
