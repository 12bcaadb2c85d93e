from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON

from fluxopus.errors import NotFound
from fluxopus.models import skills as m
from fluxopus.models.common import PageQuery, parse, parse_uuid
from fluxopus.resolvers import budget, runs, skills
from fluxopus.schema._convert import build, input_dict
from fluxopus.schema.limits import MODEL_CALL_COST

if TYPE_CHECKING:
    from fluxopus.schema.tags import Tag

Visibility = strawberry.enum(m.Visibility, name="Visibility")
Provider = strawberry.enum(m.Provider, name="Provider")
RunStatus = strawberry.enum(m.RunStatus, name="RunStatus")


@strawberry.type
class Skill:
    id: strawberry.ID
    company_id: strawberry.ID
    owner_id: strawberry.ID
    name: str
    description: str | None
    instructions: str = strawberry.field(description="Jinja2 template, rendered with `input`")
    input_schema: JSON | None
    provider: Provider | None  # type: ignore[valid-type]
    model: str | None
    temperature: float | None
    max_tokens: int
    visibility: Visibility  # type: ignore[valid-type]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @strawberry.field
    async def tags(self, info: strawberry.Info) -> list[Annotated[Tag, strawberry.lazy("fluxopus.schema.tags")]]:
        from fluxopus.schema.tags import Tag

        return [build(Tag, tag) for tag in await info.context.loaders.tags_by_skill.load(self.id)]


@strawberry.type
class SkillVersion:
    id: strawberry.ID
    skill_id: strawberry.ID
    version: int
    name: str
    description: str | None
    instructions: str
    input_schema: JSON | None
    provider: Provider | None  # type: ignore[valid-type]
    model: str | None
    temperature: float | None
    max_tokens: int
    created_by: strawberry.ID
    created_at: dt.datetime


@strawberry.type
class SkillRun:
    id: strawberry.ID
    skill_id: strawberry.ID
    user_id: strawberry.ID
    version: int
    status: RunStatus  # type: ignore[valid-type]
    input: JSON
    output: str | None
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


@strawberry.type
class RunUsage:
    input_tokens: int
    output_tokens: int


@strawberry.type(description="One event of a run: run.started, delta (many), then run.completed or run.failed")
class SkillRunEvent:
    type: str
    run_id: strawberry.ID
    skill_id: strawberry.ID | None = None
    version: int | None = None
    model: str | None = None
    text: str | None = None
    output: str | None = None
    usage: RunUsage | None = None
    error: str | None = None


@strawberry.type(description="The company's token budget for the current month (input + output tokens)")
class TokenBudget:
    period_start: dt.date
    used: int
    reserved: int = strawberry.field(description="Held by runs in progress")
    limit: int


@strawberry.input
class CreateSkillInput:
    name: str
    instructions: str
    description: str | None = None
    input_schema: JSON | None = None
    provider: Provider | None = None  # type: ignore[valid-type]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int = 1024
    visibility: Visibility = m.Visibility.private  # type: ignore[valid-type]


@strawberry.input(description="Omitted fields stay; null clears optional ones; a change of content is a new version")
class UpdateSkillInput:
    name: str | None = strawberry.UNSET
    instructions: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    input_schema: JSON | None = strawberry.UNSET
    provider: Provider | None = strawberry.UNSET  # type: ignore[valid-type]
    model: str | None = strawberry.UNSET
    temperature: float | None = strawberry.UNSET
    max_tokens: int | None = strawberry.UNSET
    visibility: Visibility | None = strawberry.UNSET  # type: ignore[valid-type]


def _event(event: m.RunEvent) -> SkillRunEvent:
    usage = RunUsage(**event.usage.model_dump()) if event.usage else None
    fields = event.model_dump(exclude={"usage", "run_id", "skill_id"})
    skill_id = strawberry.ID(str(event.skill_id)) if event.skill_id else None
    return SkillRunEvent(**fields, run_id=strawberry.ID(str(event.run_id)), skill_id=skill_id, usage=usage)


def _run_input(input: JSON, version: int | None) -> m.RunInput:
    return parse(m.RunInput, {"input": input, "version": version})


