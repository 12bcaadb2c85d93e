"""Companies, members, invitations and the caller's identity."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from fluxopus.models.common import Input, Output


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
