"""Tasks and time logs, declared once (see models/entity.py); the list filter."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from fluxopus.models.common import PageQuery
from fluxopus.models.entity import Derived, Entity, Key, Server, Write


class TaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"
    cancelled = "cancelled"


class TaskPriority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    urgent = "urgent"


class Task(
    Entity,
    table="tasks",
    create=True,
    update=True,
    update_doc="Any subset of TaskCreate; `null` clears optional fields.",
):
    id: Annotated[UUID, Key()]
    company_id: Annotated[UUID, Server()]
    title: Annotated[str, Write(min_length=1, max_length=500)]
    description: Annotated[str | None, Write(max_length=20_000)]
    status: Annotated[TaskStatus, Write(default=TaskStatus.todo)]
    priority: Annotated[TaskPriority, Write(default=TaskPriority.medium)]
    due_date: Annotated[dt.date | None, Write()]
    assignee_id: Annotated[UUID | None, Write(input_doc="A member of the caller's company")]
    created_by: Annotated[UUID, Server()]
    created_at: Annotated[dt.datetime, Server()]
    updated_at: Annotated[dt.datetime, Server()]
    total_minutes: Annotated[int, Derived("Sum of the task's time logs")]


class TimeLog(Entity, table="time_logs", create=True, hidden={"company_id": UUID}):
    id: Annotated[UUID, Key()]
    task_id: Annotated[UUID, Server()]
    user_id: Annotated[UUID, Server()]
    minutes: Annotated[int, Write(ge=1, le=1440)]
    note: Annotated[str | None, Write(max_length=2000)]
    spent_on: Annotated[dt.date, Write(default=None, input_doc="Defaults to today (UTC)")]
    billable: Annotated[bool, Write(default=False)]
    created_at: Annotated[dt.datetime, Server()]


class TaskFilter(PageQuery):
    status: TaskStatus | None = None
    assignee_id: UUID | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in title and description"
    )
