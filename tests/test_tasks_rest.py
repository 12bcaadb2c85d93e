"""REST: tasks and their time logs, end to end through the ASGI app and the embedded PostgreSQL.

Grouped by concern: response shapes and success paths per endpoint, list filters and
pagination, authentication (401), unknown and hidden rows (404), bad input (400 with nothing
changed), isolation between two companies, and member vs admin permissions.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tests.utils.builders import SECRET, Company, User, create_task, make_company, unique
from tests.utils.http import assert_error, bearer

TASK_FIELDS = {
    "id", "company_id", "title", "description", "status", "priority", "due_date",
    "assignee_id", "created_by", "created_at", "updated_at", "total_minutes",
}  # fmt: skip
TIME_LOG_FIELDS = {"id", "task_id", "user_id", "minutes", "note", "spent_on", "billable", "created_at"}
OTHER_SECRET = "another-secret-that-is-also-long-enough-for-hs256-9876"


# --------------------------------------------------------------------------- helpers


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def utc_timestamp(value: Any) -> dt.datetime:
    assert isinstance(value, str), value
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0), f"{value} is not UTC"
    return parsed


def iso_date(value: Any) -> dt.date:
    assert isinstance(value, str) and len(value) == 10, value
    return dt.date.fromisoformat(value)


def assert_task_shape(task: dict[str, Any]) -> None:
    assert set(task) == TASK_FIELDS, set(task) ^ TASK_FIELDS
    assert is_uuid(task["id"]) and is_uuid(task["company_id"]) and is_uuid(task["created_by"])
    assert isinstance(task["title"], str)
    assert task["description"] is None or isinstance(task["description"], str)
    assert task["status"] in {"todo", "in_progress", "done", "cancelled"}
    assert task["priority"] in {"low", "medium", "high", "urgent"}
    assert task["due_date"] is None or iso_date(task["due_date"])
    assert task["assignee_id"] is None or is_uuid(task["assignee_id"])
    utc_timestamp(task["created_at"])
    utc_timestamp(task["updated_at"])
    assert type(task["total_minutes"]) is int


def assert_time_log_shape(log: dict[str, Any]) -> None:
    assert set(log) == TIME_LOG_FIELDS, set(log) ^ TIME_LOG_FIELDS
    assert is_uuid(log["id"]) and is_uuid(log["task_id"]) and is_uuid(log["user_id"])
    assert type(log["minutes"]) is int
    assert log["note"] is None or isinstance(log["note"], str)
    iso_date(log["spent_on"])
    assert type(log["billable"]) is bool
    utc_timestamp(log["created_at"])


async def list_tasks(client: httpx.AsyncClient, user: User, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """A page of tasks and the exact total (asked for: without `Prefer`, a full page has none)."""
    response = await client.get("/api/tasks", params=params, headers={**user.headers, "Prefer": "count=exact"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body, int(response.headers["X-Total-Count"])


async def task_ids(client: httpx.AsyncClient, user: User, **params: Any) -> set[str]:
    tasks, total = await list_tasks(client, user, **params)
    assert total == len(tasks)
    return {t["id"] for t in tasks}


async def get_task(client: httpx.AsyncClient, user: User, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/tasks/{task_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def patch_task(client: httpx.AsyncClient, user: User, task_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.patch(f"/api/tasks/{task_id}", json=fields, headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def add_time_log(client: httpx.AsyncClient, user: User, task_id: str, **fields: Any) -> dict[str, Any]:
    body = {"minutes": 15, **fields}
    response = await client.post(f"/api/tasks/{task_id}/time-logs", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def list_time_logs(
    client: httpx.AsyncClient, user: User, task_id: str, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    headers = {**user.headers, "Prefer": "count=exact"}
    response = await client.get(f"/api/tasks/{task_id}/time-logs", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body, int(response.headers["X-Total-Count"])


async def snapshot(client: httpx.AsyncClient, company: Company) -> dict[str, Any]:
    """Everything the company's admin can read: every task and each task's time logs."""
    tasks, total = await list_tasks(client, company.admin, limit=200)
    assert total == len(tasks)
    state: dict[str, Any] = {}
    for task in tasks:
        logs, _ = await list_time_logs(client, company.admin, task["id"], limit=200)
        state[task["id"]] = {"task": task, "time_logs": logs}
    return state


async def send(
    client: httpx.AsyncClient, method: str, path: str, user: User | None, body: Any = None, raw: bytes | None = None
) -> httpx.Response:
    headers = dict(user.headers) if user else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return await client.request(method, path, content=raw, headers=headers)
    return await client.request(method, path, json=body, headers=headers)


def claims_for(user: User, **overrides: Any) -> dict[str, Any]:
    """Supabase-shaped claims, as mint_token writes them; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user.id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": user.email,
        "iat": now,
        "exp": now + 3600,
        "session_id": str(uuid.uuid4()),
        "app_metadata": {"provider": "fluxopus", "company_id": user.company_id, "company_role": user.role},
        "user_metadata": {},
        "is_anonymous": False,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hs256(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def tampered(user: User) -> str:
    """A correctly signed token whose payload was swapped afterwards (a different sub)."""
    header, _, signature = user.token.split(".")
    payload = json.dumps(claims_for(user, sub=str(uuid.uuid4()))).encode()
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def past() -> int:
    return int(time.time()) - 3600


BAD_AUTH: dict[str, Callable[[User], dict[str, str]]] = {
    "no header": lambda u: {},
    "empty header": lambda u: {"Authorization": ""},
    "basic scheme": lambda u: {"Authorization": "Basic " + base64.b64encode(f"{u.email}:pw".encode()).decode()},
    "token scheme": lambda u: {"Authorization": f"Token {u.token}"},
    "no scheme": lambda u: {"Authorization": u.token},
    "bearer without token": lambda u: {"Authorization": "Bearer "},
    "expired": lambda u: bearer(hs256(claims_for(u, exp=past(), iat=past() - 3600))),
    "bad signature": lambda u: bearer(hs256(claims_for(u), key=OTHER_SECRET)),
    "tampered payload": lambda u: bearer(tampered(u)),
    "wrong audience": lambda u: bearer(hs256(claims_for(u, aud="anon"))),
    "no audience": lambda u: bearer(hs256(claims_for(u, aud=None))),
    "no expiry": lambda u: bearer(hs256(claims_for(u, exp=None))),
    "alg none": lambda u: bearer(jwt.encode(claims_for(u), None, algorithm="none")),
    "malformed": lambda u: bearer("not-a-jwt"),
    "malformed segments": lambda u: bearer("abc.def.ghi"),
    "subject not a uuid": lambda u: bearer(hs256(claims_for(u, sub="alice"))),
}


@dataclass
class Endpoint:
    method: str
    path: str  # {task} is replaced by a task id
    body: Any = None

    def url(self, task_id: str) -> str:
        return self.path.format(task=task_id)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("GET", "/api/tasks"),
    Endpoint("POST", "/api/tasks", {"title": "sneaky"}),
    Endpoint("GET", "/api/tasks/{task}"),
    Endpoint("PATCH", "/api/tasks/{task}", {"title": "sneaky", "status": "cancelled"}),
    Endpoint("DELETE", "/api/tasks/{task}"),
    Endpoint("GET", "/api/tasks/{task}/time-logs"),
    Endpoint("POST", "/api/tasks/{task}/time-logs", {"minutes": 5}),
]
ID_ENDPOINTS = [e for e in ENDPOINTS if "{task}" in e.path]


