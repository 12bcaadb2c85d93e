"""The Tags group on REST (/api/tags, /api/tags/entity) and GraphQL (tags, entityTags, createTag,
updateTag, deleteTag, assignTags): shapes, uniqueness, validation, permissions, auth and isolation.

Every test goes through the real app and the embedded PostgreSQL; the only direct SQL reads the
assignment table to prove that deletions leave nothing behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.utils.builders import SECRET, Company, User, create_tag, create_task, error_codes, gql, unique
from tests.utils.http import assert_error

TAG_KEYS = {"id", "company_id", "name", "color", "created_by", "created_at"}
TAG_FIELDS = "id companyId name color createdBy createdAt"


# ---------------------------------------------------------------------------------------------
# helpers


def assert_utc_timestamp(value: str) -> None:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0), value


def assert_tag_shape(tag: dict[str, Any], *, user: User, name: str, color: str | None) -> None:
    assert set(tag) == TAG_KEYS, tag
    uuid.UUID(tag["id"])
    assert tag["company_id"] == user.company_id
    assert tag["created_by"] == user.id
    assert tag["name"] == name
    assert tag["color"] == color
    assert_utc_timestamp(tag["created_at"])


def gql_tag(tag: dict[str, Any]) -> dict[str, Any]:
    """A REST tag in GraphQL's camelCase, the timestamp parsed (REST writes `Z`, GraphQL `+00:00`)."""
    return {
        "id": tag["id"],
        "companyId": tag["company_id"],
        "name": tag["name"],
        "color": tag["color"],
        "createdBy": tag["created_by"],
        "createdAt": dt.datetime.fromisoformat(tag["created_at"]),
    }


