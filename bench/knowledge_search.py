"""Knowledge indexing throughput, and HNSW search latency and recall at scale.

Starts its own embedded PostgreSQL in a temp dir, then
1. stores --items documents (bench/knowledge_eval.json's, cycled; generated text without it or with
   --generated) and times the worker's code (`Indexer(...).work()`: chunk, embed with all-MiniLM-L6-v2 int8, store);
2. for each --chunks size, bulk-loads synthetic clustered unit vectors (--centroids centres plus
   gaussian noise, like topics of real embeddings), builds the HNSW index, and compares for
   --queries held-out vectors the exact top 10 (sequential scan) with the index's at each
   --ef: recall@10 and latency. As the superuser: no RLS, the bare SQL the index serves;
3. times GET /api/knowledge/search per mode as a member (RLS, query embedding, token charge)
   on the largest size, in-process over ASGI.
Prints numbers; asserts nothing. Run from the repository root:

    python3 bench/knowledge_search.py [--items 200] [--chunks 10000 100000] [--ef 40 100]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from harness import in_process_app
from pgvector.asyncpg import register_vector

from fluxopus.ai.indexer import Indexer
from fluxopus.auth.jwt import mint_token
from fluxopus.db.engine import asyncpg_dsn
from fluxopus.db.users import Membership, ensure_member

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
EVAL_SET = Path(__file__).with_name("knowledge_eval.json")
DIMENSIONS = 384
PER_ITEM = 100  # synthetic chunks per knowledge row
NEAREST = "select id from knowledge_chunks order by embedding <=> $1 limit 10"


def vocabulary() -> list[str]:
    """Whole English words of the MiniLM tokenizer's vocabulary, in its (roughly frequency) order."""
    source = resources.files("fluxopus.ai") / "minilm" / "tokenizer.json"
    vocab = json.loads(source.read_text(encoding="utf-8"))["model"]["vocab"]
    return [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if w.isalpha() and w.isascii() and len(w) > 2]


def prose(rng: np.random.Generator, words: list[str], count: int) -> str:
    """`count` Zipf-distributed words in sentences of 6–20 and paragraphs of 3–7 sentences."""
    picks = [words[min(int(r), len(words)) - 1] for r in rng.zipf(1.2, size=count)]
    sentences, at = [], 0
    while at < count:
        n = int(rng.integers(6, 21))
        sentence = picks[at : at + n]
        sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
        at += n
    paragraphs, at = [], 0
    while at < len(sentences):
        n = int(rng.integers(3, 8))
        paragraphs.append(" ".join(sentences[at : at + n]))
        at += n
    return "\n\n".join(paragraphs)


def documents(rng: np.random.Generator, words: list[str], args: Any) -> tuple[str, list[tuple[str, str]]]:
    count, length = args.items, args.length
    if EVAL_SET.exists() and not args.generated:
        docs = json.loads(EVAL_SET.read_text(encoding="utf-8"))["documents"]
        return f"{EVAL_SET.name} (cycled)", [
            (d["title"], d["content"]) for d in itertools.islice(itertools.cycle(docs), count)
        ]
    generated = [(f"Document {i}: {prose(rng, words, 5)[:-1]}", prose(rng, words, length)) for i in range(count)]
    return f"generated, {length} words each", generated


def clustered(rng: np.random.Generator, centroids: np.ndarray, count: int, noise: float) -> np.ndarray:
    points = centroids[rng.integers(0, len(centroids), size=count)]
    points = points + rng.normal(0.0, noise, size=points.shape).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def quantiles(seconds: list[float]) -> str:
    q = statistics.quantiles(seconds, n=100)
    return f"p50 {q[49] * 1000:7.2f} ms   p95 {q[94] * 1000:7.2f} ms"


