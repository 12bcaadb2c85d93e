"""Skills and their version history. Versions are recorded by triggers in the database."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Select, Text, cast, delete, func, insert, or_, select, update

from fluxopus.ai.prompts import PromptError
from fluxopus.ai.tools import refused_hosts
from fluxopus.errors import Invalid, NotFound
from fluxopus.models.common import Deleted, Input, Page, PageQuery
from fluxopus.models.skills import Skill, SkillContent, SkillFilter, SkillKnowledge, SkillVersion
from fluxopus.models.tags import Tag
from fluxopus.resolvers._sql import change, contains, fetch_one, fetch_page
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import require_membership

skills = Skill.table
skill_versions = SkillVersion.table
tags = Tag.table


def skill_rows(query: SkillFilter) -> Select[Any]:
    """The skills the caller sees matching the filter, newest first, unpaged (also schema/compiled.py's)."""
    stmt = select(*skills.c).order_by(skills.c.created_at.desc(), skills.c.id)
    if query.q is not None:
        stmt = stmt.where(or_(contains(skills.c.name, query.q), contains(skills.c.description, query.q)))
    return stmt


def skill_row(id: UUID) -> Select[Any]:
    return select(*skills.c).where(skills.c.id == id)


async def list_skills(ctx: Context, *, query: SkillFilter) -> Page[Skill]:
    return await fetch_page(ctx, skill_rows, Skill, limit=query.limit, offset=query.offset, query=query)


async def get_skill(ctx: Context, *, id: UUID) -> Skill:
    row = await fetch_one(ctx, skill_row, id=id)
    if row is None:
        raise NotFound("Skill not found")
    return Skill.model_validate(row)


async def create_skill(ctx: Context, *, data: Input) -> Skill:
    await require_membership(ctx)
    values = data.model_dump()
    await _check_instructions(ctx, values["instructions"])
    _check_hosts(ctx, values["tools"])
    values["knowledge"] = await _checked_knowledge(ctx, getattr(data, "knowledge", None))
    row = (await ctx.db.execute(insert(skills).values(**values).returning(*skills.c))).mappings().one()
    return Skill.model_validate(row)


async def update_skill(ctx: Context, *, id: UUID, data: Input) -> Skill:
    changes = data.model_dump(exclude_unset=True)
    if changes.get("instructions") is not None:
        await _check_instructions(ctx, changes["instructions"])
    if changes.get("tools"):
        _check_hosts(ctx, changes["tools"])
    if "knowledge" in changes:
        changes["knowledge"] = await _checked_knowledge(ctx, getattr(data, "knowledge", None))
    # An empty PATCH still goes through the update policy, so it answers 403 like a real one.
    return await _update(ctx, id, changes or {"name": skills.c.name})


async def _check_instructions(ctx: Context, source: str) -> None:
    try:
        await ctx.ai.templates.check(source)
    except PromptError as exc:
        raise Invalid(f"instructions: {exc}") from None


def _check_hosts(ctx: Context, tools: list[dict[str, Any]]) -> None:
    refused = refused_hosts(tools, ctx.ai.tool_hosts)
    if refused:
        raise Invalid(
            f"tools: {refused[0][:200]} is not on this server's allow-list for HTTP tools (FLUXOPUS_TOOL_HOSTS)"
        )


async def _checked_knowledge(ctx: Context, settings: SkillKnowledge | None) -> dict[str, Any] | None:
    """The knowledge settings as stored: the query template parsed, the tags named by id."""
    if settings is None:
        return None
    if settings.query is not None:
        try:
            await ctx.ai.templates.check(settings.query)
        except PromptError as exc:
            raise Invalid(f"knowledge.query: {exc}") from None
    if settings.tags is not None:
        # No tags is no filter (rather than a filter nothing passes).
        settings = settings.model_copy(update={"tags": await _tag_ids(ctx, settings.tags) if settings.tags else None})
    return settings.model_dump(mode="json")


async def _tag_ids(ctx: Context, wanted: list[str]) -> list[str]:
    """Each tag, given by id or by name (ignoring case), as the id of the caller's company's tag."""
    keys = [w.lower() for w in wanted]
    stmt = select(cast(tags.c.id, Text).label("id"), func.lower(tags.c.name).label("name")).where(
        or_(cast(tags.c.id, Text).in_(keys), func.lower(tags.c.name).in_(keys))
    )
    found = (await ctx.db.execute(stmt)).mappings().all()
    by_key = {str(row[key]): str(row["id"]) for row in found for key in ("id", "name")}
    missing = [w for w, key in zip(wanted, keys, strict=True) if key not in by_key]
    if missing:
        raise Invalid(f"knowledge.tags: no tag {', '.join(repr(m) for m in missing)} in your company")
    return list(dict.fromkeys(by_key[key] for key in keys))


async def _update(ctx: Context, id: UUID, changes: dict[str, Any]) -> Skill:
    stmt = update(skills).where(skills.c.id == id).values(**changes).returning(*skills.c)
    row = await change(
        ctx, stmt, visible=lambda: get_skill(ctx, id=id), refusal="Only the skill's owner or an admin can change it"
    )
    return Skill.model_validate(row)


async def delete_skill(ctx: Context, *, id: UUID) -> Deleted:
    stmt = delete(skills).where(skills.c.id == id).returning(skills.c.id)
    await change(
        ctx, stmt, visible=lambda: get_skill(ctx, id=id), refusal="Only the skill's owner or an admin can delete it"
    )
    return Deleted(id=id)


def versions_of(skill_id: Any) -> Select[Any]:
    """A skill's versions, newest first, unpaged."""
    stmt = select(*skill_versions.c).where(skill_versions.c.skill_id == skill_id)
    return stmt.order_by(skill_versions.c.version.desc())


async def list_skill_versions(ctx: Context, *, id: UUID, query: PageQuery) -> Page[SkillVersion]:
    await get_skill(ctx, id=id)
    return await fetch_page(ctx, versions_of, SkillVersion, limit=query.limit, offset=query.offset, skill_id=id)


async def get_skill_version(ctx: Context, *, id: UUID, version: int) -> SkillVersion:
    """A version of a skill the caller can read; Invalid when the skill has no such version."""
    stmt = select(*skill_versions.c).where(skill_versions.c.skill_id == id, skill_versions.c.version == version)
    row = (await ctx.db.execute(stmt)).mappings().first()
    if row is None:
        skill = await get_skill(ctx, id=id)
        raise Invalid(f"Unknown version {version}: this skill has versions 1 to {skill.version}")
    return SkillVersion.model_validate(row)


async def restore_skill_version(ctx: Context, *, id: UUID, version: int) -> Skill:
    """Makes an old version's content current again, as a new version (history stays immutable)."""
    old = await get_skill_version(ctx, id=id, version=version)
    content = {field: getattr(old, field) for field in SkillContent.model_fields}
    if old.knowledge is not None:
        content["knowledge"] = old.knowledge.model_dump(mode="json")
    return await _update(ctx, id, content)