@strawberry.type
class SkillsQuery:
    @strawberry.field(description="Skills the caller can see: their own and company-visible ones")
    async def skills(
        self, info: strawberry.Info, q: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Skill]:
        query = parse(m.SkillFilter, {"q": q, "limit": limit, "offset": offset})
        page = await skills.list_skills(info.context, query=query)
        return [build(Skill, s) for s in page.items]

    @strawberry.field(description="Null when the skill does not exist or the caller cannot see it")
    async def skill(self, info: strawberry.Info, id: strawberry.ID) -> Skill | None:
        try:
            return build(Skill, await skills.get_skill(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(description="A skill's versions, newest first")
    async def skill_versions(
        self, info: strawberry.Info, skill_id: strawberry.ID, limit: int = 50, offset: int = 0
    ) -> list[SkillVersion]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await skills.list_skill_versions(info.context, id=parse_uuid(skill_id, "skillId"), query=query)
        return [build(SkillVersion, v) for v in page.items]

    @strawberry.field(description="A skill's runs, newest first: the caller's own; an admin sees everyone's")
    async def skill_runs(
        self, info: strawberry.Info, skill_id: strawberry.ID, limit: int = 50, offset: int = 0
    ) -> list[SkillRun]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await runs.list_skill_runs(info.context, id=parse_uuid(skill_id, "skillId"), query=query)
        return [build(SkillRun, r) for r in page.items]

    @strawberry.field(description="Null when the run does not exist or the caller cannot see it")
    async def skill_run(self, info: strawberry.Info, id: strawberry.ID) -> SkillRun | None:
        try:
            return build(SkillRun, await runs.get_skill_run(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(description="The company's token budget this month")
    async def usage(self, info: strawberry.Info) -> TokenBudget:
        return build(TokenBudget, await budget.token_budget(info.context))


@strawberry.type
class SkillsMutation:
    @strawberry.mutation
    async def create_skill(self, info: strawberry.Info, input: CreateSkillInput) -> Skill:
        data = parse(m.SkillCreate, input_dict(input))
        return build(Skill, await skills.create_skill(info.context, data=data))

    @strawberry.mutation
    async def update_skill(self, info: strawberry.Info, id: strawberry.ID, input: UpdateSkillInput) -> Skill:
        data = parse(m.SkillUpdate, input_dict(input))
        return build(Skill, await skills.update_skill(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(description="Returns the deleted skill's id")
    async def delete_skill(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        deleted = await skills.delete_skill(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))

    @strawberry.mutation(description="Makes an old version's content current, recorded as a new version")
    async def restore_skill_version(self, info: strawberry.Info, skill_id: strawberry.ID, version: int) -> Skill:
        skill = await skills.restore_skill_version(info.context, id=parse_uuid(skill_id, "skillId"), version=version)
        return build(Skill, skill)

    # standalone: it commits its run record before the model answers (schema/limits.py refuses it
    # beside other fields); cost: a model call.
    @strawberry.mutation(
        description="Runs a skill and returns the finished run (subscribe to runSkill to stream). It must be the"
        " only field of its mutation: its run is recorded whatever happens to other fields",
        metadata={"standalone": True, "cost": MODEL_CALL_COST},
    )
    async def run_skill(
        self, info: strawberry.Info, id: strawberry.ID, input: JSON, version: int | None = None
    ) -> SkillRun:
        run = await runs.run_skill(info.context, id=parse_uuid(id), data=_run_input(input, version))
        return build(SkillRun, run)


@strawberry.type
class SkillsSubscription:
    @strawberry.subscription(
        description="Runs a skill and streams its events; unsubscribing cancels the run",
        metadata={"cost": MODEL_CALL_COST},
    )
    async def run_skill(
        self, info: strawberry.Info, id: strawberry.ID, input: JSON, version: int | None = None
    ) -> AsyncGenerator[SkillRunEvent, None]:
        events = await runs.stream_skill_run(info.context, id=parse_uuid(id), data=_run_input(input, version))
        async with aclosing(events):
            async for event in events:
                yield _event(event)
