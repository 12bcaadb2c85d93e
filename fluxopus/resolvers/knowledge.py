"""Knowledge items and search over what the caller may read.

Embedding happens in the background (ai/indexer.py): writes only store the item, and a
trigger queues it. Search ranks chunks — by cosine distance on the HNSW index (`semantic`),
by full-text rank (`keyword`), or both fused by reciprocal rank (`hybrid`) — under RLS, so a
chunk of an item the caller cannot read never comes back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, insert, select, update

from fluxopus.ai.embeddings import EmbeddingError
from fluxopus.db import queries as sql
from fluxopus.errors import BudgetExceeded, Forbidden, NotFound, Unavailable
from fluxopus.models.common import Deleted, Input, Page
from fluxopus.models.knowledge import KnowledgeFilter, KnowledgeItem, SearchHit, SearchMode, SearchQuery
from fluxopus.resolvers._sql import change, contains, fetch_one, fetch_page
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import NO_COMPANY, require_membership

knowledge = KnowledgeItem.table

RRF_K = 60  # the usual constant of reciprocal rank fusion: damps the weight of the very top ranks
SNIPPET_CHARS = 300


def knowledge_rows(query: KnowledgeFilter) -> Select[Any]:
    """The items the caller may read matching the filter, newest first, unpaged (also schema/compiled.py's)."""
    stmt = select(*knowledge.c).order_by(knowledge.c.created_at.desc(), knowledge.c.id)
    if query.q is not None:
        stmt = stmt.where(contains(knowledge.c.title, query.q))
    return stmt


def knowledge_row(id: UUID) -> Select[Any]:
    return select(*knowledge.c).where(knowledge.c.id == id)


async def list_knowledge(ctx: Context, *, query: KnowledgeFilter) -> Page[KnowledgeItem]:
    return await fetch_page(ctx, knowledge_rows, KnowledgeItem, limit=query.limit, offset=query.offset, query=query)


async def get_knowledge(ctx: Context, *, id: UUID) -> KnowledgeItem:
    row = await fetch_one(ctx, knowledge_row, id=id)
    if row is None:
        raise NotFound("Knowledge item not found")
    return KnowledgeItem.model_validate(row)


async def _storage_quota(ctx: Context) -> None:
    await ctx.db.execute(sql.STORAGE_QUOTA, {"quota": str(ctx.ai.storage_quota)})


async def create_knowledge(ctx: Context, *, data: Input) -> KnowledgeItem:
    await require_membership(ctx)
    await _storage_quota(ctx)
    stmt = insert(knowledge).values(**data.model_dump()).returning(*knowledge.c)
    return KnowledgeItem.model_validate((await ctx.db.execute(stmt)).mappings().one())


async def update_knowledge(ctx: Context, *, id: UUID, data: Input) -> KnowledgeItem:
    # An empty PATCH still goes through the update policy, so it answers 403 like a real one.
    changes = data.model_dump(exclude_unset=True) or {"title": knowledge.c.title}
    await _storage_quota(ctx)
    stmt = update(knowledge).where(knowledge.c.id == id).values(**changes).returning(*knowledge.c)
    row = await change(
        ctx, stmt, visible=lambda: get_knowledge(ctx, id=id), refusal="Only the item's owner or an admin can change it"
    )
    return KnowledgeItem.model_validate(row)


async def delete_knowledge(ctx: Context, *, id: UUID) -> Deleted:
    stmt = delete(knowledge).where(knowledge.c.id == id).returning(knowledge.c.id)
    await change(
        ctx, stmt, visible=lambda: get_knowledge(ctx, id=id), refusal="Only the item's owner or an admin can delete it"
    )
    return Deleted(id=id)


async def search_knowledge(ctx: Context, *, query: SearchQuery) -> list[SearchHit]:
    # One caller's searches take turns (AiServices.per_caller). The query is charged and embedded
    # first, so a search does not hold a pooled connection while it waits for the budget or the model
    # (a request that opened its transaction already keeps it).
    async with ctx.ai.per_caller.turn(ctx.user_id):
        found = await retrieve(ctx, q=query.q, mode=query.mode, limit=query.limit)
    return [SearchHit(item=hit.item, score=hit.score, snippet=hit.snippet) for hit in found]


@dataclass(frozen=True)
class Retrieved:
    """An item a search found: its score, best passage and the chunks that matched (best first)."""

    item: KnowledgeItem
    score: float
    snippet: str
    positions: tuple[int, ...]


async def retrieve(
    ctx: Context, *, q: str, mode: SearchMode, limit: int, tag_ids: list[str] | None = None
) -> list[Retrieved]:
    """The search itself, as the caller (RLS: only items they may read), best first; `tag_ids` keeps items
    carrying one of those tags. A semantic or hybrid search charges the query's embedding to the budget."""
    vector = await _embed_query(ctx, q) if mode is not SearchMode.keyword else None
    await require_membership(ctx)
    tagged = {"tags": list(tag_ids)} if tag_ids is not None else {}
    rankings: list[list[dict[str, Any]]] = []
    if vector is not None:
        await ctx.db.execute(sql.SEARCH_SETTINGS)
        rows = await ctx.db.execute(sql.SEMANTIC_TAGGED if tagged else sql.SEMANTIC, {"vector": vector} | tagged)
        rankings.append(_best_per_item(rows.mappings()))
    if mode is not SearchMode.semantic:
        params = {"q": q} | tagged
        all_words = sql.ALL_WORDS_TAGGED if tagged else sql.ALL_WORDS
        hits = _best_per_item((await ctx.db.execute(all_words, params)).mappings())
        if not hits and mode is SearchMode.keyword:
            wanted, excluded = _split_terms(q)
            params |= {"any": " or ".join(wanted), "excluded": " or ".join(excluded)}
            any_word = sql.ANY_WORD_TAGGED if tagged else sql.ANY_WORD
            hits = _best_per_item((await ctx.db.execute(any_word, params)).mappings())
        rankings.append(hits)
    if mode is SearchMode.hybrid:
        scored = _fuse(rankings)
    else:
        scored = [(hit["knowledge_id"], float(hit["score"]), hit["content"], (hit["position"],)) for hit in rankings[0]]
    top = scored[:limit]
    items = await _items(ctx, [item_id for item_id, _, _, _ in top])
    return [
        Retrieved(item=items[item_id], score=score, snippet=_snippet(snippet), positions=positions)
        for item_id, score, snippet, positions in top
        if item_id in items
    ]


async def _embed_query(ctx: Context, q: str) -> list[float]:
    embedder = ctx.ai.embedder
    tokens = embedder.count_tokens(q) + 2  # the model's [CLS] and [SEP]
    try:
        # The caller's company, or None when its budget does not cover the query (migration 008).
        company = await ctx.db.call_alone(func.fluxopus.charge_tokens, tokens, ctx.ai.token_budget)
    except Forbidden:  # charge_tokens refuses a caller without a company
        raise Forbidden(NO_COMPANY) from None
    if company is None:
        raise BudgetExceeded()
    try:
        embedded = await embedder.embed([q])
    except EmbeddingError as exc:
        raise Unavailable(f"The embedding model is not available: {exc}") from None
    return embedded.vectors[0]


_TERMS = re.compile(r'-?"[^"]*"?|\S+')


def _split_terms(q: str) -> tuple[list[str], list[str]]:
    """The words and "phrases" of a web-style query, and apart those excluded with a leading '-'."""
    wanted: list[str] = []
    excluded: list[str] = []
    for term in _TERMS.findall(q):
        if term.lower() == "or":
            continue
        if term.startswith("-") and len(term) > 1:
            excluded.append(term[1:])
        else:
            wanted.append(term)
    return wanted, excluded


def _best_per_item(rows: Any) -> list[dict[str, Any]]:
    """Rows arrive best first; an item's rank is that of its best chunk."""
    seen: dict[UUID, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["knowledge_id"], dict(row))
    return list(seen.values())


def _fuse(rankings: list[list[dict[str, Any]]]) -> list[tuple[UUID, float, str, tuple[int, ...]]]:
    """Reciprocal rank fusion: score = Σ 1 / (k + rank). The snippet is the keyword headline
    when there is one (it shows the words that matched), else the nearest chunk; the chunks are each
    ranking's best, the keyword one first."""
    scores: dict[UUID, float] = {}
    snippets: dict[UUID, str] = {}
    positions: dict[UUID, tuple[int, ...]] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            item_id = hit["knowledge_id"]
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (RRF_K + rank)
            snippets[item_id] = hit["content"]  # keyword ranking comes last, so it wins
            earlier = tuple(p for p in positions.get(item_id, ()) if p != hit["position"])
            positions[item_id] = (hit["position"], *earlier)
    return sorted(((i, s, snippets[i], positions[i]) for i, s in scores.items()), key=lambda hit: -hit[1])


async def items_by_id(ctx: Context, ids: list[UUID]) -> list[KnowledgeItem | None]:
    """For a DataLoader: each item as the caller may read it now, or None."""
    found = await _items(ctx, list(set(ids)))
    return [found.get(i) for i in ids]


async def _items(ctx: Context, ids: list[UUID]) -> dict[UUID, KnowledgeItem]:
    if not ids:
        return {}
    rows = await ctx.db.execute(select(*knowledge.c).where(knowledge.c.id.in_(ids)))
    return {row["id"]: KnowledgeItem.model_validate(row) for row in rows.mappings()}


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    return text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
