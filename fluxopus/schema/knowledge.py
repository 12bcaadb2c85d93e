from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlalchemy import Select

from fluxopus.errors import NotFound
from fluxopus.models import knowledge as m
from fluxopus.models.common import Page, parse, parse_uuid
from fluxopus.models.tags import EntityType
from fluxopus.resolvers import knowledge
from fluxopus.schema import compiled
from fluxopus.schema._derive import (
    Limit,
    Offset,
    argument,
    graphql_enum,
    input_dict,
    input_type,
    object_type,
    out,
    outs,
)
from fluxopus.schema.limits import MODEL_CALL_COST
from fluxopus.schema.pagination import After, Before, Connection, First, Last, Node, connection
from fluxopus.schema.tags import compiled_tags, tags_field

graphql_enum(m.IndexStatus)
graphql_enum(m.SearchMode)

ItemId = Annotated[strawberry.ID, strawberry.argument(description="The knowledge item's id")]


@object_type(m.KnowledgeItem)
class KnowledgeItem(Node):
    tags = tags_field(EntityType.knowledge)


@object_type(m.SearchHit)
class SearchHit:
    pass


@input_type(m.KnowledgeItem.create, description="A new knowledge item, owned by the caller; searchable once indexed")
class CreateKnowledgeInput:
    pass


@input_type(
    m.KnowledgeItem.update,
    partial=True,
    description="Omitted fields stay; a change of title or content re-indexes the item",
)
class UpdateKnowledgeInput:
    pass


def _knowledge_filter(q: str | None, limit: int, offset: int) -> m.KnowledgeFilter:
    return parse(m.KnowledgeFilter, {"q": q, "limit": limit, "offset": offset})


# How GraphQL reads these fields in one SQL statement (schema/compiled.py).


@compiled.root("knowledge", many=True)
def _knowledge_rows(q: str | None = None, limit: int = 50, offset: int = 0) -> Select[Any]:
    query = _knowledge_filter(q, limit, offset)
    return compiled.paged(knowledge.knowledge_rows(query), query)


@compiled.root("knowledgeItem", many=False)
def _knowledge_row(id: str) -> Select[Any]:
    return knowledge.knowledge_row(parse_uuid(id))


compiled_tags("KnowledgeItem", EntityType.knowledge)


@strawberry.type
class KnowledgeQuery:
    @strawberry.field(description="Company items and the caller's private ones; `q` searches titles")
    async def knowledge(
        self,
        info: strawberry.Info,
        q: Annotated[str | None, argument(m.KnowledgeFilter, "q")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[KnowledgeItem]:
        page = await knowledge.list_knowledge(info.context, query=_knowledge_filter(q, limit, offset))
        return outs(KnowledgeItem, page.items)

    @strawberry.field(description="`knowledge` as a Relay connection: cursors, pageInfo and totalCount")
    async def knowledge_connection(
        self,
        info: strawberry.Info,
        q: Annotated[str | None, argument(m.KnowledgeFilter, "q")] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[KnowledgeItem]:
        async def fetch(limit: int, offset: int) -> Page[m.KnowledgeItem]:
            return await knowledge.list_knowledge(info.context, query=_knowledge_filter(q, limit, offset))

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="Null when the item does not exist or the caller cannot see it")
    async def knowledge_item(self, info: strawberry.Info, id: ItemId) -> KnowledgeItem | None:
        try:
            return out(KnowledgeItem, await knowledge.get_knowledge(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(
        description="Best first; hybrid fuses semantic (embeddings) and keyword (full-text) ranks",
        metadata={"cost": MODEL_CALL_COST},  # the query is embedded by a model
    )
    async def search_knowledge(
        self,
        info: strawberry.Info,
        q: Annotated[str, argument(m.SearchQuery, "q")],
        limit: Annotated[int, argument(m.SearchQuery, "limit")] = 10,
        mode: Annotated[m.SearchMode, argument(m.SearchQuery, "mode")] = m.SearchMode.hybrid,
    ) -> list[SearchHit]:
        query = parse(m.SearchQuery, {"q": q, "limit": limit, "mode": mode})
        hits = await knowledge.search_knowledge(info.context, query=query)
        return outs(SearchHit, hits)


@strawberry.type
class KnowledgeMutation:
    @strawberry.mutation(
        description="Creates a knowledge item owned by the caller; it is `pending` until the background worker has"
        " indexed it (poll its status, or search once it is `indexed`)"
    )
    async def create_knowledge(
        self,
        info: strawberry.Info,
        input: Annotated[CreateKnowledgeInput, strawberry.argument(description="The item")],
    ) -> KnowledgeItem:
        data = parse(m.KnowledgeItem.create, input_dict(input))
        return out(KnowledgeItem, await knowledge.create_knowledge(info.context, data=data))

    @strawberry.mutation(
        description="Changes a knowledge item (its owner or an admin may); a new title or content re-indexes it"
    )
    async def update_knowledge(
        self,
        info: strawberry.Info,
        id: ItemId,
        input: Annotated[UpdateKnowledgeInput, strawberry.argument(description="The fields to change")],
    ) -> KnowledgeItem:
        data = parse(m.KnowledgeItem.update, input_dict(input))
        return out(KnowledgeItem, await knowledge.update_knowledge(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(description="Deletes a knowledge item (its owner or an admin may); returns its id")
    async def delete_knowledge(self, info: strawberry.Info, id: ItemId) -> strawberry.ID:
        deleted = await knowledge.delete_knowledge(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))
