"""Live subscriptions, as GraphQL offers them (schema/live.py): what each one checks, wants and says.

The hub that fans changes out is resolvers/live_hub.py; `KINDS` tells it what each kind of change reads.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fluxopus.db import live as log_
from fluxopus.errors import Invalid, Unavailable
from fluxopus.models.knowledge import KnowledgeItem
from fluxopus.models.live import ChangeType, KnowledgeEvent, SkillRunChange, TagEvent, TaskEvent, TaskEventFilter
from fluxopus.models.skills import SkillRun
from fluxopus.models.tags import Tag
from fluxopus.models.tasks import Task
from fluxopus.resolvers import knowledge, runs, skills, tags, tasks
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.live_hub import Feed, Kind, LiveHub, LiveStream, Subscriber, Wants
from fluxopus.resolvers.members import ensure_colleague, require_membership

KINDS: dict[str, Kind] = {
    "task": Kind(tasks.task_row, Task),
    "knowledge": Kind(knowledge.knowledge_row, KnowledgeItem),
    "skill_run": Kind(runs.run_row, SkillRun),
    "tag": Kind(tags.tag_row, Tag),
    "entity_tag": Kind(tags.tag_row, Tag),
}


def _hub(ctx: Context) -> LiveHub:
    if ctx.live is None:
        raise Unavailable("Live events are off on this server (FLUXOPUS_LIVE=false)")
    return ctx.live


def _after(last_event_id: str | None) -> int | None:
    if last_event_id is None:
        return None
    if not last_event_id.isascii() or not last_event_id.isdigit() or len(last_event_id) > 18:
        raise Invalid("lastEventId: must be the eventId of an event received (a number)")
    return int(last_event_id)


async def _stream(ctx: Context, feed: Feed, wants: Wants, last_event_id: str | None) -> LiveStream:
    after = _after(last_event_id)
    hub = _hub(ctx)
    caller = await require_membership(ctx)
    assert caller.company is not None and ctx.claims is not None
    subscriber = Subscriber(
        feed=feed,
        company_id=caller.company.id,
        user_id=ctx.user_id,
        claims=ctx.claims,
        wants=wants,
        limit=hub.queue_limit,
    )
    return LiveStream(hub, subscriber, after)


def _old(change: log_.Change, key: str) -> Any:
    return (change.old or {}).get(key)


def _everything(kind: ChangeType, change: log_.Change, row: Any) -> bool:
    return True


# The four feeds: what each says of a change (whoever subscribed, whatever their filter).

TASKS = Feed(
    "taskEvents",
    frozenset({"task"}),
    lambda kind, change, task: TaskEvent.model_construct(
        type=kind, event_id=str(change.id), task_id=change.entity_id, task=task
    ),
    lambda event_id: TaskEvent(type=ChangeType.resync, event_id=event_id, task_id=None, task=None),
)


def _knowledge_event(kind: ChangeType, change: log_.Change, item: Any) -> KnowledgeEvent:
    detail = (change.detail or {}) if kind is ChangeType.status else {}
    return KnowledgeEvent(
        type=kind,
        event_id=str(change.id),
        item_id=change.entity_id,
        item=item,
        status=detail.get("status"),
        error=detail.get("error"),
    )


KNOWLEDGE = Feed(
    "knowledgeEvents",
    frozenset({"knowledge"}),
    _knowledge_event,
    lambda event_id: KnowledgeEvent(type=ChangeType.resync, event_id=event_id, item_id=None, item=None),
)


def _skill_of(change: log_.Change) -> UUID:
    return UUID(str((change.detail or {})["skill_id"]))


RUNS = Feed(
    "skillRunEvents",
    frozenset({"skill_run"}),
    lambda kind, change, run: SkillRunChange(
        type=kind, event_id=str(change.id), run_id=change.entity_id, skill_id=_skill_of(change), run=run
    ),
    lambda event_id: SkillRunChange(type=ChangeType.resync, event_id=event_id, run_id=None, skill_id=None, run=None),
)


def _tag_event(kind: ChangeType, change: log_.Change, tag: Any) -> TagEvent:
    detail = change.detail or {}
    return TagEvent(
        type=kind,
        event_id=str(change.id),
        tag_id=change.entity_id,
        tag=tag,
        entity_type=detail.get("entity_type"),
        entity_id=detail.get("entity_id"),
    )


TAGS = Feed(
    "tagEvents",
    frozenset({"tag", "entity_tag"}),
    _tag_event,
    lambda event_id: TagEvent(type=ChangeType.resync, event_id=event_id, tag_id=None, tag=None),
)


async def task_events(ctx: Context, *, filter: TaskEventFilter, last_event_id: str | None) -> LiveStream:
    if filter.task_id is not None:
        await tasks.get_task(ctx, id=filter.task_id)
    if filter.assignee_id is not None:
        await ensure_colleague(ctx, filter.assignee_id, "assigneeId")

    def matches(wanted: Any, key: str, task: Task | None, change: log_.Change) -> bool:
        """A task matches a field of the filter when it has that value now, or had it before."""
        if wanted is None:
            return True
        values = {getattr(task, key) if task is not None else None, _old(change, key)}
        return str(wanted) in {str(v) for v in values if v is not None}

    def wants(kind: ChangeType, change: log_.Change, task: Any) -> bool:
        return (
            (filter.task_id is None or change.entity_id == filter.task_id)
            and matches(filter.status, "status", task, change)
            and matches(filter.assignee_id, "assignee_id", task, change)
        )

    return await _stream(ctx, TASKS, wants, last_event_id)


async def knowledge_events(ctx: Context, *, item_id: UUID | None, last_event_id: str | None) -> LiveStream:
    if item_id is None:
        return await _stream(ctx, KNOWLEDGE, _everything, last_event_id)
    await knowledge.get_knowledge(ctx, id=item_id)
    return await _stream(ctx, KNOWLEDGE, lambda kind, change, item: change.entity_id == item_id, last_event_id)


async def skill_run_events(ctx: Context, *, skill_id: UUID | None, last_event_id: str | None) -> LiveStream:
    if skill_id is None:
        return await _stream(ctx, RUNS, _everything, last_event_id)
    await skills.get_skill(ctx, id=skill_id)
    return await _stream(ctx, RUNS, lambda kind, change, run: _skill_of(change) == skill_id, last_event_id)


async def tag_events(ctx: Context, *, last_event_id: str | None) -> LiveStream:
    return await _stream(ctx, TAGS, _everything, last_event_id)
