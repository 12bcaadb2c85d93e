"""Users, companies and records for tests, created the way a client would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from fluxopus.auth.jwt import mint_token
from fluxopus.db.engine import operator_engine
from fluxopus.db.users import ensure_member, set_token_budget

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@dataclass
class User:
    id: str
    email: str
    company_id: str
    company: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_user(database_url: str, *, company: str, role: str = "member", email: str | None = None) -> User:
    email = email or f"{unique('user')}@example.com"
    async with operator_engine(database_url) as engine:
        m = await ensure_member(engine, email=email, company=company, role=role)
    token = mint_token(SECRET, user_id=m.user_id, email=m.email, role=m.role, company_id=m.company_id, ttl=3600)
    return User(str(m.user_id), m.email, str(m.company_id), m.company, m.role, token)


@dataclass
class Company:
    """A company with an admin and two members."""

    name: str
    admin: User
    alice: User
    bob: User


async def make_company(database_url: str) -> Company:
    name = unique("company")
    admin = await make_user(database_url, company=name, role="admin")
    alice = await make_user(database_url, company=name)
    bob = await make_user(database_url, company=name)
    return Company(name, admin, alice, bob)


async def create_task(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    body = {"title": unique("task"), **fields}
    response = await client.post("/api/tasks", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def create_tag(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("tag")[:50], **fields}
    response = await client.post("/api/tags", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def gql(
    client: httpx.AsyncClient, user: User | None, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST /graphql; returns the JSON body ({data, errors})."""
    headers = user.headers if user else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def error_codes(result: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors") or []]


async def create_skill(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("skill"), "instructions": "Say hello to {{ input.name }}", **fields}
    response = await client.post("/api/skills", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def set_budget(database_url: str, company: Company, tokens: int | None) -> None:
    async with operator_engine(database_url) as engine:
        await set_token_budget(engine, company=company.name, tokens=tokens)
