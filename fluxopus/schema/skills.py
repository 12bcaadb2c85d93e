from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

import strawberry
from sqlalchemy import Select
from strawberry.scalars import JSON

from fluxopus.errors import NotFound
from fluxopus.models import skills as m
from fluxopus.models.common import Page, PageQuery, Visibility, parse, parse_uuid
from fluxopus.models.tags import EntityType
from fluxopus.resolvers import budget, runs, skills, tools
from fluxopus.resolvers.loaders import loaders
from fluxopus.schema import compiled
from fluxopus.schema._derive import (
    Limit,
    Offset,
    argument,
    graphql_enum,
    input_dict,
    input_type,
    interface_type,
    object_type,
    out,
    outs,
)
from fluxopus.schema.knowledge import KnowledgeItem
from fluxopus.schema.limits import MODEL_CALL_COST
from fluxopus.schema.pagination import After, Before, Connection, First, Last, Node, connection
from fluxopus.schema.tags import compiled_tags, tags_field

graphql_enum(Visibility)
graphql_enum(m.Provider)
graphql_enum(m.RunStatus)
graphql_enum(m.ToolCallStatus)

SkillId = Annotated[strawberry.ID, strawberry.argument(description="The skill's id")]
RunInputArgument = Annotated[JSON, argument(m.RunInput, "input")]
RunVersion = Annotated[int | None, argument(m.RunInput, "version")]


@object_type(m.SkillKnowledge)
class SkillKnowledge:
    pass


@input_type(m.SkillKnowledge, name="SkillKnowledgeInput")
class SkillKnowledgeInput:
    pass


@object_type(m.CitedChunk)
class CitedChunk:
    pass


@object_type(m.Citation)
class Citation:
    @strawberry.field(
        description="The item as the reader sees it now; null when they may not read it (or it was deleted)"
    )
    async def item(self, parent: strawberry.Parent[m.Citation], info: strawberry.Info) -> KnowledgeItem | None:
        found = await loaders(info.context).knowledge_by_id.load(parent.item_id)
        return None if found is None else out(KnowledgeItem, found)


@object_type(m.Skill)
class Skill(Node):
    tags = tags_field(EntityType.skill)


@object_type(m.SkillVersion)
class SkillVersion:
    pass


@object_type(m.ToolCallRecord)
class ToolCallRecord:
    pass


@object_type(m.SkillRun)
class SkillRun(Node):
    pass


@object_type(m.RunUsage)
class RunUsage:
    pass


@interface_type(
    m.RunEventBase,
    description="One event of a run's stream: RunStarted, RunDelta (many) and RunToolCall with its RunToolResult"
    " (when the model calls tools), then RunCompleted or RunFailed. Select what each kind has with fragments"
    " (`... on RunDelta { text }`); `type` names the kind as REST's stream does (run.started, delta, tool.call,"
    " tool.result, run.completed, run.failed)",
)
class SkillRunEvent:
    pass


@object_type(m.RunStarted)
class RunStarted(SkillRunEvent):
    pass


@object_type(m.RunDelta)
class RunDelta(SkillRunEvent):
    pass


@object_type(m.RunToolCall)
class RunToolCall(SkillRunEvent):
    pass


@object_type(m.RunToolResult)
class RunToolResult(SkillRunEvent):
    pass


@object_type(m.ToolSettings)
class ToolSettings:
    pass


@object_type(m.RunCompleted)
class RunCompleted(SkillRunEvent):
    pass


@object_type(m.RunFailed)
class RunFailed(SkillRunEvent):
    pass


@object_type(m.TokenBudget, description="The company's token budget for the current month (input + output tokens)")
class TokenBudget:
    pass


@input_type(m.Skill.create, description="A new skill, owned by the caller; it starts at version 1")
class CreateSkillInput:
    pass


@input_type(
    m.Skill.update,
    partial=True,
    description="Omitted fields stay; null clears optional ones; a change of content is a new version",
)
class UpdateSkillInput:
    pass


def _run_input(input: JSON, version: int | None) -> m.RunInput:
    return parse(m.RunInput, {"input": input, "version": version})


def _skill_filter(q: str | None, limit: int, offset: int) -> m.SkillFilter:
    return parse(m.SkillFilter, {"q": q, "limit": limit, "offset": offset})


# How GraphQL reads these fields in one SQL statement (schema/compiled.py).


@compiled.root("skills", many=True)
def _skill_rows(q: str | None = None, limit: int = 50, offset: int = 0) -> Select[Any]:
    query = _skill_filter(q, limit, offset)
    return compiled.paged(skills.skill_rows(query), query)


@compiled.root("skill", many=False)
def _skill_row(id: str) -> Select[Any]:
    return skills.skill_row(parse_uuid(id))


compiled_tags("Skill", EntityType.skill)


