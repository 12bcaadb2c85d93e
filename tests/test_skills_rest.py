"""REST: skills CRUD, visibility and version history, end to end through the ASGI app and PostgreSQL.

Grouped by concern: create and its defaults, lists (visibility, search, paging), get/patch/delete
with the RLS rules of DESIGN.md (private: owner only; company: everyone reads, owner and admin
change), the version history written by the database, authentication (401), bad input (400 with
nothing stored), tags on skills, and the safety of rendering user templates at run time (echo app).
Runs' streaming and budgets are covered elsewhere.
"""

from __future__ import annotations

import tracemalloc
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.auth.jwt import mint_token
from tests.utils.builders import Company, User, create_skill, create_tag, unique
from tests.utils.http import assert_error

SKILL_FIELDS = {
    "id", "company_id", "owner_id", "name", "description", "instructions", "input_schema", "provider", "model",
    "temperature", "max_tokens", "knowledge", "tools", "visibility", "version", "created_at", "updated_at",
}  # fmt: skip
VERSION_FIELDS = {
    "id", "skill_id", "version", "name", "description", "instructions", "input_schema", "provider", "model",
    "temperature", "max_tokens", "knowledge", "tools", "created_by", "created_at",
}  # fmt: skip
CONTENT = (
    "name", "description", "instructions", "input_schema", "provider", "model", "temperature", "max_tokens",
    "knowledge", "tools",
)  # fmt: skip
FULL_SKILL: dict[str, Any] = {
    "description": "Summarises a topic",
    "instructions": "Summarise {{ input.topic }} in {{ input.words }} words.",
    "input_schema": {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "words": {"type": "integer"}},
        "required": ["topic"],
    },
    "provider": "anthropic",
    "model": "claude-test",
    "temperature": 0.5,  # exactly representable, so the echo cannot differ by float rounding
    "max_tokens": 2048,
    "tools": [{"name": "github.list_issues"}],
    "visibility": "company",
}
JSON_ACCEPT = {"Accept": "application/json"}
OTHER_SECRET = "another-secret-that-is-also-long-enough-for-hs256-9876"


# --------------------------------------------------------------------------- helpers


