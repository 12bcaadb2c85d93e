"""What this service knows about each OAuth provider, as data.

A `ProviderSpec` names the endpoints, default scopes and quirks of one provider; the built-in
ones are listed in BUILT_IN at the bottom. Where a provider departs from the standards (how
the account is named, how a grant is revoked, an error inside a 200), the spec points at a
small function here that does it that provider's way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Json = dict[str, Any]


class Session(Protocol):
    """What a provider's own way of doing things needs of an OAuth session (oauth.OAuthSession)."""

    async def get_json(self, url: str, bearer: str | None) -> Json: ...

    async def request_json(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, client_auth: bool = False, **kwargs: Any
    ) -> Json: ...

    async def revoke(self, provider: OAuthProvider, token: str, hint: str) -> None: ...


@dataclass(frozen=True)
class ProviderAccount:
    """Who the grant belongs to at the provider: a stable id, and a label people recognise."""

    id: str | None
    label: str | None


class OAuthFailure(Exception):
    """A step of a flow failed. `reason` is a short code that is safe to show (it goes into the
    app's redirect URL); `message` explains it. Neither ever holds a token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


Identify = Callable[[Session, "OAuthProvider", "Grant"], Awaitable[ProviderAccount]]
Revoke = Callable[[Session, "OAuthProvider", "Grant"], Awaitable[None]]


def _first(data: Json, *paths: str) -> str | None:
    """The first non-empty value among dotted paths, e.g. "owner.user.person.email"."""
    for path in paths:
        value: Any = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, ""):
            return str(value)
    return None


async def userinfo_account(session: Session, provider: OAuthProvider, grant: Grant) -> ProviderAccount:
    """OpenID Connect userinfo (or any JSON "who am I" endpoint): `sub`/`id`, and the email."""
    if not provider.userinfo_url:
        return ProviderAccount(id=None, label=None)
    data = await session.get_json(provider.userinfo_url, grant.access_token)
    return ProviderAccount(
        id=_first(data, "sub", "id", "account_id", "user_id"),
        label=_first(data, "email", "mail", "userPrincipalName", "preferred_username", "login", "name"),
    )


async def github_account(session: Session, provider: OAuthProvider, grant: Grant) -> ProviderAccount:
    data = await session.get_json(provider.userinfo_url or "", grant.access_token)
    return ProviderAccount(id=_first(data, "id"), label=_first(data, "login", "email"))


async def slack_account(session: Session, provider: OAuthProvider, grant: Grant) -> ProviderAccount:
    # oauth.v2.access names the workspace in the token response itself.
    return ProviderAccount(id=_first(grant.raw, "team.id"), label=_first(grant.raw, "team.name", "team.id"))


async def notion_account(session: Session, provider: OAuthProvider, grant: Grant) -> ProviderAccount:
    return ProviderAccount(
        id=_first(grant.raw, "workspace_id", "bot_id"),
        label=_first(grant.raw, "workspace_name", "owner.user.person.email", "workspace_id"),
    )


async def hubspot_account(session: Session, provider: OAuthProvider, grant: Grant) -> ProviderAccount:
    # Token introspection (2026-03 API) names the portal and user; the token response has the ids too.
    data = await session.request_json(
        "POST",
        provider.userinfo_url or "",
        data={
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "token": grant.access_token,
            "token_type_hint": "access_token",
        },
    )
    merged = grant.raw | data
    hub = _first(merged, "hub_id", "hubId")
    return ProviderAccount(
        id=hub, label=_first(merged, "user", "hub_domain") or (f"HubSpot account {hub}" if hub else None)
    )


async def rfc7009_revoke(session: Session, provider: OAuthProvider, grant: Grant) -> None:
    """Revoke the refresh token when there is one (that ends the whole grant), else the access token."""
    if grant.refresh_token:
        await session.revoke(provider, grant.refresh_token, "refresh_token")
    else:
        await session.revoke(provider, grant.access_token, "access_token")


async def github_revoke(session: Session, provider: OAuthProvider, grant: Grant) -> None:
    # DELETE /applications/{client_id}/grant removes the app's whole authorization for the user.
    url = f"{provider.revoke_url}/{provider.client_id}/grant"
    await session.request_json("DELETE", url, json={"access_token": grant.access_token}, client_auth=True)


async def slack_revoke(session: Session, provider: OAuthProvider, grant: Grant) -> None:
    # auth.revoke is authenticated by the very token it revokes.
    await session.request_json(
        "POST", provider.revoke_url or "", headers={"Authorization": f"Bearer {grant.access_token}"}
    )


async def notion_revoke(session: Session, provider: OAuthProvider, grant: Grant) -> None:
    await session.request_json("POST", provider.revoke_url or "", json={"token": grant.access_token}, client_auth=True)


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    title: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    userinfo_url: str | None = None
    revoke_url: str | None = None
    pkce: bool = True  # send an S256 code_challenge (and the verifier with the code)
    refresh: bool = True  # the provider issues refresh tokens (with these scopes)
    scope_separator: str = " "
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_auth: str = "client_secret_post"  # or client_secret_basic
    token_body: str = "form"  # RFC 6749's form, or "json" (Notion)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent on every request to the provider
    identify: Identify = userinfo_account
    revoke: Revoke | None = rfc7009_revoke
    api_url: str | None = None  # the REST API skill tools call (ai/tools.py), without a trailing slash


@dataclass(frozen=True)
class OAuthProvider(ProviderSpec):
    """A provider as configured here: its spec with overrides, credentials and our callback URL."""

    client_id: str = ""
    client_secret: str = dataclasses.field(default="", repr=False)
    redirect_uri: str = ""
    discovery_url: str | None = None

    @property
    def scope(self) -> str:
        return self.scope_separator.join(self.scopes)


@dataclass(frozen=True)
class Grant:
    """Tokens from a token endpoint. Never logged or shown: the tokens are kept out of repr."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str | None = dataclasses.field(repr=False)
    token_type: str | None
    expires_at: dt.datetime | None
    scopes: list[str]
    raw: Json = dataclasses.field(repr=False)  # the whole response, for providers that name the account in it

    @classmethod
    def from_response(cls, token: Json, provider: OAuthProvider, *, previous_refresh: str | None = None) -> Grant:
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthFailure("invalid_response", f"{provider.title}'s token response has no access_token")
        expires_in = token.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int | float | str) and str(expires_in).strip().isdigit():
            expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(expires_in))
        scope = token.get("scope")
        scopes = [s for s in re.split(r"[\s,]+", scope) if s] if isinstance(scope, str) else list(provider.scopes)
        refresh = token.get("refresh_token")
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            token_type=str(token.get("token_type") or "") or None,
            expires_at=expires_at,
            scopes=scopes,
            raw=token,
        )


