"""Tasks and time logs, declared once (see models/entity.py); the list filter."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from fluxopus.models.common import PageQuery, documented
from fluxopus.models.entity import Derived, Entity, Key, Server, Write


@documented(
    todo="Not started yet (the default)",
    in_progress="Someone is working on it",
    done="Finished",
    cancelled="Dropped without being finished",
)
class TaskStatus(StrEnum):
    """Where a task stands."""

    todo = "todo"
    in_progress = "in_progress"
    done = "done"
    cancelled = "cancelled"


@documented(
    low="Can wait",
    medium="The default",
    high="Soon",
    urgent="Before anything else",
)
class TaskPriority(StrEnum):
    """How soon a task should be done."""

    low = "low"
    medium = "medium"
    high = "high"
    urgent = "urgent"


class Task(
    Entity,
    table="tasks",
    create=True,
    update=True,
    create_doc="A new task, created by the caller in their company.",
    update_doc="Any subset of TaskCreate; `null` clears optional fields.",
):
    """A piece of work in a company. A member sees the tasks they created or are assigned; an admin sees
    all of the company's."""

    id: Annotated[UUID, Key("The task's id (a UUID)")]
    company_id: Annotated[UUID, Server("The company it belongs to: the caller's")]
    title: Annotated[str, Write(min_length=1, max_length=500, doc="A short summary, 1–500 characters")]
    description: Annotated[
        str | None, Write(max_length=20_000, doc="Free text, up to 20,000 characters; null when there is none")
    ]
    status: Annotated[TaskStatus, Write(default=TaskStatus.todo, doc="Where it stands; new tasks start as todo")]
    priority: Annotated[TaskPriority, Write(default=TaskPriority.medium, doc="How soon it should be done")]
    due_date: Annotated[dt.date | None, Write(doc="The day it is due (no time of day); null when it has none")]
    assignee_id: Annotated[
        UUID | None,
        Write(
            doc="The user it is assigned to; null when nobody is",
            input_doc="The user to assign it to, a member of the caller's company; null for nobody",
        ),
    ]
    created_by: Annotated[UUID, Server("The user who created it")]
    created_at: Annotated[dt.datetime, Server("When it was created")]
    updated_at: Annotated[dt.datetime, Server("When it last changed")]
    total_minutes: Annotated[int, Derived("Sum of the task's time logs, in minutes (0 when it has none)")]


class TimeLog(
    Entity,
    table="time_logs",
    create=True,
    hidden={"company_id": UUID},
    create_doc="Time the caller spent on a task.",
):
    """Time a user spent on a task, on one day."""

    id: Annotated[UUID, Key("The time log's id (a UUID)")]
    task_id: Annotated[UUID, Server("The task the time was spent on")]
    user_id: Annotated[UUID, Server("Who spent it: the user who logged it")]
    minutes: Annotated[int, Write(ge=1, le=1440, doc="How long, in minutes (1–1440, one day at most)")]
    note: Annotated[str | None, Write(max_length=2000, doc="What was done, up to 2,000 characters; null when none")]
    spent_on: Annotated[
        dt.date, Write(default=None, doc="The day the time was spent", input_doc="Defaults to today (UTC)")
    ]
    billable: Annotated[bool, Write(default=False, doc="Whether the time is billed to a client (default false)")]
    created_at: Annotated[dt.datetime, Server("When it was logged")]


class TaskFilter(PageQuery):
    status: TaskStatus | None = Field(default=None, description="Only tasks with this status")
    assignee_id: UUID | None = Field(default=None, description="Only tasks assigned to this user")
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in title and description"
    )
