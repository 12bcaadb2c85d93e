"""Tasks and time logs: inputs, outputs and the mapped tables."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints
from sqlalchemy import FetchedValue
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from fluxopus.models.common import Input, Output, PageQuery, omittable


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


Title = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Description = Annotated[str, StringConstraints(max_length=20000)]
Note = Annotated[str, StringConstraints(max_length=2000)]


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    company_id: UUID | None = None
    title: str
    description: str | None = None
    status: str | None = None
    priority: str | None = None
    due_date: dt.date | None = None
    assignee_id: UUID | None = None
    created_by: UUID | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class TimeLogRow(SQLModel, table=True):
    __tablename__ = "time_logs"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    task_id: UUID
    company_id: UUID | None = None
    user_id: UUID | None = None
    minutes: int
    note: str | None = None
    spent_on: dt.date | None = None
    billable: bool | None = None
    created_at: dt.datetime | None = None


class TaskCreate(Input):
    title: Title
    description: Description | None = None
    status: TaskStatus = TaskStatus.todo
    priority: TaskPriority = TaskPriority.medium
    due_date: dt.date | None = None
    assignee_id: UUID | None = Field(default=None, description="A member of the caller's company")


class TaskUpdate(Input):
    """Any subset of TaskCreate; `null` clears optional fields."""

    title: Title = omittable()
    description: Description | None = None
    status: TaskStatus = omittable()
    priority: TaskPriority = omittable()
    due_date: dt.date | None = None
    assignee_id: UUID | None = None


class Task(Output):
    id: UUID
    company_id: UUID
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    due_date: dt.date | None
    assignee_id: UUID | None
    created_by: UUID
    created_at: dt.datetime
    updated_at: dt.datetime
    total_minutes: int = Field(description="Sum of the task's time logs")


class TaskFilter(PageQuery):
    status: TaskStatus | None = None
    assignee_id: UUID | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in title and description"
    )


class TimeLogCreate(Input):
    minutes: int = Field(ge=1, le=1440)
    note: Note | None = None
    spent_on: dt.date | None = Field(default=None, description="Defaults to today (UTC)")
    billable: bool = False


class TimeLog(Output):
    id: UUID
    task_id: UUID
    user_id: UUID
    minutes: int
    note: str | None
    spent_on: dt.date
    billable: bool
    created_at: dt.datetime