# --------------------------------------------------------------------------- module fixtures


@pytest.fixture(scope="module")
async def module_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@dataclass
class World:
    company: Company
    other: Company  # a second company, without tasks
    task: dict[str, Any]  # alice's, assigned to bob, with a time log by bob
    hidden: dict[str, Any]  # bob's own and unassigned: alice may not see it
    baseline: dict[str, Any]  # snapshot(company) as built


@pytest.fixture(scope="module")
async def world(module_client: httpx.AsyncClient, database_url: str) -> World:
    """Shared by the tests whose requests must all fail: each checks it is left exactly as built."""
    company = await make_company(database_url)
    other = await make_company(database_url)
    task = await create_task(module_client, company.alice, assignee_id=company.bob.id, description="d")
    await add_time_log(module_client, company.bob, task["id"], minutes=30)
    hidden = await create_task(module_client, company.bob)
    await add_time_log(module_client, company.bob, hidden["id"], minutes=10)
    return World(company, other, task, hidden, await snapshot(module_client, company))


async def assert_world_unchanged(client: httpx.AsyncClient, world: World) -> None:
    assert await snapshot(client, world.company) == world.baseline
    assert await list_tasks(client, world.other.admin) == ([], 0)


@dataclass
class Crowd:
    company: Company
    task_ids: list[str]  # 201 tasks created by alice
    busy_task_id: str  # one of them, with 201 time logs


@pytest.fixture(scope="module")
async def crowd(module_client: httpx.AsyncClient, database_url: str) -> Crowd:
    """More rows than the largest page, for default and maximum page sizes."""
    company = await make_company(database_url)
    created: list[dict[str, Any]] = []
    for chunk in range(0, 201, 25):
        created += await asyncio.gather(
            *(create_task(module_client, company.alice) for _ in range(min(25, 201 - chunk)))
        )
    busy = created[0]["id"]
    for chunk in range(0, 201, 25):
        await asyncio.gather(
            *(add_time_log(module_client, company.alice, busy, minutes=1) for _ in range(min(25, 201 - chunk)))
        )
    return Crowd(company, [t["id"] for t in created], busy)


# --------------------------------------------------------------------------- POST /api/tasks


async def test_create_task_with_only_a_title_applies_defaults(client: httpx.AsyncClient, acme: Company) -> None:
    before = dt.datetime.now(dt.UTC)
    response = await client.post("/api/tasks", json={"title": "Write the spine"}, headers=acme.alice.headers)
    assert response.status_code == 201, response.text
    task = response.json()
    assert_task_shape(task)
    assert task["title"] == "Write the spine"
    assert task["company_id"] == acme.alice.company_id
    assert task["created_by"] == acme.alice.id
    assert (task["description"], task["status"], task["priority"]) == (None, "todo", "medium")
    assert (task["due_date"], task["assignee_id"], task["total_minutes"]) == (None, None, 0)
    created_at = utc_timestamp(task["created_at"])
    assert created_at >= before - dt.timedelta(minutes=5)
    assert utc_timestamp(task["updated_at"]) == created_at


async def test_create_task_with_every_field(client: httpx.AsyncClient, acme: Company) -> None:
    body = {
        "title": "Ship it",
        "description": "All of it, today",
        "status": "in_progress",
        "priority": "urgent",
        "due_date": "2030-02-28",
        "assignee_id": acme.bob.id,
    }
    response = await client.post("/api/tasks", json=body, headers=acme.alice.headers)
    assert response.status_code == 201, response.text
    task = response.json()
    assert_task_shape(task)
    assert {k: task[k] for k in body} == body
    assert task["created_by"] == acme.alice.id
    assert await get_task(client, acme.alice, task["id"]) == task


@pytest.mark.parametrize("status", ["todo", "in_progress", "done", "cancelled"])
async def test_create_task_accepts_every_status(client: httpx.AsyncClient, acme: Company, status: str) -> None:
    task = await create_task(client, acme.alice, status=status)
    assert task["status"] == status


@pytest.mark.parametrize("priority", ["low", "medium", "high", "urgent"])
async def test_create_task_accepts_every_priority(client: httpx.AsyncClient, acme: Company, priority: str) -> None:
    task = await create_task(client, acme.alice, priority=priority)
    assert task["priority"] == priority


async def test_create_task_accepts_a_500_character_title(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, title="t" * 500)
    assert task["title"] == "t" * 500


