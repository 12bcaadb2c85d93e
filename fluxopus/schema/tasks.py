from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlalchemy import Select

from fluxopus.errors import NotFound
from fluxopus.models import tasks as m
from fluxopus.models.common import Page, PageQuery, parse, parse_uuid
from fluxopus.models.tags import EntityType
from fluxopus.resolvers import members, tasks
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
from fluxopus.schema.members import Member
from fluxopus.schema.pagination import After, Before, Connection, First, Last, Node, connection
from fluxopus.schema.tags import compiled_tags, tags_field

graphql_enum(m.TaskStatus)
graphql_enum(m.TaskPriority)

TaskId = Annotated[strawberry.ID, strawberry.argument(description="The task's id")]


@object_type(m.TimeLog)
class TimeLog:
    pass


@object_type(m.Task)
class Task(Node):
    @strawberry.field(description="Newest first")
    async def time_logs(self, parent: strawberry.Parent[m.Task], info: strawberry.Info) -> list[TimeLog]:
        return outs(TimeLog, await loaders(info.context).time_logs_by_task.load(parent.id))

    tags = tags_field(EntityType.task)

    @strawberry.field(description="The member it is assigned to; null when nobody is (or they left the company)")
    async def assignee(self, parent: strawberry.Parent[m.Task], info: strawberry.Info) -> Member | None:
        if parent.assignee_id is None:
            return None
        member = await loaders(info.context).member_by_user.load(parent.assignee_id)
        return out(Member, member) if member else None


@input_type(m.Task.create, description="A new task; it is created in the caller's company, by the caller")
class CreateTaskInput:
    pass


@input_type(m.Task.update, partial=True, description="Omitted fields stay; null clears optional ones")
class UpdateTaskInput:
    pass


@input_type(m.TimeLog.create, description="Time the caller spent on a task")
class TimeLogInput:
    pass


def _task_filter(status: Any, assignee_id: Any, q: Any, limit: int, offset: int) -> m.TaskFilter:
    return parse(m.TaskFilter, {"status": status, "assignee_id": assignee_id, "q": q, "limit": limit, "offset": offset})


# How GraphQL reads these fields in one SQL statement (schema/compiled.py): the rows the fields above read.


@compiled.root("tasks", many=True)
def _task_rows(
    status: Any = None, assignee_id: Any = None, q: Any = None, limit: int = 50, offset: int = 0
) -> Select[Any]:
    query = _task_filter(status, assignee_id, q, limit, offset)
    return compiled.paged(tasks.task_rows(query), query)


@compiled.root("task", many=False)
def _task_row(id: str) -> Select[Any]:
    return tasks.task_row(parse_uuid(id))


@compiled.nested("Task", "timeLogs", many=True)
def _time_logs_of(task: Any) -> Select[Any]:
    return tasks.time_logs_of(task.id)


compiled_tags("Task", EntityType.task)


@compiled.nested("Task", "assignee", many=False)
def _assignee_of(task: Any) -> Select[Any]:
    return members.member_of(task.assignee_id)


@strawberry.type
class TasksQuery:
    @strawberry.field(description="Member: tasks they created or are assigned; admin: all company tasks")
    async def tasks(
        self,
        info: strawberry.Info,
        status: Annotated[m.TaskStatus | None, argument(m.TaskFilter, "status")] = None,
        assignee_id: Annotated[strawberry.ID | None, argument(m.TaskFilter, "assignee_id")] = None,
        q: Annotated[str | None, argument(m.TaskFilter, "q")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[Task]:
        query = _task_filter(status, assignee_id, q, limit, offset)
        page = await tasks.list_tasks(info.context, query=query)
        return outs(Task, page.items)

    @strawberry.field(description="`tasks` as a Relay connection: cursors, pageInfo and totalCount")
    async def tasks_connection(
        self,
        info: strawberry.Info,
        status: Annotated[m.TaskStatus | None, argument(m.TaskFilter, "status")] = None,
        assignee_id: Annotated[strawberry.ID | None, argument(m.TaskFilter, "assignee_id")] = None,
        q: Annotated[str | None, argument(m.TaskFilter, "q")] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[Task]:
        async def fetch(limit: int, offset: int) -> Page[m.Task]:
            return await tasks.list_tasks(info.context, query=_task_filter(status, assignee_id, q, limit, offset))

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="Null when the task does not exist or the caller cannot see it")
    async def task(self, info: strawberry.Info, id: TaskId) -> Task | None:
        try:
            return out(Task, await tasks.get_task(info.context, id=parse_uuid(id)))
        except NotFound:
            return None

    @strawberry.field(description="`timeLogs` as a Relay connection: cursors, pageInfo and totalCount")
    async def time_logs_connection(
        self,
        info: strawberry.Info,
        task_id: TaskId,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[TimeLog]:
        async def fetch(limit: int, offset: int) -> Page[m.TimeLog]:
            query = parse(PageQuery, {"limit": limit, "offset": offset})
            return await tasks.list_time_logs(info.context, task_id=parse_uuid(task_id, "taskId"), query=query)

        return await connection(fetch, first, after, last, before)

    @strawberry.field(description="A task's time logs, newest first")
    async def time_logs(
        self, info: strawberry.Info, task_id: TaskId, limit: Limit = 50, offset: Offset = 0
    ) -> list[TimeLog]:
        query = parse(PageQuery, {"limit": limit, "offset": offset})
        page = await tasks.list_time_logs(info.context, task_id=parse_uuid(task_id, "taskId"), query=query)
        return outs(TimeLog, page.items)


@strawberry.type
class TasksMutation:
    @strawberry.mutation(description="Creates a task in the caller's company; returns it")
    async def create_task(
        self, info: strawberry.Info, input: Annotated[CreateTaskInput, strawberry.argument(description="The task")]
    ) -> Task:
        data = parse(m.Task.create, input_dict(input))
        return out(Task, await tasks.create_task(info.context, data=data))

    @strawberry.mutation(
        description="Changes a task the caller created or is assigned (an admin: any of the company's); returns it"
    )
    async def update_task(
        self,
        info: strawberry.Info,
        id: TaskId,
        input: Annotated[UpdateTaskInput, strawberry.argument(description="The fields to change")],
    ) -> Task:
        data = parse(m.Task.update, input_dict(input))
        return out(Task, await tasks.update_task(info.context, id=parse_uuid(id), data=data))

    @strawberry.mutation(
        description="Deletes a task and its time logs (its creator or an admin may); returns the deleted task's id"
    )
    async def delete_task(self, info: strawberry.Info, id: TaskId) -> strawberry.ID:
        deleted = await tasks.delete_task(info.context, id=parse_uuid(id))
        return strawberry.ID(str(deleted.id))

    @strawberry.mutation(description="Logs time the caller spent on a task they can see; returns the log")
    async def add_time_log(
        self,
        info: strawberry.Info,
        task_id: TaskId,
        input: Annotated[TimeLogInput, strawberry.argument(description="The time spent")],
    ) -> TimeLog:
        data = parse(m.TimeLog.create, input_dict(input))
        log = await tasks.add_time_log(info.context, task_id=parse_uuid(task_id, "taskId"), data=data)
        return out(TimeLog, log)
