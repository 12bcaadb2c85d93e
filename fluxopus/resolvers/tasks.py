"""Tasks and their time logs."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, insert, or_, select, update

from fluxopus.errors import Forbidden, NotFound
from fluxopus.models.common import Deleted, Input, Page, PageQuery
from fluxopus.models.tasks import Task, TaskFilter, TimeLog
from fluxopus.resolvers._sql import change, contains, fetch_one, fetch_page, one_of
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import ensure_colleague, require_membership

tasks = Task.table
time_logs = TimeLog.table

_total_minutes = (
    select(func.coalesce(func.sum(time_logs.c.minutes), 0))
    .where(time_logs.c.task_id == tasks.c.id)
    .scalar_subquery()
    .label("total_minutes")
)
_task_columns = [*tasks.c, _total_minutes]
_NEWEST_FIRST = (time_logs.c.created_at.desc(), time_logs.c.id)


# The statements below are what the resolvers run and what GraphQL reads compiled to SQL embed
# (schema/compiled.py): one definition of which rows, in which order.


def task_rows(query: TaskFilter) -> Select[Any]:
    """The tasks matching the filter, newest first, unpaged."""
    stmt = select(*_task_columns).order_by(tasks.c.created_at.desc(), tasks.c.id)
    if query.status is not None:
        stmt = stmt.where(tasks.c.status == query.status)
    if query.assignee_id is not None:
        stmt = stmt.where(tasks.c.assignee_id == query.assignee_id)
    if query.q is not None:
        stmt = stmt.where(or_(contains(tasks.c.title, query.q), contains(tasks.c.description, query.q)))
    return stmt


def task_row(id: Any) -> Select[Any]:
    return select(*_task_columns).where(tasks.c.id == id)


def time_logs_of(task_id: Any) -> Select[Any]:
    """A task's time logs, newest first; `task_id` a value or a column of an enclosing query."""
    return select(*time_logs.c).where(time_logs.c.task_id == task_id).order_by(*_NEWEST_FIRST)


async def list_tasks(ctx: Context, *, query: TaskFilter) -> Page[Task]:
    return await fetch_page(ctx, task_rows, Task, limit=query.limit, offset=query.offset, query=query)


async def get_task(ctx: Context, *, id: UUID) -> Task:
    row = await fetch_one(ctx, task_row, id=id)
    if row is None:
        raise NotFound("Task not found")
    return Task.model_validate(row)


async def create_task(ctx: Context, *, data: Input) -> Task:
    await require_membership(ctx)
    values = data.model_dump()
    if values["assignee_id"] is not None:
        await ensure_colleague(ctx, values["assignee_id"], "assignee_id")
    stmt = insert(tasks).values(**values).returning(*tasks.c)
    row = (await ctx.db.execute(stmt)).mappings().one()
    return Task.model_validate({**row, "total_minutes": 0})


async def update_task(ctx: Context, *, id: UUID, data: Input) -> Task:
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return await get_task(ctx, id=id)
    if "assignee_id" in changes:
        return await _update_with_reassignment(ctx, id, changes)
    stmt = update(tasks).where(tasks.c.id == id).values(**changes).returning(*_task_columns)
    refusal = "Only the task's creator, its assignee or an admin can change it"
    row = await change(ctx, stmt, visible=lambda: get_task(ctx, id=id), refusal=refusal)
    return Task.model_validate(row)


async def _update_with_reassignment(ctx: Context, id: UUID, changes: dict[str, Any]) -> Task:
    """Reassignment may hide the task from the caller, so it is read before and changed in SQL."""
    before = await get_task(ctx, id=id)
    assignee = changes.pop("assignee_id")
    if assignee is not None:
        await ensure_colleague(ctx, assignee, "assignee_id")
    if changes:
        stmt = update(tasks).where(tasks.c.id == id).values(**changes).returning(tasks.c.id)
        if (await ctx.db.execute(stmt)).first() is None:
            raise Forbidden("Only the task's creator, its assignee or an admin can change it")
    reassigned = select(func.fluxopus.set_task_assignee(id, assignee))
    if not (await ctx.db.execute(reassigned)).scalar_one():
        raise Forbidden("Only the task's creator, its assignee or an admin can reassign it")
    row = (await ctx.db.execute(task_row(id))).mappings().first()
    if row is None:  # handed to someone else: the caller no longer sees it, but did change it
        now = (await ctx.db.execute(select(func.now()))).scalar_one()
        return before.model_copy(update={**changes, "assignee_id": assignee, "updated_at": now})
    return Task.model_validate(row)


async def delete_task(ctx: Context, *, id: UUID) -> Deleted:
    stmt = delete(tasks).where(tasks.c.id == id).returning(tasks.c.id)
    await change(
        ctx, stmt, visible=lambda: get_task(ctx, id=id), refusal="Only the task's creator or an admin can delete it"
    )
    return Deleted(id=id)


async def list_time_logs(ctx: Context, *, task_id: UUID, query: PageQuery) -> Page[TimeLog]:
    await get_task(ctx, id=task_id)
    return await fetch_page(ctx, time_logs_of, TimeLog, limit=query.limit, offset=query.offset, task_id=task_id)


async def time_logs_by_task(ctx: Context, task_ids: Sequence[UUID]) -> list[list[TimeLog]]:
    """Each task's time logs, newest first (the loader of GraphQL `timeLogs` batches through this)."""
    stmt = select(*time_logs.c).where(one_of(time_logs.c.task_id, task_ids)).order_by(*_NEWEST_FIRST)
    grouped: dict[UUID, list[TimeLog]] = defaultdict(list)
    for row in (await ctx.db.execute(stmt)).mappings():
        grouped[row["task_id"]].append(TimeLog.model_validate(row))
    return [grouped[t] for t in task_ids]


async def add_time_log(ctx: Context, *, task_id: UUID, data: Input) -> TimeLog:
    await get_task(ctx, id=task_id)
    values: dict[str, Any] = data.model_dump()
    values["spent_on"] = values["spent_on"] or dt.datetime.now(dt.UTC).date()
    stmt = insert(time_logs).values(task_id=task_id, **values).returning(*time_logs.c)
    row = (await ctx.db.execute(stmt)).mappings().one()
    return TimeLog.model_validate(row)