@strawberry.type
class SkillsQuery:
    @strawberry.field(description="Skills the caller can see: their own and company-visible ones")
    async def skills(
        self,
        info: strawberry.Info,
        q: Annotated[str | None, argument(m.SkillFilter, "q")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[Skill]:
        page = await skills.list_skills(info.context, query=_skill_filter(q, limit, offset))
        return outs(Skill, page.items)

    @strawberry.field(description="`skills` as a Relay connection: cursors, pageInfo and totalCount")
    async def skills_connection(
        self,
        info: strawberry.Info,
        q: Annotated[str | None, argument(m.SkillFilter, "q")] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Skill]:
        async def fetch(limit: int, offset: int) -> Page[m.Skill]:
            return await skills.list_skills(info.context, query=_skill_filter(q, limit, offset))

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="`skillVersions` as a Relay connection: cursors, pageInfo and totalCount")
    async def skill_versions_connection(
        self,
        info: strawberry.Info,
        skill_id: SkillId,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[SkillVersion]:
        async def fetch(limit: int, offset: int) -> Page[m.SkillVersion]:
            query = parse(PageQuery, {"limit": limit, "offset": offset})
            return await skills.list_skill_versions(info.context, id=parse_uuid(skill_id, "skillId"), query=query)

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="`skillRuns` as a Relay connection: cursors, pageInfo and totalCount")
    async def skill_runs_connection(
        self,
        info: strawberry.Info,
        skill_id: SkillId,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[SkillRun]:
        async def fetch(limit: int, offset: int) -> Page[m.SkillRun]:
            query = parse(PageQuery, {"limit": limit, "offset": offset})
            return await runs.list_skill_runs(info.context, id=parse_uuid(skill_id, "skillId"), query=query)

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="Null when the skill does not exist or the caller cannot see it")
    async def skill(self, info: strawberry.Info, id: SkillId) -> Skill | None:
        try:
            return out(Skill, await skills.get_skill(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(description="A skill's versions, newest first")
    async def skill_versions(
        self, info: strawberry.Info, skill_id: SkillId, limit: Limit = 50, offset: Offset = 0
    ) -> list[SkillVersion]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await skills.list_skill_versions(info.context, id=parse_uuid(skill_id, "skillId"), query=query)
        return outs(SkillVersion, page.items)

    @strawberry.field(description="A skill's runs, newest first: the caller's own; an admin sees everyone's")
    async def skill_runs(
        self, info: strawberry.Info, skill_id: SkillId, limit: Limit = 50, offset: Offset = 0
    ) -> list[SkillRun]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await runs.list_skill_runs(info.context, id=parse_uuid(skill_id, "skillId"), query=query)
        return outs(SkillRun, page.items)

    @strawberry.field(description="Null when the run does not exist or the caller cannot see it")
    async def skill_run(
        self, info: strawberry.Info, id: Annotated[strawberry.ID, strawberry.argument(description="The run's id")]
    ) -> SkillRun | None:
        try:
            return out(SkillRun, await runs.get_skill_run(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(description="Whether the company's skill runs may call tools, and the built-in tools")
    async def tool_settings(self, info: strawberry.Info) -> ToolSettings:
        return out(ToolSettings, await tools.tool_settings(info.context))

    @strawberry.field(description="The company's token budget this month")
    async def usage(self, info: strawberry.Info) -> TokenBudget:
        return out(TokenBudget, await budget.token_budget(info.context))


@strawberry.type
class SkillsMutation:
    @strawberry.mutation(description="Creates a skill owned by the caller; returns it")
    async def create_skill(
        self, info: strawberry.Info, input: Annotated[CreateSkillInput, strawberry.argument(description="The skill")]
    ) -> Skill:
        data = parse(m.Skill.create, input_dict(input))
        return out(Skill, await skills.create_skill(info.context, data=data))

    @strawberry.mutation(
        description="Changes a skill (its owner or an admin may); a change of content records a new version"
    )
    async def update_skill(
        self,
        info: strawberry.Info,
        id: SkillId,
        input: Annotated[UpdateSkillInput, strawberry.argument(description="The fields to change")],
    ) -> Skill:
        data = parse(m.Skill.update, input_dict(input))
        return out(Skill, await skills.update_skill(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(
        description="Deletes a skill with its versions and runs (its owner or an admin may); returns its id"
    )
    async def delete_skill(self, info: strawberry.Info, id: SkillId) -> strawberry.ID:
        deleted = await skills.delete_skill(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))

    @strawberry.mutation(description="Makes an old version's content current, recorded as a new version")
    async def restore_skill_version(
        self,
        info: strawberry.Info,
        skill_id: SkillId,
        version: Annotated[int, strawberry.argument(description="The version whose content to restore")],
    ) -> Skill:
        skill = await skills.restore_skill_version(info.context, id=parse_uuid(skill_id, "skillId"), version=version)
        return out(Skill, skill)

    @strawberry.mutation(description="Admins only. Turns the company's tools on or off; returns the settings")
    async def update_tool_settings(
        self, info: strawberry.Info, enabled: Annotated[bool, argument(m.ToolSettingsInput, "enabled")]
    ) -> ToolSettings:
        data = parse(m.ToolSettingsInput, {"enabled": enabled})
        return out(ToolSettings, await tools.update_tool_settings(info.context, data=data))

    # standalone: it commits its run record before the model answers, so schema/limits.py refuses it
    # beside other fields; cost: a model call.
    @strawberry.mutation(
        description="Runs a skill and returns the finished run (subscribe to runSkill to stream). It must be the"
        " only field of its mutation: its run is recorded whatever happens to other fields",
        metadata={"standalone": True, "cost": MODEL_CALL_COST},
    )
    async def run_skill(
        self, info: strawberry.Info, id: SkillId, input: RunInputArgument, version: RunVersion = None
    ) -> SkillRun:
        started = await runs.run_skill(info.context, id=parse_uuid(id), data=_run_input(input, version))
        await info.context.db.commit()  # the early commit: no transaction waits on the model
        return out(SkillRun, await started.finished())


@strawberry.type
class SkillsSubscription:
    @strawberry.subscription(
        description="Runs a skill and streams its events; unsubscribing cancels the run",
        metadata={"cost": MODEL_CALL_COST},
    )
    async def run_skill(
        self, info: strawberry.Info, id: SkillId, input: RunInputArgument, version: RunVersion = None
    ) -> AsyncGenerator[SkillRunEvent, None]:
        started = await runs.run_skill(info.context, id=parse_uuid(id), data=_run_input(input, version))
        await info.context.db.commit()  # the early commit: no transaction waits on the model
        async with aclosing(started.events()) as events:
            async for event in events:
                yield out(SkillRunEvent, m.typed_event(event))
