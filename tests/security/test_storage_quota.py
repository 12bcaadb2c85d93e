"""A company's knowledge has a storage quota (issue 11, point 12).

Before this, any member could store knowledge without end (1 MB an item, as many items as they
liked), and every byte costs the operator disk and indexing CPU. Now a trigger keeps each company's
byte count (titles and content) and refuses, atomically, the write that would pass the quota: the
company's own (`fluxopus quota`) or the server's default (FLUXOPUS_STORAGE_QUOTA). The answer is 409
`{"error"}` (GraphQL QUOTA_EXCEEDED) and nothing is stored; other companies are unaffected.
Checked over real HTTP, including concurrent writes racing for the last bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.db.users import set_storage_quota
from tests.utils.builders import SECRET, Company, User, error_codes, gql
from tests.utils.cli import cli_env, run_cli
from tests.utils.server import ThreadedServer

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

QUOTA = 3000  # the server default in these tests, in bytes
CREATE = "mutation($input: CreateKnowledgeInput!) { createKnowledge(input: $input) { id } }"


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    app = create_app(settings.model_copy(update={"storage_quota": QUOTA, "indexer": False}), database_url=database_url)
    with ThreadedServer(app) as running:
        yield running


@pytest.fixture
async def http(server: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def body(size: int, title: str = "t") -> dict[str, str]:
    """An item of exactly `size` bytes, title included."""
    return {"title": title, "content": "x" * (size - len(title.encode()))}


async def create(http: httpx.AsyncClient, user: User, size: int) -> httpx.Response:
    return await http.post("/api/knowledge", json=body(size), headers=user.headers)


async def stored(engine: AsyncEngine, company_id: str) -> tuple[int, int]:
    """(bytes the counter holds, bytes the company's items really take)."""
    async with engine.connect() as conn:
        counted = await conn.execute(
            text("select coalesce(sum(bytes), 0) from knowledge_storage where company_id = :c"), {"c": company_id}
        )
        real = await conn.execute(
            text(
                "select coalesce(sum(octet_length(title) + octet_length(content)), 0) from knowledge"
                " where company_id = :c"
            ),
            {"c": company_id},
        )
        return int(counted.scalar_one()), int(real.scalar_one())


def quota_error(response: httpx.Response) -> str:
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "quota_exceeded" and set(response.json()) == {"error", "code"}, response.json()
    message: str = response.json()["error"]
    assert message.startswith("Knowledge storage quota exceeded"), message
    return message


async def test_a_write_over_the_quota_is_refused_and_stores_nothing(
    http: httpx.AsyncClient, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    first = await create(http, acme.alice, 1200)
    second = await create(http, acme.bob, 1200)
    assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)

    message = quota_error(await create(http, acme.alice, 1200))
    assert f"2400 of its {QUOTA} bytes" in message and "1200 more" in message, message
    result = await gql(http, acme.alice, CREATE, {"input": body(1200)})
    assert error_codes(result) == ["QUOTA_EXCEEDED"], result
    assert result["data"] is None
    # Growing an item is a write too; the item stays as it was.
    item = first.json()["id"]
    quota_error(await http.patch(f"/api/knowledge/{item}", json=body(2500), headers=acme.alice.headers))
    shown = await http.get(f"/api/knowledge/{item}", headers=acme.alice.headers)
    assert len(shown.json()["content"]) == 1200 - 1
    assert await stored(engine, acme.alice.company_id) == (2400, 2400)

    # Another company has its own quota.
    assert (await create(http, globex.alice, 2900)).status_code == 201

    # Shrinking and deleting give bytes back.
    smaller = await http.patch(f"/api/knowledge/{item}", json=body(200), headers=acme.alice.headers)
    assert smaller.status_code == 200, smaller.text
    assert (await create(http, acme.alice, 1500)).status_code == 201
    deleted = await http.delete(f"/api/knowledge/{second.json()['id']}", headers=acme.bob.headers)
    assert deleted.status_code == 200, deleted.text
    assert await stored(engine, acme.alice.company_id) == (1700, 1700)
    assert (await create(http, acme.bob, 1300)).status_code == 201
    quota_error(await create(http, acme.bob, 2))
    assert await stored(engine, acme.alice.company_id) == (3000, 3000)


async def test_concurrent_writes_never_pass_the_quota(
    http: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    """Twelve writes of 700 bytes race for 3000: four fit, whatever the interleaving."""
    users = [acme.alice, acme.bob, acme.admin] * 4
    responses = await asyncio.gather(*(create(http, user, 700) for user in users))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 4 + [409] * 8, [r.text for r in responses]
    assert await stored(engine, acme.alice.company_id) == (2800, 2800)


async def test_a_company_quota_overrides_the_default(
    http: httpx.AsyncClient, database_url: str, tmp_path: Path, engine: AsyncEngine, acme: Company
) -> None:
    await set_storage_quota(engine, company=acme.name, bytes=500)
    quota_error(await create(http, acme.alice, 600))
    done = await run_cli(
        cli_env(tmp_path, database_url, FLUXOPUS_JWT_SECRET=SECRET),
        tmp_path,
        "quota",
        "--company",
        acme.name,
        "--bytes",
        "10000",
    )
    assert done.code == 0, done.stderr
    assert (await create(http, acme.alice, 6000)).status_code == 201  # over the default, within its own
    done = await run_cli(cli_env(tmp_path, database_url), tmp_path, "quota", "--company", acme.name)
    assert done.code == 0 and "the server default" in done.stdout, done.stderr
    quota_error(await create(http, acme.alice, 10))
    missing = await run_cli(cli_env(tmp_path, database_url), tmp_path, "quota", "--company", "no such company")
    assert missing.code == 1 and "No company named" in missing.stderr
    assert await stored(engine, acme.alice.company_id) == (6000, 6000)


async def test_quota_errors_are_the_same_on_graphql(http: httpx.AsyncClient, acme: Company) -> None:
    created: dict[str, Any] = await gql(http, acme.alice, CREATE, {"input": body(2000)})
    assert "errors" not in created, created
    update = "mutation($id: ID!, $input: UpdateKnowledgeInput!) { updateKnowledge(id: $id, input: $input) { id } }"
    item = created["data"]["createKnowledge"]["id"]
    result = await gql(http, acme.alice, update, {"id": item, "input": {"content": "y" * 3500}})
    assert error_codes(result) == ["QUOTA_EXCEEDED"], result
    assert "Knowledge storage quota exceeded" in result["errors"][0]["message"]