async def test_admin_can_create_a_task_assigned_to_a_member(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.admin, assignee_id=acme.alice.id)
    assert (task["created_by"], task["assignee_id"]) == (acme.admin.id, acme.alice.id)
    assert task["id"] in await task_ids(client, acme.alice)


# --------------------------------------------------------------------------- GET /api/tasks/{id}


async def test_get_task_returns_the_task(client: httpx.AsyncClient, acme: Company) -> None:
    created = await create_task(client, acme.alice, description="details", due_date="2031-01-15")
    fetched = await get_task(client, acme.alice, created["id"])
    assert_task_shape(fetched)
    assert fetched == created


async def test_total_minutes_sums_the_time_logs(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    other = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"], minutes=30)
    await add_time_log(client, acme.bob, task["id"], minutes=45)
    await add_time_log(client, acme.admin, task["id"], minutes=1440)
    await add_time_log(client, acme.alice, other["id"], minutes=7)
    assert (await get_task(client, acme.alice, task["id"]))["total_minutes"] == 1515
    assert (await get_task(client, acme.alice, other["id"]))["total_minutes"] == 7
    listed = {t["id"]: t["total_minutes"] for t in (await list_tasks(client, acme.alice))[0]}
    assert listed == {task["id"]: 1515, other["id"]: 7}


# --------------------------------------------------------------------------- GET /api/tasks


async def test_list_tasks_returns_task_objects_with_a_total(client: httpx.AsyncClient, acme: Company) -> None:
    created = [await create_task(client, acme.alice) for _ in range(3)]
    response = await client.get("/api/tasks", headers=acme.alice.headers)
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "3"
    body = response.json()
    for task in body:
        assert_task_shape(task)
    assert sorted(body, key=lambda t: t["id"]) == sorted(created, key=lambda t: t["id"])


async def test_list_tasks_is_empty_for_a_new_company(client: httpx.AsyncClient, acme: Company) -> None:
    assert await list_tasks(client, acme.admin) == ([], 0)


async def test_list_tasks_filters_by_status(client: httpx.AsyncClient, acme: Company) -> None:
    todo = await create_task(client, acme.alice)
    done = await create_task(client, acme.alice, status="done")
    done2 = await create_task(client, acme.alice, status="done")
    assert await task_ids(client, acme.alice, status="done") == {done["id"], done2["id"]}
    assert await task_ids(client, acme.alice, status="todo") == {todo["id"]}
    assert await task_ids(client, acme.alice, status="cancelled") == set()


async def test_list_tasks_filters_by_assignee(client: httpx.AsyncClient, acme: Company) -> None:
    to_bob = await create_task(client, acme.admin, assignee_id=acme.bob.id)
    to_alice = await create_task(client, acme.admin, assignee_id=acme.alice.id)
    await create_task(client, acme.admin)
    assert await task_ids(client, acme.admin, assignee_id=acme.bob.id) == {to_bob["id"]}
    assert await task_ids(client, acme.admin, assignee_id=acme.alice.id) == {to_alice["id"]}
    assert await task_ids(client, acme.admin, assignee_id=acme.admin.id) == set()


async def test_list_tasks_combines_filters(client: httpx.AsyncClient, acme: Company) -> None:
    wanted = await create_task(client, acme.admin, title="Deploy api", status="done", assignee_id=acme.bob.id)
    await create_task(client, acme.admin, title="Deploy web", status="todo", assignee_id=acme.bob.id)
    await create_task(client, acme.admin, title="Deploy db", status="done", assignee_id=acme.alice.id)
    await create_task(client, acme.admin, title="Review", status="done", assignee_id=acme.bob.id)
    params = {"status": "done", "assignee_id": acme.bob.id, "q": "deploy"}
    assert await task_ids(client, acme.admin, **params) == {wanted["id"]}


async def test_list_tasks_q_searches_title_and_description_ignoring_case(
    client: httpx.AsyncClient, acme: Company
) -> None:
    in_title = await create_task(client, acme.alice, title="Fix the Invoice export")
    in_description = await create_task(client, acme.alice, title="Billing", description="the INVOICE is wrong")
    await create_task(client, acme.alice, title="Unrelated", description="nothing here")
    await create_task(client, acme.alice, title="No description")
    assert await task_ids(client, acme.alice, q="invoice") == {in_title["id"], in_description["id"]}
    assert await task_ids(client, acme.alice, q="InVoIcE") == {in_title["id"], in_description["id"]}
    assert await task_ids(client, acme.alice, q="export") == {in_title["id"]}
    assert await task_ids(client, acme.alice, q="no such words") == set()


SEARCH_TITLES = ["100% done", "1000 done", "snake_case", "snakeXcase", "snake-case", "back\\slash", "backslash"]


@pytest.fixture(scope="module")
async def searchable(module_client: httpx.AsyncClient, database_url: str) -> User:
    """A member whose tasks have titles full of LIKE wildcards."""
    company = await make_company(database_url)
    for title in SEARCH_TITLES:
        await create_task(module_client, company.alice, title=title)
    return company.alice


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("%", {"100% done"}),
        ("0%", {"100% done"}),
        ("_", {"snake_case"}),
        ("E_C", {"snake_case"}),
        ("\\", {"back\\slash"}),
        ("snake", {"snake_case", "snakeXcase", "snake-case"}),
        ("%%", set()),
    ],
)
async def test_list_tasks_q_treats_wildcards_literally(
    module_client: httpx.AsyncClient, searchable: User, q: str, expected: set[str]
) -> None:
    tasks, total = await list_tasks(module_client, searchable, q=q)
    assert {t["title"] for t in tasks} == expected
    assert total == len(expected)


