"""Company tags and their assignment to tasks, skills and knowledge items."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from fluxopus.errors import Conflict, NotFound
from fluxopus.models.common import Deleted, Input, Page, PageQuery
from fluxopus.models.tags import TAGGABLE, AssignTags, EntityRef, EntityType, Tag, entity_tags
from fluxopus.resolvers._sql import change, fetch_one, fetch_page, one_of
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import require_membership

tags = Tag.table
_TAGS_BY_NAME = (
    select(*tags.c, entity_tags.c.entity_id)
    .join(entity_tags, entity_tags.c.tag_id == tags.c.id)
    .order_by(func.lower(tags.c.name), tags.c.name, tags.c.id)
)


def tag_rows() -> Select[Any]:
    """The company's tags, by name, unpaged."""
    return select(*tags.c).order_by(func.lower(tags.c.name), tags.c.name, tags.c.id)


async def list_tags(ctx: Context, *, query: PageQuery) -> Page[Tag]:
    return await fetch_page(ctx, tag_rows, Tag, limit=query.limit, offset=query.offset)


def tag_row(id: Any) -> Select[Any]:
    return select(*tags.c).where(tags.c.id == id)


async def get_tag(ctx: Context, *, id: UUID) -> Tag:
    row = await fetch_one(ctx, tag_row, id=id)
    if row is None:
        raise NotFound("Tag not found")
    return Tag.model_validate(row)


async def create_tag(ctx: Context, *, data: Input) -> Tag:
    await require_membership(ctx)
    values = data.model_dump()
    try:
        row = (await ctx.db.execute(insert(tags).values(**values).returning(*tags.c))).mappings().one()
    except Conflict:
        raise Conflict(f"A tag named {values['name']!r} already exists") from None
    return Tag.model_validate(row)


async def update_tag(ctx: Context, *, id: UUID, data: Input) -> Tag:
    # An empty PATCH still goes through the update policy, so it answers 403 like a real one.
    changes = data.model_dump(exclude_unset=True) or {"name": tags.c.name}
    stmt = update(tags).where(tags.c.id == id).values(**changes).returning(*tags.c)
    try:
        row = await change(
            ctx, stmt, visible=lambda: get_tag(ctx, id=id), refusal="Only the tag's creator or an admin can change it"
        )
    except Conflict:
        raise Conflict(f"A tag named {changes['name']!r} already exists") from None
    return Tag.model_validate(row)


async def delete_tag(ctx: Context, *, id: UUID) -> Deleted:
    stmt = delete(tags).where(tags.c.id == id).returning(tags.c.id)
    await change(
        ctx, stmt, visible=lambda: get_tag(ctx, id=id), refusal="Only the tag's creator or an admin can delete it"
    )
    return Deleted(id=id)


async def _ensure_entity(ctx: Context, entity_type: EntityType, entity_id: UUID) -> None:
    table = TAGGABLE[entity_type].table
    found = await ctx.db.execute(select(table.c.id).where(table.c.id == entity_id))
    if found.first() is None:
        raise NotFound(f"{entity_type.value.capitalize()} not found")


def tags_of_entity(entity_type: EntityType, entity_id: Any) -> Select[Any]:
    """An entity's tags, by name; `entity_id` a value or a column of an enclosing query (schema/compiled.py)."""
    return _TAGS_BY_NAME.where(entity_tags.c.entity_type == entity_type.value, entity_tags.c.entity_id == entity_id)


async def tags_of(ctx: Context, entity_type: EntityType, entity_ids: Sequence[UUID]) -> list[list[Tag]]:
    """The tags of each entity, by name (the `tags` loaders batch through this)."""
    stmt = _TAGS_BY_NAME.where(
        entity_tags.c.entity_type == entity_type.value, one_of(entity_tags.c.entity_id, entity_ids)
    )
    grouped: dict[UUID, list[Tag]] = defaultdict(list)
    for row in (await ctx.db.execute(stmt)).mappings():
        grouped[row["entity_id"]].append(Tag.model_validate(row))
    return [grouped[e] for e in entity_ids]


async def _entity_tags(ctx: Context, entity_type: EntityType, entity_id: UUID) -> list[Tag]:
    return (await tags_of(ctx, entity_type, [entity_id]))[0]


async def entity_tags_of(ctx: Context, *, query: EntityRef) -> list[Tag]:
    await _ensure_entity(ctx, query.entity_type, query.entity_id)
    return await _entity_tags(ctx, query.entity_type, query.entity_id)


async def assign_tags(ctx: Context, *, data: AssignTags) -> list[Tag]:
    await _ensure_entity(ctx, data.entity_type, data.entity_id)
    wanted = list(dict.fromkeys(data.tag_ids))
    if wanted:
        found = {r[0] for r in await ctx.db.execute(select(tags.c.id).where(tags.c.id.in_(wanted)))}
        missing = [str(t) for t in wanted if t not in found]
        if missing:
            raise NotFound(f"Tag not found: {', '.join(missing)}")
    of_entity = (entity_tags.c.entity_type == data.entity_type.value) & (entity_tags.c.entity_id == data.entity_id)
    if data.replace:
        await ctx.db.execute(delete(entity_tags).where(of_entity & entity_tags.c.tag_id.not_in(wanted)))
    if wanted:
        rows = [{"tag_id": t, "entity_type": data.entity_type.value, "entity_id": data.entity_id} for t in wanted]
        await ctx.db.execute(pg_insert(entity_tags).values(rows).on_conflict_do_nothing())
    return await _entity_tags(ctx, data.entity_type, data.entity_id)