def content(record: dict[str, Any]) -> dict[str, Any]:
    return {field: record[field] for field in CONTENT}


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows as the superuser sees them, past RLS: what is really stored."""
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def skill_row(engine: AsyncEngine, skill_id: str) -> dict[str, Any] | None:
    found = await rows(engine, "select * from skills where id = :id", id=skill_id)
    return found[0] if found else None


async def version_rows(engine: AsyncEngine, skill_id: str) -> list[dict[str, Any]]:
    return await rows(engine, "select * from skill_versions where skill_id = :id order by version", id=skill_id)


async def count(engine: AsyncEngine, table: str, company: Company) -> int:
    found = await rows(engine, f"select count(*) as n from {table} where company_id = :c", c=company.admin.company_id)
    return int(found[0]["n"])


async def get_skill(client: httpx.AsyncClient, user: User, skill_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/skills/{skill_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def patch_skill(client: httpx.AsyncClient, user: User, skill_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.patch(f"/api/skills/{skill_id}", json=fields, headers=user.headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == SKILL_FIELDS
    return response.json()


async def list_page(client: httpx.AsyncClient, user: User, path: str, **params: Any) -> tuple[list[Any], int]:
    """A page and the exact total (asked for: without `Prefer`, a full page has none)."""
    response = await client.get(path, params=params, headers={**user.headers, "Prefer": "count=exact"})
    assert response.status_code == 200, response.text
    assert isinstance(response.json(), list)
    return response.json(), int(response.headers["X-Total-Count"])


async def skill_names(client: httpx.AsyncClient, user: User, **params: Any) -> list[str]:
    skills, total = await list_page(client, user, "/api/skills", **params)
    assert total == len(skills)
    return [s["name"] for s in skills]


async def versions(client: httpx.AsyncClient, user: User, skill_id: str) -> list[dict[str, Any]]:
    items, total = await list_page(client, user, f"/api/skills/{skill_id}/versions")
    assert total == len(items)
    assert all(set(v) == VERSION_FIELDS for v in items)
    return items


async def run(client: httpx.AsyncClient, user: User, skill_id: str, input: dict[str, Any]) -> httpx.Response:
    """A run answered as the finished SkillRun JSON (no stream)."""
    headers = {**user.headers, **JSON_ACCEPT}
    return await client.post(f"/api/skills/{skill_id}/run", json={"input": input}, headers=headers)


def endpoints(skill_id: str) -> list[tuple[str, str, Any]]:
    """Every skills endpoint: (method, path, body)."""
    collection = [("GET", "/api/skills", None), ("POST", "/api/skills", {"name": "n", "instructions": "i"})]
    return collection + on_skill(skill_id)


def on_skill(skill_id: str) -> list[tuple[str, str, Any]]:
    """Every endpoint on one skill: (method, path, body)."""
    path = f"/api/skills/{skill_id}"
    return [
        ("GET", path, None),
        ("PATCH", path, {"name": "changed"}),
        ("DELETE", path, None),
        ("GET", f"{path}/versions", None),
        ("GET", f"{path}/runs", None),
        ("POST", f"{path}/run", {"input": {"name": "x"}}),
    ]


# --------------------------------------------------------------------------- create


async def test_create_echoes_every_field_and_records_version_1(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    body = {"name": unique("Summariser"), **FULL_SKILL}
    response = await client.post("/api/skills", json=body, headers=acme.alice.headers)
    assert response.status_code == 201, response.text
    skill = response.json()
    assert set(skill) == SKILL_FIELDS
    assert {k: skill[k] for k in body} == body
    assert skill["version"] == 1
    assert (skill["owner_id"], skill["company_id"]) == (acme.alice.id, acme.alice.company_id)
    assert skill["created_at"] == skill["updated_at"]

    [v1] = await versions(client, acme.alice, skill["id"])
    assert content(v1) == content(skill)
    assert (v1["version"], v1["skill_id"], v1["created_by"]) == (1, skill["id"], acme.alice.id)
    [stored] = await version_rows(engine, skill["id"])
    assert ({k: stored[k] for k in CONTENT}, stored["version"], str(stored["created_by"])) == (
        content(skill),
        1,
        acme.alice.id,
    )
    row = await skill_row(engine, skill["id"])
    assert row is not None and str(row["owner_id"]) == acme.alice.id and row["visibility"] == "company"


async def test_create_defaults(client: httpx.AsyncClient, acme: Company) -> None:
    skill = await create_skill(client, acme.bob, name="Minimal", instructions="Just say hi")
    expected = {"name": "Minimal", "instructions": "Just say hi", "max_tokens": 1024, "visibility": "private"}
    assert {k: skill[k] for k in expected} == expected
    nulls = ("description", "input_schema", "provider", "model", "temperature")
    assert {k: skill[k] for k in nulls} == dict.fromkeys(nulls)
    assert (skill["version"], skill["owner_id"]) == (1, acme.bob.id)
    assert await get_skill(client, acme.bob, skill["id"]) == skill


@pytest.mark.parametrize("temperature", [0.7, 0.1, 1.3])
async def test_temperature_round_trips_exactly(client: httpx.AsyncClient, acme: Company, temperature: float) -> None:
    """A client reads back the temperature it wrote (not its nearest 32-bit float, 0.699999988…)."""
    skill = await create_skill(client, acme.alice, temperature=temperature)
    assert skill["temperature"] == temperature
    assert (await get_skill(client, acme.alice, skill["id"]))["temperature"] == temperature
    [v1] = await versions(client, acme.alice, skill["id"])
    assert v1["temperature"] == temperature


# --------------------------------------------------------------------------- lists


async def test_list_shows_own_and_company_visible_skills_only(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    for user in (acme.alice, acme.bob, globex.alice):
        for visibility in ("private", "company"):
            await create_skill(client, user, name=f"{user.email} {visibility}", visibility=visibility)
    alice, bob = acme.alice.email, acme.bob.email
    assert set(await skill_names(client, acme.alice)) == {f"{alice} private", f"{alice} company", f"{bob} company"}
    assert set(await skill_names(client, acme.admin)) == {f"{alice} company", f"{bob} company"}
    assert set(await skill_names(client, globex.bob)) == {f"{globex.alice.email} company"}


async def test_list_search_is_case_insensitive_in_name_and_description_with_literal_wildcards(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    for name, description in [
        ("Weekly Report", None),
        ("Digest", "Daily SUMMARY of mail"),
        ("Progress 100% done", None),
        ("snake_case helper", None),
        ("snakeXcase helper", "no wildcard here"),
        ("back\\slash", None),
    ]:
        await create_skill(client, acme.alice, name=name, description=description)
    cases = {
        "report": ["Weekly Report"],
        "summary": ["Digest"],
        "DAILY sum": ["Digest"],
        "%": ["Progress 100% done"],
        "_": ["snake_case helper"],
        "e_c": ["snake_case helper"],
        "\\": ["back\\slash"],
        "helper": ["snakeXcase helper", "snake_case helper"],
        "nothing like it": [],
    }
    for q, expected in cases.items():
        with subtests.test(q=q):
            assert await skill_names(client, acme.alice, q=q) == expected


async def test_list_newest_first_with_limit_offset_and_total(client: httpx.AsyncClient, acme: Company) -> None:
    created = [(await create_skill(client, acme.alice, name=f"skill {i}"))["name"] for i in range(5)]
    newest_first = created[::-1]
    assert await skill_names(client, acme.alice) == newest_first
    page, total = await list_page(client, acme.alice, "/api/skills", limit=2, offset=1)
    assert ([s["name"] for s in page], total) == (newest_first[1:3], 5)
    page, total = await list_page(client, acme.alice, "/api/skills", limit=2, offset=4)
    assert ([s["name"] for s in page], total) == (newest_first[4:], 5)
    assert await list_page(client, acme.alice, "/api/skills", offset=10) == ([], 5)


BAD_LIST_PARAMS: list[dict[str, Any]] = [
    {"limit": 0},
    {"limit": 201},
    {"limit": "ten"},
    {"offset": -1},
    {"q": ""},
    {"q": "x" * 201},
]


async def test_list_bad_params_are_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    skill = await create_skill(client, acme.alice)
    for path in ("/api/skills", f"/api/skills/{skill['id']}/versions"):
        for params in BAD_LIST_PARAMS:
            if path.endswith("versions") and "q" in params:
                continue
            with subtests.test(path=path, params=params):
                assert_error(await client.get(path, params=params, headers=acme.alice.headers), 400)


# --------------------------------------------------------------------------- get / patch / delete


async def test_owner_gets_patches_and_deletes_with_versions(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    skill = await create_skill(client, acme.alice)
    assert await get_skill(client, acme.alice, skill["id"]) == skill
    patched = await patch_skill(client, acme.alice, skill["id"], name="Renamed")
    assert (patched["name"], patched["version"], patched["created_at"]) == ("Renamed", 2, skill["created_at"])
    assert patched["updated_at"] > skill["updated_at"]
    assert len(await version_rows(engine, skill["id"])) == 2

    response = await client.delete(f"/api/skills/{skill['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": skill["id"], "deleted": True}
    assert_error(await client.get(f"/api/skills/{skill['id']}", headers=acme.alice.headers), 404)
    assert await skill_row(engine, skill["id"]) is None
    assert await version_rows(engine, skill["id"]) == []


async def test_unknown_skill_is_404(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    headers = {**acme.admin.headers, **JSON_ACCEPT}
    for method, path, body in on_skill(str(uuid.uuid4())):
        with subtests.test(method=method, path=path):
            assert_error(await client.request(method, path, json=body, headers=headers), 404)


async def assert_invisible(
    client: httpx.AsyncClient, engine: AsyncEngine, subtests: pytest.Subtests, skill: dict[str, Any], user: User
) -> None:
    """Every endpoint on the skill answers 404 to `user`, it is not listed, and nothing changed."""
    before = await skill_row(engine, skill["id"])
    for method, path, body in on_skill(skill["id"]):
        with subtests.test(user=user.email, method=method, path=path):
            response = await client.request(method, path, json=body, headers={**user.headers, **JSON_ACCEPT})
            assert_error(response, 404)
    assert skill["name"] not in await skill_names(client, user)
    assert await skill_row(engine, skill["id"]) == before
    assert await rows(engine, "select id from skill_runs where skill_id = :id", id=skill["id"]) == []


async def test_other_companys_skill_is_404(
    client: httpx.AsyncClient, acme: Company, globex: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    skill = await create_skill(client, acme.alice, visibility="company")
    for user in (globex.admin, globex.bob):
        await assert_invisible(client, engine, subtests, skill, user)


async def test_colleagues_private_skill_is_404_even_for_admin(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    skill = await create_skill(client, acme.alice)
    for user in (acme.bob, acme.admin):
        await assert_invisible(client, engine, subtests, skill, user)


async def test_company_skill_readable_by_member_who_cannot_change_it(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    skill = await create_skill(client, acme.alice, visibility="company")
    assert await get_skill(client, acme.bob, skill["id"]) == skill
    assert [v["version"] for v in await versions(client, acme.bob, skill["id"])] == [1]
    assert skill["name"] in await skill_names(client, acme.bob)
    before = await skill_row(engine, skill["id"])
    refused = [("PATCH", {"name": "hijacked"}), ("PATCH", {"visibility": "private"}), ("PATCH", {}), ("DELETE", None)]
    for method, body in refused:
        with subtests.test(method=method, body=body):
            response = await client.request(method, f"/api/skills/{skill['id']}", json=body, headers=acme.bob.headers)
            assert_error(response, 403)
    assert await skill_row(engine, skill["id"]) == before
    assert len(await version_rows(engine, skill["id"])) == 1


async def test_admin_edits_and_deletes_members_company_skill(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    skill = await create_skill(client, acme.alice, visibility="company")
    patched = await patch_skill(client, acme.admin, skill["id"], instructions="Be brief, {{ input.name }}")
    assert (patched["instructions"], patched["version"]) == ("Be brief, {{ input.name }}", 2)
    assert patched["owner_id"] == acme.alice.id
    newest = (await versions(client, acme.alice, skill["id"]))[0]
    assert (newest["version"], newest["created_by"]) == (2, acme.admin.id)

    response = await client.delete(f"/api/skills/{skill['id']}", headers=acme.admin.headers)
    assert response.status_code == 200, response.text
    assert await skill_row(engine, skill["id"]) is None
    assert await version_rows(engine, skill["id"]) == []


async def test_patch_null_clears_optional_fields(client: httpx.AsyncClient, acme: Company, engine: AsyncEngine) -> None:
    skill = await create_skill(client, acme.alice, **FULL_SKILL)
    optional = ("description", "input_schema", "provider", "model", "temperature")
    patched = await patch_skill(client, acme.alice, skill["id"], **dict.fromkeys(optional))
    assert {k: patched[k] for k in optional} == dict.fromkeys(optional)
    assert patched["version"] == 2
    row = await skill_row(engine, skill["id"])
    assert row is not None and {k: row[k] for k in optional} == dict.fromkeys(optional)
    assert (await versions(client, acme.alice, skill["id"]))[1]["input_schema"] == FULL_SKILL["input_schema"]


async def test_visibility_change_shows_and_hides_a_skill(client: httpx.AsyncClient, acme: Company) -> None:
    skill = await create_skill(client, acme.alice)
    shared = await patch_skill(client, acme.alice, skill["id"], visibility="company")
    assert await get_skill(client, acme.bob, skill["id"]) == shared
    await patch_skill(client, acme.alice, skill["id"], visibility="private")
    assert_error(await client.get(f"/api/skills/{skill['id']}", headers=acme.bob.headers), 404)


# --------------------------------------------------------------------------- versions

# One change per content field, each to a value different from the one before.
CONTENT_CHANGES: list[dict[str, Any]] = [
    {"name": "Renamed"},
    {"description": "Now with a description"},
    {"instructions": "Greet {{ input.who }} warmly"},
    {"input_schema": {"type": "object", "required": ["who"]}},
    {"provider": "openai"},
    {"model": "gpt-test"},
    {"temperature": 1.5},
    {"max_tokens": 77},
    {"tools": [{"name": "slack.post_message"}]},
    {"description": None},
]


async def test_every_content_change_records_the_next_version(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    skill = await create_skill(client, acme.alice, visibility="company")
    snapshots = {1: content(skill)}
    editors = {1: acme.alice.id}
    for version, change in enumerate(CONTENT_CHANGES, start=2):
        editor = acme.admin if version % 2 else acme.alice  # the owner and an admin take turns
        patched = await patch_skill(client, editor, skill["id"], **change)
        assert patched["version"] == version, change
        snapshots[version], editors[version] = content(patched), editor.id

    history = await versions(client, acme.bob, skill["id"])
    assert [v["version"] for v in history] == sorted(snapshots, reverse=True)
    for v in history:
        assert (content(v), v["created_by"]) == (snapshots[v["version"]], editors[v["version"]]), v["version"]
    stored = await version_rows(engine, skill["id"])
    assert [{k: r[k] for k in CONTENT} for r in stored] == [snapshots[v] for v in sorted(snapshots)]


async def test_visibility_alone_or_unchanged_values_keep_the_version(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    skill = await create_skill(client, acme.alice, **FULL_SKILL)
    same_values = [
        {"visibility": "private"},
        {"visibility": "company"},
        {},
        content(skill),
        {"name": skill["name"], "visibility": "private"},
        {"temperature": skill["temperature"], "max_tokens": skill["max_tokens"]},
    ]
    for change in same_values:
        with subtests.test(change=change):
            patched = await patch_skill(client, acme.alice, skill["id"], **change)
            assert patched["version"] == 1
            assert content(patched) == content(skill)
    assert len(await version_rows(engine, skill["id"])) == 1


async def test_old_versions_never_change(client: httpx.AsyncClient, acme: Company, engine: AsyncEngine) -> None:
    skill = await create_skill(client, acme.alice, **FULL_SKILL)
    [v1_api] = await versions(client, acme.alice, skill["id"])
    [v1_row] = await version_rows(engine, skill["id"])
    for change in CONTENT_CHANGES[:4]:
        await patch_skill(client, acme.alice, skill["id"], **change)
    await patch_skill(client, acme.alice, skill["id"], visibility="private")
    history = await versions(client, acme.alice, skill["id"])
    assert len(history) == 5 and history[-1] == v1_api
    assert (await version_rows(engine, skill["id"]))[0] == v1_row


# --------------------------------------------------------------------------- authentication


def bad_credentials(user: User) -> dict[str, dict[str, str]]:
    forged = mint_token(
        OTHER_SECRET,
        user_id=uuid.UUID(user.id),
        email=user.email,
        role=user.role,
        company_id=uuid.UUID(user.company_id),
        ttl=3600,
    )
    return {
        "no header": {},
        "not a jwt": {"Authorization": "Bearer not-a-jwt"},
        "wrong scheme": {"Authorization": f"Basic {user.token}"},
        "bad signature": {"Authorization": f"Bearer {forged}"},
    }


async def test_every_skills_endpoint_needs_a_valid_token(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    skill = await create_skill(client, acme.alice, visibility="company")
    before = await skill_row(engine, skill["id"])
    for case, headers in bad_credentials(acme.alice).items():
        for method, path, body in endpoints(skill["id"]):
            with subtests.test(case=case, method=method, path=path):
                response = await client.request(method, path, json=body, headers={**headers, **JSON_ACCEPT})
                assert_error(response, 401)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await count(engine, "skills", acme) == 1
    assert await skill_row(engine, skill["id"]) == before
    assert await count(engine, "skill_runs", acme) == 0


# --------------------------------------------------------------------------- bad input → 400, nothing stored

VALID_CREATE: dict[str, Any] = {"name": "valid", "instructions": "Hello {{ input.name }}"}
MISSING = object()
# (case, changes to VALID_CREATE; MISSING drops the field)
BAD_CREATE: list[tuple[str, dict[str, Any]]] = [
    ("template-unclosed-expression", {"instructions": "{{ input.x "}),
    ("template-empty-if", {"instructions": "{% if %}yes{% endif %}"}),
    ("template-unclosed-block", {"instructions": "{% for x in input.items() %}"}),
    ("schema-unknown-type", {"input_schema": {"type": "nope"}}),
    ("schema-nested-unknown-type", {"input_schema": {"type": "object", "properties": {"a": {"type": "nope"}}}}),
    ("schema-array", {"input_schema": []}),
    ("schema-string", {"input_schema": "x"}),
    ("name-empty", {"name": ""}),
    ("name-blank", {"name": "   "}),
    ("name-201-chars", {"name": "x" * 201}),
    ("name-missing", {"name": MISSING}),
    ("name-number", {"name": 7}),
    ("instructions-missing", {"instructions": MISSING}),
    ("instructions-empty", {"instructions": ""}),
    ("description-5001-chars", {"description": "d" * 5001}),
    ("temperature-negative", {"temperature": -1}),
    ("temperature-2.5", {"temperature": 2.5}),
    ("temperature-word", {"temperature": "hot"}),
    ("max-tokens-0", {"max_tokens": 0}),
    ("max-tokens-32001", {"max_tokens": 32001}),
    ("max-tokens-fraction", {"max_tokens": 1.5}),
    ("max-tokens-string", {"max_tokens": "3"}),
    ("max-tokens-null", {"max_tokens": None}),
    ("visibility-public", {"visibility": "public"}),
    ("provider-gpt", {"provider": "gpt"}),
    ("model-empty", {"model": ""}),
    ("unknown-field", {"prompt": "x"}),
    ("owner-not-writable", {"owner_id": str(uuid.uuid4())}),
    ("version-not-writable", {"version": 3}),
    ("tools-not-a-list", {"tools": {"name": "github.list_issues"}}),
    ("tools-unknown-built-in", {"tools": [{"name": "github.delete_repo"}]}),
    ("tools-built-in-with-a-url", {"tools": [{"name": "github.list_issues", "url": "https://example.org"}]}),
    ("tools-twice", {"tools": [{"name": "notion.search"}, {"name": "notion.search"}]}),
    (
        "tools-host-not-allowed",
        {
            "tools": [
                {"name": "w", "description": "d", "parameters": {"type": "object"}, "url": "https://example.org/w"}
            ]
        },
    ),
    (
        "tools-schema-not-an-object",
        {
            "tools": [
                {"name": "w", "description": "d", "parameters": {"type": "object"}, "url": "https://example.org/w"}
                | {"parameters": {"type": "string"}}
            ]
        },
    ),
    (
        "tools-21",
        {
            "tools": [
                {"name": f"t{i}", "description": "d", "parameters": {"type": "object"}, "url": "https://example.org"}
                for i in range(21)
            ]
        },
    ),
]
MALFORMED_JSON = [b'{"name": "x",', b"name=x", b"", b"[]", b'"x"', b"null", b'{"name": "x"} trailing']


def bad_create_body(changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**VALID_CREATE, **changes}
    return {k: v for k, v in merged.items() if v is not MISSING}


async def test_create_bad_input_is_400_and_stores_nothing(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    for case, changes in BAD_CREATE:
        with subtests.test(case=case):
            assert_error(await client.post("/api/skills", json=bad_create_body(changes), headers=headers), 400)
    for raw in MALFORMED_JSON:
        with subtests.test(raw=raw):
            assert_error(await client.post("/api/skills", content=raw, headers=headers), 400)
    assert await count(engine, "skills", acme) == 0
    assert await count(engine, "skill_versions", acme) == 0


async def test_bad_template_error_says_what_is_wrong(client: httpx.AsyncClient, acme: Company) -> None:
    body = bad_create_body({"instructions": "Line one\n{{ input.x "})
    message = assert_error(await client.post("/api/skills", json=body, headers=acme.alice.headers), 400)
    assert "instructions" in message and "line 2" in message.lower(), message


BAD_PATCH: list[tuple[str, dict[str, Any]]] = [
    ("template-unclosed-expression", {"instructions": "{{ input.x "}),
    ("template-empty-if", {"instructions": "{% if %}"}),
    ("schema-unknown-type", {"input_schema": {"type": "nope"}}),
    ("schema-array", {"input_schema": []}),
    ("name-empty", {"name": ""}),
    ("name-201-chars", {"name": "n" * 201}),
    ("temperature-2.5", {"temperature": 2.5}),
    ("max-tokens-string", {"max_tokens": "3"}),
    ("max-tokens-32001", {"max_tokens": 32001}),
    ("visibility-public", {"visibility": "public"}),
    ("provider-gpt", {"provider": "gpt"}),
    *[(f"{field}-null", {field: None}) for field in ("name", "instructions", "max_tokens", "visibility")],
    ("valid-name-with-bad-field", {"name": "fine", "temperature": "hot"}),
    ("unknown-field", {"prompt": "x"}),
    ("version-not-writable", {"version": 9}),
    ("owner-not-writable", {"owner_id": str(uuid.uuid4())}),
    ("company-not-writable", {"company_id": str(uuid.uuid4())}),
    ("tools-null", {"tools": None}),
    (
        "tools-http-without-description",
        {
            "tools": [
                {"name": "w", "description": "d", "parameters": {"type": "object"}, "url": "https://example.org/w"}
                | {"description": ""}
            ]
        },
    ),
    (
        "tools-http-ftp-url",
        {
            "tools": [
                {"name": "w", "description": "d", "parameters": {"type": "object"}, "url": "https://example.org/w"}
                | {"url": "ftp://example.org/w"}
            ]
        },
    ),
]


async def test_patch_bad_input_is_400_and_changes_nothing(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    skill = await create_skill(client, acme.alice, **FULL_SKILL)
    before = await skill_row(engine, skill["id"])
    path = f"/api/skills/{skill['id']}"
    headers = {**acme.alice.headers, "Content-Type": "application/json"}
    for case, body in BAD_PATCH:
        with subtests.test(case=case):
            assert_error(await client.patch(path, json=body, headers=headers), 400)
    for raw in MALFORMED_JSON:
        with subtests.test(raw=raw):
            assert_error(await client.patch(path, content=raw, headers=headers), 400)
    assert await skill_row(engine, skill["id"]) == before
    assert len(await version_rows(engine, skill["id"])) == 1


async def test_bad_uuid_in_path_is_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    for bad_id in ("not-a-uuid", "123", "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0"):
        for method, path, body in on_skill(bad_id):
            with subtests.test(method=method, path=path):
                response = await client.request(method, path, json=body, headers={**acme.alice.headers, **JSON_ACCEPT})
                assert "UUID" in assert_error(response, 400)


# --------------------------------------------------------------------------- tags on skills


async def assign(client: httpx.AsyncClient, user: User, skill_id: str, tag_ids: list[str]) -> httpx.Response:
    body = {"entityType": "skill", "entityId": skill_id, "tagIds": tag_ids}
    return await client.post("/api/tags/entity", json=body, headers=user.headers)


async def tag_rows(engine: AsyncEngine, skill_id: str) -> list[dict[str, Any]]:
    return await rows(engine, "select * from entity_tags where entity_type = 'skill' and entity_id = :id", id=skill_id)


async def test_tags_on_a_readable_skill_and_gone_with_it(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    skill = await create_skill(client, acme.alice, visibility="company")
    tag = await create_tag(client, acme.bob)
    response = await assign(client, acme.bob, skill["id"], [tag["id"]])
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()] == [tag["id"]]
    params = {"entityType": "skill", "entityId": skill["id"]}
    on_skill = await client.get("/api/tags/entity", params=params, headers=acme.alice.headers)
    assert [t["id"] for t in on_skill.json()] == [tag["id"]]
    assert len(await tag_rows(engine, skill["id"])) == 1

    assert (await client.delete(f"/api/skills/{skill['id']}", headers=acme.alice.headers)).status_code == 200
    assert await tag_rows(engine, skill["id"]) == []
    assert (await client.get("/api/tags", headers=acme.alice.headers)).json() == [tag]


async def test_tags_on_an_invisible_skill_are_404(
    client: httpx.AsyncClient, acme: Company, globex: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    private = await create_skill(client, acme.alice)
    shared = await create_skill(client, acme.alice, visibility="company")
    cases = [(acme.bob, private), (acme.admin, private), (globex.admin, shared)]
    for user, skill in cases:
        with subtests.test(user=user.email, visibility=skill["visibility"]):
            tag = await create_tag(client, user)
            assert_error(await assign(client, user, skill["id"], [tag["id"]]), 404)
            params = {"entityType": "skill", "entityId": skill["id"]}
            assert_error(await client.get("/api/tags/entity", params=params, headers=user.headers), 404)
            assert await tag_rows(engine, skill["id"]) == []


# --------------------------------------------------------------------------- rendering safety (echo app)


async def test_run_renders_the_input_without_evaluating_it(client: httpx.AsyncClient, acme: Company) -> None:
    skill = await create_skill(client, acme.alice, instructions="Hi {{ input.name }}!")
    response = await run(client, acme.alice, skill["id"], {"name": "Ann"})
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["output"]) == ("succeeded", "Hi Ann!")
    response = await run(client, acme.alice, skill["id"], {"name": "{{ 7 * 7 }}"})
    assert response.json()["output"] == "Hi {{ 7 * 7 }}!"


SANDBOX_ESCAPES = [
    "{{ input.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ input.name.__class__.__base__ }}",
]


async def test_sandbox_escape_leaks_no_python_internals(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    for template in SANDBOX_ESCAPES:
        with subtests.test(template=template):
            skill = await create_skill(client, acme.alice, instructions=template)
            response = await run(client, acme.alice, skill["id"], {"name": "Ann"})
            assert response.status_code in (200, 400), response.text
            for leak in ("<class", "<module", "<function", "__builtins__"):
                assert leak not in response.text
            if response.status_code == 400:
                assert_error(response, 400)
                assert await rows(engine, "select id from skill_runs where skill_id = :id", id=skill["id"]) == []


# Each would build a string of tens of megabytes or more; the sandbox must refuse it before.
HUGE_OUTPUTS = [
    "{{ 'x' * 1000000000 }}",
    "{{ 'x'.ljust(50000000) }}",
    "{{ 'x'|center(50000000) }}",
    "{{ '%50000000s'|format('x') }}",
    "{{ range(1000)|join('x' * 50000) }}",
    "{{ ('x' * 100000)|replace('', 'y' * 500) }}",
    "{{ '%50000000s' % 'x' }}",
    "{{ '{:>50000000}'.format('x') }}",
    "{% for i in range(100000) %}{% for j in range(50) %}x{% endfor %}{% endfor %}",
]
MEMORY_CEILING = 20_000_000  # bytes; a refused render allocates well under 1 MB


async def test_huge_output_is_refused_before_allocating_it(
    client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests
) -> None:
    """A memory assertion, not a timing one: ASGITransport runs the app in this process, so
    tracemalloc's peak covers the render."""
    for template in HUGE_OUTPUTS:
        with subtests.test(template=template):
            skill = await create_skill(client, acme.alice, instructions=template)
            tracemalloc.start()
            try:
                response = await run(client, acme.alice, skill["id"], {})
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert_error(response, 400)
            assert peak < MEMORY_CEILING, f"rendering allocated {peak / 1e6:.0f} MB before refusing"


@pytest.mark.parametrize(
    ("template", "missing"), [("Hi {{ input.nickname }}", "nickname"), ("Hi {{ nickname }}", "nickname")]
)
async def test_missing_variable_is_400_with_a_clear_message(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, template: str, missing: str
) -> None:
    skill = await create_skill(client, acme.alice, instructions=template)
    message = assert_error(await run(client, acme.alice, skill["id"], {"name": "Ann"}), 400)
    assert missing in message, message
    assert await rows(engine, "select id from skill_runs where skill_id = :id", id=skill["id"]) == []
