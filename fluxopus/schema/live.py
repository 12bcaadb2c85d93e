"""Live subscriptions: taskEvents, knowledgeEvents, skillRunEvents, tagEvents (resolvers/live.py).

Each event's row fields (`task { tags assignee timeLogs }` …) are read like a query's, as the
subscriber, in a transaction of the event's own: no connection is held while a subscription waits.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

import strawberry
from pydantic import BaseModel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from fluxopus.models import live as m
from fluxopus.models.common import parse, parse_uuid
from fluxopus.resolvers import live
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.live_hub import LiveStream
from fluxopus.schema._derive import graphql_enum, input_dict, input_type, object_type, out
from fluxopus.schema.knowledge import KnowledgeItem  # noqa: F401 - the types the events show
from fluxopus.schema.skills import SkillRun  # noqa: F401
from fluxopus.schema.tags import Tag  # noqa: F401
from fluxopus.schema.tasks import Task  # noqa: F401

graphql_enum(m.ChangeType)


def _event_id() -> Any:
    return strawberry.field(description=m.EVENT_ID_DOC)  # an ID, as `lastEventId` takes it back


LastEventId = Annotated[strawberry.ID | None, strawberry.argument(description=m.LAST_EVENT_ID_DOC)]


@object_type(m.TaskEvent)
class TaskEvent:
    event_id: strawberry.ID = _event_id()


@input_type(m.TaskEventFilter)
class TaskEventFilter:
    pass


@object_type(m.KnowledgeEvent)
class KnowledgeEvent:
    event_id: strawberry.ID = _event_id()


@object_type(m.SkillRunChange)
class SkillRunChange:
    event_id: strawberry.ID = _event_id()


@object_type(m.TagEvent)
class TagEvent:
    event_id: strawberry.ID = _event_id()


class SharedEvents(StrawberryGraphQLCoreExecutionContext):
    """Resolves a live event once per subscription document (and variables) for every subscription it
    was given to. The hub gives one event object to all the subscriptions of one user that want it
    (resolvers/live_hub.py), so their nested fields read the same rows under the same RLS: a user with
    ten tabs on one feed costs one resolution, not ten. Any other operation executes as usual."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        event = self.root_value
        if not isinstance(event, m.LiveEvent):
            return super().execute_operation(serially)
        rendered = event._rendered
        key = (id(self.operation), repr(sorted(self.variable_values.coerced.items())))
        found = rendered.get(key)
        if found is None:
            result = super().execute_operation(serially)
            if inspect.isawaitable(result):
                result = asyncio.ensure_future(result)  # awaited by each subscription it is shared with
            # The operation is kept with its result, so its id cannot be reused while the event lives.
            found = rendered[key] = (self.operation, result)
        return found[1]


async def _released(ctx: Context, stream: LiveStream) -> AsyncIterator[BaseModel]:
    await ctx.db.rollback()  # the subscription's checks are done: wait without a connection
    async with aclosing(stream.events()) as events:
        async for event in events:
            yield event
            # Strawberry has resolved the event's fields: end their transaction, forget their loaders.
            await ctx.db.rollback()
            ctx.cache.clear()


def _id(value: Any, what: str) -> Any:
    return None if value is None else parse_uuid(value, what)


@strawberry.type
class LiveSubscription:
    @strawberry.subscription(
        description="Tasks created, changed and deleted, as the subscriber may see them (RLS, at delivery): a"
        " task handed to someone else or otherwise hidden from them arrives as DELETED"
    )
    async def task_events(
        self,
        info: strawberry.Info,
        filter: Annotated[
            TaskEventFilter | None, strawberry.argument(description="Which tasks; default: all the subscriber sees")
        ] = None,
        last_event_id: LastEventId = None,
    ) -> AsyncGenerator[TaskEvent, None]:
        query = parse(m.TaskEventFilter, input_dict(filter) if filter is not None else {})
        stream = await live.task_events(info.context, filter=query, last_event_id=last_event_id)
        async for event in _released(info.context, stream):
            yield out(TaskEvent, event)

    @strawberry.subscription(
        description="Knowledge items created, changed, deleted and indexed (STATUS), as the subscriber may see them"
    )
    async def knowledge_events(
        self,
        info: strawberry.Info,
        item_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this item (one the subscriber can read)")
        ] = None,
        last_event_id: LastEventId = None,
    ) -> AsyncGenerator[KnowledgeEvent, None]:
        item = _id(item_id, "itemId")
        stream = await live.knowledge_events(info.context, item_id=item, last_event_id=last_event_id)
        async for event in _released(info.context, stream):
            yield out(KnowledgeEvent, event)

    @strawberry.subscription(
        description="Skill runs started and finished: the subscriber's own, and an admin's whole company's"
    )
    async def skill_run_events(
        self,
        info: strawberry.Info,
        skill_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this skill's runs (one the subscriber can read)"),
        ] = None,
        last_event_id: LastEventId = None,
    ) -> AsyncGenerator[SkillRunChange, None]:
        skill = _id(skill_id, "skillId")
        stream = await live.skill_run_events(info.context, skill_id=skill, last_event_id=last_event_id)
        async for event in _released(info.context, stream):
            yield out(SkillRunChange, event)

    @strawberry.subscription(
        description="The company's tags created, renamed and deleted, and put on or taken off entities the"
        " subscriber can read"
    )
    async def tag_events(
        self, info: strawberry.Info, last_event_id: LastEventId = None
    ) -> AsyncGenerator[TagEvent, None]:
        stream = await live.tag_events(info.context, last_event_id=last_event_id)
        async for event in _released(info.context, stream):
            yield out(TagEvent, event)
