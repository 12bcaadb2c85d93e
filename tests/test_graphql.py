"""GraphQL for `me`, tasks and time logs: success paths, error codes, tenancy, DataLoaders, transports.

Everything runs against the real embedded PostgreSQL. Most tests go through the in-process ASGI
client; the WebSocket (graphql-transport-ws) and one real-HTTP test use a uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import SECRET, Company, User, error_codes, gql, make_company, unique
from tests.utils.http import ok
from tests.utils.server import ThreadedServer

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

TASK_FIELDS = """
  id companyId title description status priority dueDate assigneeId createdBy
  createdAt updatedAt totalMinutes
"""
TIME_LOG_FIELDS = "id taskId userId minutes note spentOn billable createdAt"

CREATE_TASK = f"mutation($input: CreateTaskInput!) {{ createTask(input: $input) {{ {TASK_FIELDS} }} }}"
UPDATE_TASK = (
    f"mutation($id: ID!, $input: UpdateTaskInput!) {{ updateTask(id: $id, input: $input) {{ {TASK_FIELDS} }} }}"
)
DELETE_TASK = "mutation($id: ID!) { deleteTask(id: $id) }"
ADD_TIME_LOG = (
    "mutation($taskId: ID!, $input: TimeLogInput!) {"
    f" addTimeLog(taskId: $taskId, input: $input) {{ {TIME_LOG_FIELDS} }} }}"
)
GET_TASK = f"query($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"
LIST_TASKS = """
query($status: TaskStatus, $assigneeId: ID, $q: String, $limit: Int! = 50, $offset: Int! = 0) {
  tasks(status: $status, assigneeId: $assigneeId, q: $q, limit: $limit, offset: $offset) { id title }
}
"""
TIME_LOGS = (
    "query($taskId: ID!, $limit: Int! = 50, $offset: Int! = 0) {"
    f" timeLogs(taskId: $taskId, limit: $limit, offset: $offset) {{ {TIME_LOG_FIELDS} }} }}"
)

LEAKS = ("Traceback", 'File "', "sqlalchemy", "asyncpg", "psycopg", "pydantic", "site-packages")


def expect_error(result: dict[str, Any], code: str) -> dict[str, Any]:
    """Every error carries `code`, with a human message and nothing from the server's insides."""
    assert result.get("errors"), result
    assert error_codes(result) == [code] * len(result["errors"]), result
    for error in result["errors"]:
        assert isinstance(error["message"], str) and error["message"], error
        for leak in LEAKS:
            assert leak not in error["message"], error
        assert "stacktrace" not in json.dumps(error.get("extensions", {})).lower(), error
    return result


