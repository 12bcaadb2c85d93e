"""Companies, members, invitations and the caller's identity: outputs and tables."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints
from sqlalchemy import BigInteger, Column, FetchedValue, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from fluxopus.models.common import Input, Output
from fluxopus.models.entity import column_type, metadata

# These show through Me, Member and Invitation, which the resolvers assemble from joins, and are
# written only by the security-definer functions of the migrations and by db/users.py: declared here
# as plain tables, every column (tests/test_declarations.py holds them to the database).
users = Table(
    "users",
    metadata,
    Column("id", column_type(UUID), primary_key=True, server_default=FetchedValue()),
    Column("email", Text, nullable=False),
    Column("created_at", column_type(dt.datetime), nullable=False),
    Column("password_hash", Text),
    Column("email_confirmed_at", column_type(dt.datetime)),
    Column("last_sign_in_at", column_type(dt.datetime)),
    Column("user_metadata", JSONB, nullable=False),
    Column("confirmation_token_hash", Text),
    Column("confirmation_sent_at", column_type(dt.datetime)),
)

companies = Table(
    "companies",
    metadata,
    Column("id", column_type(UUID), primary_key=True, server_default=FetchedValue()),
    Column("name", Text, nullable=False),
    Column("created_at", column_type(dt.datetime), nullable=False),
    Column("monthly_token_budget", BigInteger),
    Column("storage_quota", BigInteger),
)

members = Table(
    "members",
    metadata,
    Column("user_id", column_type(UUID), primary_key=True),
    Column("company_id", column_type(UUID), nullable=False),
    Column("role", Text, nullable=False),
    Column("created_at", column_type(dt.datetime), nullable=False),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", column_type(UUID), primary_key=True, server_default=FetchedValue()),
    Column("company_id", column_type(UUID), nullable=False),
    Column("email", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("invited_by", column_type(UUID), nullable=False),
    Column("created_at", column_type(dt.datetime), nullable=False),
    Column("accepted_at", column_type(dt.datetime)),
    Column("token_hash", Text),
    Column("expires_at", column_type(dt.datetime), nullable=False),
    Column("accepted_by", column_type(UUID)),
)


class Role(StrEnum):
    admin = "admin"
    member = "member"


class Company(Output):
    id: UUID
    name: str
    created_at: dt.datetime


class Member(Output):
    user_id: UUID
    email: str
    role: Role
    company_id: UUID
    created_at: dt.datetime


class Me(Output):
    id: UUID
    email: str | None
    role: Role | None
    company: Company | None


# Deliberately loose (one @, a dot in the domain, no spaces): the address is proven by whoever
# signs up with it; this only catches typos and pasted junk.
_EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]+$"
Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=320, pattern=_EMAIL)]


class InvitationCreate(Input):
    email: Email
    role: Role = Role.member


class Invitation(Output):
    id: UUID
    email: str
    role: Role
    invited_by: UUID
    created_at: dt.datetime
    accepted_at: dt.datetime | None
    expires_at: dt.datetime
    # Only in the answer to the invitation itself: the link is not stored and cannot be shown again.
    accept_url: str | None = Field(
        default=None,
        description="The link that accepts the invitation, only in the answer to the invitation itself and only"
        " when the server sends no email: pass it on to the invited person (it works once, until expires_at)",
    )
    email_sent: bool = Field(
        default=False, description="In the answer to the invitation itself: the link was emailed to the address"
    )
