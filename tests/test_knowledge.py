"""Knowledge: CRUD over REST and GraphQL, tags, search in its three modes, isolation, budget and indexing.

Everything goes through the ASGI app and PostgreSQL: RLS decides who sees an item, the triggers
queue it for embedding, and the `indexer` fixture (not started) embeds what is queued when a test
calls `await indexer.work()`, with the real MiniLM model. Rows are checked with the superuser
`engine`. The key property is isolation: no search ever returns an item its caller could not GET.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.indexer import Indexer
from fluxopus.auth.jwt import mint_token
from tests.utils.builders import SECRET, Company, User, create_tag, error_codes, gql, set_budget, unique
from tests.utils.http import assert_error

ITEM_FIELDS = {
    "id", "company_id", "owner_id", "title", "content", "source_url", "visibility", "status", "error",
    "created_at", "updated_at",
}  # fmt: skip
MODES = ("semantic", "keyword", "hybrid")
MAX_BYTES = 1_048_576
JSON_ACCEPT = {"Accept": "application/json"}
FORGERY_SECRET = "not-the-servers-secret-but-long-enough-for-hs256-000000"

# A small library with one obvious subject per document (title, content).
LIBRARY: dict[str, tuple[str, str]] = {
    "password": (
        "Resetting a forgotten password",
        "To reset your password, open the sign-in page, choose Forgot password and follow the link we email "
        "you. The link expires after one hour.",
    ),
    "invoice": (
        "Invoice payment terms",
        "Invoices are payable within thirty days of issue. Late payment incurs a fee of two percent per month "
        "on the outstanding amount.",
    ),
    "errors": (
        "Upload error codes",
        "Error ERR-4512 means the upload exceeded the storage quota of the workspace. Delete old files or "
        "upgrade the plan to free space.",
    ),
    "dogs": (
        "Dogs in the office",
        "Dogs are welcome in the office on Fridays, provided they are vaccinated, on a leash in shared areas "
        "and well behaved.",
    ),
    "deploy": (
        "Deploying services",
        "Services are deployed with Helm charts to the production Kubernetes cluster. A failed release is "
        "undone with helm rollback.",
    ),
    "leave": (
        "Holiday allowance",
        "Every employee has twenty-five days of paid annual leave. Unused days carry over until the end of March.",
    ),
}
OBVIOUS_QUERIES = [
    ("reset my password", "password"),
    ("invoice late payment fee", "invoice"),
    ("helm rollback of a release", "deploy"),
    ("paid annual leave days", "leave"),
]
# No word (after stemming) in common with the document they mean: only meaning can find it.
PARAPHRASES = [
    ("may I bring my puppy along to the workplace", "dogs"),
    ("how much time off do staff get each year", "leave"),
    ("I cannot log in and lost my credentials", "password"),
]


# --------------------------------------------------------------------------- helpers


def word() -> str:
    """A word no document has: one token to the full-text parser, left alone by the stemmer."""
    return f"zq{uuid.uuid4().hex[:12]}"


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def stored(engine: AsyncEngine, item_id: str) -> dict[str, Any] | None:
    found = await rows(engine, "select * from knowledge where id = :id", id=item_id)
    return found[0] if found else None


async def jobs_of(engine: AsyncEngine, item_id: str) -> list[dict[str, Any]]:
    return await rows(engine, "select knowledge_id, revision from embedding_jobs where knowledge_id = :id", id=item_id)


async def chunk_count(engine: AsyncEngine, item_id: str) -> int:
    found = await rows(engine, "select count(*) as n from knowledge_chunks where knowledge_id = :id", id=item_id)
    return int(found[0]["n"])


async def company_items(engine: AsyncEngine, company: Company) -> int:
    found = await rows(engine, "select count(*) as n from knowledge where company_id = :c", c=company.admin.company_id)
    return int(found[0]["n"])


async def create(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    body = {"title": unique("Doc"), "content": f"Some notes about {word()}.", **fields}
    response = await client.post("/api/knowledge", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    assert set(item) == ITEM_FIELDS
    return item


async def get(client: httpx.AsyncClient, user: User, item_id: str) -> httpx.Response:
    return await client.get(f"/api/knowledge/{item_id}", headers=user.headers)


async def patch(client: httpx.AsyncClient, user: User, item_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.patch(f"/api/knowledge/{item_id}", json=fields, headers=user.headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == ITEM_FIELDS
    return dict(response.json())


async def listing(client: httpx.AsyncClient, user: User, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """A page and the exact total (asked for: without `Prefer`, a full page has none)."""
    response = await client.get("/api/knowledge", params=params, headers={**user.headers, "Prefer": "count=exact"})
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers["X-Total-Count"])


async def listed_ids(client: httpx.AsyncClient, user: User, **params: Any) -> list[str]:
    items, total = await listing(client, user, **params)
    assert total == len(items)
    return [i["id"] for i in items]


async def search(client: httpx.AsyncClient, user: User, q: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/knowledge/search", params={"q": q, **params}, headers=user.headers)
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    for hit in hits:
        assert set(hit) == {"item", "score", "snippet"} and set(hit["item"]) == ITEM_FIELDS, hit
    return hits


def hit_ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["item"]["id"] for h in hits]


def assert_well_formed(hits: list[dict[str, Any]]) -> None:
    """Best first, each with a score and a passage that comes from its item."""
    scores = [h["score"] for h in hits]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True), scores
    for hit in hits:
        passage = hit["snippet"].replace("**", "").removesuffix(" …").strip()
        assert passage, hit
        assert passage in " ".join(hit["item"]["content"].split()), hit


async def build_library(client: httpx.AsyncClient, indexer: Indexer, user: User, **fields: Any) -> dict[str, str]:
    """The LIBRARY written by `user` and embedded; name → item id."""
    ids = {}
    for name, (title, content) in LIBRARY.items():
        ids[name] = (await create(client, user, title=title, content=content, **fields))["id"]
    await indexer.work()
    return ids


def item_endpoints(item_id: str) -> list[tuple[str, str, Any]]:
    path = f"/api/knowledge/{item_id}"
    return [("GET", path, None), ("PATCH", path, {"title": "changed"}), ("DELETE", path, None)]


def every_endpoint(item_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/api/knowledge", None),
        ("POST", "/api/knowledge", {"title": "t", "content": "c"}),
        ("GET", "/api/knowledge/search?q=password&mode=keyword", None),
        ("GET", "/api/knowledge/search?q=password&mode=semantic", None),
        *item_endpoints(item_id),
    ]


# --------------------------------------------------------------------------- create, get, list


async def test_create_answers_a_pending_company_item_owned_by_the_caller(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    item = await create(client, acme.alice, title="Minimal", content="Just text")
    assert {k: item[k] for k in ("title", "content", "source_url", "visibility", "status", "error")} == {
        "title": "Minimal",
        "content": "Just text",
        "source_url": None,
        "visibility": "company",
        "status": "pending",
        "error": None,
    }
    assert (item["owner_id"], item["company_id"]) == (acme.alice.id, acme.alice.company_id)
    assert item["created_at"] == item["updated_at"]
    row = await stored(engine, item["id"])
    assert row is not None and (str(row["owner_id"]), row["status"], row["revision"]) == (acme.alice.id, "pending", 1)
    assert await jobs_of(engine, item["id"]) == [{"knowledge_id": row["id"], "revision": 1}]
    assert (await get(client, acme.alice, item["id"])).json() == item


async def test_create_echoes_every_field(client: httpx.AsyncClient, acme: Company) -> None:
    body = {"title": "Ünïcode ☃ title", "content": "Grüße\n\nsecond paragraph", "source_url": "https://ex.com/a?b=c"}
    item = await create(client, acme.bob, **body, visibility="private")
    assert {k: item[k] for k in body} == body and item["visibility"] == "private"
    assert (await get(client, acme.bob, item["id"])).json() == item


async def test_list_searches_titles_newest_first_with_paging(client: httpx.AsyncClient, acme: Company) -> None:
    created = [(await create(client, acme.alice, title=f"Handbook part {i}"))["id"] for i in range(5)]
    other = await create(client, acme.bob, title="Unrelated memo")
    newest_first = created[::-1]
    assert await listed_ids(client, acme.alice) == [other["id"], *newest_first]
    assert await listed_ids(client, acme.bob, q="HANDBOOK") == newest_first
    assert await listed_ids(client, acme.bob, q="part 3") == [created[3]]
    assert await listed_ids(client, acme.bob, q="nothing like it") == []
    items, total = await listing(client, acme.alice, q="handbook", limit=2, offset=1)
    assert ([i["id"] for i in items], total) == (newest_first[1:3], 5)
    assert await listing(client, acme.alice, q="handbook", offset=10) == ([], 5)


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "ten"}, {"offset": -1}, {"q": ""}, {"q": "q" * 201}])
async def test_list_bad_params_are_400(client: httpx.AsyncClient, acme: Company, params: dict[str, Any]) -> None:
    assert_error(await client.get("/api/knowledge", params=params, headers=acme.alice.headers), 400)


# --------------------------------------------------------------------------- patch and delete


async def test_content_changes_requeue_the_item(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, indexer: Indexer
) -> None:
    item = await create(client, acme.alice)
    await indexer.work()
    assert (await get(client, acme.alice, item["id"])).json()["status"] == "indexed"
    assert await jobs_of(engine, item["id"]) == []
    for revision, change in enumerate([{"title": "Renamed"}, {"content": "New text"}], start=2):
        patched = await patch(client, acme.alice, item["id"], **change)
        assert (patched["status"], patched["created_at"]) == ("pending", item["created_at"])
        assert {k: patched[k] for k in change} == change and patched["updated_at"] > item["updated_at"]
        row = await stored(engine, item["id"])
        assert row is not None and (row["revision"], row["status"]) == (revision, "pending")
        assert [j["revision"] for j in await jobs_of(engine, item["id"])] == [revision]
        await indexer.work()
        assert (await get(client, acme.alice, item["id"])).json()["status"] == "indexed"
    assert await jobs_of(engine, item["id"]) == []


async def test_changes_outside_title_and_content_keep_the_index(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice)
    await indexer.work()
    chunks = await chunk_count(engine, item["id"])
    assert chunks >= 1
    changes = [
        {"visibility": "private"},
        {"visibility": "company"},
        {"source_url": "http://example.com/doc"},
        {"source_url": None},
        {"title": item["title"], "content": item["content"]},
        {},
    ]
    for change in changes:
        with subtests.test(change=change):
            patched = await patch(client, acme.alice, item["id"], **change)
            assert {k: patched[k] for k in change} == change
            assert patched["status"] == "indexed"
            assert await jobs_of(engine, item["id"]) == []
            row = await stored(engine, item["id"])
            assert row is not None and (row["revision"], row["status"]) == (1, "indexed")
    assert await chunk_count(engine, item["id"]) == chunks


async def test_delete_removes_the_item_its_chunks_and_its_job(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, indexer: Indexer
) -> None:
    item = await create(client, acme.alice)
    await indexer.work()
    await patch(client, acme.alice, item["id"], content="Edited, so a job is queued while old chunks remain.")
    assert await chunk_count(engine, item["id"]) >= 1 and len(await jobs_of(engine, item["id"])) == 1

    response = await client.delete(f"/api/knowledge/{item['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": item["id"], "deleted": True}
    assert_error(await get(client, acme.alice, item["id"]), 404)
    assert item["id"] not in await listed_ids(client, acme.alice)
    assert await stored(engine, item["id"]) is None
    assert (await chunk_count(engine, item["id"]), await jobs_of(engine, item["id"])) == (0, [])


# --------------------------------------------------------------------------- who sees and changes what


async def test_company_item_is_read_by_every_member_and_changed_by_owner_or_admin_only(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice)
    for user in (acme.bob, acme.admin):
        assert (await get(client, user, item["id"])).json() == item
        assert item["id"] in await listed_ids(client, user)
    before = await stored(engine, item["id"])
    path = f"/api/knowledge/{item['id']}"
    for method, body in [("PATCH", {"title": "hijacked"}), ("PATCH", {"visibility": "private"}), ("PATCH", {})]:
        with subtests.test(method=method, body=body):
            assert_error(await client.request(method, path, json=body, headers=acme.bob.headers), 403)
    assert_error(await client.delete(path, headers=acme.bob.headers), 403)
    assert await stored(engine, item["id"]) == before

    patched = await patch(client, acme.admin, item["id"], title="Edited by the admin")
    assert (patched["title"], patched["owner_id"]) == ("Edited by the admin", acme.alice.id)
    assert (await client.delete(path, headers=acme.admin.headers)).status_code == 200
    assert await stored(engine, item["id"]) is None


async def assert_invisible(
    client: httpx.AsyncClient, engine: AsyncEngine, subtests: pytest.Subtests, item: dict[str, Any], user: User
) -> None:
    """Every endpoint on the item answers 404 to `user`, it is not listed, and nothing changed."""
    before = await stored(engine, item["id"])
    for method, path, body in item_endpoints(item["id"]):
        with subtests.test(user=user.email, method=method):
            assert_error(await client.request(method, path, json=body, headers=user.headers), 404)
    assert item["id"] not in await listed_ids(client, user)
    assert await stored(engine, item["id"]) == before


async def test_private_item_is_the_owners_alone_even_for_the_admin(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice, visibility="private")
    for user in (acme.bob, acme.admin):
        await assert_invisible(client, engine, subtests, item, user)
    assert (await get(client, acme.alice, item["id"])).json() == item
    shared = await patch(client, acme.alice, item["id"], visibility="company")
    assert (await get(client, acme.bob, item["id"])).json() == shared


async def test_other_companys_item_is_404(
    client: httpx.AsyncClient, acme: Company, globex: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice)
    for user in (globex.admin, globex.alice):
        await assert_invisible(client, engine, subtests, item, user)


async def test_unknown_item_is_404(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    for method, path, body in item_endpoints(str(uuid.uuid4())):
        with subtests.test(method=method):
            assert_error(await client.request(method, path, json=body, headers=acme.admin.headers), 404)


def bad_credentials(user: User) -> dict[str, dict[str, str]]:
    claims = {"user_id": uuid.UUID(user.id), "company_id": uuid.UUID(user.company_id), "email": user.email}
    forged = mint_token(FORGERY_SECRET, role=user.role, ttl=600, **claims)
    expired = mint_token(SECRET, role=user.role, ttl=-600, **claims)
    return {
        "none": {},
        "garbage": {"Authorization": "Bearer garbage"},
        "basic": {"Authorization": f"Basic {user.token}"},
        "forged": {"Authorization": f"Bearer {forged}"},
        "expired": {"Authorization": f"Bearer {expired}"},
    }


async def test_every_endpoint_needs_a_valid_token(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice)
    before = await stored(engine, item["id"])
    for case, headers in bad_credentials(acme.alice).items():
        for method, path, body in every_endpoint(item["id"]):
            with subtests.test(case=case, method=method, path=path):
                assert_error(await client.request(method, path, json=body, headers={**headers, **JSON_ACCEPT}), 401)
    assert await stored(engine, item["id"]) == before
    assert await company_items(engine, acme) == 1


# --------------------------------------------------------------------------- bad input: 400, nothing stored

MISSING = object()
BAD_CREATE: list[tuple[str, dict[str, Any]]] = [
    ("title-empty", {"title": ""}),
    ("title-501-chars", {"title": "t" * 501}),
    ("title-missing", {"title": MISSING}),
    ("title-number", {"title": 5}),
    ("title-null", {"title": None}),
    ("content-missing", {"content": MISSING}),
    ("content-empty", {"content": ""}),
    ("content-null", {"content": None}),
    ("content-list", {"content": ["a", "b"]}),
    ("content-1MB-plus-1-byte", {"content": "x" * (MAX_BYTES + 1)}),
    ("content-1.2MB-of-euro-signs", {"content": "€" * 400_000}),  # 400 000 characters, 1 200 000 bytes
    ("source-url-ftp", {"source_url": "ftp://example.com/file"}),
    ("source-url-relative", {"source_url": "/docs/page"}),
    ("source-url-javascript", {"source_url": "javascript:alert(1)"}),
    ("source-url-2049-chars", {"source_url": "https://e.com/" + "p" * 2035}),
    ("visibility-public", {"visibility": "public"}),
    ("unknown-field", {"tags": ["x"]}),
    ("status-not-writable", {"status": "indexed"}),
    ("owner-not-writable", {"owner_id": str(uuid.uuid4())}),
]
BAD_PATCH: list[tuple[str, dict[str, Any]]] = [
    ("title-empty", {"title": ""}),
    ("title-501-chars", {"title": "t" * 501}),
    ("title-null", {"title": None}),
    ("content-empty", {"content": ""}),
    ("content-null", {"content": None}),
    ("content-1.2MB-of-euro-signs", {"content": "€" * 400_000}),
    ("source-url-not-http", {"source_url": "mailto:a@b.c"}),
    ("visibility-public", {"visibility": "public"}),
    ("visibility-null", {"visibility": None}),
    ("good-title-bad-visibility", {"title": "fine", "visibility": "world"}),
    ("unknown-field", {"summary": "x"}),
    ("company-not-writable", {"company_id": str(uuid.uuid4())}),
]
MALFORMED_JSON = [b'{"title": "x",', b"title=x", b"", b"[]", b"null", b'{"title": "x"} extra']


def with_changes(changes: dict[str, Any]) -> dict[str, Any]:
    merged = {"title": "valid", "content": "valid content", **changes}
    return {k: v for k, v in merged.items() if v is not MISSING}


async def assert_refused(
    client: httpx.AsyncClient, user: User, subtests: pytest.Subtests, method: str, path: str, bodies: list[Any]
) -> None:
    """Each body (a case name and JSON, or raw bytes that are not a JSON object) answers 400."""
    headers = {**user.headers, "Content-Type": "application/json"}
    for body in [*bodies, *MALFORMED_JSON]:
        case, payload = body if isinstance(body, tuple) else (body, None)
        with subtests.test(method=method, case=case):
            raw = case if payload is None else None
            response = await client.request(method, path, json=payload, content=raw, headers=headers)
            assert_error(response, 400)


async def test_create_bad_input_is_400_and_stores_nothing(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    bodies = [(case, with_changes(changes)) for case, changes in BAD_CREATE]
    await assert_refused(client, acme.alice, subtests, "POST", "/api/knowledge", bodies)
    assert await company_items(engine, acme) == 0


async def test_content_of_exactly_1mb_is_accepted(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    content = "€" * (MAX_BYTES // 3) + "x" * (MAX_BYTES % 3)
    assert len(content.encode()) == MAX_BYTES
    item = await create(client, acme.alice, content=content)
    assert item["content"] == content
    # Deleted at once, so no test's indexer spends its time embedding a megabyte of euro signs.
    assert (await client.delete(f"/api/knowledge/{item['id']}", headers=acme.alice.headers)).status_code == 200
    assert await company_items(engine, acme) == 0


async def test_patch_bad_input_is_400_and_changes_nothing(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice, source_url="https://example.com")
    before = await stored(engine, item["id"])
    await assert_refused(client, acme.alice, subtests, "PATCH", f"/api/knowledge/{item['id']}", BAD_PATCH)
    assert await stored(engine, item["id"]) == before
    assert [j["revision"] for j in await jobs_of(engine, item["id"])] == [1]


async def test_bad_uuid_in_path_is_400(client: httpx.AsyncClient, acme: Company, subtests: pytest.Subtests) -> None:
    for bad_id in ("not-a-uuid", "123", "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0"):
        for method, path, body in item_endpoints(bad_id):
            with subtests.test(method=method, id=bad_id):
                assert_error(await client.request(method, path, json=body, headers=acme.alice.headers), 400)


# --------------------------------------------------------------------------- GraphQL

GQL_ITEM = "id companyId ownerId title content sourceUrl visibility status error createdAt updatedAt"
CREATE = f"mutation($input: CreateKnowledgeInput!) {{ createKnowledge(input: $input) {{ {GQL_ITEM} }} }}"
UPDATE = (
    f"mutation($id: ID!, $input: UpdateKnowledgeInput!) {{ updateKnowledge(id: $id, input: $input) {{ {GQL_ITEM} }} }}"
)
DELETE = "mutation($id: ID!) { deleteKnowledge(id: $id) }"
ITEM = f"query($id: ID!) {{ knowledgeItem(id: $id) {{ {GQL_ITEM} tags {{ id name }} }} }}"
LIST = (
    "query($q: String, $limit: Int! = 50, $offset: Int! = 0) "
    "{ knowledge(q: $q, limit: $limit, offset: $offset) { id } }"
)
SEARCH = (
    "query($q: String!, $limit: Int! = 10, $mode: SearchMode! = HYBRID) "
    "{ searchKnowledge(q: $q, limit: $limit, mode: $mode) { item { id companyId title } score snippet } }"
)
ASSIGN = "mutation($input: AssignTagsInput!) { assignTags(input: $input) { id } }"


def data(result: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in result, result
    return dict(result["data"])


def as_rest(item: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL item with the REST field names and enum spellings (GraphQL's PENDING is REST's pending),
    timestamps left out (their formats differ)."""
    names = {"companyId": "company_id", "ownerId": "owner_id", "sourceUrl": "source_url"}
    enums = ("status", "visibility")
    return {
        names.get(k, k): v.lower() if k in enums else v
        for k, v in item.items()
        if k not in ("createdAt", "updatedAt", "tags")
    }