async def create_task(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    data = ok(await gql(client, user, CREATE_TASK, {"input": {"title": unique("task"), **fields}}))
    return data["createTask"]


async def add_time_log(client: httpx.AsyncClient, user: User, task_id: str, **fields: Any) -> dict[str, Any]:
    data = ok(await gql(client, user, ADD_TIME_LOG, {"taskId": task_id, "input": {"minutes": 30, **fields}}))
    return data["addTimeLog"]


async def read_task(client: httpx.AsyncClient, user: User, task_id: str) -> dict[str, Any] | None:
    task: dict[str, Any] | None = ok(await gql(client, user, GET_TASK, {"id": task_id}))["task"]
    return task


async def task_ids(client: httpx.AsyncClient, user: User, **args: Any) -> list[str]:
    return [t["id"] for t in ok(await gql(client, user, LIST_TASKS, args))["tasks"]]


async def create_tag(client: httpx.AsyncClient, user: User, name: str | None = None) -> dict[str, Any]:
    query = "mutation($input: CreateTagInput!) { createTag(input: $input) { id name } }"
    return ok(await gql(client, user, query, {"input": {"name": name or unique("tag")}}))["createTag"]


def forge_token(
    user: User,
    *,
    secret: str = SECRET,
    audience: str = "authenticated",
    expires_in: int = 3600,
    algorithm: str = "HS256",
) -> str:
    """A Supabase-shaped access token built directly with PyJWT (not with the code under test)."""
    now = int(time.time())
    claims = {
        "sub": user.id,
        "aud": audience,
        "role": "authenticated",
        "email": user.email,
        "iat": min(now, now + expires_in) - 60,
        "exp": now + expires_in,
        "session_id": str(uuid.uuid4()),
        "app_metadata": {"provider": "fluxopus", "company_id": user.company_id, "company_role": user.role},
        "user_metadata": {},
    }
    return jwt.encode(claims, None if algorithm == "none" else secret, algorithm=algorithm)


def bad_authorization(kind: str, user: User) -> dict[str, str]:
    """Authorization headers that must all be refused with UNAUTHENTICATED."""
    if kind == "missing":
        return {}
    token = {
        "expired": lambda: forge_token(user, expires_in=-3600),
        "bad_signature": lambda: forge_token(user, secret="another-secret-that-is-long-enough-0123456789"),
        "wrong_audience": lambda: forge_token(user, audience="anon"),
        "alg_none": lambda: forge_token(user, algorithm="none"),
        "malformed": lambda: "not-a-jwt",
    }[kind]()
    return {"Authorization": f"Bearer {token}"}


async def post_graphql(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------------------------
# me
# --------------------------------------------------------------------------------------------

ME = "{ me { id email role company { id name } } }"


async def test_me_returns_member_and_company(client: httpx.AsyncClient, acme: Company) -> None:
    data = ok(await gql(client, acme.alice, ME))
    assert data == {
        "me": {
            "id": acme.alice.id,
            "email": acme.alice.email,
            "role": "MEMBER",
            "company": {"id": acme.alice.company_id, "name": acme.name},
        }
    }


async def test_me_returns_admin_role(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    assert ok(await gql(client, acme.admin, ME))["me"]["role"] == "ADMIN"
    other = ok(await gql(client, globex.admin, ME))["me"]
    assert other["id"] == globex.admin.id
    assert other["company"] == {"id": globex.admin.company_id, "name": globex.name}


async def test_me_with_a_token_minted_by_pyjwt(client: httpx.AsyncClient, acme: Company) -> None:
    headers = {"Authorization": f"Bearer {forge_token(acme.bob)}"}
    data = ok(await post_graphql(client, headers, "{ me { id email } }"))
    assert data == {"me": {"id": acme.bob.id, "email": acme.bob.email}}


# --------------------------------------------------------------------------------------------
# UNAUTHENTICATED on every operation
# --------------------------------------------------------------------------------------------

NIL = "00000000-0000-4000-8000-000000000000"
OPERATIONS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    # name: (document, variables, expected `data`)
    "me": ("{ me { id } }", {}, None),
    "tasks": ("{ tasks { id } }", {}, None),
    "task": ("query($id: ID!) { task(id: $id) { id } }", {"id": NIL}, {"task": None}),
    "timeLogs": ("query($id: ID!) { timeLogs(taskId: $id) { id } }", {"id": NIL}, None),
    "createTask": ('mutation { createTask(input: {title: "x"}) { id } }', {}, None),
    "updateTask": ('mutation($id: ID!) { updateTask(id: $id, input: {title: "x"}) { id } }', {"id": NIL}, None),
    "deleteTask": ("mutation($id: ID!) { deleteTask(id: $id) }", {"id": NIL}, None),
    "addTimeLog": ("mutation($id: ID!) { addTimeLog(taskId: $id, input: {minutes: 5}) { id } }", {"id": NIL}, None),
}
BAD_AUTH = ["missing", "expired", "bad_signature", "wrong_audience", "alg_none", "malformed"]


@pytest.fixture(scope="module")
async def initech(database_url: str) -> Company:
    """A company shared by the read-only auth tests of this module."""
    return await make_company(database_url)


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("kind", BAD_AUTH)
async def test_unauthenticated(client: httpx.AsyncClient, initech: Company, kind: str, operation: str) -> None:
    document, variables, data = OPERATIONS[operation]
    result = expect_error(
        await post_graphql(client, bad_authorization(kind, initech.alice), document, variables), "UNAUTHENTICATED"
    )
    assert result["data"] == data
    assert result["errors"][0]["path"] == [operation]


async def test_unauthenticated_messages_say_why(client: httpx.AsyncClient, initech: Company) -> None:
    messages = {}
    for kind in ("missing", "expired", "wrong_audience"):
        result = await post_graphql(client, bad_authorization(kind, initech.alice), "{ me { id } }")
        messages[kind] = expect_error(result, "UNAUTHENTICATED")["errors"][0]["message"].lower()
    assert "authorization" in messages["missing"]
    assert "expired" in messages["expired"]
    assert "audience" in messages["wrong_audience"]


@pytest.mark.parametrize("kind", BAD_AUTH)
async def test_unauthenticated_mutations_change_nothing(client: httpx.AsyncClient, acme: Company, kind: str) -> None:
    task = await create_task(client, acme.alice, title="untouchable")
    headers = bad_authorization(kind, acme.alice)
    title = unique("sneaky")
    attempts = [
        (CREATE_TASK, {"input": {"title": title}}),
        (UPDATE_TASK, {"id": task["id"], "input": {"title": title}}),
        (ADD_TIME_LOG, {"taskId": task["id"], "input": {"minutes": 10}}),
        (DELETE_TASK, {"id": task["id"]}),
    ]
    for document, variables in attempts:
        expect_error(await post_graphql(client, headers, document, variables), "UNAUTHENTICATED")
    assert await read_task(client, acme.alice, task["id"]) == task
    assert await task_ids(client, acme.admin) == [task["id"]]


# --------------------------------------------------------------------------------------------
# createTask / task / tasks
# --------------------------------------------------------------------------------------------


async def test_create_task_with_every_field(client: httpx.AsyncClient, acme: Company) -> None:
    fields = {
        "title": "  Ship the spine  ",
        "description": "GraphQL first",
        "status": "IN_PROGRESS",
        "priority": "URGENT",
        "dueDate": "2031-02-28",
        "assigneeId": acme.bob.id,
    }
    query = (
        "mutation($input: CreateTaskInput!) {"
        f" createTask(input: $input) {{ {TASK_FIELDS} assignee {{ userId email role }} }} }}"
    )
    task = ok(await gql(client, acme.alice, query, {"input": fields}))["createTask"]
    assert uuid.UUID(task["id"])
    assert task["companyId"] == acme.alice.company_id
    assert task["title"] == "Ship the spine"  # surrounding whitespace is trimmed
    assert task["description"] == "GraphQL first"
    assert (task["status"], task["priority"], task["dueDate"]) == ("IN_PROGRESS", "URGENT", "2031-02-28")
    assert task["assigneeId"] == acme.bob.id
    assert task["assignee"] == {"userId": acme.bob.id, "email": acme.bob.email, "role": "MEMBER"}
    assert task["createdBy"] == acme.alice.id
    assert task["totalMinutes"] == 0
    assert dt.datetime.fromisoformat(task["createdAt"]).utcoffset() == dt.timedelta(0)
    stored = await read_task(client, acme.alice, task["id"])
    assert stored == {k: v for k, v in task.items() if k != "assignee"}


async def test_create_task_defaults(client: httpx.AsyncClient, acme: Company) -> None:
    task = ok(
        await gql(
            client,
            acme.bob,
            f'mutation {{ createTask(input: {{title: "Minimal"}}) {{ {TASK_FIELDS} assignee {{ userId }} }} }}',
        )
    )["createTask"]
    assert task["title"] == "Minimal"
    assert (task["status"], task["priority"]) == ("TODO", "MEDIUM")
    assert (task["description"], task["dueDate"], task["assigneeId"], task["assignee"]) == (None, None, None, None)
    assert task["createdBy"] == acme.bob.id


async def test_task_by_id(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, description="find me")
    assert await read_task(client, acme.alice, task["id"]) == task
    assert await read_task(client, acme.admin, task["id"]) == task


async def test_task_is_null_when_invisible_or_missing(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    task = await create_task(client, acme.alice)
    assert await read_task(client, acme.bob, task["id"]) is None  # same company, not creator nor assignee
    assert await read_task(client, globex.admin, task["id"]) is None  # other company, even its admin
    assert await read_task(client, globex.alice, task["id"]) is None
    assert await read_task(client, acme.alice, str(uuid.uuid4())) is None


async def test_tasks_newest_first_with_limit_and_offset(client: httpx.AsyncClient, acme: Company) -> None:
    first = await create_task(client, acme.alice)
    second = await create_task(client, acme.alice)
    third = await create_task(client, acme.alice)
    assert await task_ids(client, acme.alice) == [third["id"], second["id"], first["id"]]
    assert await task_ids(client, acme.alice, limit=2) == [third["id"], second["id"]]
    assert await task_ids(client, acme.alice, limit=2, offset=2) == [first["id"]]
    assert await task_ids(client, acme.alice, offset=3) == []
    assert await task_ids(client, acme.alice, limit=200) == [third["id"], second["id"], first["id"]]


async def test_tasks_filters(client: httpx.AsyncClient, acme: Company) -> None:
    report = await create_task(client, acme.admin, title="Quarterly REPORT", status="DONE")
    review = await create_task(
        client, acme.admin, title="Review", description="read the report twice", assigneeId=acme.bob.id
    )
    percent = await create_task(client, acme.admin, title="Raise 100% coverage", assigneeId=acme.alice.id)
    other = await create_task(client, acme.admin, title="Unrelated", status="IN_PROGRESS", assigneeId=acme.bob.id)

    assert await task_ids(client, acme.admin, status="DONE") == [report["id"]]
    assert await task_ids(client, acme.admin, status="IN_PROGRESS") == [other["id"]]
    assert await task_ids(client, acme.admin, status="CANCELLED") == []
    assert await task_ids(client, acme.admin, assigneeId=acme.bob.id) == [other["id"], review["id"]]
    assert await task_ids(client, acme.admin, assigneeId=acme.alice.id) == [percent["id"]]
    # q: case-insensitive, title or description, LIKE wildcards taken literally
    assert await task_ids(client, acme.admin, q="report") == [review["id"], report["id"]]
    assert await task_ids(client, acme.admin, q="100%") == [percent["id"]]
    assert await task_ids(client, acme.admin, q="%") == [percent["id"]]
    assert await task_ids(client, acme.admin, q="_") == []
    assert await task_ids(client, acme.admin, q="report", assigneeId=acme.bob.id) == [review["id"]]
    # filters never widen what a member sees
    assert await task_ids(client, acme.alice, assigneeId=acme.bob.id) == []


async def test_member_and_admin_visibility(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    by_alice = await create_task(client, acme.alice)
    for_alice = await create_task(client, acme.bob, assigneeId=acme.alice.id)
    bobs_own = await create_task(client, acme.bob)
    admins = await create_task(client, acme.admin)
    admin_for_bob = await create_task(client, acme.admin, assigneeId=acme.bob.id)
    foreign = await create_task(client, globex.alice)

    assert await task_ids(client, acme.alice) == [for_alice["id"], by_alice["id"]]
    assert await task_ids(client, acme.bob) == [admin_for_bob["id"], bobs_own["id"], for_alice["id"]]
    assert await task_ids(client, acme.admin) == [
        admin_for_bob["id"],
        admins["id"],
        bobs_own["id"],
        for_alice["id"],
        by_alice["id"],
    ]
    assert await task_ids(client, globex.admin) == [foreign["id"]]
    assert await task_ids(client, globex.bob) == []
    assert await read_task(client, acme.alice, bobs_own["id"]) is None
    assert (await read_task(client, acme.alice, for_alice["id"]) or {}).get("id") == for_alice["id"]


# --------------------------------------------------------------------------------------------
# updateTask
# --------------------------------------------------------------------------------------------


async def test_update_task_changes_only_the_given_fields(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(
        client,
        acme.alice,
        title="Before",
        description="keep",
        priority="HIGH",
        dueDate="2030-01-01",
        assigneeId=acme.bob.id,
    )
    updated = ok(await gql(client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {"status": "DONE"}}))[
        "updateTask"
    ]
    assert updated["status"] == "DONE"
    unchanged = {k: v for k, v in task.items() if k not in ("status", "updatedAt")}
    assert {k: v for k, v in updated.items() if k not in ("status", "updatedAt")} == unchanged
    assert dt.datetime.fromisoformat(updated["updatedAt"]) >= dt.datetime.fromisoformat(task["updatedAt"])
    assert await read_task(client, acme.alice, task["id"]) == updated

    renamed = ok(
        await gql(client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {"title": "After", "priority": "LOW"}})
    )["updateTask"]
    assert (renamed["title"], renamed["priority"], renamed["status"], renamed["description"]) == (
        "After",
        "LOW",
        "DONE",
        "keep",
    )


async def test_update_task_with_empty_input_changes_nothing(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, description="same")
    same = ok(await gql(client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {}}))["updateTask"]
    assert same == task


async def test_update_task_explicit_null_clears_optional_fields(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, description="text", dueDate="2030-05-05", assigneeId=acme.bob.id)
    cleared = ok(
        await gql(
            client,
            acme.alice,
            UPDATE_TASK,
            {"id": task["id"], "input": {"description": None, "dueDate": None, "assigneeId": None}},
        )
    )["updateTask"]
    assert (cleared["description"], cleared["dueDate"], cleared["assigneeId"]) == (None, None, None)
    assert cleared["title"] == task["title"]
    assert await read_task(client, acme.alice, task["id"]) == cleared
    # null written inline in the document too
    again = await create_task(client, acme.alice, description="inline")
    inline = ok(
        await gql(
            client,
            acme.alice,
            f'mutation {{ updateTask(id: "{again["id"]}", input: {{description: null}}) {{ description title }} }}',
        )
    )["updateTask"]
    assert inline == {"description": None, "title": again["title"]}


async def test_update_task_assignee(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    query = (
        "mutation($id: ID!, $input: UpdateTaskInput!) {"
        " updateTask(id: $id, input: $input) { assigneeId assignee { userId email role } } }"
    )
    data = ok(await gql(client, acme.alice, query, {"id": task["id"], "input": {"assigneeId": acme.admin.id}}))
    assert data["updateTask"] == {
        "assigneeId": acme.admin.id,
        "assignee": {"userId": acme.admin.id, "email": acme.admin.email, "role": "ADMIN"},
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", None),
        ("title", ""),
        ("title", "x" * 501),
        ("status", None),
        ("priority", None),
        ("description", "d" * 20001),
    ],
)
async def test_update_task_bad_input_changes_nothing(
    client: httpx.AsyncClient, acme: Company, field: str, value: Any
) -> None:
    task = await create_task(client, acme.alice, description="original")
    result = await gql(
        client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {"dueDate": "2040-01-01", field: value}}
    )
    expect_error(result, "BAD_USER_INPUT")
    assert result["data"] is None
    assert await read_task(client, acme.alice, task["id"]) == task


async def test_update_task_assignee_from_another_company_is_refused(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    task = await create_task(client, acme.alice, assigneeId=acme.bob.id)
    result = await gql(
        client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {"assigneeId": globex.bob.id, "title": "moved"}}
    )
    expect_error(result, "BAD_USER_INPUT")
    assert await read_task(client, acme.alice, task["id"]) == task
    unknown_user = str(uuid.uuid4())
    result = await gql(client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {"assigneeId": unknown_user}})
    expect_error(result, "BAD_USER_INPUT")
    assert await read_task(client, acme.alice, task["id"]) == task


