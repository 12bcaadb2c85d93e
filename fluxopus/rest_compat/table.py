"""The route table: every documented REST endpoint as data."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from fluxopus.models.common import Deleted, PageQuery
from fluxopus.models.tags import AssignTags, EntityRef, Tag, TagCreate, TagUpdate
from fluxopus.models.tasks import Task, TaskCreate, TaskFilter, TaskUpdate, TimeLog, TimeLogCreate
from fluxopus.resolvers import tags, tasks


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below /api; {name} segments are UUIDs passed to the resolver as `name`
    resolver: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    response: Any  # a model, or list[Model] for paginated lists
    status: int = 200
    body: type[BaseModel] | None = None  # passed as `data`
    query: type[BaseModel] | None = None  # passed as `query`
    paginated: bool = False  # resolver returns Page; REST answers a bare array + X-Total-Count

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def operation_id(self) -> str:
        return self.resolver.__name__


ROUTES: list[Route] = [
    Route(
        "GET",
        "/tasks",
        tasks.list_tasks,
        "List tasks (member: own and assigned; admin: company)",
        "Tasks",
        list[Task],
        query=TaskFilter,
        paginated=True,
    ),
    Route("POST", "/tasks", tasks.create_task, "Create a task", "Tasks", Task, status=201, body=TaskCreate),
    Route("GET", "/tasks/{id}", tasks.get_task, "Get a task", "Tasks", Task),
    Route("PATCH", "/tasks/{id}", tasks.update_task, "Update task fields", "Tasks", Task, body=TaskUpdate),
    Route("DELETE", "/tasks/{id}", tasks.delete_task, "Delete a task", "Tasks", Deleted),
    Route(
        "GET",
        "/tasks/{task_id}/time-logs",
        tasks.list_time_logs,
        "List a task's time logs, newest first",
        "Tasks",
        list[TimeLog],
        query=PageQuery,
        paginated=True,
    ),
    Route(
        "POST",
        "/tasks/{task_id}/time-logs",
        tasks.add_time_log,
        "Add a time log entry",
        "Tasks",
        TimeLog,
        status=201,
        body=TimeLogCreate,
    ),
    Route("GET", "/tags", tags.list_tags, "List company tags", "Tags", list[Tag], query=PageQuery, paginated=True),
    Route("POST", "/tags", tags.create_tag, "Create a tag", "Tags", Tag, status=201, body=TagCreate),
    Route("PATCH", "/tags/{id}", tags.update_tag, "Update a tag", "Tags", Tag, body=TagUpdate),
    Route("DELETE", "/tags/{id}", tags.delete_tag, "Delete a tag and its assignments", "Tags", Deleted),
    Route("POST", "/tags/entity", tags.assign_tags, "Assign tags to an entity", "Tags", list[Tag], body=AssignTags),
    Route("GET", "/tags/entity", tags.entity_tags_of, "Get the tags on an entity", "Tags", list[Tag], query=EntityRef),
]