async def bench_indexing(conn: asyncpg.Connection, indexer: Indexer, member: Membership, args: Any) -> None:
    source, docs = documents(np.random.default_rng(1), args.words, args)
    await conn.executemany(
        "insert into knowledge (company_id, owner_id, title, content) values ($1, $2, $3, $4)",
        [(member.company_id, member.user_id, title, content) for title, content in docs],
    )
    began = time.perf_counter()
    await indexer.embedder.embed(["warm up: load the model"])
    print(f"model loaded in {time.perf_counter() - began:.2f} s")
    began = time.perf_counter()
    done = await indexer.work()
    elapsed = time.perf_counter() - began
    chunks = await conn.fetchval("select count(*) from knowledge_chunks")
    mb = sum(len(c.encode()) for _, c in docs) / 1e6
    print(f"indexing {done} items ({source}, {mb:.2f} MB) → {chunks} chunks in {elapsed:.1f} s")
    print(f"  {done / elapsed:8.1f} items/s   {chunks / elapsed:8.1f} chunks/s   {mb / elapsed:6.3f} MB/s")
    times = []
    for i in range(50):
        began = time.perf_counter()
        await indexer.embedder.embed([f"how do I {args.words[i]} the {args.words[i + 50]}?"])
        times.append(time.perf_counter() - began)
    print(f"  one query's embedding                  {quantiles(times)}")
    await conn.execute("delete from knowledge")  # the scale runs below start from nothing


async def load(conn: asyncpg.Connection, member: Membership, vectors: np.ndarray, start: int, args: Any) -> None:
    """Appends `vectors` as chunks start.. of knowledge rows of PER_ITEM chunks each, with a line of text."""
    rng = np.random.default_rng(start)
    items = await conn.fetch(
        "insert into knowledge (company_id, owner_id, title, content)"
        " select $1, $2, 'Synthetic ' || n, 'synthetic' from generate_series($3::int, $4::int) n returning id",
        member.company_id,
        member.user_id,
        start // PER_ITEM,
        (start + len(vectors) - 1) // PER_ITEM,
    )
    await conn.execute("delete from embedding_jobs; update knowledge set status = 'indexed'")
    async with conn.transaction():
        await conn.execute("create temp table stage (n int, content text, embedding vector(384)) on commit drop")
        records = ((start + i, prose(rng, args.words, 30), v) for i, v in enumerate(vectors))
        await conn.copy_records_to_table("stage", records=records, columns=["n", "content", "embedding"])
        await conn.execute(
            "insert into knowledge_chunks (knowledge_id, company_id, position, content, tsv, embedding, model)"
            " select ($1::uuid[])[s.n / $3 - $4 + 1], $2, s.n % $3, s.content, to_tsvector('english', s.content),"
            " s.embedding, 'synthetic' from stage s",
            [r["id"] for r in items],
            member.company_id,
            PER_ITEM,
            start // PER_ITEM,
        )


async def search(conn: asyncpg.Connection, queries: np.ndarray, settings: str) -> tuple[list[set[int]], list[float]]:
    """Top 10 ids and the latency of each query, the settings local to one transaction."""
    found, times = [], []
    async with conn.transaction():
        await conn.execute(settings)
        statement = await conn.prepare(NEAREST)
        for q in queries[:10]:  # warm the caches and the plan
            await statement.fetch(q)
        for q in queries:
            began = time.perf_counter()
            rows = await statement.fetch(q)
            times.append(time.perf_counter() - began)
            found.append({r["id"] for r in rows})
    return found, times