async def test_list_tasks_paginates_with_limit_and_offset(client: httpx.AsyncClient, acme: Company) -> None:
    created = {(await create_task(client, acme.alice))["id"] for _ in range(5)}
    pages = [await list_tasks(client, acme.alice, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [len(page) for page, _ in pages] == [2, 2, 1]
    assert [total for _, total in pages] == [5, 5, 5]
    seen = [t["id"] for page, _ in pages for t in page]
    assert len(seen) == len(set(seen)) and set(seen) == created
    # The same page twice is the same rows: the order is stable.
    assert (await list_tasks(client, acme.alice, limit=2, offset=2))[0] == pages[1][0]


async def test_list_tasks_total_counts_the_filtered_rows(client: httpx.AsyncClient, acme: Company) -> None:
    for _ in range(3):
        await create_task(client, acme.alice, status="done")
    await create_task(client, acme.alice)
    page, total = await list_tasks(client, acme.alice, status="done", limit=1)
    assert (len(page), total) == (1, 3)


@pytest.mark.parametrize("offset", [3, 4, 1000])
async def test_list_tasks_offset_past_the_end_keeps_the_total(
    client: httpx.AsyncClient, acme: Company, offset: int
) -> None:
    for _ in range(3):
        await create_task(client, acme.alice)
    assert await list_tasks(client, acme.alice, offset=offset) == ([], 3)
    assert await list_tasks(client, acme.alice, status="todo", offset=offset) == ([], 3)


async def test_list_tasks_default_page_is_50(client: httpx.AsyncClient, crowd: Crowd) -> None:
    page, total = await list_tasks(client, crowd.company.alice)
    assert (len(page), total) == (50, 201)


async def test_list_tasks_limit_200_is_the_maximum_page(client: httpx.AsyncClient, crowd: Crowd) -> None:
    page, total = await list_tasks(client, crowd.company.alice, limit=200)
    assert (len(page), total) == (200, 201)
    rest, total = await list_tasks(client, crowd.company.alice, limit=200, offset=200)
    assert (len(rest), total) == (1, 201)
    assert {t["id"] for t in page + rest} == set(crowd.task_ids)


# --------------------------------------------------------------------------- PATCH /api/tasks/{id}


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "Renamed"},
        {"description": "Now with details"},
        {"status": "in_progress"},
        {"priority": "low"},
        {"due_date": "2032-12-31"},
        {"status": "done", "priority": "high", "title": "Both"},
    ],
)
async def test_patch_changes_only_the_given_fields(
    client: httpx.AsyncClient, acme: Company, changes: dict[str, Any]
) -> None:
    task = await create_task(client, acme.alice, description="d", due_date="2030-01-01", assignee_id=acme.bob.id)
    response = await client.patch(f"/api/tasks/{task['id']}", json=changes, headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert_task_shape(updated)
    untouched = TASK_FIELDS - set(changes) - {"updated_at"}
    assert {k: updated[k] for k in untouched} == {k: task[k] for k in untouched}
    assert {k: updated[k] for k in changes} == changes
    assert await get_task(client, acme.alice, task["id"]) == updated


async def test_patch_moves_updated_at_forward(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    updated = await patch_task(client, acme.alice, task["id"], status="done")
    assert utc_timestamp(updated["updated_at"]) > utc_timestamp(task["updated_at"])
    assert updated["created_at"] == task["created_at"]
    again = await patch_task(client, acme.alice, task["id"], title="Again")
    assert utc_timestamp(again["updated_at"]) > utc_timestamp(updated["updated_at"])


@pytest.mark.parametrize("field", ["description", "due_date", "assignee_id"])
async def test_patch_null_clears_an_optional_field(client: httpx.AsyncClient, acme: Company, field: str) -> None:
    task = await create_task(client, acme.alice, description="d", due_date="2030-01-01", assignee_id=acme.bob.id)
    updated = await patch_task(client, acme.alice, task["id"], **{field: None})
    assert updated[field] is None
    assert (await get_task(client, acme.alice, task["id"]))[field] is None
    others = {"description", "due_date", "assignee_id"} - {field}
    assert {k: updated[k] for k in others} == {k: task[k] for k in others}


async def test_patch_reassigns_to_a_colleague(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    updated = await patch_task(client, acme.alice, task["id"], assignee_id=acme.bob.id)
    assert updated["assignee_id"] == acme.bob.id
    assert task["id"] in await task_ids(client, acme.bob)


async def test_patch_with_an_empty_object_changes_nothing(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    response = await client.patch(f"/api/tasks/{task['id']}", json={}, headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == task
    assert await get_task(client, acme.alice, task["id"]) == task


async def test_patch_response_includes_total_minutes(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"], minutes=25)
    await add_time_log(client, acme.alice, task["id"], minutes=5)
    updated = await patch_task(client, acme.alice, task["id"], status="done")
    assert updated["total_minutes"] == 30


# --------------------------------------------------------------------------- DELETE /api/tasks/{id}


async def test_delete_task_answers_id_and_deleted(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    keep = await create_task(client, acme.alice)
    response = await client.delete(f"/api/tasks/{task['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": task["id"], "deleted": True}
    assert_error(await client.get(f"/api/tasks/{task['id']}", headers=acme.alice.headers), 404)
    assert await task_ids(client, acme.admin) == {keep["id"]}


async def test_delete_task_removes_its_time_logs(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"])
    response = await client.delete(f"/api/tasks/{task['id']}", headers=acme.alice.headers)
    assert response.status_code == 200
    assert_error(await client.get(f"/api/tasks/{task['id']}/time-logs", headers=acme.admin.headers), 404)


async def test_delete_twice_is_404_the_second_time(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    assert (await client.delete(f"/api/tasks/{task['id']}", headers=acme.alice.headers)).status_code == 200
    assert_error(await client.delete(f"/api/tasks/{task['id']}", headers=acme.alice.headers), 404)


# --------------------------------------------------------------------------- POST /api/tasks/{id}/time-logs


async def test_add_time_log_with_only_minutes_applies_defaults(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    today_before = dt.datetime.now(dt.UTC).date()
    response = await client.post(f"/api/tasks/{task['id']}/time-logs", json={"minutes": 90}, headers=acme.alice.headers)
    today_after = dt.datetime.now(dt.UTC).date()
    assert response.status_code == 201, response.text
    log = response.json()
    assert_time_log_shape(log)
    assert (log["task_id"], log["user_id"], log["minutes"]) == (task["id"], acme.alice.id, 90)
    assert (log["note"], log["billable"]) == (None, False)
    assert iso_date(log["spent_on"]) in {today_before, today_after}


async def test_add_time_log_with_every_field(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    body = {"minutes": 1440, "note": "n" * 2000, "spent_on": "2024-02-29", "billable": True}
    log = await add_time_log(client, acme.alice, task["id"], **body)
    assert_time_log_shape(log)
    assert {k: log[k] for k in body} == body
    logs, total = await list_time_logs(client, acme.alice, task["id"])
    assert (logs, total) == ([log], 1)


async def test_add_time_log_accepts_one_minute(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    assert (await add_time_log(client, acme.alice, task["id"], minutes=1))["minutes"] == 1


# --------------------------------------------------------------------------- GET /api/tasks/{id}/time-logs


async def test_time_logs_are_listed_newest_first(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    created = [await add_time_log(client, acme.alice, task["id"], minutes=m) for m in (10, 20, 30)]
    logs, total = await list_time_logs(client, acme.alice, task["id"])
    for log in logs:
        assert_time_log_shape(log)
    assert total == 3
    assert logs == list(reversed(created))
    stamps = [utc_timestamp(log["created_at"]) for log in logs]
    assert stamps == sorted(stamps, reverse=True)


async def test_time_logs_list_only_the_tasks_own_logs(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    other = await create_task(client, acme.alice)
    mine = await add_time_log(client, acme.alice, task["id"])
    await add_time_log(client, acme.alice, other["id"])
    assert await list_time_logs(client, acme.alice, task["id"]) == ([mine], 1)


async def test_time_logs_of_a_task_without_logs_is_empty(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    assert await list_time_logs(client, acme.alice, task["id"]) == ([], 0)


async def test_time_logs_paginate_with_limit_and_offset(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    created = [await add_time_log(client, acme.alice, task["id"], minutes=m) for m in range(1, 6)]
    newest_first = [log["id"] for log in reversed(created)]
    pages = [await list_time_logs(client, acme.alice, task["id"], limit=2, offset=o) for o in (0, 2, 4)]
    assert [total for _, total in pages] == [5, 5, 5]
    assert [log["id"] for page, _ in pages for log in page] == newest_first


@pytest.mark.parametrize("offset", [2, 50])
async def test_time_logs_offset_past_the_end_keeps_the_total(
    client: httpx.AsyncClient, acme: Company, offset: int
) -> None:
    task = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"])
    await add_time_log(client, acme.alice, task["id"])
    assert await list_time_logs(client, acme.alice, task["id"], offset=offset) == ([], 2)


async def test_time_logs_default_page_is_50_and_maximum_200(client: httpx.AsyncClient, crowd: Crowd) -> None:
    alice = crowd.company.alice
    page, total = await list_time_logs(client, alice, crowd.busy_task_id)
    assert (len(page), total) == (50, 201)
    page, total = await list_time_logs(client, alice, crowd.busy_task_id, limit=200)
    assert (len(page), total) == (200, 201)
    rest, total = await list_time_logs(client, alice, crowd.busy_task_id, limit=200, offset=200)
    assert (len(rest), total) == (1, 201)
    assert len({log["id"] for log in page + rest}) == 201
    assert (await get_task(client, alice, crowd.busy_task_id))["total_minutes"] == 201


# --------------------------------------------------------------------------- 401
# These and the 404/400 tests below share `world`: every request must fail, and each test
# re-reads the whole company to show it is exactly as built.


async def test_a_token_built_like_the_bad_ones_but_valid_is_accepted(
    module_client: httpx.AsyncClient, world: World
) -> None:
    """Control for the 401 cases below: only the one flaw each introduces makes them fail."""
    alice = world.company.alice
    response = await module_client.get("/api/tasks", headers=bearer(hs256(claims_for(alice))))
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()] == [world.task["id"]]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("case", list(BAD_AUTH))
async def test_bad_credentials_are_401_and_change_nothing(
    module_client: httpx.AsyncClient, world: World, endpoint: Endpoint, case: str
) -> None:
    headers = BAD_AUTH[case](world.company.alice)
    response = await module_client.request(
        endpoint.method, endpoint.url(world.task["id"]), json=endpoint.body, headers=headers
    )
    assert_error(response, 401)
    if endpoint.method != "GET":
        await assert_world_unchanged(module_client, world)


# --------------------------------------------------------------------------- 404


@pytest.mark.parametrize("endpoint", ID_ENDPOINTS, ids=str)
async def test_unknown_task_id_is_404(module_client: httpx.AsyncClient, world: World, endpoint: Endpoint) -> None:
    url = endpoint.url(str(uuid.uuid4()))
    assert_error(await send(module_client, endpoint.method, url, world.company.admin, endpoint.body), 404)
    await assert_world_unchanged(module_client, world)


@pytest.mark.parametrize("endpoint", ID_ENDPOINTS, ids=str)
async def test_another_companys_task_is_404(module_client: httpx.AsyncClient, world: World, endpoint: Endpoint) -> None:
    for intruder in (world.other.admin, world.other.alice):
        response = await send(module_client, endpoint.method, endpoint.url(world.task["id"]), intruder, endpoint.body)
        assert_error(response, 404)
    await assert_world_unchanged(module_client, world)


@pytest.mark.parametrize("endpoint", ID_ENDPOINTS, ids=str)
async def test_a_task_the_member_cannot_see_is_404(
    module_client: httpx.AsyncClient, world: World, endpoint: Endpoint
) -> None:
    url = endpoint.url(world.hidden["id"])  # bob's own, unassigned task
    assert_error(await send(module_client, endpoint.method, url, world.company.alice, endpoint.body), 404)
    await assert_world_unchanged(module_client, world)


async def test_unknown_routes_and_methods_answer_error_json(module_client: httpx.AsyncClient, world: World) -> None:
    path, headers = f"/api/tasks/{world.task['id']}", world.company.alice.headers
    assert_error(await module_client.get(f"{path}/nothing", headers=headers), 404)
    assert_error(await module_client.put(path, json={"title": "x"}, headers=headers), 405)
    assert_error(await module_client.delete("/api/tasks", headers=headers), 405)
    await assert_world_unchanged(module_client, world)


# --------------------------------------------------------------------------- 400: bad input changes nothing

TOO_LONG_TITLE = "t" * 501

BAD_TASK_CREATE_BODIES: dict[str, Any] = {
    "title is a number": {"title": 123},
    "title is a list": {"title": ["x"]},
    "title is null": {"title": None},
    "title missing": {"description": "no title"},
    "empty object": {},
    "title empty": {"title": ""},
    "title blank": {"title": "   "},
    "title too long": {"title": TOO_LONG_TITLE},
    "description is a number": {"title": "ok", "description": 5},
    "unknown status": {"title": "ok", "status": "blocked"},
    "status is null": {"title": "ok", "status": None},
    "unknown priority": {"title": "ok", "priority": "critical"},
    "due_date not a date": {"title": "ok", "due_date": "tomorrow"},
    "due_date impossible": {"title": "ok", "due_date": "2030-02-30"},
    "due_date is a number": {"title": "ok", "due_date": 20300101},
    "assignee_id not a uuid": {"title": "ok", "assignee_id": "bob"},
    "assignee_id empty": {"title": "ok", "assignee_id": ""},
    "unknown field": {"title": "ok", "colour": "red"},
    "created_by forged": {"title": "ok", "created_by": str(uuid.uuid4())},
    "company_id forged": {"title": "ok", "company_id": str(uuid.uuid4())},
}

BAD_TASK_UPDATE_BODIES: dict[str, Any] = {
    "title is a number": {"title": 123},
    "title is null": {"title": None},
    "title empty": {"title": ""},
    "title too long": {"title": TOO_LONG_TITLE},
    "status is null": {"status": None},
    "priority is null": {"priority": None},
    "unknown status": {"status": "blocked"},
    "unknown priority": {"priority": "critical"},
    "status is a number": {"status": 1},
    "due_date not a date": {"due_date": "soon"},
    "assignee_id not a uuid": {"assignee_id": "bob"},
    "unknown field": {"colour": "red"},
    "created_by forged": {"created_by": str(uuid.uuid4())},
    "total_minutes set": {"total_minutes": 600},
    "one bad field spoils the rest": {"description": "fine", "status": "blocked"},
}

BAD_TIME_LOG_BODIES: dict[str, Any] = {
    "minutes is text": {"minutes": "abc"},
    "minutes is a numeric string": {"minutes": "30"},
    "minutes is a fraction": {"minutes": 1.5},
    "minutes is a boolean": {"minutes": True},
    "minutes is null": {"minutes": None},
    "minutes missing": {"note": "forgot the minutes"},
    "empty object": {},
    "minutes zero": {"minutes": 0},
    "minutes negative": {"minutes": -5},
    "minutes over a day": {"minutes": 1441},
    "note too long": {"minutes": 10, "note": "n" * 2001},
    "note is a number": {"minutes": 10, "note": 7},
    "billable is text": {"minutes": 10, "billable": "yes"},
    "billable is a number": {"minutes": 10, "billable": 1},
    "spent_on not a date": {"minutes": 10, "spent_on": "yesterday"},
    "spent_on impossible": {"minutes": 10, "spent_on": "2024-13-01"},
    "unknown field": {"minutes": 10, "hours": 1},
    "user_id forged": {"minutes": 10, "user_id": str(uuid.uuid4())},
    "task_id in body": {"minutes": 10, "task_id": str(uuid.uuid4())},
}

BAD_RAW_BODIES: dict[str, bytes] = {
    "empty body": b"",
    "whitespace body": b"  \n",
    "malformed json": b'{"title": ',
    "not json": b"title=hello",
    "json array": b'[{"title": "in an array", "minutes": 5}]',
    "json null": b"null",
    "json string": b'"title"',
    "json number": b"42",
    "trailing garbage": b'{"title": "x", "minutes": 5} extra',
}

WRITE_ENDPOINTS = [e for e in ENDPOINTS if e.body is not None]


@pytest.mark.parametrize(
    ("endpoint", "raw"),
    [(WRITE_ENDPOINTS[0], b'{"title": "fine"}'), (WRITE_ENDPOINTS[1], b'{"title": "fine"}'),
     (WRITE_ENDPOINTS[2], b'{"minutes": 5}')],
    ids=str,
)  # fmt: skip
async def test_raw_json_bodies_are_accepted(
    client: httpx.AsyncClient, acme: Company, endpoint: Endpoint, raw: bytes
) -> None:
    """Control for the raw-body cases below: a well-formed body sent the same way succeeds."""
    task = await create_task(client, acme.alice)
    response = await send(client, endpoint.method, endpoint.url(task["id"]), acme.alice, raw=raw)
    assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize("case", list(BAD_RAW_BODIES))
@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=str)
async def test_unparseable_bodies_are_400_and_change_nothing(
    module_client: httpx.AsyncClient, world: World, endpoint: Endpoint, case: str
) -> None:
    url = endpoint.url(world.task["id"])
    assert_error(await send(module_client, endpoint.method, url, world.company.alice, raw=BAD_RAW_BODIES[case]), 400)
    await assert_world_unchanged(module_client, world)


BAD_BODIES = [
    *(("POST", "", "create", case, body) for case, body in BAD_TASK_CREATE_BODIES.items()),
    *(("PATCH", "/{task}", "update", case, body) for case, body in BAD_TASK_UPDATE_BODIES.items()),
    *(("POST", "/{task}/time-logs", "time log", case, body) for case, body in BAD_TIME_LOG_BODIES.items()),
]


@pytest.mark.parametrize(
    ("method", "path", "kind", "case", "body"), BAD_BODIES, ids=[f"{b[2]}: {b[3]}" for b in BAD_BODIES]
)
async def test_bad_json_is_400_and_changes_nothing(
    module_client: httpx.AsyncClient, world: World, method: str, path: str, kind: str, case: str, body: Any
) -> None:
    """Creating a task, updating one or adding a time log: a bad body is refused, nothing stored."""
    url = "/api/tasks" + path.format(task=world.task["id"])
    assert_error(await send(module_client, method, url, world.company.alice, body), 400)
    await assert_world_unchanged(module_client, world)


def outsider(world: World, who: str) -> str:
    return world.other.alice.id if who == "other company's user" else str(uuid.uuid4())


@pytest.mark.parametrize("who", ["other company's user", "unknown user"])
async def test_create_task_assigned_outside_the_company_is_400(
    module_client: httpx.AsyncClient, world: World, who: str
) -> None:
    body = {"title": "x", "assignee_id": outsider(world, who)}
    for caller in (world.company.alice, world.company.admin):
        assert_error(await send(module_client, "POST", "/api/tasks", caller, body), 400)
    await assert_world_unchanged(module_client, world)
    assert await list_tasks(module_client, world.other.alice) == ([], 0)


@pytest.mark.parametrize("who", ["other company's user", "unknown user"])
async def test_patch_assignee_outside_the_company_is_400(
    module_client: httpx.AsyncClient, world: World, who: str
) -> None:
    body = {"assignee_id": outsider(world, who)}
    for caller in (world.company.alice, world.company.bob, world.company.admin):
        assert_error(await send(module_client, "PATCH", f"/api/tasks/{world.task['id']}", caller, body), 400)
    await assert_world_unchanged(module_client, world)
    assert await list_tasks(module_client, world.other.alice) == ([], 0)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "%20"])
@pytest.mark.parametrize("endpoint", ID_ENDPOINTS, ids=str)
async def test_bad_uuid_in_the_path_is_400(
    module_client: httpx.AsyncClient, world: World, endpoint: Endpoint, bad_id: str
) -> None:
    url = endpoint.url(bad_id)
    assert_error(await send(module_client, endpoint.method, url, world.company.admin, endpoint.body), 400)
    await assert_world_unchanged(module_client, world)


BAD_PAGE_PARAMS = [{"limit": 0}, {"limit": 201}, {"limit": -1}, {"limit": "ten"}, {"offset": -1}, {"offset": "first"}]


@pytest.mark.parametrize("params", BAD_PAGE_PARAMS, ids=str)
@pytest.mark.parametrize("path", ["/api/tasks", "/api/tasks/{task}/time-logs"])
async def test_bad_page_params_are_400(
    module_client: httpx.AsyncClient, world: World, path: str, params: dict[str, Any]
) -> None:
    url = path.format(task=world.task["id"])
    assert_error(await module_client.get(url, params=params, headers=world.company.alice.headers), 400)


@pytest.mark.parametrize(
    "params", [{"status": "blocked"}, {"status": "DONE"}, {"assignee_id": "bob"}, {"assignee_id": "123"}], ids=str
)
async def test_list_tasks_bad_filters_are_400(
    module_client: httpx.AsyncClient, world: World, params: dict[str, Any]
) -> None:
    assert_error(await module_client.get("/api/tasks", params=params, headers=world.company.alice.headers), 400)


# --------------------------------------------------------------------------- two companies


async def test_lists_never_cross_companies(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    acme_task = await create_task(client, acme.alice, title="Shared words", assignee_id=acme.bob.id)
    globex_task = await create_task(client, globex.alice, title="Shared words", assignee_id=globex.bob.id)
    assert await task_ids(client, acme.admin) == {acme_task["id"]}
    assert await task_ids(client, globex.admin) == {globex_task["id"]}
    assert await task_ids(client, globex.admin, q="shared") == {globex_task["id"]}
    # Filtering by another company's user finds nothing, not their tasks.
    assert await task_ids(client, globex.admin, assignee_id=acme.bob.id) == set()
    assert await task_ids(client, acme.admin, assignee_id=globex.bob.id) == set()


async def test_another_company_cannot_see_or_touch_a_task(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    task = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"], minutes=60)
    before = await snapshot(client, acme)
    path = f"/api/tasks/{task['id']}"
    for intruder in (globex.admin, globex.alice, globex.bob):
        assert_error(await client.get(path, headers=intruder.headers), 404)
        assert_error(await client.patch(path, json={"title": "mine now"}, headers=intruder.headers), 404)
        assert_error(await client.patch(path, json={"assignee_id": intruder.id}, headers=intruder.headers), 404)
        assert_error(await client.delete(path, headers=intruder.headers), 404)
        assert_error(await client.get(f"{path}/time-logs", headers=intruder.headers), 404)
        response = await client.post(f"{path}/time-logs", json={"minutes": 5}, headers=intruder.headers)
        assert_error(response, 404)
    assert await snapshot(client, acme) == before
    assert await list_tasks(client, globex.admin) == ([], 0)


async def test_time_logs_of_both_companies_stay_apart(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    acme_task = await create_task(client, acme.alice)
    globex_task = await create_task(client, globex.alice)
    acme_log = await add_time_log(client, acme.alice, acme_task["id"], minutes=11)
    globex_log = await add_time_log(client, globex.alice, globex_task["id"], minutes=22)
    assert await list_time_logs(client, acme.admin, acme_task["id"]) == ([acme_log], 1)
    assert await list_time_logs(client, globex.admin, globex_task["id"]) == ([globex_log], 1)
    assert (await get_task(client, acme.admin, acme_task["id"]))["total_minutes"] == 11


# --------------------------------------------------------------------------- member vs admin


@dataclass
class Board:
    """Five tasks in one company, with every creator/assignee combination that matters."""

    alice_own: str
    bob_for_alice: str
    bob_own: str
    admin_for_bob: str
    admin_own: str


async def make_board(client: httpx.AsyncClient, c: Company) -> Board:
    return Board(
        alice_own=(await create_task(client, c.alice))["id"],
        bob_for_alice=(await create_task(client, c.bob, assignee_id=c.alice.id))["id"],
        bob_own=(await create_task(client, c.bob))["id"],
        admin_for_bob=(await create_task(client, c.admin, assignee_id=c.bob.id))["id"],
        admin_own=(await create_task(client, c.admin))["id"],
    )


async def test_members_list_what_they_created_or_are_assigned(client: httpx.AsyncClient, acme: Company) -> None:
    b = await make_board(client, acme)
    assert await task_ids(client, acme.alice) == {b.alice_own, b.bob_for_alice}
    assert await task_ids(client, acme.bob) == {b.bob_for_alice, b.bob_own, b.admin_for_bob}


async def test_admin_lists_every_task_of_the_company(client: httpx.AsyncClient, acme: Company) -> None:
    b = await make_board(client, acme)
    expected = {b.alice_own, b.bob_for_alice, b.bob_own, b.admin_for_bob, b.admin_own}
    assert await task_ids(client, acme.admin) == expected


async def test_member_filters_apply_within_what_they_may_see(client: httpx.AsyncClient, acme: Company) -> None:
    b = await make_board(client, acme)
    assert await task_ids(client, acme.alice, assignee_id=acme.bob.id) == set()
    assert await task_ids(client, acme.alice, assignee_id=acme.alice.id) == {b.bob_for_alice}
    page, total = await list_tasks(client, acme.alice, limit=1)
    assert (len(page), total) == (1, 2)


async def test_admin_reads_updates_and_deletes_a_members_task(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    assert (await get_task(client, acme.admin, task["id"]))["id"] == task["id"]
    updated = await patch_task(client, acme.admin, task["id"], status="cancelled", assignee_id=acme.bob.id)
    assert (updated["status"], updated["assignee_id"]) == ("cancelled", acme.bob.id)
    response = await client.delete(f"/api/tasks/{task['id']}", headers=acme.admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": task["id"], "deleted": True}
    assert await task_ids(client, acme.alice) == set()


async def test_assignee_can_read_and_update(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    assert await get_task(client, acme.bob, task["id"]) == task
    updated = await patch_task(client, acme.bob, task["id"], status="in_progress", description="on it")
    assert (updated["status"], updated["description"]) == ("in_progress", "on it")
    assert await get_task(client, acme.alice, task["id"]) == updated


async def test_assignee_can_unassign_themselves(client: httpx.AsyncClient, acme: Company) -> None:
    """The assignee may update the task, and the assignee is one of its fields."""
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    response = await client.patch(f"/api/tasks/{task['id']}", json={"assignee_id": None}, headers=acme.bob.headers)
    assert response.status_code == 200, response.text
    assert response.json()["assignee_id"] is None
    assert (await get_task(client, acme.alice, task["id"]))["assignee_id"] is None


async def test_assignee_can_hand_the_task_to_a_colleague(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    response = await client.patch(
        f"/api/tasks/{task['id']}", json={"assignee_id": acme.admin.id}, headers=acme.bob.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["assignee_id"] == acme.admin.id
    assert (await get_task(client, acme.alice, task["id"]))["assignee_id"] == acme.admin.id


async def test_assignee_cannot_delete_403(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    await add_time_log(client, acme.bob, task["id"])
    before = await snapshot(client, acme)
    assert_error(await client.delete(f"/api/tasks/{task['id']}", headers=acme.bob.headers), 403)
    assert await snapshot(client, acme) == before


async def test_creator_can_delete_a_task_assigned_to_someone_else(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    response = await client.delete(f"/api/tasks/{task['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert await task_ids(client, acme.bob) == set()


async def test_member_cannot_touch_another_members_task(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob)
    await add_time_log(client, acme.bob, task["id"], minutes=10)
    before = await snapshot(client, acme)
    path = f"/api/tasks/{task['id']}"
    assert_error(await client.get(path, headers=acme.alice.headers), 404)
    assert_error(await client.patch(path, json={"assignee_id": acme.alice.id}, headers=acme.alice.headers), 404)
    assert_error(await client.patch(path, json={"status": "done"}, headers=acme.alice.headers), 404)
    assert_error(await client.delete(path, headers=acme.alice.headers), 404)
    assert_error(await client.get(f"{path}/time-logs", headers=acme.alice.headers), 404)
    assert_error(await client.post(f"{path}/time-logs", json={"minutes": 5}, headers=acme.alice.headers), 404)
    assert await snapshot(client, acme) == before


async def test_member_loses_sight_of_a_task_once_unassigned(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    await patch_task(client, acme.alice, task["id"], assignee_id=None)
    assert_error(await client.get(f"/api/tasks/{task['id']}", headers=acme.bob.headers), 404)
    assert await task_ids(client, acme.bob) == set()


async def test_every_reader_of_a_task_logs_time_as_themselves(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    by_alice = await add_time_log(client, acme.alice, task["id"], minutes=1)
    by_bob = await add_time_log(client, acme.bob, task["id"], minutes=2)
    by_admin = await add_time_log(client, acme.admin, task["id"], minutes=4)
    assert [log["user_id"] for log in (by_alice, by_bob, by_admin)] == [acme.alice.id, acme.bob.id, acme.admin.id]
    expected = ([by_admin, by_bob, by_alice], 3)
    for reader in (acme.alice, acme.bob, acme.admin):
        assert await list_time_logs(client, reader, task["id"]) == expected
    assert (await get_task(client, acme.bob, task["id"]))["total_minutes"] == 7


async def test_a_user_without_a_company_sees_nothing_and_cannot_create(
    client: httpx.AsyncClient, acme: Company
) -> None:
    await create_task(client, acme.alice)
    stranger = User(str(uuid.uuid4()), f"{unique('nobody')}@example.com", "", "", "member", "")
    headers = bearer(hs256(claims_for(stranger, app_metadata={})))
    response = await client.get("/api/tasks", headers=headers)
    assert response.status_code == 200, response.text
    assert (response.json(), response.headers["X-Total-Count"]) == ([], "0")
    assert_error(await client.post("/api/tasks", json={"title": "x"}, headers=headers), 403)
    assert len(await snapshot(client, acme)) == 1