BUILT_IN: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            name="google",
            title="Google",
            authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",
            userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
            revoke_url="https://oauth2.googleapis.com/revoke",
            scopes=("openid", "email", "profile"),
            # A refresh token only comes with offline access, and again only on renewed consent.
            authorize_params={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
        ),
        ProviderSpec(
            name="microsoft",
            title="Microsoft",
            authorize_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
            token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            userinfo_url="https://graph.microsoft.com/oidc/userinfo",
            revoke_url=None,  # Entra ID has no token revocation endpoint
            scopes=("openid", "email", "profile", "offline_access", "User.Read"),
            authorize_params={"response_mode": "query"},
            # The only Graph API that revokes (revokeSignInSessions) signs the user out of every app.
            revoke=None,
        ),
        ProviderSpec(
            name="github",
            api_url="https://api.github.com",
            title="GitHub",
            authorize_url="https://github.com/login/oauth/authorize",
            token_url="https://github.com/login/oauth/access_token",
            userinfo_url="https://api.github.com/user",
            revoke_url="https://api.github.com/applications",
            scopes=("read:user", "user:email"),
            # OAuth apps' tokens do not expire unless the app opts in to expiring, refreshable ones.
            refresh=False,
            identify=github_account,
            revoke=github_revoke,
        ),
        ProviderSpec(
            name="slack",
            api_url="https://slack.com/api",
            title="Slack",
            authorize_url="https://slack.com/oauth/v2/authorize",
            token_url="https://slack.com/api/oauth.v2.access",
            revoke_url="https://slack.com/api/auth.revoke",
            scopes=("channels:read", "channels:history", "users:read"),
            scope_separator=",",
            # Slack's PKCE turns an app into a public client for good: not for a server like this one.
            pkce=False,
            refresh=False,  # only with token rotation turned on for the app
            identify=slack_account,
            revoke=slack_revoke,
        ),
        ProviderSpec(
            name="notion",
            api_url="https://api.notion.com/v1",
            title="Notion",
            authorize_url="https://api.notion.com/v1/oauth/authorize",
            token_url="https://api.notion.com/v1/oauth/token",
            revoke_url="https://api.notion.com/v1/oauth/revoke",
            scopes=(),  # Notion grants the pages the user picks on its consent page
            authorize_params={"owner": "user"},
            token_auth="client_secret_basic",
            token_body="json",
            headers={"Notion-Version": "2022-06-28"},
            pkce=False,
            identify=notion_account,
            revoke=notion_revoke,
        ),
        ProviderSpec(
            name="hubspot",
            title="HubSpot",
            authorize_url="https://app.hubspot.com/oauth/authorize",
            # The 2026-03 OAuth API: HubSpot retires the v1 endpoints on 2027-02-16.
            token_url="https://api.hubapi.com/oauth/2026-03/token",
            userinfo_url="https://api.hubapi.com/oauth/2026-03/token/introspect",
            revoke_url="https://api.hubapi.com/oauth/2026-03/token/revoke",
            scopes=("oauth", "crm.objects.contacts.read"),
            pkce=False,
            identify=hubspot_account,
        ),
        ProviderSpec(
            name="atlassian",
            title="Atlassian",
            authorize_url="https://auth.atlassian.com/authorize",
            token_url="https://auth.atlassian.com/oauth/token",
            userinfo_url="https://api.atlassian.com/me",
            revoke_url=None,  # Atlassian has no revocation endpoint: users remove apps in their profile
            scopes=("read:me", "read:jira-work", "read:confluence-content.summary", "offline_access"),
            # Refresh tokens rotate: each refresh disables the one it used.
            authorize_params={"audience": "api.atlassian.com", "prompt": "consent"},
            pkce=False,
            revoke=None,
        ),
    )
}
