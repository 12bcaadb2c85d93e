"""Skills, their versions and runs, declared once (see models/entity.py); run inputs and events."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.dialects.postgresql import JSONB

from fluxopus.models.common import Input, Output, PageQuery, Visibility, documented
from fluxopus.models.entity import BigInt, Entity, Key, Server, Stored, Write
from fluxopus.models.knowledge import SearchMode
from fluxopus.models.tools import check_tools

MAX_KNOWLEDGE_TAGS = 20


@documented(
    openai="OpenAI's chat completions API (or a compatible server at the configured base URL)",
    anthropic="Anthropic's messages API",
    echo="No model: streams the rendered instructions back (offline development and tests)",
)
class Provider(StrEnum):
    """Which model service runs a skill."""

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


@documented(
    queued="Recorded, not started yet",
    running="The model is answering",
    succeeded="Finished: `output` and the token counts are set",
    failed="Finished without an answer: `error` says why",
    cancelled="Stopped before it finished (the client went away or unsubscribed)",
)
class RunStatus(StrEnum):
    """Where a skill run stands."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# The nested models below are stored as jsonb and listed by REST straight from their rows (models.common.Rows),
# so their fields are declared in the order jsonb keeps object keys (shorter keys first, then bytewise):
# the bytes a list writes are then those the models would. tests/test_skill_grounding.py checks the order.


