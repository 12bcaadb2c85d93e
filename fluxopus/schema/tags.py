from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlalchemy import Select

from fluxopus.models import tags as m
from fluxopus.models.common import Page, PageQuery, parse, parse_uuid
from fluxopus.resolvers import tags
from fluxopus.resolvers.loaders import loaders
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
from fluxopus.schema.pagination import After, Before, Connection, First, Last, Node, connection

graphql_enum(m.EntityType)

TagId = Annotated[strawberry.ID, strawberry.argument(description="The tag's id")]


@object_type(m.Tag)
class Tag(Node):
    pass


def tags_field(kind: m.EntityType) -> Any:
    """The `tags` field of each taggable type (models/tags.TAGGABLE), batched by the request's loader."""

    async def tags(parent: strawberry.Parent[Any], info: strawberry.Info) -> list[Tag]:
        return outs(Tag, await loaders(info.context).tags[kind].load(parent.id))

    return strawberry.field(resolver=tags, description="Its tags, by name")


def compiled_tags(type_name: str, kind: m.EntityType) -> None:
    """How GraphQL reads a taggable type's `tags` in one SQL statement (schema/compiled.py)."""
    compiled.nested(type_name, "tags", many=True)(lambda parent: tags.tags_of_entity(kind, parent.id))


@input_type(m.Tag.create, description="A new tag of the caller's company")
class CreateTagInput:
    pass


@input_type(m.Tag.update, partial=True, description="Omitted fields stay; null clears the color")
class UpdateTagInput:
    pass


@input_type(m.AssignTags)
class AssignTagsInput:
    pass


@compiled.root("tags", many=True)
def _tag_rows(limit: int = 50, offset: int = 0) -> Select[Any]:
    """How GraphQL reads `tags` in one SQL statement (schema/compiled.py)."""
    query = parse(PageQuery, {"limit": limit, "offset": offset})
    return compiled.paged(tags.tag_rows(), query)


@strawberry.type
class TagsQuery:
    @strawberry.field(description="The caller's company tags, by name")
    async def tags(self, info: strawberry.Info, limit: Limit = 50, offset: Offset = 0) -> list[Tag]:
        page = await tags.list_tags(info.context, query=parse(PageQuery, {"limit": limit, "offset": offset}))
        return outs(Tag, page.items)

    @strawberry.field(description="`tags` as a Relay connection: cursors, pageInfo and totalCount")
    async def tags_connection(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Tag]:
        async def fetch(limit: int, offset: int) -> Page[m.Tag]:
            return await tags.list_tags(info.context, query=parse(PageQuery, {"limit": limit, "offset": offset}))

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="The tags on one task, skill or knowledge item the caller can see, by name")
    async def entity_tags(
        self,
        info: strawberry.Info,
        entity_type: Annotated[m.EntityType, argument(m.EntityRef, "entity_type")],
        entity_id: Annotated[strawberry.ID, argument(m.EntityRef, "entity_id")],
    ) -> list[Tag]:
        ref = parse(m.EntityRef, {"entity_type": entity_type, "entity_id": entity_id})
        return outs(Tag, await tags.entity_tags_of(info.context, query=ref))


@strawberry.type
class TagsMutation:
    @strawberry.mutation(description="Creates a tag in the caller's company; returns it")
    async def create_tag(
        self, info: strawberry.Info, input: Annotated[CreateTagInput, strawberry.argument(description="The tag")]
    ) -> Tag:
        data = parse(m.Tag.create, input_dict(input))
        return out(Tag, await tags.create_tag(info.context, data=data))

    @strawberry.mutation(description="Renames or recolors a tag (its creator or an admin may); returns it")
    async def update_tag(
        self,
        info: strawberry.Info,
        id: TagId,
        input: Annotated[UpdateTagInput, strawberry.argument(description="The fields to change")],
    ) -> Tag:
        data = parse(m.Tag.update, input_dict(input))
        return out(Tag, await tags.update_tag(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(description="Returns the deleted tag's id; its assignments go too")
    async def delete_tag(self, info: strawberry.Info, id: TagId) -> strawberry.ID:
        deleted = await tags.delete_tag(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))

    @strawberry.mutation(description="Returns the tags now on the entity")
    async def assign_tags(
        self,
        info: strawberry.Info,
        input: Annotated[AssignTagsInput, strawberry.argument(description="The entity and the tags to put on it")],
    ) -> list[Tag]:
        data = parse(m.AssignTags, input_dict(input))
        return outs(Tag, await tags.assign_tags(info.context, data=data))