def without_timestamps(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("created_at", "updated_at")}


async def test_graphql_crud_matches_rest(client: httpx.AsyncClient, acme: Company, engine: AsyncEngine) -> None:
    title = unique("GraphQL handbook")
    new = {"title": title, "content": "Written over GraphQL", "sourceUrl": "https://example.com/gql"}
    created = data(await gql(client, acme.alice, CREATE, {"input": new}))["createKnowledge"]
    assert {k: created[k] for k in new} == new
    assert (created["status"], created["visibility"], created["ownerId"]) == ("PENDING", "COMPANY", acme.alice.id)
    assert len(await jobs_of(engine, created["id"])) == 1

    rest = (await get(client, acme.bob, created["id"])).json()
    read = data(await gql(client, acme.bob, ITEM, {"id": created["id"]}))["knowledgeItem"]
    assert as_rest(read) == without_timestamps(rest) and read["tags"] == []
    listed = data(await gql(client, acme.bob, LIST, {"q": title.lower()}))["knowledge"]
    assert listed == [{"id": created["id"]}]

    renamed = data(await gql(client, acme.admin, UPDATE, {"id": created["id"], "input": {"title": "By the admin"}}))
    assert (renamed["updateKnowledge"]["title"], renamed["updateKnowledge"]["status"]) == ("By the admin", "PENDING")
    assert [j["revision"] for j in await jobs_of(engine, created["id"])] == [2]
    updated = data(await gql(client, acme.alice, UPDATE, {"id": created["id"], "input": {"visibility": "PRIVATE"}}))
    assert updated["updateKnowledge"]["visibility"] == "PRIVATE"
    assert data(await gql(client, acme.bob, ITEM, {"id": created["id"]})) == {"knowledgeItem": None}
    assert data(await gql(client, acme.alice, DELETE, {"id": created["id"]})) == {"deleteKnowledge": created["id"]}
    assert await stored(engine, created["id"]) is None
    assert data(await gql(client, acme.alice, ITEM, {"id": created["id"]})) == {"knowledgeItem": None}