class SkillKnowledge(BaseModel):
    """How a skill's runs are grounded in the company's knowledge: before the model is called, a search
    runs as the caller (it finds only what they may read) and its hits reach the instructions as
    `knowledge`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, from_attributes=True)

    mode: SearchMode = Field(default=SearchMode.hybrid, description="How the search ranks items (default hybrid)")
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        default=None,
        max_length=MAX_KNOWLEDGE_TAGS,
        description="Only items carrying at least one of these tags (tag ids; names are accepted when saving and"
        " stored as ids); null or empty: every item the caller may read",
    )
    query: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] | None = Field(
        default=None,
        description="What to search for: a Jinja2 template rendered with `input` (cut to 1,000 characters), e.g."
        " `{{ input.question }}`; null: the input's values as text",
    )
    top_k: int = Field(default=5, ge=1, le=20, description="How many items at most reach the prompt (1–20, default 5)")
    enabled: bool = Field(default=True, description="Whether runs search at all (false keeps the settings, unused)")


class CitedChunk(BaseModel):
    """A passage of a cited item: one of the chunks it was embedded in."""

    model_config = ConfigDict(from_attributes=True)

    position: int = Field(description="The chunk's place in the item, 0 for the first")


class Citation(BaseModel):
    """A knowledge item a run was given, as the search found it when the run started."""

    model_config = ConfigDict(from_attributes=True)

    score: float = Field(description="The search's score: higher is better, comparable only within one run")
    title: str = Field(description="The item's title when the run started")
    chunks: list[CitedChunk] = Field(description="The passages that matched, best first")
    item_id: UUID = Field(description="The item's id")


class SkillContent(Entity):
    """What a version captures: everything that shapes a run."""

    name: Annotated[str, Write(min_length=1, max_length=200, doc="Its name, 1–200 characters")]
    description: Annotated[
        str | None, Write(max_length=5000, doc="What it does, for people, up to 5,000 characters; null when none")
    ]
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
        Write(
            check=check_input_schema,
            doc="The JSON Schema every run's `input` must match; null accepts any object",
            input_doc="A JSON Schema object every run's `input` must match",
        ),
    ]
    provider: Annotated[
        Provider | None,
        Write(
            doc="The model service its runs use; null: the server's configured provider",
            input_doc="Default: the server's configured provider",
        ),
    ]
    model: Annotated[
        str | None,
        Write(
            min_length=1,
            max_length=200,
            doc="The provider's model name, e.g. gpt-4o-mini; null: the provider's configured model",
            input_doc="Default: the provider's configured model",
        ),
    ]
    temperature: Annotated[
        float | None, Write(ge=0, le=2, doc="Sampling temperature, 0–2; null: the provider's default")
    ]
    max_tokens: Annotated[
        int, Write(default=1024, ge=1, le=32000, doc="The most tokens a run's answer may have (1–32000, default 1024)")
    ]
    knowledge: Annotated[
        SkillKnowledge | None,
        Write(
            doc="How runs are grounded in the company's knowledge; null: they are not",
            input_doc="Ground runs in the company's knowledge: a search as the caller, its hits given to the"
            " instructions as `knowledge`; null: no grounding",
        ),
    ]
    tools: Annotated[
        list[dict[str, Any]],
        Stored(JSONB()),
        Write(
            default_factory=list,
            check=check_tools,
            doc="Tools the model may call (openai and anthropic providers): built-in ones as {name} —"
            " github.list_issues, github.create_issue, slack.post_message, notion.search — acting with the"
            " caller's connection; HTTP tools as {name, description, parameters (a JSON Schema object), url,"
            " method} on a host the server allows",
            input_doc='Up to 20 tools: {"name": "github.list_issues"} for a built-in one; {name, description,'
            " parameters, url, method (default POST)} for an HTTP tool, whose host must be on the server's"
            " FLUXOPUS_TOOL_HOSTS. Default none",
        ),
    ]


class Skill(
    SkillContent,
    table="skills",
    create=True,
    update=True,
    create_doc="A new skill, owned by the caller; it starts at version 1.",
    update_doc="Any subset of SkillCreate; a change of content records a new version.",
):
    """A reusable prompt: instructions (a template) run by a model with an input. Its owner sees and
    changes it; a company-visible skill is seen and run by the whole company."""

    id: Annotated[UUID, Key("The skill's id (a UUID)")]
    company_id: Annotated[UUID, Server("The company it belongs to: the caller's")]
    owner_id: Annotated[UUID, Server("The user who created it; they (or an admin) may change or delete it")]
    visibility: Annotated[
        Visibility, Write(default=Visibility.private, doc="Who sees and runs it besides its owner (default private)")
    ]
    version: Annotated[int, Server("The current version; runs use it unless they ask for another")]
    created_at: Annotated[dt.datetime, Server("When it was created")]
    updated_at: Annotated[dt.datetime, Server("When it last changed")]


class SkillVersion(SkillContent, table="skill_versions", hidden={"company_id": UUID}):
    """A skill's content as it was at one version: a change of content records the next one."""

    id: Annotated[UUID, Key("The version's own id (a UUID)")]
    skill_id: Annotated[UUID, Server("The skill it is a version of")]
    version: Annotated[int, Server("Its number: 1 for the first, counting up")]
    created_by: Annotated[UUID, Server("The user whose change recorded it")]
    created_at: Annotated[dt.datetime, Server("When it was recorded")]


class SkillFilter(PageQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in name and description"
    )


class RunInput(Input):
    """What to run a skill with."""

    input: dict[str, Any] = Field(
        default_factory=dict,
        description="The run's input, a JSON object: the instructions' template sees it as `input`; validated"
        " against the skill's input_schema",
    )
    version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Run an older version; null: the current one"
    )


@documented(
    succeeded="The tool answered; the model read its answer",
    failed="The tool was called and failed, or could not be (no connection): the model read why",
    refused="Never called: invalid arguments, a host off the allow-list, an unknown tool or the step limit",
    cancelled="Interrupted: the run was cancelled while the tool was working",
)
class ToolCallStatus(StrEnum):
    """How a tool call ended."""

    succeeded = "succeeded"
    failed = "failed"
    refused = "refused"
    cancelled = "cancelled"


