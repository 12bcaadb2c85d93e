from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry

from fluxopus.errors import NotFound
from fluxopus.models import knowledge as m
from fluxopus.models.common import parse, parse_uuid
from fluxopus.resolvers import knowledge
from fluxopus.schema._convert import build, input_dict
from fluxopus.schema.limits import MODEL_CALL_COST

if TYPE_CHECKING:
    from fluxopus.schema.tags import Tag

KnowledgeVisibility = strawberry.enum(m.KnowledgeVisibility, name="KnowledgeVisibility")
IndexStatus = strawberry.enum(m.IndexStatus, name="IndexStatus")
SearchMode = strawberry.enum(m.SearchMode, name="SearchMode")


@strawberry.type
class KnowledgeItem:
    id: strawberry.ID
    company_id: strawberry.ID
    owner_id: strawberry.ID
    title: str
    content: str
    source_url: str | None
    visibility: KnowledgeVisibility  # type: ignore[valid-type]
    status: IndexStatus  # type: ignore[valid-type]
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @strawberry.field
    async def tags(self, info: strawberry.Info) -> list[Annotated[Tag, strawberry.lazy("fluxopus.schema.tags")]]:
        from fluxopus.schema.tags import Tag

        return [build(Tag, tag) for tag in await info.context.loaders.tags_by_knowledge.load(self.id)]


@strawberry.type
class SearchHit:
    item: KnowledgeItem
    score: float
    snippet: str


@strawberry.input
class CreateKnowledgeInput:
    title: str
    content: str
    source_url: str | None = None
    visibility: KnowledgeVisibility = m.KnowledgeVisibility.company  # type: ignore[valid-type]


@strawberry.input(description="Omitted fields stay; a change of title or content re-indexes the item")
class UpdateKnowledgeInput:
    title: str | None = strawberry.UNSET
    content: str | None = strawberry.UNSET
    source_url: str | None = strawberry.UNSET
    visibility: KnowledgeVisibility | None = strawberry.UNSET  # type: ignore[valid-type]


@strawberry.type
class KnowledgeQuery:
    @strawberry.field(description="Company items and the caller's private ones; `q` searches titles")
    async def knowledge(
        self, info: strawberry.Info, q: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[KnowledgeItem]:
        query = parse(m.KnowledgeFilter, {"q": q, "limit": limit, "offset": offset})
        page = await knowledge.list_knowledge(info.context, query=query)
        return [build(KnowledgeItem, k) for k in page.items]

    @strawberry.field(description="Null when the item does not exist or the caller cannot see it")
    async def knowledge_item(self, info: strawberry.Info, id: strawberry.ID) -> KnowledgeItem | None:
        try:
            return build(KnowledgeItem, await knowledge.get_knowledge(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(
        description="Best first; hybrid fuses semantic (embeddings) and keyword (full-text) ranks",
        metadata={"cost": MODEL_CALL_COST},  # the query is embedded by a model
    )
    async def search_knowledge(
        self,
        info: strawberry.Info,
        q: str,
        limit: int = 10,
        mode: SearchMode = m.SearchMode.hybrid,  # type: ignore[valid-type]
    ) -> list[SearchHit]:
        query = parse(m.SearchQuery, {"q": q, "limit": limit, "mode": mode})
        hits = await knowledge.search_knowledge(info.context, query=query)
        return [SearchHit(item=build(KnowledgeItem, h.item), score=h.score, snippet=h.snippet) for h in hits]


@strawberry.type
class KnowledgeMutation:
    @strawberry.mutation
    async def create_knowledge(self, info: strawberry.Info, input: CreateKnowledgeInput) -> KnowledgeItem:
        data = parse(m.KnowledgeCreate, input_dict(input))
        return build(KnowledgeItem, await knowledge.create_knowledge(info.context, data=data))

    @strawberry.mutation
    async def update_knowledge(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateKnowledgeInput
    ) -> KnowledgeItem:
        data = parse(m.KnowledgeUpdate, input_dict(input))
        return build(KnowledgeItem, await knowledge.update_knowledge(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(description="Returns the deleted item's id")
    async def delete_knowledge(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        deleted = await knowledge.delete_knowledge(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))
