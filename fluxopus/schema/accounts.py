from __future__ import annotations

import datetime as dt

import strawberry

from fluxopus.models.accounts import Role as RoleEnum
from fluxopus.resolvers import accounts
from fluxopus.schema._convert import build

Role = strawberry.enum(RoleEnum, name="Role")


@strawberry.type
class Company:
    id: strawberry.ID
    name: str
    created_at: dt.datetime


@strawberry.type
class Member:
    user_id: strawberry.ID
    email: str
    role: Role  # type: ignore[valid-type]
    company_id: strawberry.ID
    created_at: dt.datetime


@strawberry.type
class Me:
    id: strawberry.ID
    email: str | None
    role: Role | None  # type: ignore[valid-type]
    company: Company | None


@strawberry.type
class AccountsQuery:
    @strawberry.field(description="The caller: user id, email, company and role")
    async def me(self, info: strawberry.Info) -> Me:
        result = await accounts.me(info.context)
        return Me(
            id=strawberry.ID(str(result.id)),
            email=result.email,
            role=result.role,
            company=build(Company, result.company) if result.company else None,
        )