class ToolCallRecord(Output):
    """One tool call of a run, as recorded: never a token, nor the tool's answer."""

    call_id: str = Field(description="The call's id, as the model named it (tool.call and tool.result events carry it)")
    tool: str = Field(description="The tool, as the skill declares it, e.g. github.list_issues")
    arguments: dict[str, Any] = Field(description="The arguments the model gave (a JSON object; {} if unreadable)")
    status: ToolCallStatus = Field(description="How it ended")
    error: str | None = Field(default=None, description="Why it did not succeed; null when it did")
    duration_ms: int = Field(description="How long it took, in milliseconds")


class SkillRun(
    Entity,
    table="skill_runs",
    hidden={"company_id": UUID, "reserved_tokens": BigInt, "budget_period": dt.date | None},
):
    """One run of a skill: its input, the model's answer and what it cost. A member sees their own runs;
    an admin sees the company's."""

    id: Annotated[UUID, Key("The run's id (a UUID)")]
    skill_id: Annotated[UUID, Server("The skill that ran")]
    user_id: Annotated[UUID, Server("Who ran it")]
    version: Annotated[int, Server("The skill version that ran")]
    status: Annotated[RunStatus, Server("Where it stands")]
    input: Annotated[dict[str, Any], Server("The input it ran with (a JSON object)")]
    output: Annotated[str | None, Server("The model's answer; null until it succeeds")]
    provider: Annotated[str, Server("The model service that ran it, e.g. openai")]
    model: Annotated[str, Server("The model that ran it")]
    input_tokens: Annotated[int | None, Server("Tokens the prompt took; null until it finishes")]
    output_tokens: Annotated[int | None, Server("Tokens the answer took; null until it finishes")]
    error: Annotated[str | None, Server("Why it failed; null unless status is failed")]
    citations: Annotated[
        list[Citation],
        Server("The knowledge items its prompt was given (skills with knowledge grounding), best first; else empty"),
    ]
    created_at: Annotated[dt.datetime, Server("When it was asked for")]
    started_at: Annotated[dt.datetime | None, Server("When the model started answering; null while queued")]
    finished_at: Annotated[dt.datetime | None, Server("When it ended; null while it runs")]
    tool_calls: Annotated[
        list[ToolCallRecord], Stored(JSONB()), Server("The tools the model called, in order (empty when none)")
    ]


class RunUsage(Output):
    """The tokens a run took, counted by the provider (they count against the company's budget)."""

    input_tokens: int = Field(description="Tokens of the prompt (the rendered instructions and input)")
    output_tokens: int = Field(description="Tokens of the answer")


class RunEventType(StrEnum):
    """A run's events, in order: started, deltas (many) and tool calls with their results, then completed or
    failed."""

    started = "run.started"
    delta = "delta"
    tool_call = "tool.call"
    tool_result = "tool.result"
    completed = "run.completed"
    failed = "run.failed"


class RunEvent(Output):
    """One event of a run's stream; which fields are set depends on `type`."""

    type: str = Field(description=" | ".join(RunEventType))
    run_id: UUID = Field(description="The run's id (every event)")
    skill_id: UUID | None = Field(default=None, description="run.started: the skill that runs")
    version: int | None = Field(default=None, description="run.started: the skill version that runs")
    model: str | None = Field(default=None, description="run.started: the model that answers")
    text: str | None = Field(default=None, description="delta: the next piece of the answer")
    call_id: str | None = Field(default=None, description="tool.call, tool.result: the call's id")
    tool: str | None = Field(default=None, description="tool.call, tool.result: the tool, as the skill declares it")
    arguments: dict[str, Any] | None = Field(default=None, description="tool.call: the arguments the model gave")
    status: ToolCallStatus | None = Field(default=None, description="tool.result: how the call ended")
    result: str | None = Field(
        default=None, description="tool.result: what the model reads: the tool's answer (JSON, cut) or why none"
    )
    duration_ms: int | None = Field(default=None, description="tool.result: how long the call took (ms)")
    output: str | None = Field(default=None, description="run.completed: the whole answer")
    usage: RunUsage | None = Field(default=None, description="run.completed: the tokens it took")
    error: str | None = Field(default=None, description="run.failed: why it failed")
    citations: list[Citation] | None = Field(
        default=None, description="run.completed: the knowledge items its prompt was given, best first"
    )


