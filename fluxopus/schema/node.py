"""`node(id:)`: any Node by its id (a UUID, unique across types), or null when the caller cannot see it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

import strawberry

from fluxopus.errors import NotFound
from fluxopus.models.common import parse_uuid
from fluxopus.resolvers import knowledge, runs, skills, tags, tasks
from fluxopus.resolvers.context import Context
from fluxopus.schema._derive import out
from fluxopus.schema.knowledge import KnowledgeItem
from fluxopus.schema.pagination import Node
from fluxopus.schema.skills import Skill, SkillRun
from fluxopus.schema.tags import Tag
from fluxopus.schema.tasks import Task

# The Node types and how each is read (under the caller's RLS); most asked first.
GETTERS: list[tuple[type, Callable[..., Awaitable[Any]]]] = [
    (Task, tasks.get_task),
    (Skill, skills.get_skill),
    (KnowledgeItem, knowledge.get_knowledge),
    (SkillRun, runs.get_skill_run),
    (Tag, tags.get_tag),
]


async def find_node(ctx: Context, id: UUID) -> Any:
    for type_, get in GETTERS:
        try:
            return out(type_, await get(ctx, id=id))
        except NotFound:
            continue
    return None


@strawberry.type
class NodeQuery:
    @strawberry.field(
        description="The Task, Skill, KnowledgeItem, SkillRun or Tag with this id; null when there is none the"
        " caller may see (another company's object is null too)"
    )
    async def node(
        self, info: strawberry.Info, id: Annotated[strawberry.ID, strawberry.argument(description="Its id (a UUID)")]
    ) -> Node | None:
        node: Node | None = await find_node(info.context, parse_uuid(id))
        return node
