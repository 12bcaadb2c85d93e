"""Search quality on the labelled set bench/knowledge_eval.json: recall@5 and MRR@10 per mode.

Starts its own embedded PostgreSQL in a temp dir, stores every document through the REST API as
one member of one company, embeds them with the background worker's code (all-MiniLM-L6-v2,
int8 ONNX), then asks every query in each mode through GET /api/knowledge/search. Prints the
scores overall and per kind of query (paraphrase, identifier, keyword, mixed). Asserts nothing.

    python3 bench/knowledge_eval.py [--set bench/knowledge_eval.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
