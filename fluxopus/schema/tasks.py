from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry

from fluxopus.errors import NotFound
from fluxopus.models import tasks as m
from fluxopus.models.common import PageQuery, parse, parse_uuid
from fluxopus.resolvers import tasks
from fluxopus.schema._convert import build, input_dict
from fluxopus.schema.accounts import Member

if TYPE_CHECKING:
    from fluxopus.schema.tags import Tag

TaskStatus = strawberry.enum(m.TaskStatus, name="TaskStatus")
TaskPriority = strawberry.enum(m.TaskPriority, name="TaskPriority")


@strawberry.type
class TimeLog:
    id: strawberry.ID
    task_id: strawberry.ID
    user_id: strawberry.ID
    minutes: int
    note: str | None
    spent_on: dt.date
    billable: bool
    created_at: dt.datetime


@strawberry.type
class Task:
    id: strawberry.ID
    company_id: strawberry.ID
    title: str
    description: str | None
    status: TaskStatus  # type: ignore[valid-type]
    priority: TaskPriority  # type: ignore[valid-type]
    due_date: dt.date | None
    assignee_id: strawberry.ID | None
    created_by: strawberry.ID
    created_at: dt.datetime
    updated_at: dt.datetime
    total_minutes: int

    @strawberry.field(description="Newest first")
    async def time_logs(self, info: strawberry.Info) -> list[TimeLog]:
        logs = await info.context.loaders.time_logs_by_task.load(self.id)
        return [build(TimeLog, log) for log in logs]

    @strawberry.field
    async def tags(self, info: strawberry.Info) -> list[Annotated[Tag, strawberry.lazy("fluxopus.schema.tags")]]:
        from fluxopus.schema.tags import Tag

        return [build(Tag, tag) for tag in await info.context.loaders.tags_by_task.load(self.id)]

    @strawberry.field
    async def assignee(self, info: strawberry.Info) -> Member | None:
        if self.assignee_id is None:
            return None
        member = await info.context.loaders.member_by_user.load(self.assignee_id)
        return build(Member, member) if member else None


@strawberry.input
class CreateTaskInput:
    title: str
    description: str | None = None
    status: TaskStatus = m.TaskStatus.todo  # type: ignore[valid-type]
    priority: TaskPriority = m.TaskPriority.medium  # type: ignore[valid-type]
    due_date: dt.date | None = None
    assignee_id: strawberry.ID | None = None


@strawberry.input(description="Omitted fields stay; null clears optional ones")
class UpdateTaskInput:
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    status: TaskStatus | None = strawberry.UNSET  # type: ignore[valid-type]
    priority: TaskPriority | None = strawberry.UNSET  # type: ignore[valid-type]
    due_date: dt.date | None = strawberry.UNSET
    assignee_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class TimeLogInput:
    minutes: int
    note: str | None = None
    spent_on: dt.date | None = None
    billable: bool = False


@strawberry.type
class TasksQuery:
    @strawberry.field(description="Member: tasks they created or are assigned; admin: all company tasks")
    async def tasks(
        self,
        info: strawberry.Info,
        status: TaskStatus | None = None,  # type: ignore[valid-type]
        assignee_id: strawberry.ID | None = None,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Task]:
        query = parse(
            m.TaskFilter,
            {"status": status, "assignee_id": assignee_id, "q": q, "limit": limit, "offset": offset},
        )
        page = await tasks.list_tasks(info.context, query=query)
        return [build(Task, t) for t in page.items]

    @strawberry.field(description="Null when the task does not exist or the caller cannot see it")
    async def task(self, info: strawberry.Info, id: strawberry.ID) -> Task | None:
        try:
            return build(Task, await tasks.get_task(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(description="A task's time logs, newest first")
    async def time_logs(
        self, info: strawberry.Info, task_id: strawberry.ID, limit: int = 50, offset: int = 0
    ) -> list[TimeLog]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await tasks.list_time_logs(info.context, task_id=parse_uuid(task_id, "taskId"), query=query)
        return [build(TimeLog, log) for log in page.items]


@strawberry.type
class TasksMutation:
    @strawberry.mutation
    async def create_task(self, info: strawberry.Info, input: CreateTaskInput) -> Task:
        data = parse(m.TaskCreate, input_dict(input))
        return build(Task, await tasks.create_task(info.context, data=data))

    @strawberry.mutation
    async def update_task(self, info: strawberry.Info, id: strawberry.ID, input: UpdateTaskInput) -> Task:
        data = parse(m.TaskUpdate, input_dict(input))
        return build(Task, await tasks.update_task(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(description="Returns the deleted task's id")
    async def delete_task(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        deleted = await tasks.delete_task(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))

    @strawberry.mutation
    async def add_time_log(self, info: strawberry.Info, task_id: strawberry.ID, input: TimeLogInput) -> TimeLog:
        data = parse(m.TimeLogCreate, input_dict(input))
        log = await tasks.add_time_log(info.context, task_id=parse_uuid(task_id, "taskId"), data=data)
        return build(TimeLog, log)
