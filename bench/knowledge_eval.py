"""Search quality on the labelled set bench/knowledge_eval.json: recall@5 and MRR@10 per mode, and
answer grounding: context recall@k of the knowledge block a grounded skill's prompt is given.

Starts its own embedded PostgreSQL in a temp dir, stores every document through the REST API as
one member of one company, embeds them with the background worker's code (all-MiniLM-L6-v2,
int8 ONNX), then asks every query in each mode through GET /api/knowledge/search. Prints the
scores overall and per kind of query (paraphrase, identifier, keyword, mixed).

Then grounding: one skill per mode with `knowledge: {mode, top_k: 5}` on the offline `echo` provider,
whose answer is the prompt it was given; every query is run through POST /api/skills/{id}/run (the
query is the skill's whole input, as users would pass it), and the numbered block of the prompt is read
back. Context recall@k: the share of a query's relevant documents among the block's first k entries
(k = 1, 3, 5); hit@k: the share of queries with at least one there. Asserts nothing.

    python3 bench/knowledge_eval.py [--set bench/knowledge_eval.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from harness import in_process_app

from fluxopus.ai.indexer import Indexer
from fluxopus.auth.jwt import mint_token
from fluxopus.db.users import ensure_member

SECRET = "eval-secret-that-is-long-enough-for-hs256-0123456789"
MODES = ("keyword", "semantic", "hybrid")
GROUNDING_KS = (1, 3, 5)
BLOCK = re.compile(r"^\[(\d+)\] (.+)$", re.MULTILINE)


def scores(ranked: list[str], relevant: set[str]) -> tuple[float, float]:
    """recall@5 (share of the relevant documents in the top 5) and reciprocal rank within the top 10."""
    recall = len(relevant & set(ranked[:5])) / len(relevant)
    rr = next((1 / rank for rank, doc in enumerate(ranked[:10], start=1) if doc in relevant), 0.0)
    return recall, rr


async def evaluate(dataset: dict[str, Any], workdir: Path) -> None:
    async with in_process_app(workdir, SECRET) as run:
        settings, engine, app = run.settings, run.engine, run.app
        m = await ensure_member(engine, email="eval@example.com", company="Eval", role="member")
        token = mint_token(SECRET, user_id=m.user_id, email=m.email, role=m.role, company_id=m.company_id, ttl=7200)
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eval", headers=headers) as client:
            ids: dict[str, str] = {}  # our id → the dataset's
            for doc in dataset["documents"]:
                response = await client.post("/api/knowledge", json={"title": doc["title"], "content": doc["content"]})
                response.raise_for_status()
                ids[response.json()["id"]] = doc["id"]
            began = time.perf_counter()
            await Indexer(engine, app.state.runtime.ai.embedder, token_budget=settings.token_budget).work()
            print(f"{len(ids)} documents embedded in {time.perf_counter() - began:.1f} s")
            results: dict[str, dict[str, list[tuple[float, float]]]] = {m: defaultdict(list) for m in MODES}
            for mode in MODES:
                for query in dataset["queries"]:
                    params = {"q": query["q"], "mode": mode, "limit": 10}
                    response = await client.get("/api/knowledge/search", params=params)
                    response.raise_for_status()
                    ranked = [ids[hit["item"]["id"]] for hit in response.json()]
                    score = scores(ranked, set(query["relevant"]))
                    results[mode]["all"].append(score)
                    results[mode][query["kind"]].append(score)
            grounded = await grounding(client, dataset)
    kinds = ["all", *sorted({q["kind"] for q in dataset["queries"]})]
    print(f"{len(dataset['queries'])} queries; recall@5 / MRR@10")
    print(f"  {'mode':10}" + "".join(f"{k + f' ({len(results[MODES[0]][k])})':>22}" for k in kinds))
    for mode in MODES:
        cells = []
        for kind in kinds:
            pairs = results[mode][kind]
            recall = sum(r for r, _ in pairs) / len(pairs)
            mrr = sum(rr for _, rr in pairs) / len(pairs)
            cells.append(f"{recall:.3f} / {mrr:.3f}")
        print(f"  {mode:10}" + "".join(f"{c:>22}" for c in cells))
    print_grounding(grounded, dataset, kinds)


Grounded = dict[str, dict[str, list[tuple[tuple[float, ...], tuple[bool, ...]]]]]


async def grounding(client: httpx.AsyncClient, dataset: dict[str, Any]) -> Grounded:
    """Per mode and kind of query, each query's (recall@k, hit@k) for k in GROUNDING_KS, read from the
    prompt a grounded skill's run was given."""
    by_title = {doc["title"]: doc["id"] for doc in dataset["documents"]}
    results: Grounded = {mode: defaultdict(list) for mode in MODES}
    for mode in MODES:
        body = {
            "name": f"grounded-{mode}",
            "instructions": "{{ input.question }}",
            "provider": "echo",
            "knowledge": {"mode": mode, "top_k": max(GROUNDING_KS)},
        }
        response = await client.post("/api/skills", json=body)
        response.raise_for_status()
        skill_id = response.json()["id"]
        for query in dataset["queries"]:
            response = await client.post(
                f"/api/skills/{skill_id}/run",
                json={"input": {"question": query["q"]}},
                headers={"Accept": "application/json"},
            )
            response.raise_for_status()
            run = response.json()
            prompt = run["output"]
            shown = [by_title[title] for _, title in BLOCK.findall(prompt.partition("\n---\n")[2])]
            cited = [by_title[c["title"]] for c in run["citations"]]
            if shown != cited:  # the block is what the run records: a mismatch is a bug, not a score
                raise AssertionError(f"{query['q']!r}: prompt shows {shown}, run cites {cited}")
            relevant = set(query["relevant"])
            recall = tuple(len(relevant & set(shown[:k])) / len(relevant) for k in GROUNDING_KS)
            hit = tuple(bool(relevant & set(shown[:k])) for k in GROUNDING_KS)
            results[mode]["all"].append((recall, hit))
            results[mode][query["kind"]].append((recall, hit))
    return results


def print_grounding(results: Grounded, dataset: dict[str, Any], kinds: list[str]) -> None:
    ks = " / ".join(f"@{k}" for k in GROUNDING_KS)
    print(f"answer grounding: context recall{ks} of the prompt's knowledge block (top_k {max(GROUNDING_KS)})")
    print(f"  {'mode':10}" + "".join(f"{k + f' ({len(results[MODES[0]][k])})':>22}" for k in kinds))
    for mode in MODES:
        cells = []
        for kind in kinds:
            pairs = results[mode][kind]
            recall = [sum(r[i] for r, _ in pairs) / len(pairs) for i in range(len(GROUNDING_KS))]
            cells.append(" / ".join(f"{v:.2f}" for v in recall))
        print(f"  {mode:10}" + "".join(f"{c:>22}" for c in cells))
    print(f"  hit{ks} (at least one relevant document in the block), all queries:")
    for mode in MODES:
        pairs = results[mode]["all"]
        hits = [sum(h[i] for _, h in pairs) / len(pairs) for i in range(len(GROUNDING_KS))]
        print(f"  {mode:10}" + " / ".join(f"{v:.2f}" for v in hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=Path(__file__).with_name("knowledge_eval.json"))
    args = parser.parse_args()
    dataset = json.loads(args.set.read_text(encoding="utf-8"))
    workdir = Path(tempfile.mkdtemp(prefix="fluxopus-eval-"))
    try:
        asyncio.run(evaluate(dataset, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
