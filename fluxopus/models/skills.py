"""Skills, their versions and runs, declared once (see models/entity.py); run inputs and events."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import jsonschema
from pydantic import Field, StringConstraints

from fluxopus.models.common import Input, Output, PageQuery
from fluxopus.models.entity import BigInt, Entity, Key, Server, Write


class Visibility(StrEnum):
    private = "private"
    company = "company"


class Provider(StrEnum):
    openai = "openai"
    anthropic = "anthropic"
    echo = "echo"


def check_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    return schema


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class SkillContent(Entity):
    """What a version captures: everything that shapes a run."""

    name: Annotated[str, Write(min_length=1, max_length=200)]
    description: Annotated[str | None, Write(max_length=5000)]
    instructions: Annotated[
        str,
        Write(
            min_length=1,
            max_length=100_000,
            doc="Jinja2 template, rendered with `input`",
            # Parsed when a skill is saved (resolvers/skills.py), in the template sandbox: parsing is work too.
            input_doc="A Jinja2 template rendered with the run's input, e.g. `Summarise {{ input.topic }}`",
        ),
    ]
    input_schema: Annotated[
        dict[str, Any] | None,
        Write(check=check_input_schema, input_doc="A JSON Schema object every run's `input` must match"),
    ]
    provider: Annotated[Provider | None, Write(input_doc="Default: the server's configured provider")]
    model: Annotated[
        str | None, Write(min_length=1, max_length=200, input_doc="Default: the provider's configured model")
    ]
    temperature: Annotated[float | None, Write(ge=0, le=2)]
    max_tokens: Annotated[int, Write(default=1024, ge=1, le=32000)]


class Skill(
    SkillContent,
    table="skills",
    create=True,
    update=True,
    update_doc="Any subset of SkillCreate; a change of content records a new version.",
):
    id: Annotated[UUID, Key()]
    company_id: Annotated[UUID, Server()]
    owner_id: Annotated[UUID, Server()]
    visibility: Annotated[Visibility, Write(default=Visibility.private)]
    version: Annotated[int, Server("The current version; runs use it unless they ask for another")]
    created_at: Annotated[dt.datetime, Server()]
    updated_at: Annotated[dt.datetime, Server()]


class SkillVersion(SkillContent, table="skill_versions", hidden={"company_id": UUID}):
    id: Annotated[UUID, Key()]
    skill_id: Annotated[UUID, Server()]
    version: Annotated[int, Server()]
    created_by: Annotated[UUID, Server()]
    created_at: Annotated[dt.datetime, Server()]


class SkillFilter(PageQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in name and description"
    )


class RunInput(Input):
    input: dict[str, Any] = Field(default_factory=dict, description="Validated against the skill's input_schema")
    version: int | None = Field(default=None, ge=1, le=2_147_483_647, description="Run an older version")


class SkillRun(
    Entity,
    table="skill_runs",
    hidden={"company_id": UUID, "reserved_tokens": BigInt, "budget_period": dt.date | None},
):
    id: Annotated[UUID, Key()]
    skill_id: Annotated[UUID, Server()]
    user_id: Annotated[UUID, Server()]
    version: Annotated[int, Server()]
    status: Annotated[RunStatus, Server()]
    input: Annotated[dict[str, Any], Server()]
    output: Annotated[str | None, Server()]
    provider: Annotated[str, Server()]
    model: Annotated[str, Server()]
    input_tokens: Annotated[int | None, Server()]
    output_tokens: Annotated[int | None, Server()]
    error: Annotated[str | None, Server()]
    created_at: Annotated[dt.datetime, Server()]
    started_at: Annotated[dt.datetime | None, Server()]
    finished_at: Annotated[dt.datetime | None, Server()]


class RunUsage(Output):
    input_tokens: int
    output_tokens: int


class RunEventType(StrEnum):
    """A run's events, in order: started, deltas (many), then completed or failed."""

    started = "run.started"
    delta = "delta"
    completed = "run.completed"
    failed = "run.failed"


class RunEvent(Output):
    """One event of a run's stream; which fields are set depends on `type`."""

    type: str = Field(description=" | ".join(RunEventType))
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
    reserved: int = Field(description="Held by runs in progress")
    limit: int
