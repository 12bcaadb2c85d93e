"""Skills, their versions and runs: inputs, outputs and the mapped tables."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, Field, StringConstraints
from sqlalchemy import Column as SAColumn
from sqlalchemy import FetchedValue
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from fluxopus.ai.prompts import check_input_schema
from fluxopus.models.common import Input, Output, PageQuery, omittable


class Visibility(StrEnum):
    private = "private"
    company = "company"


class Provider(StrEnum):
    openai = "openai"
    anthropic = "anthropic"
    echo = "echo"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Instructions = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100_000),
    # Parsed when a skill is saved (resolvers/skills.py), in the template sandbox: parsing is work too.
    Field(description="A Jinja2 template rendered with the run's input, e.g. `Summarise {{ input.topic }}`"),
]
InputSchema = Annotated[
    dict[str, Any],
    AfterValidator(check_input_schema),
    Field(description="A JSON Schema object every run's `input` must match"),
]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Temperature = Annotated[float, Field(ge=0, le=2)]
MaxTokens = Annotated[int, Field(ge=1, le=32000)]


class SkillRow(SQLModel, table=True):
    __tablename__ = "skills"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    company_id: UUID | None = None
    owner_id: UUID | None = None
    name: str
    description: str | None = None
    instructions: str
    input_schema: dict[str, Any] | None = Column(default=None, sa_column=SAColumn(JSONB(none_as_null=True)))
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    visibility: str | None = None
    version: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class SkillVersionRow(SQLModel, table=True):
    __tablename__ = "skill_versions"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    skill_id: UUID
    company_id: UUID
    version: int
    name: str
    description: str | None = None
    instructions: str
    input_schema: dict[str, Any] | None = Column(default=None, sa_column=SAColumn(JSONB(none_as_null=True)))
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int
    created_by: UUID
    created_at: dt.datetime | None = None


class SkillRunRow(SQLModel, table=True):
    __tablename__ = "skill_runs"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    skill_id: UUID
    company_id: UUID | None = None
    user_id: UUID | None = None
    version: int
    status: str | None = None
    input: dict[str, Any] | None = Column(default=None, sa_column=SAColumn(JSONB(none_as_null=True)))
    output: str | None = None
    provider: str
    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    reserved_tokens: int | None = None
    budget_period: dt.date | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class TokenUsageRow(SQLModel, table=True):
    __tablename__ = "token_usage"

    company_id: UUID = Column(primary_key=True)
    period_start: dt.date = Column(primary_key=True)
    used: int = 0
    reserved: int = 0


class SkillCreate(Input):
    name: Name
    description: Description | None = None
    instructions: Instructions
    input_schema: InputSchema | None = None
    provider: Provider | None = Field(default=None, description="Default: the server's configured provider")
    model: ModelName | None = Field(default=None, description="Default: the provider's configured model")
    temperature: Temperature | None = None
    max_tokens: MaxTokens = 1024
    visibility: Visibility = Visibility.private


class SkillUpdate(Input):
    """Any subset of SkillCreate; a change of content records a new version."""

    name: Name = omittable()
    description: Description | None = None
    instructions: Instructions = omittable()
    input_schema: InputSchema | None = None
    provider: Provider | None = None
    model: ModelName | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens = omittable()
    visibility: Visibility = omittable()


class SkillContent(Output):
    """What a version captures: everything that shapes a run."""

    name: str
    description: str | None
    instructions: str
    input_schema: dict[str, Any] | None
    provider: Provider | None
    model: str | None
    temperature: float | None
    max_tokens: int


class Skill(SkillContent):
    id: UUID
    company_id: UUID
    owner_id: UUID
    visibility: Visibility
    version: int = Field(description="The current version; runs use it unless they ask for another")
    created_at: dt.datetime
    updated_at: dt.datetime


class SkillVersion(SkillContent):
    id: UUID
    skill_id: UUID
    version: int
    created_by: UUID
    created_at: dt.datetime


class SkillFilter(PageQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in name and description"
    )


class RunInput(Input):
    input: dict[str, Any] = Field(default_factory=dict, description="Validated against the skill's input_schema")
    version: int | None = Field(default=None, ge=1, le=2_147_483_647, description="Run an older version")


class SkillRun(Output):
    id: UUID
    skill_id: UUID
    user_id: UUID
    version: int
    status: RunStatus
    input: dict[str, Any]
    output: str | None
    provider: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RunUsage(Output):
    input_tokens: int
    output_tokens: int


class RunEvent(Output):
    """One event of a run's stream; which fields are set depends on `type`."""

    type: str = Field(description="run.started | delta | run.completed | run.failed")
    run_id: UUID
    skill_id: UUID | None = None
    version: int | None = None
    model: str | None = None
    text: str | None = None
    output: str | None = None
    usage: RunUsage | None = None
    error: str | None = None


class TokenBudget(Output):
    period_start: dt.date
    used: int
    reserved: int
    limit: int