def parsed_time(tag: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL tag with its timestamp parsed, to compare with gql_tag()."""
    return {**tag, "createdAt": dt.datetime.fromisoformat(tag["createdAt"])}


async def list_tags(client: httpx.AsyncClient, user: User, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/tags", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def find_tag(client: httpx.AsyncClient, user: User, tag_id: str) -> dict[str, Any] | None:
    return next((t for t in await list_tags(client, user, limit=200) if t["id"] == tag_id), None)


async def assign(client: httpx.AsyncClient, user: User, body: Any) -> httpx.Response:
    return await client.post("/api/tags/entity", json=body, headers=user.headers)


async def tags_on(client: httpx.AsyncClient, user: User, task_id: str) -> list[str]:
    """Ids of the tags on a task, read back over REST."""
    response = await client.get(
        "/api/tags/entity", params={"entityType": "task", "entityId": task_id}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()]


async def assignment_rows(engine: AsyncEngine, *, tag_id: str | None = None, entity_id: str | None = None) -> int:
    """Rows in entity_tags, read as the database owner (no RLS) to see what really remains."""
    clauses, params = [], {}
    if tag_id is not None:
        clauses.append("tag_id = cast(:tag_id as uuid)")
        params["tag_id"] = tag_id
    if entity_id is not None:
        clauses.append("entity_id = cast(:entity_id as uuid)")
        params["entity_id"] = entity_id
    async with engine.connect() as conn:
        result = await conn.execute(text(f"select count(*) from entity_tags where {' and '.join(clauses)}"), params)
        return int(result.scalar_one())


def sorted_ids(tags: list[dict[str, Any]]) -> list[str]:
    return sorted(t["id"] for t in tags)


def fill(value: Any, task_id: str, tag_id: str) -> Any:
    """Replace the placeholders "TASK_ID" and "TAG" (anywhere in a body) with real ids ("TASK_ID" is GraphQL's
    EntityType.TASK)."""
    if value == "TASK_ID":
        return task_id
    if value == "TAG":
        return tag_id
    if isinstance(value, list):
        return [fill(v, task_id, tag_id) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, task_id, tag_id) for k, v in value.items()}
    return value


# Tokens that must be refused, built with pyjwt the way a client or attacker would.


def _claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": "someone@example.com",
        "iat": now,
        "exp": now + 3600,
        "session_id": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return claims


def bad_authorization(kind: str, user: User) -> dict[str, str]:
    now = int(time.time())
    if kind == "none":
        return {}
    if kind == "expired":
        token = jwt.encode(_claims(user.id, iat=now - 7200, exp=now - 3600), SECRET, algorithm="HS256")
    elif kind == "bad_signature":
        token = jwt.encode(_claims(user.id), SECRET[::-1], algorithm="HS256")
    elif kind == "wrong_audience":
        token = jwt.encode(_claims(user.id, aud="anon"), SECRET, algorithm="HS256")
    elif kind == "alg_none":
        token = jwt.encode(_claims(user.id), None, algorithm="none")
    elif kind == "malformed":
        token = "not.a.jwt"
    elif kind == "not_bearer":
        return {"Authorization": f"Basic {user.token}"}
    else:  # pragma: no cover - a typo in a parametrisation
        raise AssertionError(kind)
    return {"Authorization": f"Bearer {token}"}


BAD_AUTH = ["none", "expired", "bad_signature", "wrong_audience", "alg_none", "malformed", "not_bearer"]


# ---------------------------------------------------------------------------------------------
# REST: create, list, update, delete


async def test_create_tag_returns_201_and_the_tag(client: httpx.AsyncClient, acme: Company) -> None:
    response = await client.post("/api/tags", json={"name": "Urgent", "color": "#FF0000"}, headers=acme.alice.headers)
    assert response.status_code == 201, response.text
    tag = response.json()
    assert_tag_shape(tag, user=acme.alice, name="Urgent", color="#FF0000")
    assert await list_tags(client, acme.bob) == [tag]


async def test_create_tag_color_is_optional(client: httpx.AsyncClient, acme: Company) -> None:
    response = await client.post("/api/tags", json={"name": "plain"}, headers=acme.alice.headers)
    assert response.status_code == 201, response.text
    assert_tag_shape(response.json(), user=acme.alice, name="plain", color=None)


async def test_create_tag_accepts_50_chars_and_lowercase_hex(client: httpx.AsyncClient, acme: Company) -> None:
    name = "n" * 50
    response = await client.post("/api/tags", json={"name": name, "color": "#a1b2c3"}, headers=acme.bob.headers)
    assert response.status_code == 201, response.text
    assert_tag_shape(response.json(), user=acme.bob, name=name, color="#a1b2c3")


async def test_list_tags_sorted_by_name_with_total(client: httpx.AsyncClient, acme: Company) -> None:
    for name in ["delta", "alpha", "charlie", "bravo"]:
        await create_tag(client, acme.alice, name=name)
    response = await client.get("/api/tags", headers=acme.bob.headers)
    assert response.status_code == 200
    assert isinstance(response.json(), list)
    assert [t["name"] for t in response.json()] == ["alpha", "bravo", "charlie", "delta"]
    assert response.headers["X-Total-Count"] == "4"
    for tag in response.json():
        assert set(tag) == TAG_KEYS


async def test_list_tags_empty_company(client: httpx.AsyncClient, acme: Company) -> None:
    response = await client.get("/api/tags", headers=acme.alice.headers)
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"


async def test_list_tags_limit_and_offset(client: httpx.AsyncClient, acme: Company) -> None:
    for name in ["t1", "t2", "t3", "t4", "t5"]:
        await create_tag(client, acme.alice, name=name)
    counted = {**acme.alice.headers, "Prefer": "count=exact"}
    page = await client.get("/api/tags", params={"limit": 2, "offset": 1}, headers=counted)
    assert page.status_code == 200
    assert [t["name"] for t in page.json()] == ["t2", "t3"]
    assert page.headers["X-Total-Count"] == "5"
    last = await client.get("/api/tags", params={"limit": 2, "offset": 4}, headers=acme.alice.headers)
    assert [t["name"] for t in last.json()] == ["t5"]
    assert last.headers["X-Total-Count"] == "5"  # a short page tells the total: no need to ask
    past_end = await client.get("/api/tags", params={"limit": 2, "offset": 10}, headers=counted)
    assert past_end.status_code == 200
    assert past_end.json() == []
    assert past_end.headers["X-Total-Count"] == "5"


async def test_list_tags_default_limit_is_50_and_max_200(client: httpx.AsyncClient, acme: Company) -> None:
    # 51 tags in one company, created over GraphQL in one request (aliases) to stay fast.
    mutation = (
        "mutation {" + " ".join(f't{i:02d}: createTag(input: {{name: "t{i:02d}"}}) {{ id }}' for i in range(51)) + "}"
    )
    result = await gql(client, acme.admin, mutation)
    assert "errors" not in result, result
    default = await client.get("/api/tags", headers={**acme.alice.headers, "Prefer": "count=exact"})
    assert len(default.json()) == 50
    assert default.headers["X-Total-Count"] == "51"
    everything = await client.get("/api/tags", params={"limit": 200}, headers=acme.alice.headers)
    assert len(everything.json()) == 51
    assert_error(await client.get("/api/tags", params={"limit": 201}, headers=acme.alice.headers), 400)


BAD_PAGING = [{"limit": 0}, {"limit": -1}, {"limit": 201}, {"limit": "ten"}, {"offset": -1}, {"offset": "x"}]


async def test_list_tags_bad_paging(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    for params in BAD_PAGING:
        with subtests.test(params=params):
            assert_error(await client.get("/api/tags", params=params, headers=acme.alice.headers), 400)


async def test_update_tag_name_and_color(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, name="old", color="#000000")
    response = await client.patch(
        f"/api/tags/{tag['id']}", json={"name": "new", "color": "#ABCDEF"}, headers=acme.alice.headers
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert_tag_shape(updated, user=acme.alice, name="new", color="#ABCDEF")
    assert updated["id"] == tag["id"]
    assert updated["created_at"] == tag["created_at"]
    assert await find_tag(client, acme.bob, tag["id"]) == updated


async def test_update_tag_partial_keeps_other_field(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, name="keepme", color="#111111")
    response = await client.patch(f"/api/tags/{tag['id']}", json={"color": "#222222"}, headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["color"]) == ("keepme", "#222222")
    response = await client.patch(f"/api/tags/{tag['id']}", json={"name": "renamed"}, headers=acme.alice.headers)
    assert (response.json()["name"], response.json()["color"]) == ("renamed", "#222222")


async def test_update_tag_color_null_clears_it(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, color="#123456")
    response = await client.patch(f"/api/tags/{tag['id']}", json={"color": None}, headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["color"] is None
    assert (await find_tag(client, acme.alice, tag["id"]))["color"] is None  # type: ignore[index]


async def test_update_tag_may_change_only_the_case_of_its_own_name(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, name="urgent")
    response = await client.patch(f"/api/tags/{tag['id']}", json={"name": "URGENT"}, headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "URGENT"


async def test_delete_tag(client: httpx.AsyncClient, acme: Company) -> None:
    keep = await create_tag(client, acme.alice, name="keep")
    gone = await create_tag(client, acme.alice, name="gone")
    response = await client.delete(f"/api/tags/{gone['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": gone["id"], "deleted": True}
    assert await list_tags(client, acme.alice) == [keep]
    assert_error(await client.delete(f"/api/tags/{gone['id']}", headers=acme.alice.headers), 404)


async def test_delete_tag_removes_its_assignments(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    task = await create_task(client, acme.alice)
    keep = await create_tag(client, acme.alice, name="keep")
    gone = await create_tag(client, acme.alice, name="gone")
    assert (
        await assign(
            client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [keep["id"], gone["id"]]}
        )
    ).status_code == 200
    assert await assignment_rows(engine, tag_id=gone["id"]) == 1
    response = await client.delete(f"/api/tags/{gone['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert await tags_on(client, acme.alice, task["id"]) == [keep["id"]]
    assert await assignment_rows(engine, tag_id=gone["id"]) == 0
    result = await gql(client, acme.alice, "query($id: ID!) { task(id: $id) { tags { id } } }", {"id": task["id"]})
    assert result == {"data": {"task": {"tags": [{"id": keep["id"]}]}}}


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_unknown_tag_is_404(client: httpx.AsyncClient, acme: Company, method: str) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = await client.request(method, f"/api/tags/{uuid.uuid4()}", json=body, headers=acme.admin.headers)
    assert_error(response, 404)


# ---------------------------------------------------------------------------------------------
# REST: uniqueness per company, ignoring case


async def test_duplicate_name_is_409(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    original = await create_tag(client, acme.alice, name="Urgent", color="#FF0000")
    for user in (acme.alice, acme.bob, acme.admin):
        for duplicate in ("Urgent", "urgent", "URGENT", "uRgEnT"):
            with subtests.test(user=user.role, duplicate=duplicate):
                response = await client.post("/api/tags", json={"name": duplicate}, headers=user.headers)
                assert_error(response, 409)
    assert await list_tags(client, acme.alice) == [original]


async def test_rename_onto_existing_name_is_409(client: httpx.AsyncClient, acme: Company) -> None:
    await create_tag(client, acme.alice, name="Blocked")
    other = await create_tag(client, acme.alice, name="Other")
    response = await client.patch(f"/api/tags/{other['id']}", json={"name": "BLOCKED"}, headers=acme.alice.headers)
    assert_error(response, 409)
    assert await find_tag(client, acme.alice, other["id"]) == other


async def test_admin_rename_onto_existing_name_is_409(client: httpx.AsyncClient, acme: Company) -> None:
    await create_tag(client, acme.alice, name="first")
    second = await create_tag(client, acme.bob, name="second")
    response = await client.patch(f"/api/tags/{second['id']}", json={"name": "First"}, headers=acme.admin.headers)
    assert_error(response, 409)
    assert await find_tag(client, acme.admin, second["id"]) == second


async def test_same_name_in_another_company_is_fine(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    ours = await create_tag(client, acme.alice, name="Shared")
    response = await client.post("/api/tags", json={"name": "shared"}, headers=globex.alice.headers)
    assert response.status_code == 201, response.text
    theirs = response.json()
    assert theirs["company_id"] == globex.alice.company_id
    assert theirs["id"] != ours["id"]
    # ... and renaming into a name used only by the other company is fine too.
    other = await create_tag(client, globex.bob, name="other")
    renamed = await client.patch(f"/api/tags/{other['id']}", json={"name": "SHARED-2"}, headers=globex.bob.headers)
    assert renamed.status_code == 200
    await create_tag(client, acme.alice, name="Shared-2")


async def test_name_free_again_after_delete(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, name="again")
    assert (await client.delete(f"/api/tags/{tag['id']}", headers=acme.alice.headers)).status_code == 200
    response = await client.post("/api/tags", json={"name": "Again"}, headers=acme.bob.headers)
    assert response.status_code == 201, response.text


async def test_concurrent_duplicates_create_exactly_one(client: httpx.AsyncClient, acme: Company) -> None:
    names = ["Race", "race", "RACE", "rAcE", "RaCe"]
    users = [acme.alice, acme.bob, acme.admin, acme.alice, acme.bob]
    responses = await asyncio.gather(
        *(client.post("/api/tags", json={"name": n}, headers=u.headers) for n, u in zip(names, users, strict=True))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409)
    assert len(await list_tags(client, acme.alice)) == 1


async def test_surrounding_whitespace_does_not_make_a_new_name(client: httpx.AsyncClient, acme: Company) -> None:
    original = await create_tag(client, acme.alice, name="Urgent")
    assert_error(await client.post("/api/tags", json={"name": "  urgent  "}, headers=acme.bob.headers), 409)
    assert await list_tags(client, acme.alice) == [original]


async def test_name_length_counts_characters_not_bytes(client: httpx.AsyncClient, acme: Company) -> None:
    fifty = "ü" * 49 + "😀"
    response = await client.post("/api/tags", json={"name": fifty}, headers=acme.alice.headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == fifty
    assert_error(await client.post("/api/tags", json={"name": "é" * 51}, headers=acme.alice.headers), 400)
    assert [t["name"] for t in await list_tags(client, acme.alice)] == [fifty]


# ---------------------------------------------------------------------------------------------
# REST: bad input → 400, nothing changed

# Each list holds (case id, body); one test walks a list with subtests so the setup is shared.
BAD_CREATE_BODIES: list[tuple[str, Any]] = [
    ("name-empty", {"name": ""}),
    ("name-blank", {"name": "   "}),
    ("name-51-chars", {"name": "x" * 51}),
    ("name-number", {"name": 42}),
    ("name-list", {"name": ["a"]}),
    ("name-null", {"name": None}),
    ("name-missing", {}),
    ("only-color", {"color": "#FF0000"}),
    ("color-word", {"name": "ok", "color": "red"}),
    ("color-5-digits", {"name": "ok", "color": "#12345"}),
    ("color-7-digits", {"name": "ok", "color": "#1234567"}),
    ("color-no-hash", {"name": "ok", "color": "12345F"}),
    ("color-not-hex", {"name": "ok", "color": "#GGGGGG"}),
    ("color-number", {"name": "ok", "color": 123456}),
    ("unknown-field", {"name": "ok", "colour": "#FF0000"}),
    ("company_id-not-writable", {"name": "ok", "company_id": str(uuid.uuid4())}),
    ("array-body", ["name", "ok"]),
    ("string-body", "ok"),
]
MALFORMED_JSON = [b'{"name": "ok"', b"{name: 'ok'}", b"not json", b"", b'{"name": "ok"} trailing']


async def test_create_tag_bad_input_is_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    existing = await create_tag(client, acme.alice, name="existing")
    for case, body in BAD_CREATE_BODIES:
        with subtests.test(case=case):
            assert_error(await client.post("/api/tags", json=body, headers=acme.alice.headers), 400)
            assert await list_tags(client, acme.alice) == [existing]


async def test_create_tag_malformed_json_is_400(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    for raw in MALFORMED_JSON:
        with subtests.test(raw=raw):
            assert_error(await client.post("/api/tags", content=raw, headers=headers), 400)
    assert await list_tags(client, acme.alice) == []


BAD_UPDATE_BODIES: list[tuple[str, Any]] = [
    ("name-empty", {"name": ""}),
    ("name-51-chars", {"name": "x" * 51}),
    ("name-number", {"name": 42}),
    ("name-null", {"name": None}),
    ("color-word", {"color": "red"}),
    ("color-5-digits", {"color": "#12345"}),
    ("color-bool", {"color": False}),
    ("valid-name-bad-color", {"name": "fine", "color": "red"}),
    ("unknown-field", {"title": "x"}),
    ("created_by-not-writable", {"created_by": str(uuid.uuid4())}),
    ("array-body", []),
]


async def test_update_tag_bad_input_is_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    tag = await create_tag(client, acme.alice, name="stable", color="#010203")
    for case, body in BAD_UPDATE_BODIES:
        with subtests.test(case=case):
            response = await client.patch(f"/api/tags/{tag['id']}", json=body, headers=acme.alice.headers)
            assert_error(response, 400)
            assert await find_tag(client, acme.alice, tag["id"]) == tag


async def test_update_tag_malformed_json_is_400(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    tag = await create_tag(client, acme.alice, name="stable")
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    for raw in [b'{"name": "changed",', b"name=changed", b'{"name": "changed"} x']:
        with subtests.test(raw=raw):
            response = await client.patch(f"/api/tags/{tag['id']}", content=raw, headers=headers)
            assert_error(response, 400)
            assert await find_tag(client, acme.alice, tag["id"]) == tag


BAD_IDS = ["not-a-uuid", "123", "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0", "' or 1=1 --"]


async def test_bad_uuid_in_path_is_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    tag = await create_tag(client, acme.alice)
    for method in ("PATCH", "DELETE"):
        for bad_id in BAD_IDS:
            with subtests.test(method=method, bad_id=bad_id):
                body = {"name": "changed"} if method == "PATCH" else None
                response = await client.request(method, f"/api/tags/{bad_id}", json=body, headers=acme.alice.headers)
                assert_error(response, 400)
    assert await list_tags(client, acme.alice) == [tag]


async def test_wrong_method_is_405_with_error_body(client: httpx.AsyncClient, acme: Company) -> None:
    assert_error(await client.put("/api/tags", json={"name": "x"}, headers=acme.alice.headers), 405)
    assert_error(await client.get(f"/api/tags/{uuid.uuid4()}", headers=acme.alice.headers), 405)


# ---------------------------------------------------------------------------------------------
# REST: permissions


async def test_any_member_and_admin_can_create(client: httpx.AsyncClient, acme: Company) -> None:
    for user in (acme.alice, acme.bob, acme.admin):
        response = await client.post("/api/tags", json={"name": unique("by")}, headers=user.headers)
        assert response.status_code == 201, response.text
        assert response.json()["created_by"] == user.id
    assert len(await list_tags(client, acme.alice)) == 3


async def test_other_member_cannot_update_tag(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, name="alices", color="#AAAAAA")
    response = await client.patch(
        f"/api/tags/{tag['id']}", json={"name": "bobs", "color": "#BBBBBB"}, headers=acme.bob.headers
    )
    assert_error(response, 403)
    assert await find_tag(client, acme.alice, tag["id"]) == tag


async def test_empty_patch_is_judged_like_any_other(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice)
    assert_error(await client.patch(f"/api/tags/{tag['id']}", json={}, headers=acme.bob.headers), 403)
    own = await client.patch(f"/api/tags/{tag['id']}", json={}, headers=acme.alice.headers)
    assert own.status_code == 200 and own.json() == tag


async def test_other_member_cannot_delete_tag(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice)
    assert_error(await client.delete(f"/api/tags/{tag['id']}", headers=acme.bob.headers), 403)
    assert await list_tags(client, acme.alice) == [tag]


async def test_member_cannot_change_admins_tag(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.admin)
    assert_error(
        await client.patch(f"/api/tags/{tag['id']}", json={"color": "#000000"}, headers=acme.alice.headers), 403
    )
    assert_error(await client.delete(f"/api/tags/{tag['id']}", headers=acme.alice.headers), 403)
    assert await list_tags(client, acme.admin) == [tag]


async def test_admin_can_update_and_delete_others_tags(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice, name="alices")
    response = await client.patch(f"/api/tags/{tag['id']}", json={"name": "by-admin"}, headers=acme.admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "by-admin"
    assert response.json()["created_by"] == acme.alice.id  # the creator does not change
    response = await client.delete(f"/api/tags/{tag['id']}", headers=acme.admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": tag["id"], "deleted": True}
    assert await list_tags(client, acme.alice) == []


async def test_creator_can_delete_own_tag(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.bob)
    response = await client.delete(f"/api/tags/{tag['id']}", headers=acme.bob.headers)
    assert response.status_code == 200
    assert response.json() == {"id": tag["id"], "deleted": True}


# ---------------------------------------------------------------------------------------------
# REST: isolation between companies


async def test_lists_never_include_other_company_tags(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    ours = [await create_tag(client, acme.alice, name=n) for n in ("a-ours", "b-ours")]
    theirs = await create_tag(client, globex.admin, name="a-theirs")
    for user in (acme.admin, acme.alice, acme.bob):
        response = await client.get("/api/tags", headers=user.headers)
        assert response.json() == ours
        assert response.headers["X-Total-Count"] == "2"
    for user in (globex.admin, globex.alice, globex.bob):
        assert await list_tags(client, user) == [theirs]


@pytest.mark.parametrize("role", ["admin", "alice"])
async def test_cannot_update_or_delete_other_company_tag(
    client: httpx.AsyncClient, acme: Company, globex: Company, role: str
) -> None:
    tag = await create_tag(client, acme.alice, name="acme-only")
    intruder: User = getattr(globex, role)
    assert_error(await client.patch(f"/api/tags/{tag['id']}", json={"name": "pwned"}, headers=intruder.headers), 404)
    assert_error(await client.delete(f"/api/tags/{tag['id']}", headers=intruder.headers), 404)
    assert await list_tags(client, acme.alice) == [tag]


# ---------------------------------------------------------------------------------------------
# REST: /tags/entity


async def test_assign_tags_camel_case(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    b = await create_tag(client, acme.alice, name="b-tag", color="#0000FF")
    a = await create_tag(client, acme.bob, name="a-tag")
    response = await assign(
        client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [b["id"], a["id"]]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == [a, b]  # full Tag objects, by name
    listed = await client.get(
        "/api/tags/entity", params={"entityType": "task", "entityId": task["id"]}, headers=acme.alice.headers
    )
    assert listed.status_code == 200
    assert listed.json() == [a, b]


async def test_assign_tags_snake_case_aliases(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    response = await assign(
        client, acme.alice, {"entity_type": "task", "entity_id": task["id"], "tag_ids": [tag["id"]]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == [tag]
    listed = await client.get(
        "/api/tags/entity", params={"entity_type": "task", "entity_id": task["id"]}, headers=acme.alice.headers
    )
    assert listed.status_code == 200
    assert listed.json() == [tag]


async def test_assign_tags_adds_by_default_and_is_idempotent(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    one, two, three = [await create_tag(client, acme.alice, name=n) for n in ("one", "two", "three")]
    ref = {"entityType": "task", "entityId": task["id"]}
    first = await assign(client, acme.alice, {**ref, "tagIds": [one["id"], two["id"]]})
    assert sorted_ids(first.json()) == sorted([one["id"], two["id"]])
    again = await assign(client, acme.alice, {**ref, "tagIds": [one["id"], two["id"]]})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    dup = await assign(client, acme.alice, {**ref, "tagIds": [three["id"], three["id"]], "replace": False})
    assert dup.status_code == 200, dup.text
    assert [t["name"] for t in dup.json()] == ["one", "three", "two"]
    assert sorted(await tags_on(client, acme.alice, task["id"])) == sorted_ids([one, two, three])


async def test_assign_tags_replace(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    one, two, three = [await create_tag(client, acme.alice, name=n) for n in ("one", "two", "three")]
    ref = {"entityType": "task", "entityId": task["id"]}
    await assign(client, acme.alice, {**ref, "tagIds": [one["id"], two["id"]]})
    replaced = await assign(client, acme.alice, {**ref, "tagIds": [two["id"], three["id"]], "replace": True})
    assert replaced.status_code == 200, replaced.text
    assert [t["name"] for t in replaced.json()] == ["three", "two"]
    assert sorted(await tags_on(client, acme.alice, task["id"])) == sorted_ids([two, three])
    cleared = await assign(client, acme.alice, {**ref, "tagIds": [], "replace": True})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == []
    assert await tags_on(client, acme.alice, task["id"]) == []


async def test_assign_empty_list_without_replace_changes_nothing(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    await assign(client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]})
    response = await assign(client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": []})
    assert response.status_code == 200, response.text
    assert response.json() == [tag]


async def test_replace_on_one_task_leaves_other_tasks_alone(client: httpx.AsyncClient, acme: Company) -> None:
    first, second = await create_task(client, acme.alice), await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    for task in (first, second):
        await assign(client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]})
    await assign(client, acme.alice, {"entityType": "task", "entityId": first["id"], "tagIds": [], "replace": True})
    assert await tags_on(client, acme.alice, first["id"]) == []
    assert await tags_on(client, acme.alice, second["id"]) == [tag["id"]]


async def test_entity_tags_of_untagged_task_is_empty(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob)
    assert await tags_on(client, acme.bob, task["id"]) == []


async def test_member_can_use_colleagues_tags_on_own_task(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.bob)
    tag = await create_tag(client, acme.alice)  # not bob's tag: any member may assign company tags
    response = await assign(client, acme.bob, {"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]})
    assert response.status_code == 200, response.text
    assert response.json() == [tag]


async def test_assignee_and_admin_can_tag_a_task(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice, assignee_id=acme.bob.id)
    t1, t2 = await create_tag(client, acme.bob, name="by-bob"), await create_tag(client, acme.admin, name="by-admin")
    ref = {"entityType": "task", "entityId": task["id"]}
    assert (await assign(client, acme.bob, {**ref, "tagIds": [t1["id"]]})).status_code == 200
    assert (await assign(client, acme.admin, {**ref, "tagIds": [t2["id"]]})).status_code == 200
    assert sorted(await tags_on(client, acme.alice, task["id"])) == sorted_ids([t1, t2])


async def test_task_tags_visible_through_graphql(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    other = await create_task(client, acme.alice)
    b = await create_tag(client, acme.alice, name="beta", color="#00FF00")
    a = await create_tag(client, acme.alice, name="alpha")
    await assign(client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [b["id"], a["id"]]})
    result = await gql(
        client, acme.alice, f"query($id: ID!) {{ task(id: $id) {{ tags {{ {TAG_FIELDS} }} }} }}", {"id": task["id"]}
    )
    assert "errors" not in result, result
    assert [parsed_time(t) for t in result["data"]["task"]["tags"]] == [gql_tag(a), gql_tag(b)]
    listed = await gql(client, acme.alice, "{ tasks { id tags { name } } }")
    assert "errors" not in listed, listed
    by_id = {t["id"]: [g["name"] for g in t["tags"]] for t in listed["data"]["tasks"]}
    assert by_id == {task["id"]: ["alpha", "beta"], other["id"]: []}


async def test_deleting_a_task_removes_its_assignments(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    await assign(client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]})
    assert await assignment_rows(engine, entity_id=task["id"]) == 1
    assert (await client.delete(f"/api/tasks/{task['id']}", headers=acme.alice.headers)).status_code == 200
    assert await assignment_rows(engine, entity_id=task["id"]) == 0
    assert await list_tags(client, acme.alice) == [tag]  # the tag itself stays
    response = await client.get(
        "/api/tags/entity", params={"entityType": "task", "entityId": task["id"]}, headers=acme.alice.headers
    )
    assert_error(response, 404)


async def test_unknown_entity_type_is_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    for entity_type in ["project", "Task", "tasks", "", 1, None]:
        with subtests.test(entity_type=entity_type):
            body = {"entityType": entity_type, "entityId": task["id"], "tagIds": [tag["id"]]}
            assert_error(await assign(client, acme.alice, body), 400)
            assert await tags_on(client, acme.alice, task["id"]) == []


async def test_entity_of_other_company_is_404(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    task = await create_task(client, acme.alice)
    mine = await create_tag(client, globex.admin)
    body = {"entityType": "task", "entityId": task["id"], "tagIds": [mine["id"]]}
    assert_error(await assign(client, globex.admin, body), 404)
    response = await client.get(
        "/api/tags/entity", params={"entityType": "task", "entityId": task["id"]}, headers=globex.admin.headers
    )
    assert_error(response, 404)
    assert await tags_on(client, acme.alice, task["id"]) == []


async def test_other_members_task_is_404(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)  # bob neither created nor is assigned
    tag = await create_tag(client, acme.bob)
    assert_error(
        await assign(client, acme.bob, {"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]}), 404
    )
    response = await client.get(
        "/api/tags/entity", params={"entityType": "task", "entityId": task["id"]}, headers=acme.bob.headers
    )
    assert_error(response, 404)
    assert await tags_on(client, acme.alice, task["id"]) == []


async def test_unknown_task_is_404(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await create_tag(client, acme.alice)
    assert_error(
        await assign(client, acme.alice, {"entityType": "task", "entityId": str(uuid.uuid4()), "tagIds": [tag["id"]]}),
        404,
    )
    response = await client.get(
        "/api/tags/entity", params={"entityType": "task", "entityId": str(uuid.uuid4())}, headers=acme.alice.headers
    )
    assert_error(response, 404)


async def test_tag_of_other_company_is_404_and_nothing_assigned(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    task = await create_task(client, acme.alice)
    ours = await create_tag(client, acme.alice, name="ours")
    theirs = await create_tag(client, globex.alice, name="theirs")
    response = await assign(
        client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [ours["id"], theirs["id"]]}
    )
    assert_error(response, 404)
    assert await tags_on(client, acme.alice, task["id"]) == []


async def test_failed_replace_keeps_existing_tags(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    task = await create_task(client, acme.alice)
    ours = await create_tag(client, acme.alice)
    theirs = await create_tag(client, globex.alice)
    ref = {"entityType": "task", "entityId": task["id"]}
    assert (await assign(client, acme.alice, {**ref, "tagIds": [ours["id"]]})).status_code == 200
    assert_error(await assign(client, acme.alice, {**ref, "tagIds": [theirs["id"]], "replace": True}), 404)
    assert_error(await assign(client, acme.alice, {**ref, "tagIds": [str(uuid.uuid4())], "replace": True}), 404)
    assert await tags_on(client, acme.alice, task["id"]) == [ours["id"]]


BAD_ASSIGN_BODIES: list[tuple[str, Any]] = [
    ("entityType-missing", {"entityId": "TASK_ID", "tagIds": ["TAG"]}),
    ("entityId-missing", {"entityType": "task", "tagIds": ["TAG"]}),
    ("tagIds-missing", {"entityType": "task", "entityId": "TASK_ID"}),
    ("entityId-bad-uuid", {"entityType": "task", "entityId": "not-a-uuid", "tagIds": ["TAG"]}),
    ("entityId-number", {"entityType": "task", "entityId": 7, "tagIds": ["TAG"]}),
    ("entityId-null", {"entityType": "task", "entityId": None, "tagIds": ["TAG"]}),
    ("tagIds-bad-uuid", {"entityType": "task", "entityId": "TASK_ID", "tagIds": ["TAG", "nope"]}),
    ("tagIds-number-item", {"entityType": "task", "entityId": "TASK_ID", "tagIds": [12]}),
    ("tagIds-string", {"entityType": "task", "entityId": "TASK_ID", "tagIds": "TAG"}),
    ("tagIds-object", {"entityType": "task", "entityId": "TASK_ID", "tagIds": {"id": "TAG"}}),
    ("tagIds-null", {"entityType": "task", "entityId": "TASK_ID", "tagIds": None}),
    ("replace-string", {"entityType": "task", "entityId": "TASK_ID", "tagIds": ["TAG"], "replace": "yes"}),
    ("replace-number", {"entityType": "task", "entityId": "TASK_ID", "tagIds": ["TAG"], "replace": 1}),
    ("unknown-field", {"entityType": "task", "entityId": "TASK_ID", "tagIds": ["TAG"], "mode": "add"}),
    ("array-body", ["TAG"]),
]


async def test_assign_tags_bad_input_is_400(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    for case, body in BAD_ASSIGN_BODIES:
        with subtests.test(case=case):
            assert_error(await assign(client, acme.alice, fill(body, task["id"], tag["id"])), 400)
            assert await tags_on(client, acme.alice, task["id"]) == []


async def test_assign_tags_malformed_json_is_400(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice)
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    truncated = json.dumps({"entityType": "task", "entityId": task["id"], "tagIds": [tag["id"]]})[:-3]
    raw = truncated.encode()
    assert_error(await client.post("/api/tags/entity", content=raw, headers=headers), 400)
    assert await tags_on(client, acme.alice, task["id"]) == []


BAD_ENTITY_PARAMS: list[tuple[str, dict[str, str]]] = [
    ("no-params", {}),
    ("entityId-missing", {"entityType": "task"}),
    ("entityType-missing", {"entityId": "TASK_ID"}),
    ("entityId-bad-uuid", {"entityType": "task", "entityId": "not-a-uuid"}),
    ("entityType-unknown", {"entityType": "project", "entityId": "TASK_ID"}),
]


async def test_get_entity_tags_bad_params_is_400(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    task = await create_task(client, acme.alice)
    for case, params in BAD_ENTITY_PARAMS:
        with subtests.test(case=case):
            params = fill(params, task["id"], "")
            assert_error(await client.get("/api/tags/entity", params=params, headers=acme.alice.headers), 400)


# ---------------------------------------------------------------------------------------------
# REST: 401 on every endpoint

REST_ENDPOINTS = [
    pytest.param("GET", "/api/tags", None, id="GET-tags"),
    pytest.param("POST", "/api/tags", {"name": "sneaky"}, id="POST-tags"),
    pytest.param("PATCH", "/api/tags/TAG", {"name": "sneaky"}, id="PATCH-tag"),
    pytest.param("DELETE", "/api/tags/TAG", None, id="DELETE-tag"),
    pytest.param(
        "POST",
        "/api/tags/entity",
        {"entityType": "task", "entityId": "TASK_ID", "tagIds": ["TAG"], "replace": True},
        id="POST-entity",
    ),
    pytest.param("GET", "/api/tags/entity?entityType=task&entityId=TASK", None, id="GET-entity"),
]


async def tagged_task(client: httpx.AsyncClient, acme: Company) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A task carrying one tag, and a second tag: what the bad-auth tests try to change."""
    task = await create_task(client, acme.alice)
    tag = await create_tag(client, acme.alice, name="original")
    other = await create_tag(client, acme.alice, name="assigned")
    await assign(client, acme.alice, {"entityType": "task", "entityId": task["id"], "tagIds": [other["id"]]})
    return task, tag, other["id"]


@pytest.mark.parametrize(("method", "path", "body"), REST_ENDPOINTS)
async def test_rest_rejects_bad_auth_with_401(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests, method: str, path: str, body: Any
) -> None:
    # The tokens name a real member, and each request would succeed with a good token.
    task, tag, assigned = await tagged_task(client, acme)
    before = await list_tags(client, acme.alice)
    url = path.replace("TAG", tag["id"]).replace("TASK", task["id"])
    for kind in BAD_AUTH:
        with subtests.test(kind=kind):
            response = await client.request(
                method, url, json=fill(body, task["id"], tag["id"]), headers=bad_authorization(kind, acme.alice)
            )
            assert_error(response, 401)
            assert await list_tags(client, acme.alice) == before
            assert await tags_on(client, acme.alice, task["id"]) == [assigned]


async def test_rest_accepts_a_good_token_built_with_pyjwt(client: httpx.AsyncClient, acme: Company) -> None:
    """The control for the 401 tests: the same claims, correctly signed, are accepted."""
    token = jwt.encode(_claims(acme.alice.id), SECRET, algorithm="HS256")
    response = await client.get("/api/tags", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------------------------
# GraphQL

Q_TAGS = f"query($limit: Int! = 50, $offset: Int! = 0) {{ tags(limit: $limit, offset: $offset) {{ {TAG_FIELDS} }} }}"
Q_ENTITY_TAGS = (
    f"query($type: EntityType!, $id: ID!) {{ entityTags(entityType: $type, entityId: $id) {{ {TAG_FIELDS} }} }}"
)
M_CREATE = f"mutation($input: CreateTagInput!) {{ createTag(input: $input) {{ {TAG_FIELDS} }} }}"
M_UPDATE = f"mutation($id: ID!, $input: UpdateTagInput!) {{ updateTag(id: $id, input: $input) {{ {TAG_FIELDS} }} }}"
M_DELETE = "mutation($id: ID!) { deleteTag(id: $id) }"
M_ASSIGN = f"mutation($input: AssignTagsInput!) {{ assignTags(input: $input) {{ {TAG_FIELDS} }} }}"


def assert_gql_error(result: dict[str, Any], code: str, *, contains: str | None = None) -> None:
    assert error_codes(result) == [code], result
    assert result.get("data") is None, result
    message = result["errors"][0]["message"]
    assert message and "Traceback" not in message
    if contains is not None:
        assert contains.lower() in message.lower(), result


async def gql_create(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    result = await gql(client, user, M_CREATE, {"input": {"name": unique("gtag")[:50], **fields}})
    assert "errors" not in result, result
    return result["data"]["createTag"]


async def gql_tags(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    result = await gql(client, user, Q_TAGS, {"limit": 200})
    assert "errors" not in result, result
    return result["data"]["tags"]


async def gql_entity_tags(client: httpx.AsyncClient, user: User, task_id: str) -> list[dict[str, Any]]:
    result = await gql(client, user, Q_ENTITY_TAGS, {"type": "TASK", "id": task_id})
    assert "errors" not in result, result
    return result["data"]["entityTags"]


async def test_gql_create_tag(client: httpx.AsyncClient, acme: Company) -> None:
    result = await gql(client, acme.alice, M_CREATE, {"input": {"name": "Urgent", "color": "#FF0000"}})
    assert "errors" not in result, result
    tag = result["data"]["createTag"]
    assert tag["name"] == "Urgent" and tag["color"] == "#FF0000"
    assert tag["companyId"] == acme.alice.company_id and tag["createdBy"] == acme.alice.id
    assert_utc_timestamp(tag["createdAt"])
    # the same row over REST
    assert [gql_tag(t) for t in await list_tags(client, acme.bob)] == [parsed_time(tag)]


async def test_gql_tags_sorted_with_limit_offset(client: httpx.AsyncClient, acme: Company) -> None:
    for name in ["d", "b", "a", "c"]:
        await gql_create(client, acme.alice, name=name)
    result = await gql(client, acme.bob, Q_TAGS)
    assert [t["name"] for t in result["data"]["tags"]] == ["a", "b", "c", "d"]
    result = await gql(client, acme.bob, Q_TAGS, {"limit": 2, "offset": 1})
    assert [t["name"] for t in result["data"]["tags"]] == ["b", "c"]
    result = await gql(client, acme.bob, Q_TAGS, {"limit": 2, "offset": 9})
    assert result == {"data": {"tags": []}}


async def test_gql_tags_bad_paging(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    for variables in [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "ten"}, {"limit": None}]:
        with subtests.test(variables=variables):
            assert_gql_error(await gql(client, acme.alice, Q_TAGS, variables), "BAD_USER_INPUT")


async def test_gql_update_tag(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await gql_create(client, acme.alice, name="old", color="#000000")
    result = await gql(client, acme.alice, M_UPDATE, {"id": tag["id"], "input": {"name": "new"}})
    assert "errors" not in result, result
    assert result["data"]["updateTag"] == {**tag, "name": "new"}
    result = await gql(client, acme.alice, M_UPDATE, {"id": tag["id"], "input": {"color": None}})
    assert result["data"]["updateTag"] == {**tag, "name": "new", "color": None}
    assert await gql_tags(client, acme.bob) == [{**tag, "name": "new", "color": None}]


async def test_gql_delete_tag_and_its_assignments(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    task = await create_task(client, acme.alice)
    tag = await gql_create(client, acme.alice)
    result = await gql(
        client, acme.alice, M_ASSIGN, {"input": {"entityType": "TASK", "entityId": task["id"], "tagIds": [tag["id"]]}}
    )
    assert result["data"]["assignTags"] == [tag]
    result = await gql(client, acme.alice, M_DELETE, {"id": tag["id"]})
    assert result == {"data": {"deleteTag": tag["id"]}}
    assert await gql_tags(client, acme.alice) == []
    assert await gql_entity_tags(client, acme.alice, task["id"]) == []
    assert await assignment_rows(engine, tag_id=tag["id"]) == 0
    assert_gql_error(await gql(client, acme.alice, M_DELETE, {"id": tag["id"]}), "NOT_FOUND")


async def test_gql_duplicate_name_is_conflict(client: httpx.AsyncClient, acme: Company) -> None:
    original = await gql_create(client, acme.alice, name="Urgent")
    assert_gql_error(await gql(client, acme.bob, M_CREATE, {"input": {"name": "uRGENT"}}), "CONFLICT")
    other = await gql_create(client, acme.bob, name="other")
    assert_gql_error(
        await gql(client, acme.bob, M_UPDATE, {"id": other["id"], "input": {"name": "URGENT"}}), "CONFLICT"
    )
    assert sorted_ids(await gql_tags(client, acme.alice)) == sorted_ids([other, original])
    assert [t["name"] for t in await gql_tags(client, acme.alice) if t["id"] == other["id"]] == ["other"]


async def test_gql_same_name_in_another_company(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    await gql_create(client, acme.alice, name="Shared")
    theirs = await gql_create(client, globex.alice, name="SHARED")
    assert theirs["companyId"] == globex.alice.company_id


GQL_BAD_CREATE: list[tuple[str, dict[str, Any]]] = [
    ("name-empty", {"name": ""}),
    ("name-51-chars", {"name": "x" * 51}),
    ("name-number", {"name": 42}),
    ("name-null", {"name": None}),
    ("name-missing", {}),
    ("color-word", {"name": "ok", "color": "red"}),
    ("color-5-digits", {"name": "ok", "color": "#12345"}),
    ("unknown-field", {"name": "ok", "colour": "#FF0000"}),
]


async def test_gql_create_tag_bad_input(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    existing = await gql_create(client, acme.alice, name="existing")
    for case, input_ in GQL_BAD_CREATE:
        with subtests.test(case=case):
            assert_gql_error(await gql(client, acme.alice, M_CREATE, {"input": input_}), "BAD_USER_INPUT")
            assert await gql_tags(client, acme.alice) == [existing]


async def test_gql_malformed_document_is_bad_user_input(client: httpx.AsyncClient, acme: Company) -> None:
    result = await gql(client, acme.alice, 'mutation { createTag(input: {name: "x"} { id }')
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    result = await gql(client, acme.alice, "mutation { createTag(input: {name: 5}) { id } }")
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    assert await gql_tags(client, acme.alice) == []


GQL_BAD_UPDATE: list[tuple[str, dict[str, Any]]] = [
    ("name-empty", {"name": ""}),
    ("name-51-chars", {"name": "x" * 51}),
    ("name-null", {"name": None}),
    ("name-list", {"name": ["a"]}),
    ("color-word", {"color": "red"}),
    ("color-5-digits", {"color": "#12345"}),
    ("valid-name-bad-color", {"name": "fine", "color": "#12345"}),
    ("unknown-field", {"title": "x"}),
]


async def test_gql_update_tag_bad_input(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    tag = await gql_create(client, acme.alice, name="stable", color="#010203")
    for case, input_ in GQL_BAD_UPDATE:
        with subtests.test(case=case):
            result = await gql(client, acme.alice, M_UPDATE, {"id": tag["id"], "input": input_})
            assert_gql_error(result, "BAD_USER_INPUT")
            assert await gql_tags(client, acme.alice) == [tag]


async def test_gql_bad_id_is_bad_user_input(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    tag = await gql_create(client, acme.alice)
    for bad_id in BAD_IDS:
        with subtests.test(op="update", bad_id=bad_id):
            result = await gql(client, acme.alice, M_UPDATE, {"id": bad_id, "input": {"name": "x"}})
            assert_gql_error(result, "BAD_USER_INPUT")
        with subtests.test(op="delete", bad_id=bad_id):
            assert_gql_error(await gql(client, acme.alice, M_DELETE, {"id": bad_id}), "BAD_USER_INPUT")
    assert await gql_tags(client, acme.alice) == [tag]


@pytest.mark.parametrize("op", ["update", "delete"])
async def test_gql_unknown_tag_is_not_found(client: httpx.AsyncClient, acme: Company, op: str) -> None:
    if op == "update":
        result = await gql(client, acme.admin, M_UPDATE, {"id": str(uuid.uuid4()), "input": {"name": "x"}})
    else:
        result = await gql(client, acme.admin, M_DELETE, {"id": str(uuid.uuid4())})
    assert_gql_error(result, "NOT_FOUND")


async def test_gql_other_member_is_forbidden(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await gql_create(client, acme.alice, name="alices", color="#AAAAAA")
    assert_gql_error(await gql(client, acme.bob, M_UPDATE, {"id": tag["id"], "input": {"name": "bobs"}}), "FORBIDDEN")
    assert_gql_error(await gql(client, acme.bob, M_DELETE, {"id": tag["id"]}), "FORBIDDEN")
    assert await gql_tags(client, acme.alice) == [tag]


async def test_gql_admin_can_update_and_delete_others_tags(client: httpx.AsyncClient, acme: Company) -> None:
    tag = await gql_create(client, acme.bob, name="bobs")
    result = await gql(client, acme.admin, M_UPDATE, {"id": tag["id"], "input": {"color": "#ABCDEF"}})
    assert result == {"data": {"updateTag": {**tag, "color": "#ABCDEF"}}}
    assert await gql(client, acme.admin, M_DELETE, {"id": tag["id"]}) == {"data": {"deleteTag": tag["id"]}}
    assert await gql_tags(client, acme.bob) == []


async def test_gql_isolation_between_companies(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    ours = await gql_create(client, acme.alice, name="ours")
    theirs = await gql_create(client, globex.alice, name="theirs")
    task = await create_task(client, acme.alice)
    assert await gql_tags(client, acme.bob) == [ours]
    assert await gql_tags(client, globex.admin) == [theirs]
    intruder = globex.admin
    assert_gql_error(await gql(client, intruder, M_UPDATE, {"id": ours["id"], "input": {"name": "x"}}), "NOT_FOUND")
    assert_gql_error(await gql(client, intruder, M_DELETE, {"id": ours["id"]}), "NOT_FOUND")
    assert_gql_error(await gql(client, intruder, Q_ENTITY_TAGS, {"type": "TASK", "id": task["id"]}), "NOT_FOUND")
    result = await gql(
        client, intruder, M_ASSIGN, {"input": {"entityType": "TASK", "entityId": task["id"], "tagIds": [theirs["id"]]}}
    )
    assert_gql_error(result, "NOT_FOUND")
    result = await gql(
        client,
        acme.alice,
        M_ASSIGN,
        {"input": {"entityType": "TASK", "entityId": task["id"], "tagIds": [ours["id"], theirs["id"]]}},
    )
    assert_gql_error(result, "NOT_FOUND")
    assert await gql_tags(client, acme.alice) == [ours]
    assert await gql_entity_tags(client, acme.alice, task["id"]) == []


async def test_gql_assign_tags_add_replace_idempotent(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    one, two, three = [await gql_create(client, acme.alice, name=n) for n in ("one", "two", "three")]
    ref = {"entityType": "TASK", "entityId": task["id"]}
    result = await gql(client, acme.alice, M_ASSIGN, {"input": {**ref, "tagIds": [two["id"], one["id"]]}})
    assert result == {"data": {"assignTags": [one, two]}}
    again = await gql(client, acme.alice, M_ASSIGN, {"input": {**ref, "tagIds": [one["id"], two["id"]]}})
    assert again == result
    added = await gql(client, acme.alice, M_ASSIGN, {"input": {**ref, "tagIds": [three["id"]], "replace": False}})
    assert added == {"data": {"assignTags": [one, three, two]}}
    replaced = await gql(client, acme.alice, M_ASSIGN, {"input": {**ref, "tagIds": [three["id"]], "replace": True}})
    assert replaced == {"data": {"assignTags": [three]}}
    assert await gql_entity_tags(client, acme.alice, task["id"]) == [three]
    nested = await gql(client, acme.alice, "query($id: ID!) { task(id: $id) { tags { id } } }", {"id": task["id"]})
    assert nested == {"data": {"task": {"tags": [{"id": three["id"]}]}}}


async def test_gql_entity_tags_of_other_members_task_is_not_found(client: httpx.AsyncClient, acme: Company) -> None:
    task = await create_task(client, acme.alice)
    tag = await gql_create(client, acme.bob)
    assert_gql_error(await gql(client, acme.bob, Q_ENTITY_TAGS, {"type": "TASK", "id": task["id"]}), "NOT_FOUND")
    result = await gql(
        client, acme.bob, M_ASSIGN, {"input": {"entityType": "TASK", "entityId": task["id"], "tagIds": [tag["id"]]}}
    )
    assert_gql_error(result, "NOT_FOUND")
    assert await gql_entity_tags(client, acme.alice, task["id"]) == []


GQL_BAD_ASSIGN: list[tuple[str, dict[str, Any]]] = [
    ("unknown-entityType", {"entityType": "project", "entityId": "TASK_ID", "tagIds": ["TAG"]}),
    ("entityType-missing", {"entityId": "TASK_ID", "tagIds": ["TAG"]}),
    ("entityId-bad-uuid", {"entityType": "TASK", "entityId": "not-a-uuid", "tagIds": ["TAG"]}),
    ("tagIds-bad-uuid", {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": ["TAG", "nope"]}),
    # GraphQL coerces a single value into a one-item list, so a lone bad value must still be refused.
    ("tagIds-single-bad-uuid", {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": "nope"}),
    ("tagIds-object", {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": {"id": "TAG"}}),
    ("tagIds-null", {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": None}),
    ("tagIds-missing", {"entityType": "TASK", "entityId": "TASK_ID"}),
    ("replace-string", {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": ["TAG"], "replace": "yes"}),
    ("unknown-field", {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": ["TAG"], "mode": "x"}),
]


async def test_gql_assign_tags_bad_input(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    task = await create_task(client, acme.alice)
    tag = await gql_create(client, acme.alice)
    for case, input_ in GQL_BAD_ASSIGN:
        with subtests.test(case=case):
            result = await gql(client, acme.alice, M_ASSIGN, {"input": fill(input_, task["id"], tag["id"])})
            assert_gql_error(result, "BAD_USER_INPUT")
            assert await gql_entity_tags(client, acme.alice, task["id"]) == []


async def test_gql_entity_tags_bad_input(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    task = await create_task(client, acme.alice)
    cases = [
        {"type": "project", "id": "TASK_ID"},
        {"type": "TASK", "id": "not-a-uuid"},
        {"type": "TASK"},
        {"id": "TASK_ID"},
    ]
    for variables in cases:
        with subtests.test(variables=variables):
            result = await gql(client, acme.alice, Q_ENTITY_TAGS, fill(variables, task["id"], ""))
            assert_gql_error(result, "BAD_USER_INPUT")


GQL_OPERATIONS = [
    pytest.param(Q_TAGS, {}, id="tags"),
    pytest.param(Q_ENTITY_TAGS, {"type": "TASK", "id": "TASK_ID"}, id="entityTags"),
    pytest.param(M_CREATE, {"input": {"name": "sneaky"}}, id="createTag"),
    pytest.param(M_UPDATE, {"id": "TAG", "input": {"name": "sneaky"}}, id="updateTag"),
    pytest.param(M_DELETE, {"id": "TAG"}, id="deleteTag"),
    pytest.param(
        M_ASSIGN,
        {"input": {"entityType": "TASK", "entityId": "TASK_ID", "tagIds": ["TAG"], "replace": True}},
        id="assignTags",
    ),
]


@pytest.mark.parametrize(("query", "variables"), GQL_OPERATIONS)
async def test_gql_rejects_bad_auth(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests, query: str, variables: dict[str, Any]
) -> None:
    # The tokens name a real member, and each operation would succeed with a good token.
    task, tag, assigned = await tagged_task(client, acme)
    before = await list_tags(client, acme.alice)
    for kind in BAD_AUTH:
        with subtests.test(kind=kind):
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": fill(variables, task["id"], tag["id"])},
                headers=bad_authorization(kind, acme.alice),
            )
            assert response.status_code == 200, response.text
            assert_gql_error(response.json(), "UNAUTHENTICATED")
            assert await list_tags(client, acme.alice) == before
            assert await tags_on(client, acme.alice, task["id"]) == [assigned]


async def test_gql_accepts_a_good_token_built_with_pyjwt(client: httpx.AsyncClient, acme: Company) -> None:
    token = jwt.encode(_claims(acme.alice.id), SECRET, algorithm="HS256")
    response = await client.post(
        "/graphql", json={"query": "{ tags { id } }"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json() == {"data": {"tags": []}}