async def test_graphql_error_codes(
    client: httpx.AsyncClient, acme: Company, globex: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    item = await create(client, acme.alice)
    before = await stored(engine, item["id"])
    rename = {"id": item["id"], "input": {"title": "changed"}}
    cases: list[tuple[str, User | None, str, dict[str, Any]]] = [
        ("UNAUTHENTICATED", None, LIST, {}),
        ("UNAUTHENTICATED", None, ITEM, {"id": item["id"]}),
        ("UNAUTHENTICATED", None, CREATE, {"input": {"title": "t", "content": "c"}}),
        ("UNAUTHENTICATED", None, UPDATE, rename),
        ("UNAUTHENTICATED", None, DELETE, {"id": item["id"]}),
        ("UNAUTHENTICATED", None, SEARCH, {"q": "password"}),
        ("FORBIDDEN", acme.bob, UPDATE, rename),
        ("FORBIDDEN", acme.bob, DELETE, {"id": item["id"]}),
        ("NOT_FOUND", globex.admin, UPDATE, rename),
        ("NOT_FOUND", globex.admin, DELETE, {"id": item["id"]}),
        ("NOT_FOUND", acme.admin, DELETE, {"id": str(uuid.uuid4())}),
        ("BAD_USER_INPUT", acme.alice, UPDATE, {"id": item["id"], "input": {"title": ""}}),
        ("BAD_USER_INPUT", acme.alice, UPDATE, {"id": item["id"], "input": {"visibility": "public"}}),
        ("BAD_USER_INPUT", acme.alice, DELETE, {"id": "not-a-uuid"}),
        ("BAD_USER_INPUT", acme.alice, CREATE, {"input": {"title": "", "content": "c"}}),
        ("BAD_USER_INPUT", acme.alice, CREATE, {"input": {"title": "t", "content": "x" * (MAX_BYTES + 1)}}),
        ("BAD_USER_INPUT", acme.alice, CREATE, {"input": {"title": "t", "content": "c", "sourceUrl": "ftp://x"}}),
        ("BAD_USER_INPUT", acme.alice, CREATE, {"input": {"title": "t"}}),
    ]
    for code, user, document, variables in cases:
        with subtests.test(code=code, user=user and user.email, document=document[:40], variables=str(variables)[:80]):
            result = await gql(client, user, document, variables)
            assert error_codes(result) == [code], result
    assert await stored(engine, item["id"]) == before
    assert await company_items(engine, acme) == 1
    assert data(await gql(client, globex.admin, ITEM, {"id": item["id"]})) == {"knowledgeItem": None}


# --------------------------------------------------------------------------- tags


async def assign(client: httpx.AsyncClient, user: User, item_id: str, tag_ids: list[str]) -> httpx.Response:
    body = {"entityType": "knowledge", "entityId": item_id, "tagIds": tag_ids}
    return await client.post("/api/tags/entity", json=body, headers=user.headers)


async def tag_rows(engine: AsyncEngine, item_id: str) -> list[dict[str, Any]]:
    sql = "select tag_id from entity_tags where entity_type = 'knowledge' and entity_id = :id"
    return await rows(engine, sql, id=item_id)


async def test_tags_on_a_readable_item_and_gone_with_it(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine
) -> None:
    item = await create(client, acme.alice)
    tag = await create_tag(client, acme.bob)
    response = await assign(client, acme.bob, item["id"], [tag["id"]])
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()] == [tag["id"]]
    params = {"entityType": "knowledge", "entityId": item["id"]}
    on_item = await client.get("/api/tags/entity", params=params, headers=acme.alice.headers)
    assert [t["id"] for t in on_item.json()] == [tag["id"]]
    read = data(await gql(client, acme.alice, ITEM, {"id": item["id"]}))["knowledgeItem"]
    assert read["tags"] == [{"id": tag["id"], "name": tag["name"]}]
    assert [str(r["tag_id"]) for r in await tag_rows(engine, item["id"])] == [tag["id"]]

    assert (await client.delete(f"/api/knowledge/{item['id']}", headers=acme.alice.headers)).status_code == 200
    assert await tag_rows(engine, item["id"]) == []
    assert [t["id"] for t in (await client.get("/api/tags", headers=acme.bob.headers)).json()] == [tag["id"]]