async def bench_scale(conn: asyncpg.Connection, member: Membership, args: Any) -> None:
    rng = np.random.default_rng(7)
    centroids = rng.normal(size=(args.centroids, DIMENSIONS)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    queries = clustered(rng, centroids, args.queries, args.noise)
    await conn.execute(f"set maintenance_work_mem = '{args.maintenance_work_mem}'")
    workers = await conn.fetchval("show max_parallel_maintenance_workers")
    print(
        f"\nsynthetic chunks: {args.centroids} centroids + N(0, {args.noise}²) noise per dimension, normalised;"
        f" {args.queries} held-out queries; superuser (no RLS); maintenance_work_mem {args.maintenance_work_mem},"
        f" {workers} parallel maintenance workers"
    )
    loaded = 0
    for size in sorted(args.chunks):
        await conn.execute("drop index if exists knowledge_chunks_embedding_idx")
        began = time.perf_counter()
        for start in range(loaded, size, 10_000):
            await load(conn, member, clustered(rng, centroids, min(10_000, size - start), args.noise), start, args)
        print(f"\n{size} chunks: {size - loaded} loaded in {time.perf_counter() - began:.1f} s", end="")
        loaded = size
        began = time.perf_counter()
        await conn.execute(
            "create index knowledge_chunks_embedding_idx on knowledge_chunks using hnsw (embedding vector_cosine_ops)"
        )
        build = time.perf_counter() - began
        await conn.execute("vacuum analyze knowledge_chunks")
        size_mb = await conn.fetchval("select pg_relation_size('knowledge_chunks_embedding_idx') / 1e6")
        print(f"; HNSW index built in {build:.1f} s ({size / build:.0f} vectors/s, {size_mb:.0f} MB)")
        exact, times = await search(
            conn, queries, "set local enable_indexscan = off; set local enable_bitmapscan = off"
        )
        print(f"  {'exact (sequential scan)':<28} recall@10 1.000   {quantiles(times)}")
        for ef in args.ef:
            found, times = await search(conn, queries, f"set local hnsw.ef_search = {ef}")
            recall = sum(len(f & e) for f, e in zip(found, exact, strict=True)) / (10 * len(exact))
            print(f"  {f'HNSW ef_search {ef}':<28} recall@10 {recall:.3f}   {quantiles(times)}")


async def bench_api(app: Any, member: Membership, words: list[str], chunks: int) -> None:
    token = mint_token(
        SECRET, user_id=member.user_id, email=member.email, role=member.role, company_id=member.company_id, ttl=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    print(f"\nGET /api/knowledge/search?limit=10 as a member, {chunks} chunks, in-process (ASGI), sequential")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
        for mode in ("keyword", "semantic", "hybrid"):
            times, errors = [], 0
            for i in range(110):
                q = f"{words[i * 7 % 400]} {words[i * 13 % 900]} {words[i * 3 % 150]}"
                began = time.perf_counter()
                response = await client.get("/api/knowledge/search", params={"q": q, "mode": mode, "limit": 10})
                if i >= 10:  # the first ten warm up
                    times.append(time.perf_counter() - began)
                errors += response.status_code != 200
            print(f"  {mode:<38} {quantiles(times)}   errors {errors}")


async def main(args: argparse.Namespace) -> None:
    args.words = vocabulary()
    workdir = Path(tempfile.mkdtemp(prefix="fluxopus-bench-"))
    try:
        async with in_process_app(workdir, SECRET) as run:
            member = await ensure_member(run.engine, email="member@bench.test", company="Bench", role="member")
            conn = await asyncpg.connect(asyncpg_dsn(run.url))
            try:
                await register_vector(conn)
                indexer = Indexer(run.engine, run.app.state.runtime.ai.embedder, token_budget=run.settings.token_budget)
                await bench_indexing(conn, indexer, member, args)
                await bench_scale(conn, member, args)
                if not args.no_api:
                    await bench_api(run.app, member, args.words, max(args.chunks))
            finally:
                await conn.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200, help="documents to index")
    parser.add_argument("--generated", action="store_true", help=f"generated text even when {EVAL_SET.name} exists")
    parser.add_argument("--length", type=int, default=600, help="words per generated document")
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000], help="synthetic chunk counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100], help="hnsw.ef_search values")
    parser.add_argument("--centroids", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.05, help="σ per dimension (0.05: cosine ≈ 0.7 to the centre)")
    parser.add_argument("--maintenance-work-mem", default="512MB")
    parser.add_argument("--no-api", action="store_true", help="skip the end-to-end searches")
    asyncio.run(main(parser.parse_args()))
