"""Companies, members and the caller's identity."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from uuid import UUID

from fluxopus.models.common import Output


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