async def test_tags_on_an_invisible_item_are_404(
    client: httpx.AsyncClient, acme: Company, globex: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    private = await create(client, acme.alice, visibility="private")
    shared = await create(client, acme.alice)
    for user, item in [(acme.bob, private), (acme.admin, private), (globex.admin, shared)]:
        with subtests.test(user=user.email, visibility=item["visibility"]):
            tag = await create_tag(client, user)
            assert_error(await assign(client, user, item["id"], [tag["id"]]), 404)
            result = await gql(
                client,
                user,
                ASSIGN,
                {"input": {"entityType": "KNOWLEDGE", "entityId": item["id"], "tagIds": [tag["id"]]}},
            )
            assert error_codes(result) == ["NOT_FOUND"], result
            assert await tag_rows(engine, item["id"]) == []


# --------------------------------------------------------------------------- search


@pytest.mark.parametrize("mode", MODES)
async def test_each_mode_finds_the_obvious_item_best_first(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, mode: str, subtests: pytest.Subtests
) -> None:
    library = await build_library(client, indexer, acme.alice)
    for q, expected in OBVIOUS_QUERIES:
        with subtests.test(q=q):
            hits = await search(client, acme.bob, q, mode=mode)
            assert hit_ids(hits)[:1] == [library[expected]], [h["item"]["title"] for h in hits]
            assert_well_formed(hits)
            assert all(h["item"]["status"] == "indexed" for h in hits)


async def test_keyword_snippet_marks_the_matched_words(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    library = await build_library(client, indexer, acme.alice)
    [hit] = await search(client, acme.alice, "quota", mode="keyword")
    assert hit["item"]["id"] == library["errors"]
    assert "**quota**" in hit["snippet"], hit


# "zqabsent" is in no document: no item has every word, so keyword search falls back to any of them.
@pytest.mark.parametrize("q", ["days -late", "-late days", "days -late zqabsent", "-late zqabsent days"])
async def test_keyword_exclusion_holds_wherever_it_stands(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, q: str
) -> None:
    """Any of the words, none of the excluded ones: "days" is in the invoice and leave documents,
    and the invoice one also says "late". No document without "days" may come back either."""
    library = await build_library(client, indexer, acme.alice)
    hits = await search(client, acme.alice, q, mode="keyword")
    assert hit_ids(hits) == [library["leave"]], [h["item"]["title"] for h in hits]


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
async def test_an_identifier_finds_the_document_that_names_it(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, mode: str
) -> None:
    library = await build_library(client, indexer, acme.alice)
    near_miss = await create(
        client, acme.alice, title="Sync errors", content="Error ERR-7730 means the sync timed out."
    )
    await indexer.work()
    hits = await search(client, acme.alice, "ERR-4512", mode=mode)
    assert hit_ids(hits)[0] == library["errors"], [h["item"]["title"] for h in hits]
    assert_well_formed(hits)
    if mode == "keyword":
        assert "ERR-4512" in hits[0]["snippet"].replace("**", "")
    assert near_miss["id"] not in hit_ids(hits)[:1]


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
async def test_a_paraphrase_finds_the_document_by_meaning(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, mode: str, subtests: pytest.Subtests
) -> None:
    library = await build_library(client, indexer, acme.alice)
    for q, expected in PARAPHRASES:
        with subtests.test(q=q):
            # No shared words: keyword search cannot find it, so what finds it is the meaning.
            assert library[expected] not in hit_ids(await search(client, acme.alice, q, mode="keyword"))
            hits = await search(client, acme.alice, q, mode=mode)
            assert hit_ids(hits)[:1] == [library[expected]], [h["item"]["title"] for h in hits]
            assert_well_formed(hits)


async def test_limit_is_respected(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    await build_library(client, indexer, acme.alice)
    # Semantic search ranks every item, so it fills any page; keyword only the items that match.
    for mode, params, expected in [
        ("semantic", {}, len(LIBRARY)),
        ("semantic", {"limit": 2}, 2),
        ("hybrid", {"limit": 1}, 1),
        ("hybrid", {"limit": 50}, len(LIBRARY)),
        ("keyword", {"limit": 1}, 1),
    ]:
        with subtests.test(mode=mode, params=params):
            assert (
                len(await search(client, acme.alice, "days of payment, leave and release", mode=mode, **params))
                == expected
            )


async def test_default_mode_is_hybrid(client: httpx.AsyncClient, acme: Company, indexer: Indexer) -> None:
    await build_library(client, indexer, acme.alice)
    q = "quota of the workspace"
    assert await search(client, acme.alice, q) == await search(client, acme.alice, q, mode="hybrid")


BAD_SEARCH: list[dict[str, Any]] = [
    {},
    {"q": ""},
    {"q": "   "},
    {"q": "\n\t"},
    {"q": "q" * 1001},
    {"q": "ok", "limit": 0},
    {"q": "ok", "limit": 51},
    {"q": "ok", "limit": "x"},
    {"q": "ok", "limit": 1.5},
    {"q": "ok", "mode": "fuzzy"},
    {"q": "ok", "mode": ""},
]


async def test_bad_search_params_are_400(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, subtests: pytest.Subtests
) -> None:
    for params in BAD_SEARCH:
        with subtests.test(params=params):
            response = await client.get("/api/knowledge/search", params=params, headers=acme.alice.headers)
            assert_error(response, 400)
    assert await rows(engine, "select * from token_usage where company_id = :c", c=acme.alice.company_id) == []


async def test_graphql_search_and_its_bad_input(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    library = await build_library(client, indexer, acme.alice)
    for mode in MODES:
        hits = data(await gql(client, acme.bob, SEARCH, {"q": "helm rollback", "mode": mode.upper(), "limit": 2}))
        found = hits["searchKnowledge"]
        assert 1 <= len(found) <= 2 and found[0]["item"]["id"] == library["deploy"], found
        assert found[0]["snippet"] and found[0]["score"] > 0
    for variables in [{"q": ""}, {"q": "  "}, {"q": "q" * 1001}, {"q": "ok", "limit": 0}, {"q": "ok", "limit": 51},
                      {"q": "ok", "limit": "x"}, {"q": "ok", "mode": "fuzzy"}]:  # fmt: skip
        with subtests.test(variables=variables):
            assert error_codes(await gql(client, acme.bob, SEARCH, variables)) == ["BAD_USER_INPUT"]


async def test_a_passage_deep_in_a_long_document_is_found_once_with_its_own_snippet(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    library = await build_library(client, indexer, acme.alice)
    marker = word()
    filler = [
        f"Planning note {i}: the teams review their roadmaps, staffing and budgets for the next quarter."
        for i in range(60)
    ]
    passage = f"The espresso machine on the third floor is descaled every Monday by facilities ({marker})."
    long = await create(client, acme.alice, title="Quarterly planning", content="\n\n".join([*filler, passage]))
    await indexer.work()
    sql = "select content from knowledge_chunks where knowledge_id = :id"
    chunks = [" ".join(r["content"].split()) for r in await rows(engine, sql, id=long["id"])]
    assert len(chunks) >= 3
    for q, mode in [(marker, "keyword"), (marker, "hybrid"), ("who cleans the coffee maker", "semantic")]:
        with subtests.test(q=q, mode=mode):
            hits = await search(client, acme.alice, q, mode=mode, limit=50)
            assert hit_ids(hits)[0] == long["id"] and hit_ids(hits).count(long["id"]) == 1
            assert_well_formed(hits)
            # From the chunk that holds the passage (a semantic snippet is that chunk's opening).
            snippet = hits[0]["snippet"].replace("**", "").removesuffix(" …")
            assert any(snippet in chunk and "espresso" in chunk for chunk in chunks), snippet
            assert set(hit_ids(hits)) <= {long["id"], *library.values()}


# --------------------------------------------------------------------------- isolation

ISOLATION_QUERIES = [
    "reset my password",
    "ERR-4512",
    "dogs in the office",
    "may I bring my puppy along to the workplace",
    "payment",
    "holiday",
    "secret",
    "the",
    "zzzz",
    "!!!",
    'a -b "c d" or',
]


@pytest.mark.slow
async def test_search_never_returns_what_the_caller_cannot_get(
    client: httpx.AsyncClient, acme: Company, globex: Company, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    acme_ids = set((await build_library(client, indexer, acme.alice)).values())
    # The same texts, word for word, in another company, and as private items of other users.
    globex_ids = set((await build_library(client, indexer, globex.alice)).values())
    privates = {
        user.email: set((await build_library(client, indexer, user, visibility="private")).values())
        for user in (acme.alice, acme.bob, globex.bob)
    }
    readable = {
        acme.alice.email: acme_ids | privates[acme.alice.email],
        acme.bob.email: acme_ids | privates[acme.bob.email],
        acme.admin.email: acme_ids,
        globex.admin.email: globex_ids,
        globex.bob.email: globex_ids | privates[globex.bob.email],
    }
    users = (acme.alice, acme.bob, acme.admin, globex.admin, globex.bob)
    for user in users:
        seen: set[str] = set()
        for q in ISOLATION_QUERIES:
            for mode in MODES:
                with subtests.test(user=user.email, q=q, mode=mode):
                    hits = await search(client, user, q, mode=mode, limit=50)
                    ids = set(hit_ids(hits))
                    assert ids <= readable[user.email], [h["item"]["title"] for h in hits]
                    assert all(h["item"]["company_id"] == user.company_id for h in hits)
                    for item_id in ids - seen:
                        assert (await get(client, user, item_id)).status_code == 200
                    seen |= ids
        # Not vacuous: every caller found its whole readable library.
        assert seen == readable[user.email]


async def test_private_item_is_found_by_its_owner_alone(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    secret = word()
    private = await create(
        client, acme.alice, title="My notes", content=f"The code word is {secret}.", visibility="private"
    )
    await indexer.work()
    await assert_found_by_owner_only(client, acme, private["id"], secret, subtests)


async def assert_found_by_owner_only(
    client: httpx.AsyncClient, acme: Company, item_id: str, q: str, subtests: pytest.Subtests
) -> None:
    for mode in MODES:
        with subtests.test(mode=mode):
            assert hit_ids(await search(client, acme.alice, q, mode=mode))[:1] == [item_id]
            for user in (acme.bob, acme.admin):
                assert item_id not in hit_ids(await search(client, user, q, mode=mode, limit=50))


async def test_making_an_indexed_item_private_hides_it_from_search_at_once(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    secret = word()
    item = await create(client, acme.alice, title="Shared notes", content=f"The code word is {secret}.")
    await indexer.work()
    assert hit_ids(await search(client, acme.bob, secret, mode="keyword")) == [item["id"]]
    assert (await patch(client, acme.alice, item["id"], visibility="private"))["status"] == "indexed"
    await assert_found_by_owner_only(client, acme, item["id"], secret, subtests)


# --------------------------------------------------------------------------- budget


async def used_tokens(client: httpx.AsyncClient, user: User) -> int:
    response = await client.get("/api/usage", headers=user.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["used"])


async def test_semantic_search_charges_the_query_tokens(
    client: httpx.AsyncClient, app: Any, acme: Company, indexer: Indexer
) -> None:
    await build_library(client, indexer, acme.alice)
    q = "Where do I find the Grüße of the password ☃ page?"
    tokens = app.state.runtime.ai.embedder.count_tokens(q) + 2
    used = await used_tokens(client, acme.bob)
    for mode, charge in [("semantic", tokens), ("hybrid", tokens), ("keyword", 0)]:
        await search(client, acme.alice, q, mode=mode)
        assert await used_tokens(client, acme.bob) == used + charge, mode
        used += charge


async def test_over_budget_semantic_and_hybrid_are_refused_keyword_is_not(
    client: httpx.AsyncClient, database_url: str, acme: Company, indexer: Indexer
) -> None:
    library = await build_library(client, indexer, acme.alice)
    used = await used_tokens(client, acme.alice)  # what indexing the library cost
    await set_budget(database_url, acme, used + 3)  # fewer than any query costs ([CLS] q [SEP])
    for mode in ("semantic", "hybrid"):
        response = await client.get(
            "/api/knowledge/search", params={"q": "reset my password", "mode": mode}, headers=acme.alice.headers
        )
        assert response.status_code == 429, response.text
        assert response.json() == {"error": "Token budget exceeded", "code": "budget_exceeded"}
        result = await gql(client, acme.alice, SEARCH, {"q": "reset my password", "mode": mode.upper()})
        assert error_codes(result) == ["BUDGET_EXCEEDED"], result
    assert await used_tokens(client, acme.alice) == used
    hits = await search(client, acme.alice, "reset my password", mode="keyword")
    assert hit_ids(hits)[:1] == [library["password"]]
    assert data(await gql(client, acme.alice, SEARCH, {"q": "password", "mode": "KEYWORD"}))["searchKnowledge"]


# --------------------------------------------------------------------------- indexing end to end


async def test_create_update_delete_show_in_search(
    client: httpx.AsyncClient, acme: Company, engine: AsyncEngine, indexer: Indexer, subtests: pytest.Subtests
) -> None:
    old, new = word(), word()
    item = await create(client, acme.alice, title="Rotating notes", content=f"The current code is {old}.")
    assert await search(client, acme.alice, old, mode="keyword") == []  # pending: not embedded yet
    await indexer.work()
    assert (await get(client, acme.alice, item["id"])).json()["status"] == "indexed"
    assert hit_ids(await search(client, acme.alice, old, mode="keyword")) == [item["id"]]

    await patch(client, acme.alice, item["id"], content=f"The current code is {new}.")
    await indexer.work()
    assert (await get(client, acme.alice, item["id"])).json()["status"] == "indexed"
    assert await search(client, acme.alice, old, mode="keyword") == []
    [hit] = await search(client, acme.alice, new, mode="keyword")
    assert hit["item"]["id"] == item["id"] and new in hit["snippet"]

    assert (await client.delete(f"/api/knowledge/{item['id']}", headers=acme.alice.headers)).status_code == 200
    for mode in MODES:
        with subtests.test(mode=mode):
            assert item["id"] not in hit_ids(await search(client, acme.alice, new, mode=mode, limit=50))
    assert await chunk_count(engine, item["id"]) == 0
