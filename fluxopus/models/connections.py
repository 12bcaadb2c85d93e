"""Connections (OAuth grants to third-party tools): outputs and tables.

No output model has a token field: tokens never leave the service.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import ARRAY, Boolean, Column, FetchedValue, LargeBinary, Table, Text

from fluxopus.models.common import Output, documented
from fluxopus.models.entity import column_type, metadata

# An OAuth provider's name, as URLs (/connections/authorize/{provider}) and settings
# (FLUXOPUS_OAUTH_<NAME>_CLIENT_ID) carry it.
PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


@documented(
    connected="Usable: its access token is valid or can be refreshed",
    expired="The access token expired and there is no refresh token: connect again",
    revoked="The provider refused the refresh token (access was revoked there): connect again",
    error="The last refresh failed for another reason (`error` says which); the next status check retries",
)
class ConnectionState(StrEnum):
    """Whether a connection to a provider can be used."""

    connected = "connected"
    expired = "expired"
    revoked = "revoked"
    error = "error"


# Connections show through Connection and ConnectionStatus, which the resolvers compute from a row
# (an expired token shows as `expired`), so the tables are declared here as tables.
connections = Table(
    "connections",
    metadata,
    Column("id", column_type(UUID), primary_key=True, server_default=FetchedValue()),
    Column("company_id", column_type(UUID), nullable=False),
    Column("user_id", column_type(UUID), nullable=False),
    Column("provider", Text, nullable=False),
    Column("account_id", Text),
    Column("account", Text),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("status", Text, nullable=False),
    Column("error", Text),
    Column("access_token", LargeBinary, nullable=False),
    Column("refresh_token", LargeBinary),
    Column("has_refresh_token", Boolean),
    Column("token_type", Text),
    Column("expires_at", column_type(dt.datetime)),
    Column("created_at", column_type(dt.datetime), nullable=False),
    Column("updated_at", column_type(dt.datetime), nullable=False),
)

oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state_hash", Text, primary_key=True),
    Column("user_id", column_type(UUID), nullable=False),
    Column("company_id", column_type(UUID), nullable=False),
    Column("provider", Text, nullable=False),
    Column("code_verifier", LargeBinary, nullable=False),
    Column("redirect_to", Text),
    Column("created_at", column_type(dt.datetime), nullable=False),
    Column("expires_at", column_type(dt.datetime), nullable=False),
)


class Connection(Output):
    """An OAuth grant to a third-party tool. Tokens never leave the server."""

    id: UUID = Field(description="The connection's id (a UUID)")
    user_id: UUID = Field(description="Who connected it (admins list the whole company's connections)")
    provider: str = Field(description="The provider's name as the server is configured with it, e.g. github")
    status: ConnectionState = Field(description="Whether it can be used")
    account: str | None = Field(description="The account at the provider: email, login or workspace")
    scopes: list[str] = Field(description="The scopes the provider granted")
    expires_at: dt.datetime | None = Field(description="When the current access token expires, if it does")
    error: str | None = Field(description="Why the status is revoked or error")
    created_at: dt.datetime = Field(description="When it was first connected")
    updated_at: dt.datetime = Field(description="When it last changed (a refresh, a reconnection)")


class ConnectionStatus(Output):
    """The caller's connection to one provider, checked now."""

    provider: str = Field(description="The provider asked about")
    connected: bool = Field(description="True when the connection can be used now")
    status: ConnectionState | None = Field(description="null when the caller has not connected this provider")
    connection_id: UUID | None = Field(description="The connection's id; null when not connected")
    account: str | None = Field(description="The account at the provider; null when unknown or not connected")
    scopes: list[str] = Field(description="The scopes granted; empty when not connected")
    expires_at: dt.datetime | None = Field(description="When the access token expires; null when it does not")
    error: str | None = Field(description="Why the status is revoked or error; otherwise null")


class AuthorizeQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    redirect_to: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description="Where the app wants the user back after the callback: a path or a URL on the app's origin",
    )


class CallbackQuery(BaseModel):
    """What the provider appends to our redirect URI: a code and the state, or an error."""

    model_config = ConfigDict(extra="ignore")

    code: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="The authorization code, exchanged once for tokens"
    )
    state: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="The single-use state issued by authorize: the only proof the callback trusts"
    )
    error: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Set by the provider instead of a code, e.g. access_denied"
    )
    error_description: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None, description="The provider's explanation of `error` (logged, not shown)"
    )


class AuthorizationUrl(Output):
    url: str = Field(description="Send the user's browser here")


class Disconnected(Output):
    """What disconnecting answers: the connection is deleted whatever the provider said."""

    id: UUID = Field(description="The deleted connection's id")
    deleted: bool = Field(default=True, description="Always true: the connection is gone")
    revoked: bool = Field(description="Whether the provider confirmed the grant is revoked")
    revoke_error: str | None = Field(description="Why it was not revoked at the provider (the connection is deleted)")
