"""Companies, members, invitations and the caller's identity: outputs and tables."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints
from sqlalchemy import BigInteger, Boolean, Column, FetchedValue, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from fluxopus.models.common import Input, Output, documented
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
    Column("tools_enabled", Boolean, nullable=False),
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


@documented(
    admin="Manages the company: members, invitations, and everyone's tasks and runs",
    member="Works with their own tasks and runs, and what the company shares",
)
class Role(StrEnum):
    """A user's role in their company."""

    admin = "admin"
    member = "member"


class Company(Output):
    """A company (tenant): its members share tasks, tags, skills and knowledge, and nothing else."""

    id: UUID = Field(description="The company's id (a UUID)")
    name: str = Field(description="Its name")
    created_at: dt.datetime = Field(description="When it was created")


class Member(Output):
    """A user as a member of the caller's company."""

    user_id: UUID = Field(description="The user's id (a UUID): what tasks' assigneeId and createdBy hold")
    email: str = Field(description="The user's email address")
    role: Role = Field(description="Their role in the company")
    company_id: UUID = Field(description="The company: the caller's")
    created_at: dt.datetime = Field(description="When they joined")


class Me(Output):
    """The caller, as their token says."""

    id: UUID = Field(description="The caller's user id (a UUID)")
    email: str | None = Field(description="Their email address; null for a token without a user record")
    role: Role | None = Field(description="Their role in their company; null when they have no company")
    company: Company | None = Field(description="Their company; null for a user without one")


# Deliberately loose (one @, a dot in the domain, no spaces): the address is proven by whoever
# signs up with it; this only catches typos and pasted junk.
_EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]+$"
Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=320, pattern=_EMAIL)]


class InvitationCreate(Input):
    email: Email = Field(description="The address to invite (kept in lower case)")
    role: Role = Field(default=Role.member, description="The role they join with (default member)")


class Invitation(Output):
    """An invitation to join the caller's company, pending until the invited person accepts it."""

    id: UUID = Field(description="The invitation's id (a UUID)")
    email: str = Field(description="The address invited")
    role: Role = Field(description="The role they join with")
    invited_by: UUID = Field(description="The admin who invited them")
    created_at: dt.datetime = Field(description="When it was sent (or last renewed)")
    accepted_at: dt.datetime | None = Field(description="When it was accepted; null while pending")
    expires_at: dt.datetime = Field(description="When its link stops working")
    # Only in the answer to the invitation itself: the link is not stored and cannot be shown again.
    accept_url: str | None = Field(
        default=None,
        description="The link that accepts the invitation, only in the answer to the invitation itself and only"
        " when the server sends no email: pass it on to the invited person (it works once, until expires_at)",
    )
    email_sent: bool = Field(
        default=False, description="In the answer to the invitation itself: the link was emailed to the address"
    )