async def test_update_task_by_assignee_and_admin(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob, assigneeId=acme.alice.id)
    by_assignee = ok(await gql(client, acme.alice, UPDATE_TASK, {"id": task["id"], "input": {"status": "IN_PROGRESS"}}))
    assert by_assignee["updateTask"]["status"] == "IN_PROGRESS"
    by_admin = ok(await gql(client, acme.admin, UPDATE_TASK, {"id": task["id"], "input": {"priority": "URGENT"}}))
    assert (by_admin["updateTask"]["status"], by_admin["updateTask"]["priority"]) == ("IN_PROGRESS", "URGENT")


async def test_update_invisible_task_is_not_found(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    task = await create_task(client, acme.alice, title="mine")
    for intruder in (acme.bob, globex.admin, globex.alice):
        result = await gql(client, intruder, UPDATE_TASK, {"id": task["id"], "input": {"title": "hijacked"}})
        expect_error(result, "NOT_FOUND")
        assert result["data"] is None
        assert result["errors"][0]["path"] == ["updateTask"]
    # even a change of assignee (which looks up the assignee first) must not reveal anything
    result = await gql(client, globex.admin, UPDATE_TASK, {"id": task["id"], "input": {"assigneeId": globex.bob.id}})
    expect_error(result, "NOT_FOUND")
    result = await gql(client, acme.alice, UPDATE_TASK, {"id": str(uuid.uuid4()), "input": {"title": "ghost"}})
    expect_error(result, "NOT_FOUND")
    assert await read_task(client, acme.alice, task["id"]) == task


# --------------------------------------------------------------------------------------------
# deleteTask
# --------------------------------------------------------------------------------------------


async def test_delete_task_returns_its_id(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"])
    assert ok(await gql(client, acme.alice, DELETE_TASK, {"id": task["id"]})) == {"deleteTask": task["id"]}
    assert await read_task(client, acme.alice, task["id"]) is None
    assert await read_task(client, acme.admin, task["id"]) is None
    # deleting again: it no longer exists
    expect_error(await gql(client, acme.alice, DELETE_TASK, {"id": task["id"]}), "NOT_FOUND")


async def test_admin_deletes_any_company_task(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob)
    assert ok(await gql(client, acme.admin, DELETE_TASK, {"id": task["id"]})) == {"deleteTask": task["id"]}
    assert await read_task(client, acme.bob, task["id"]) is None


async def test_assignee_cannot_delete_task_they_did_not_create(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob, assigneeId=acme.alice.id)
    result = await gql(client, acme.alice, DELETE_TASK, {"id": task["id"]})
    expect_error(result, "FORBIDDEN")
    assert result["data"] is None
    assert await read_task(client, acme.alice, task["id"]) == task
    assert await read_task(client, acme.bob, task["id"]) == task


async def test_delete_invisible_task_is_not_found(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    task = await create_task(client, acme.alice)
    for intruder in (acme.bob, globex.admin, globex.alice):
        result = await gql(client, intruder, DELETE_TASK, {"id": task["id"]})
        expect_error(result, "NOT_FOUND")
        assert result["data"] is None
    expect_error(await gql(client, acme.admin, DELETE_TASK, {"id": str(uuid.uuid4())}), "NOT_FOUND")
    assert await read_task(client, acme.alice, task["id"]) == task


# --------------------------------------------------------------------------------------------
# addTimeLog / timeLogs / nested fields
# --------------------------------------------------------------------------------------------


async def test_add_time_log(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    log = await add_time_log(
        client, acme.alice, task["id"], minutes=45, note="pairing", spentOn="2030-03-04", billable=True
    )
    assert uuid.UUID(log["id"])
    assert (log["taskId"], log["userId"]) == (task["id"], acme.alice.id)
    assert (log["minutes"], log["note"], log["spentOn"], log["billable"]) == (45, "pairing", "2030-03-04", True)
    defaults = await add_time_log(client, acme.alice, task["id"], minutes=15)
    assert (defaults["note"], defaults["billable"]) == (None, False)
    assert defaults["spentOn"] in {
        (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).date().isoformat(),
        dt.datetime.now(dt.UTC).date().isoformat(),
    }
    assert (await read_task(client, acme.alice, task["id"]) or {})["totalMinutes"] == 60


async def test_assignee_and_admin_log_time_as_themselves(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob, assigneeId=acme.alice.id)
    assert (await add_time_log(client, acme.alice, task["id"], minutes=5))["userId"] == acme.alice.id
    assert (await add_time_log(client, acme.admin, task["id"], minutes=7))["userId"] == acme.admin.id
    assert (await read_task(client, acme.bob, task["id"]) or {})["totalMinutes"] == 12


async def test_time_logs_newest_first_with_pagination(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    logs = [await add_time_log(client, acme.alice, task["id"], minutes=m) for m in (10, 20, 30)]
    newest_first = [log["id"] for log in reversed(logs)]

    def ids(result: dict[str, Any]) -> list[str]:
        return [log["id"] for log in ok(result)["timeLogs"]]

    listed = ok(await gql(client, acme.alice, TIME_LOGS, {"taskId": task["id"]}))["timeLogs"]
    assert listed == list(reversed(logs))
    assert ids(await gql(client, acme.alice, TIME_LOGS, {"taskId": task["id"], "limit": 2})) == newest_first[:2]
    assert (
        ids(await gql(client, acme.alice, TIME_LOGS, {"taskId": task["id"], "limit": 2, "offset": 2}))
        == newest_first[2:]
    )
    assert ids(await gql(client, acme.admin, TIME_LOGS, {"taskId": task["id"]})) == newest_first
    # the nested field agrees with the root field
    nested = ok(
        await gql(
            client,
            acme.alice,
            "query($id: ID!) { task(id: $id) { totalMinutes timeLogs { id minutes } } }",
            {"id": task["id"]},
        )
    )
    assert nested["task"]["totalMinutes"] == 60
    assert [log["id"] for log in nested["task"]["timeLogs"]] == newest_first


async def test_time_logs_of_invisible_task(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    task = await create_task(client, acme.alice)
    await add_time_log(client, acme.alice, task["id"])
    for intruder in (acme.bob, globex.admin):
        result = await gql(client, intruder, TIME_LOGS, {"taskId": task["id"]})
        expect_error(result, "NOT_FOUND")
        assert result["data"] is None
        result = await gql(client, intruder, ADD_TIME_LOG, {"taskId": task["id"], "input": {"minutes": 5}})
        expect_error(result, "NOT_FOUND")
    expect_error(await gql(client, acme.alice, TIME_LOGS, {"taskId": str(uuid.uuid4())}), "NOT_FOUND")
    expect_error(
        await gql(client, acme.alice, ADD_TIME_LOG, {"taskId": str(uuid.uuid4()), "input": {"minutes": 5}}), "NOT_FOUND"
    )
    assert (await read_task(client, acme.alice, task["id"]) or {})["totalMinutes"] == 30


@pytest.mark.parametrize(
    "log_input",
    [{"minutes": 0}, {"minutes": -5}, {"minutes": 1441}, {"minutes": 10, "note": "n" * 2001}],
    ids=["zero", "negative", "over-a-day", "note-too-long"],
)
async def test_add_time_log_bad_input_changes_nothing(
    client: httpx.AsyncClient, acme: Company, log_input: dict[str, Any]
) -> None:
    task = await create_task(client, acme.alice)
    result = await gql(client, acme.alice, ADD_TIME_LOG, {"taskId": task["id"], "input": log_input})
    expect_error(result, "BAD_USER_INPUT")
    assert result["data"] is None
    assert ok(await gql(client, acme.alice, TIME_LOGS, {"taskId": task["id"]}))["timeLogs"] == []
    assert (await read_task(client, acme.alice, task["id"]) or {})["totalMinutes"] == 0


async def test_nested_tags_assignee_and_time_logs(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    task = await create_task(client, acme.alice, assigneeId=acme.bob.id)
    bare = await create_task(client, acme.alice)
    red, blue = await create_tag(client, acme.alice, "b-red"), await create_tag(client, acme.alice, "a-blue")
    assign = "mutation($input: AssignTagsInput!) { assignTags(input: $input) { id } }"
    ok(
        await gql(
            client,
            acme.alice,
            assign,
            {"input": {"entityType": "TASK", "entityId": task["id"], "tagIds": [red["id"], blue["id"]]}},
        )
    )
    log = await add_time_log(client, acme.bob, task["id"], minutes=25)
    query = """
      query($id: ID!) {
        tasks { id tags { id name } assignee { userId email role } timeLogs { id userId minutes } totalMinutes }
        task(id: $id) { tags { name } }
      }
    """
    data = ok(await gql(client, acme.alice, query, {"id": task["id"]}))
    assert data["tasks"] == [
        {"id": bare["id"], "tags": [], "assignee": None, "timeLogs": [], "totalMinutes": 0},
        {
            "id": task["id"],
            "tags": [{"id": blue["id"], "name": "a-blue"}, {"id": red["id"], "name": "b-red"}],
            "assignee": {"userId": acme.bob.id, "email": acme.bob.email, "role": "MEMBER"},
            "timeLogs": [{"id": log["id"], "userId": acme.bob.id, "minutes": 25}],
            "totalMinutes": 25,
        },
    ]
    assert data["task"] == {"tags": [{"name": "a-blue"}, {"name": "b-red"}]}
    # another company sees none of it
    other = ok(await gql(client, globex.admin, query, {"id": task["id"]}))
    assert other == {"tasks": [], "task": None}


# --------------------------------------------------------------------------------------------
# bad input: BAD_USER_INPUT, nothing changed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_input",
    [
        {"title": "x" * 501},
        {"title": ""},
        {"title": "   "},
        {"title": "ok", "description": "d" * 20001},
        {"title": "ok", "assigneeId": "not-a-uuid"},
        {"title": "ok", "assigneeId": NIL},
        {"title": "ok", "status": "finished"},
        {"title": "ok", "priority": "high"},  # REST's spelling: GraphQL's is HIGH
        {"title": "ok", "dueDate": "2030-02-30"},
        {"title": "ok", "companyId": NIL},
        {"title": None},
        {"description": "no title"},
        {"title": 42},
    ],
    ids=[
        "title-too-long",
        "title-empty",
        "title-blank",
        "description-too-long",
        "assignee-not-uuid",
        "assignee-unknown",
        "unknown-status",
        "unknown-priority",
        "impossible-date",
        "unknown-field",
        "title-null",
        "title-missing",
        "title-wrong-type",
    ],
)
async def test_create_task_bad_input_creates_nothing(
    client: httpx.AsyncClient, acme: Company, task_input: dict[str, Any]
) -> None:
    result = await gql(client, acme.alice, CREATE_TASK, {"input": task_input})
    expect_error(result, "BAD_USER_INPUT")
    assert result["data"] is None
    assert await task_ids(client, acme.admin) == []


async def test_create_task_assignee_from_another_company_is_refused(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    result = await gql(client, acme.alice, CREATE_TASK, {"input": {"title": "cross", "assigneeId": globex.alice.id}})
    expect_error(result, "BAD_USER_INPUT")
    assert await task_ids(client, acme.admin) == []
    assert await task_ids(client, globex.admin) == []


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ('{ task(id: "not-a-uuid") { id } }', {}),
        ('{ timeLogs(taskId: "123") { id } }', {}),
        ('{ tasks(assigneeId: "nope") { id } }', {}),
        ('mutation { updateTask(id: "nope", input: {title: "x"}) { id } }', {}),
        ('mutation { deleteTask(id: "nope") }', {}),
        ('mutation { addTimeLog(taskId: "nope", input: {minutes: 5}) { id } }', {}),
        ("{ tasks(limit: 0) { id } }", {}),
        ("{ tasks(limit: 201) { id } }", {}),
        ("{ tasks(offset: -1) { id } }", {}),
        (f'{{ timeLogs(taskId: "{NIL}", limit: 0) {{ id }} }}', {}),
        (f'{{ timeLogs(taskId: "{NIL}", limit: 201) {{ id }} }}', {}),
        ('{ tasks(q: "") { id } }', {}),
        ("{ tasks(status: finished) { id } }", {}),
        ('{ tasks(status: "DONE") { id } }', {}),
        ("query($s: TaskStatus) { tasks(status: $s) { id } }", {"s": "finished"}),
        ("query($limit: Int!) { tasks(limit: $limit) { id } }", {"limit": "ten"}),
        ("query($limit: Int!) { tasks(limit: $limit) { id } }", {"limit": 1.5}),
        ("query($limit: Int!) { tasks(limit: $limit) { id } }", {}),
        ("query($id: ID!) { task(id: $id) { id } }", {"id": {"nested": True}}),
        ("{ tasks { id nonsense } }", {}),
        ("{ tasks(page: 2) { id } }", {}),
        ("{ tasks { id ", {}),
        ("query { tasks { id } } }", {}),
        ("{ me }", {}),
    ],
    ids=[
        "task-bad-uuid",
        "timeLogs-bad-uuid",
        "tasks-assignee-bad-uuid",
        "updateTask-bad-uuid",
        "deleteTask-bad-uuid",
        "addTimeLog-bad-uuid",
        "tasks-limit-0",
        "tasks-limit-201",
        "tasks-offset-negative",
        "timeLogs-limit-0",
        "timeLogs-limit-201",
        "tasks-q-empty",
        "unknown-enum-literal",
        "enum-as-string",
        "unknown-enum-variable",
        "variable-wrong-type",
        "variable-float-for-int",
        "variable-missing",
        "variable-object-for-id",
        "unknown-field",
        "unknown-argument",
        "syntax-error-unclosed",
        "syntax-error-extra-brace",
        "object-without-selection",
    ],
)
async def test_bad_input_is_bad_user_input(
    client: httpx.AsyncClient, acme: Company, document: str, variables: dict[str, Any]
) -> None:
    expect_error(await gql(client, acme.admin, document, variables), "BAD_USER_INPUT")


async def test_nul_character_is_bad_user_input(client: httpx.AsyncClient, acme: Company) -> None:
    """JSON may carry \\u0000 but PostgreSQL text cannot: that is the client's input, not a server fault."""
    task = await create_task(client, acme.alice)
    attempts = [
        (CREATE_TASK, {"input": {"title": "nul\u0000byte"}}),
        (UPDATE_TASK, {"id": task["id"], "input": {"description": "nul\u0000byte"}}),
        (ADD_TIME_LOG, {"taskId": task["id"], "input": {"minutes": 5, "note": "nul\u0000byte"}}),
        (LIST_TASKS, {"q": "nul\u0000"}),
    ]
    for document, variables in attempts:
        result = await gql(client, acme.alice, document, variables)
        expect_error(result, "BAD_USER_INPUT")
    assert await task_ids(client, acme.admin) == [task["id"]]
    assert await read_task(client, acme.alice, task["id"]) == task


async def test_failed_field_rolls_back_the_whole_operation(client: httpx.AsyncClient, acme: Company) -> None:
    """Earlier fields of a mutation document that fails later must not persist."""
    task = await create_task(client, acme.alice, title="keep me")
    marker = unique("rolled-back")
    document = f"""
      mutation {{
        created: createTask(input: {{title: "{marker}"}}) {{ id }}
        renamed: updateTask(id: "{task["id"]}", input: {{title: "{marker}"}}) {{ id }}
        logged: addTimeLog(taskId: "{task["id"]}", input: {{minutes: 30}}) {{ id }}
        broken: addTimeLog(taskId: "{task["id"]}", input: {{minutes: 0}}) {{ id }}
      }}
    """
    result = await gql(client, acme.alice, document)
    expect_error(result, "BAD_USER_INPUT")
    assert result["errors"][0]["path"] == ["broken"]
    assert await task_ids(client, acme.alice, q=marker) == []
    assert await read_task(client, acme.alice, task["id"]) == task
    assert ok(await gql(client, acme.alice, TIME_LOGS, {"taskId": task["id"]}))["timeLogs"] == []


async def test_forbidden_field_rolls_back_the_whole_operation(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob, assigneeId=acme.alice.id)
    document = """
      mutation($id: ID!) {
        updateTask(id: $id, input: {status: DONE}) { id }
        deleteTask(id: $id)
      }
    """
    result = await gql(client, acme.alice, document, {"id": task["id"]})
    expect_error(result, "FORBIDDEN")
    assert await read_task(client, acme.bob, task["id"]) == task


# --------------------------------------------------------------------------------------------
# DataLoaders: no N+1
# --------------------------------------------------------------------------------------------

NESTED = "query($limit: Int!) { tasks(limit: $limit) { id timeLogs { id } tags { id } assignee { email } } }"


async def seed_tasks(client: httpx.AsyncClient, company: Company, tags: list[dict[str, Any]], count: int) -> list[str]:
    """`count` tasks, each with an assignee, a time log and a tag, in three batched mutations."""
    assignees = [company.alice, company.bob, company.admin]
    creates = " ".join(
        f't{i}: createTask(input: {{title: "{unique("n1")}", assigneeId: "{assignees[i % 3].id}"}}) {{ id }}'
        for i in range(count)
    )
    created = ok(await gql(client, company.admin, f"mutation {{ {creates} }}"))
    ids = [created[f"t{i}"]["id"] for i in range(count)]
    logs = " ".join(
        f'l{i}: addTimeLog(taskId: "{tid}", input: {{minutes: {i + 1}}}) {{ id }}' for i, tid in enumerate(ids)
    )
    ok(await gql(client, company.admin, f"mutation {{ {logs} }}"))
    assigns = " ".join(
        f'a{i}: assignTags(input: {{entityType: TASK, entityId: "{tid}", tagIds: ["{tags[i % len(tags)]["id"]}"]}})'
        " { id }"
        for i, tid in enumerate(ids)
    )
    ok(await gql(client, company.admin, f"mutation {{ {assigns} }}"))
    return ids


async def test_nested_fields_do_not_cause_n_plus_1(client: httpx.AsyncClient, acme: Company, sql_counter: Any) -> None:
    tags = [await create_tag(client, acme.admin) for _ in range(3)]
    emails = {acme.alice.email, acme.bob.email, acme.admin.email}

    async def measure(expected: int) -> int:
        sql_counter.statements.clear()
        data = ok(await gql(client, acme.admin, NESTED, {"limit": 50}))
        statements = sql_counter.count
        assert len(data["tasks"]) == expected
        for task in data["tasks"]:
            assert len(task["timeLogs"]) == 1 and len(task["tags"]) == 1, task
            assert task["assignee"]["email"] in emails
        assert {t["assignee"]["email"] for t in data["tasks"]} == emails
        assert {t["tags"][0]["id"] for t in data["tasks"]} == {t["id"] for t in tags}
        return statements

    await seed_tasks(client, acme, tags, 5)
    with_5 = await measure(5)
    await seed_tasks(client, acme, tags, 45)
    with_50 = await measure(50)
    print(f"SQL statements for tasks+timeLogs+tags+assignee: 5 tasks -> {with_5}, 50 tasks -> {with_50}")
    assert with_50 == with_5, sql_counter.statements
    assert with_50 <= 8, sql_counter.statements


async def test_member_nested_query_is_batched_and_filtered(
    client: httpx.AsyncClient, acme: Company, sql_counter: Any
) -> None:
    tags = [await create_tag(client, acme.admin)]
    await seed_tasks(client, acme, tags, 12)
    sql_counter.statements.clear()
    data = ok(await gql(client, acme.alice, NESTED, {"limit": 50}))
    assert len(data["tasks"]) == 4  # every third task is assigned to alice
    assert {t["assignee"]["email"] for t in data["tasks"]} == {acme.alice.email}
    assert sql_counter.count <= 8, sql_counter.statements


# --------------------------------------------------------------------------------------------
# GraphiQL and introspection
# --------------------------------------------------------------------------------------------


async def test_graphiql_is_served_on_get(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_introspection_needs_no_token(client: httpx.AsyncClient, sql_counter: Any) -> None:
    result = await post_graphql(client, {}, "{ __schema { queryType { name } mutationType { name } } }")
    assert result == {"data": {"__schema": {"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}}}}
    assert sql_counter.count == 0  # introspection alone opens no database transaction
    fields = await post_graphql(client, {}, '{ __type(name: "Task") { fields { name } } }')
    names = {f["name"] for f in ok(fields)["__type"]["fields"]}
    assert {"id", "title", "timeLogs", "tags", "assignee", "totalMinutes"} <= names


# --------------------------------------------------------------------------------------------
# a real server: HTTP and graphql-transport-ws
# --------------------------------------------------------------------------------------------

WS_TIMEOUT = 15  # a safety net so a broken server fails the test instead of hanging it


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    # The app builds its own engine inside the server thread's event loop.
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


def ws_url(server: ThreadedServer) -> str:
    return server.url.replace("http://", "ws://") + "/graphql"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WS_TIMEOUT):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            return message


@asynccontextmanager
async def ws_connection(server: ThreadedServer, payload: dict[str, Any]) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(server), subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = await receive(ws)
        assert ack["type"] == "connection_ack", ack
        yield ws


async def ws_execute(ws: ClientConnection, query: str, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Sends one `subscribe` and returns every message for it, up to `complete` or `error`."""
    op_id = uuid.uuid4().hex
    await ws.send(
        json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
    )
    messages = []
    while True:
        message = await receive(ws)
        assert message.get("id") == op_id, message
        messages.append(message)
        if message["type"] in ("complete", "error"):
            return messages


async def single_result(ws: ClientConnection, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    messages = await ws_execute(ws, query, variables)
    assert [m["type"] for m in messages] == ["next", "complete"], messages
    payload: dict[str, Any] = messages[0]["payload"]
    return payload


async def rejected_close_code(server: ThreadedServer, payload: Any) -> int | None:
    async with connect(ws_url(server), subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        return ws.close_code


async def test_real_http_post(server: ThreadedServer, acme: Company) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=WS_TIMEOUT) as http:
        created = await http.post(
            "/graphql",
            json={"query": 'mutation { createTask(input: {title: "over the wire"}) { id title createdBy } }'},
            headers=acme.alice.headers,
        )
        assert created.status_code == 200
        assert created.headers["content-type"].startswith("application/json")
        task = ok(created.json())["createTask"]
        assert (task["title"], task["createdBy"]) == ("over the wire", acme.alice.id)
        listed = await http.post("/graphql", json={"query": "{ me { id } tasks { id } }"}, headers=acme.alice.headers)
        assert ok(listed.json()) == {"me": {"id": acme.alice.id}, "tasks": [{"id": task["id"]}]}
        anonymous = await http.post("/graphql", json={"query": "{ tasks { id } }"})
        assert anonymous.status_code == 200
        expect_error(anonymous.json(), "UNAUTHENTICATED")
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_ws_query_with_authorization_param(server: ThreadedServer, acme: Company, globex: Company) -> None:
    mine = await create_task_over_http(server, acme.alice)
    await create_task_over_http(server, acme.bob)
    await create_task_over_http(server, globex.alice)
    async with ws_connection(server, {"Authorization": f"Bearer {acme.alice.token}"}) as ws:
        result = await single_result(ws, "{ me { id } tasks { id } }")
    assert result == {"data": {"me": {"id": acme.alice.id}, "tasks": [{"id": mine}]}}


async def test_ws_mutation_with_token_param(server: ThreadedServer, acme: Company) -> None:
    async with ws_connection(server, {"token": forge_token(acme.bob)}) as ws:
        created = await single_result(
            ws,
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id title createdBy } }",
            {"input": {"title": "from a socket"}},
        )
        task = ok(created)["createTask"]
        assert (task["title"], task["createdBy"]) == ("from a socket", acme.bob.id)
        # a later operation on the same socket runs in its own transaction and sees the commit
        listed = await single_result(ws, "{ me { id } tasks { id title } }")
        assert ok(listed) == {"me": {"id": acme.bob.id}, "tasks": [{"id": task["id"], "title": "from a socket"}]}
        logged = await single_result(
            ws,
            "mutation($id: ID!) { addTimeLog(taskId: $id, input: {minutes: 9}) { minutes userId } }",
            {"id": task["id"]},
        )
        assert ok(logged) == {"addTimeLog": {"minutes": 9, "userId": acme.bob.id}}
    # committed: visible to a new HTTP request
    async with httpx.AsyncClient(base_url=server.url, timeout=WS_TIMEOUT) as http:
        response = await http.post(
            "/graphql", json={"query": "{ tasks { id totalMinutes } }"}, headers=acme.admin.headers
        )
    assert ok(response.json()) == {"tasks": [{"id": task["id"], "totalMinutes": 9}]}


async def test_ws_sees_only_the_callers_rows(server: ThreadedServer, acme: Company, globex: Company) -> None:
    acme_task = await create_task_over_http(server, acme.admin)
    globex_task = await create_task_over_http(server, globex.admin)
    async with (
        ws_connection(server, {"token": globex.admin.token}) as globex_ws,
        ws_connection(server, {"Authorization": f"Bearer {acme.admin.token}"}) as acme_ws,
    ):
        # interleaved on two sockets: each keeps its own identity
        assert ok(await single_result(acme_ws, "{ tasks { id } }")) == {"tasks": [{"id": acme_task}]}
        assert ok(await single_result(globex_ws, "{ tasks { id } }")) == {"tasks": [{"id": globex_task}]}
        query = "query($id: ID!) { task(id: $id) { id } }"
        assert ok(await single_result(globex_ws, query, {"id": acme_task})) == {"task": None}
        assert ok(await single_result(acme_ws, query, {"id": acme_task})) == {"task": {"id": acme_task}}
        denied = await single_result(globex_ws, "mutation($id: ID!) { deleteTask(id: $id) }", {"id": acme_task})
        expect_error(denied, "NOT_FOUND")
        assert ok(await single_result(acme_ws, query, {"id": acme_task})) == {"task": {"id": acme_task}}


async def test_ws_bad_input_reports_an_error(server: ThreadedServer, acme: Company) -> None:
    async with ws_connection(server, {"token": acme.alice.token}) as ws:
        messages = await ws_execute(ws, "{ tasks(limit: 0) { id } }")
        assert messages[-1]["type"] == "complete"
        expect_error(messages[0]["payload"], "BAD_USER_INPUT")
        invalid = await ws_execute(ws, "{ tasks { nonsense } }")
        assert invalid[-1]["type"] == "error", invalid
        assert invalid[-1]["payload"] and all(e["message"] for e in invalid[-1]["payload"])
        # the socket stays usable
        assert ok(await single_result(ws, "{ me { id } }")) == {"me": {"id": acme.alice.id}}


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "empty-token",
        "not-bearer",
        "expired",
        "bad_signature",
        "wrong_audience",
        "alg_none",
        "malformed",
        "bad-token-param",
    ],
)
async def test_ws_bad_or_missing_token_is_rejected(server: ThreadedServer, initech: Company, kind: str) -> None:
    payloads: dict[str, dict[str, Any]] = {
        "missing": {},
        "empty-token": {"Authorization": "Bearer "},
        "not-bearer": {"Authorization": f"Basic {initech.alice.token}"},
        "bad-token-param": {"token": forge_token(initech.alice, expires_in=-3600)},
    }
    payload = payloads.get(kind) or bad_authorization(kind, initech.alice)
    assert await rejected_close_code(server, payload) == 4403


async def create_task_over_http(server: ThreadedServer, user: User) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=WS_TIMEOUT) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
                "variables": {"t": unique("ws")},
            },
            headers=user.headers,
        )
    assert response.status_code == 200, response.text
    task_id: str = ok(response.json())["createTask"]["id"]
    return task_id


async def test_timestamps_are_written_as_rest_writes_them(client: httpx.AsyncClient, acme: Company) -> None:
    created = await client.post("/api/tasks", json={"title": "same clock"}, headers=acme.alice.headers)
    assert created.status_code == 201, created.text
    rest = created.json()
    result = await gql(
        client, acme.alice, "query($id: ID!) { task(id: $id) { createdAt updatedAt } }", {"id": rest["id"]}
    )
    assert result["data"]["task"] == {"createdAt": rest["created_at"], "updatedAt": rest["updated_at"]}
    assert rest["created_at"].endswith("Z")
