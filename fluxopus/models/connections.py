"""Connections (OAuth grants to third-party tools): inputs, outputs and the mapped tables.

No output model has a token field: tokens never leave the service.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import ARRAY, Column, FetchedValue, LargeBinary, String
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from fluxopus.models.common import Output

ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")]


class ConnectionState(StrEnum):
    connected = "connected"
    expired = "expired"  # the access token expired and there is no refresh token: reconnect
    revoked = "revoked"  # the provider refused the refresh token (the user or an admin revoked access)
    error = "error"  # the last refresh failed for another reason; the next status check retries


class ConnectionRow(SQLModel, table=True):
    __tablename__ = "connections"

    id: UUID | None = SQLField(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    company_id: UUID | None = None
    user_id: UUID | None = None
    provider: str
    account_id: str | None = None
    account: str | None = None
    scopes: list[str] = SQLField(default_factory=list, sa_column=Column(ARRAY(String)))
    status: str | None = None
    error: str | None = None
    access_token: bytes = SQLField(sa_column=Column(LargeBinary))
    refresh_token: bytes | None = SQLField(default=None, sa_column=Column(LargeBinary))
    has_refresh_token: bool | None = None
    token_type: str | None = None
    expires_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class OAuthStateRow(SQLModel, table=True):
    __tablename__ = "oauth_states"

    state_hash: str = SQLField(primary_key=True)
    user_id: UUID | None = None
    company_id: UUID | None = None
    provider: str
    code_verifier: bytes = SQLField(sa_column=Column(LargeBinary))
    redirect_to: str | None = None
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None


class Connection(Output):
    id: UUID
    user_id: UUID = Field(description="Who connected it (admins list the whole company's connections)")
    provider: str
    status: ConnectionState
    account: str | None = Field(description="The account at the provider: email, login or workspace")
    scopes: list[str]
    expires_at: dt.datetime | None = Field(description="When the current access token expires, if it does")
    error: str | None = Field(description="Why the status is revoked or error")
    created_at: dt.datetime
    updated_at: dt.datetime


class ConnectionStatus(Output):
    provider: str
    connected: bool = Field(description="True when the connection can be used now")
    status: ConnectionState | None = Field(description="null when the caller has not connected this provider")
    connection_id: UUID | None
    account: str | None
    scopes: list[str]
    expires_at: dt.datetime | None
    error: str | None


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
    id: UUID
    deleted: bool = True
    revoked: bool = Field(description="Whether the provider confirmed the grant is revoked")
    revoke_error: str | None = Field(description="Why it was not revoked at the provider (the connection is deleted)")
