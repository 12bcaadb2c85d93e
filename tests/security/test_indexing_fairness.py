"""Indexing is bounded per company (issue 11, point 12): it is fair, and it is charged.

Before this the single indexer took jobs in arrival order and embedded an item whole: one company's
bulk import, or one 1 MB item (about 100 s of CPU), delayed every other company's items by all of
it, and none of those tokens were charged. Now claims take the company served longest ago, and a
worker embeds in rounds: each round the next chunks (at most a batch, 8) of every company in
progress — several small items of one company may share them — and every round's chunks are charged
to their company's monthly budget first. Asserted on order and progress, never on time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.embeddings import Embedder
from fluxopus.ai.indexer import Indexer
from fluxopus.config import Settings
from tests.utils.builders import Company, User, set_budget, unique

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

SAFETY = 120.0  # seconds: a broken worker fails the test instead of hanging it
WORDS = ("harbour", "lantern", "glacier", "orchard", "compass", "meadow", "furnace", "beacon", "quarry", "violin")


def document(sentences: int, marker: str) -> str:
    lines = [f"Step {i} moves the {WORDS[i % 10]} past the {WORDS[i * 3 % 10]} {marker}." for i in range(sentences)]
    return "\n\n".join(" ".join(lines[i : i + 5]) for i in range(0, len(lines), 5))


async def create_item(client: httpx.AsyncClient, user: User, content: str) -> str:
    response = await client.post(
        "/api/knowledge", json={"title": unique("item"), "content": content}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def statuses(engine: AsyncEngine, ids: list[str]) -> list[str]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("select id::text, status from knowledge where id = any(cast(:ids as uuid[]))"), {"ids": ids}
        )
        by_id = {str(row[0]): str(row[1]) for row in found}
    return [by_id[i] for i in ids]


async def used_tokens(engine: AsyncEngine, company_id: str) -> int:
    async with engine.connect() as conn:
        used = await conn.execute(
            text("select coalesce(sum(used), 0) from token_usage where company_id = :c"), {"c": company_id}
        )
        return int(used.scalar_one())


async def chunk_texts(engine: AsyncEngine, item_id: str) -> tuple[str, list[str]]:
    async with engine.connect() as conn:
        title = (await conn.execute(text("select title from knowledge where id = :id"), {"id": item_id})).scalar_one()
        rows = await conn.execute(
            text("select content from knowledge_chunks where knowledge_id = :id order by position"), {"id": item_id}
        )
        return str(title), [str(r) for r in rows.scalars()]


@pytest.fixture
async def worker(app: FastAPI, engine: AsyncEngine, settings: Settings, indexer: Indexer) -> Indexer:
    """A worker of its own, after the session's has embedded whatever other tests left queued."""
    await indexer.work()
    return Indexer(engine, app.state.runtime.ai.embedder, token_budget=settings.token_budget)


async def index_while_watching(worker: Indexer, engine: AsyncEngine, mine: str, others: list[str]) -> list[str]:
    """Runs the worker until `mine` is indexed; answers the statuses `others` had at that moment."""
    work = asyncio.create_task(worker.work())
    try:
        deadline = time.monotonic() + SAFETY
        while (await statuses(engine, [mine]))[0] != "indexed":
            assert not work.done() or work.exception() is None, work
            assert time.monotonic() < deadline, "the item was never indexed"
            await asyncio.sleep(0.02)
        return await statuses(engine, others)
    finally:
        await asyncio.wait_for(work, SAFETY)


async def test_a_bulk_import_does_not_hold_up_another_companys_item(
    client: httpx.AsyncClient, engine: AsyncEngine, worker: Indexer, acme: Company, globex: Company
) -> None:
    bulk = [await create_item(client, acme.alice, document(20, unique("bulk"))) for _ in range(12)]
    single = await create_item(client, globex.alice, document(5, unique("single")))

    at_that_moment = await index_while_watching(worker, engine, single, bulk)
    # Arrival order would have embedded all twelve (one chunk each) first; in rounds, at most one
    # round's worth of the bulk's chunks goes before the other company's item.
    assert at_that_moment.count("indexed") <= worker.batch < len(bulk), at_that_moment
    assert await statuses(engine, bulk) == ["indexed"] * 12


async def test_a_large_item_is_embedded_in_batches_between_other_companies_items(
    client: httpx.AsyncClient, engine: AsyncEngine, worker: Indexer, acme: Company, globex: Company
) -> None:
    large = await create_item(client, acme.alice, document(1000, unique("large")))
    single = await create_item(client, globex.alice, document(5, unique("single")))

    [large_then] = await index_while_watching(worker, engine, single, [large])
    assert large_then == "pending", "the large item was embedded whole before the other company's"
    assert await statuses(engine, [large]) == ["indexed"]
    _, chunks = await chunk_texts(engine, large)
    assert len(chunks) > 2 * worker.batch, len(chunks)  # it did take several batches


def expected_tokens(embedder: Embedder, title: str, chunks: list[str]) -> int:
    """What the model reads for each chunk: the title, the chunk, [CLS] and [SEP] (at most its window)."""
    return sum(min(embedder.count_tokens(f"{title}\n\n{c}") + 2, embedder.max_tokens) for c in chunks)


async def test_indexing_is_charged_to_the_companys_budget(
    client: httpx.AsyncClient, engine: AsyncEngine, worker: Indexer, acme: Company, globex: Company
) -> None:
    before, other_before = (
        await used_tokens(engine, acme.alice.company_id),
        await used_tokens(engine, globex.alice.company_id),
    )
    item = await create_item(client, acme.alice, document(200, unique("charged")))
    await worker.work()
    assert (await statuses(engine, [item])) == ["indexed"]
    title, chunks = await chunk_texts(engine, item)
    assert len(chunks) > 1
    assert await used_tokens(engine, acme.alice.company_id) - before == expected_tokens(worker.embedder, title, chunks)
    assert await used_tokens(engine, globex.alice.company_id) == other_before


async def test_an_item_the_budget_cannot_cover_fails_with_the_reason(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, worker: Indexer, acme: Company
) -> None:
    used = await used_tokens(engine, acme.alice.company_id)
    await set_budget(database_url, acme, used + 50)  # less than a chunk
    item = await create_item(client, acme.alice, document(60, unique("poor")))
    await worker.work()
    shown = (await client.get(f"/api/knowledge/{item}", headers=acme.alice.headers)).json()
    assert shown["status"] == "failed" and shown["error"].startswith("Token budget exceeded"), shown
    assert (await chunk_texts(engine, item))[1] == []
    assert await used_tokens(engine, acme.alice.company_id) == used  # nothing was spent on it

    # With a budget again, saving the item retries it.
    await set_budget(database_url, acme, None)
    content: dict[str, Any] = {"content": document(60, unique("again"))}
    patched = await client.patch(f"/api/knowledge/{item}", json=content, headers=acme.alice.headers)
    assert patched.json()["status"] == "pending"
    await worker.work()
    assert (await statuses(engine, [item])) == ["indexed"]