# The same events typed one model per kind, as GraphQL shows them (an interface and its six types): each
# has exactly the fields its kind sets, none of them null. REST's stream keeps RunEvent, its SSE `event:`
# being the type.


class RunEventBase(Output):
    """What every event of a run's stream has."""

    type: str = Field(description="Which event: " + " | ".join(RunEventType) + " (as REST's SSE `event:` names it)")
    run_id: UUID = Field(description="The run's id")


class RunStarted(RunEventBase):
    """The first event: the run is recorded and the model is asked."""

    skill_id: UUID = Field(description="The skill that runs")
    version: int = Field(description="The skill version that runs")
    model: str = Field(description="The model that answers")


class RunDelta(RunEventBase):
    """The next piece of the answer, as the model streams it (many per run)."""

    text: str = Field(description="The text to append to what came before")


class RunToolCall(RunEventBase):
    """The model calls a tool; its tool.result follows (the arguments are checked first)."""

    call_id: str = Field(description="The call's id: its RunToolResult carries it too")
    tool: str = Field(description="The tool, as the skill declares it, e.g. github.list_issues")
    arguments: dict[str, Any] = Field(description="The arguments the model gave (a JSON object; {} if unreadable)")


class RunToolResult(RunEventBase):
    """What a tool call gave the model: the tool's answer, or why there is none."""

    call_id: str = Field(description="The call's id, as in its RunToolCall")
    tool: str = Field(description="The tool, as the skill declares it")
    status: ToolCallStatus = Field(description="How the call ended")
    result: str = Field(
        description="What the model reads: the tool's answer (JSON, cut to 4,000 characters) or why none"
    )
    duration_ms: int = Field(description="How long the call took, in milliseconds")


class RunCompleted(RunEventBase):
    """The last event of a run that succeeded."""

    output: str = Field(description="The whole answer (the deltas joined)")
    usage: RunUsage = Field(description="The tokens it took")
    citations: list[Citation] = Field(
        description="The knowledge items its prompt was given (skills with knowledge grounding), best first"
    )


class RunFailed(RunEventBase):
    """The last event of a run that failed (the model's service failed, timed out, or the template could not
    render)."""

    error: str = Field(description="Why it failed")


TYPED_EVENTS: dict[RunEventType, type[RunEventBase]] = {
    RunEventType.started: RunStarted,
    RunEventType.delta: RunDelta,
    RunEventType.tool_call: RunToolCall,
    RunEventType.tool_result: RunToolResult,
    RunEventType.completed: RunCompleted,
    RunEventType.failed: RunFailed,
}


def typed_event(event: RunEvent) -> RunEventBase:
    """`event` as the model of its kind (a missing field of its kind fails here, not in a client)."""
    return TYPED_EVENTS[RunEventType(event.type)].model_validate(event, from_attributes=True)


class TokenBudget(Output):
    """The company's token budget for the current month (input + output tokens)."""

    period_start: dt.date = Field(description="The first day of the month counted (UTC)")
    used: int = Field(description="Tokens finished runs took this month")
    reserved: int = Field(description="Held by runs in progress")
    limit: int = Field(description="The most tokens the company may use this month; runs past it are refused")


class ToolSettings(Output):
    """Whether the company's skill runs may call tools, and which built-in tools this server has."""

    enabled: bool = Field(description="Runs offer the model their skill's tools; false: no run calls any tool")
    built_in: list[str] = Field(description="The built-in tools' names, e.g. github.list_issues")


class ToolSettingsInput(Input):
    """Admins only: turn the company's tools on or off."""

    enabled: bool = Field(description="true lets runs call their skill's tools; false stops every tool call")
