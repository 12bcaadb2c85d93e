"""Running a skill: render, reserve tokens, stream the model's answer, record the run.

No transaction stays open while the model streams: `run_skill` checks the skill and records the
run (its reservation an autocommitted statement of its own, see budget.start_run) and returns a
StartedRun; the transport edge then commits — its named early step — before it consumes the run,
and the outcome is written by another short, autocommitted statement. A stream that is abandoned (the
client went away) is cancelled here, and its run is still closed — as `cancelled`, charged
with the tokens used so far — by a task the cancellation cannot interrupt.

Tools: a skill's tools (unless its company turned them off) are offered to the model; each call it
makes is checked, made for the caller (resolvers/tools.py), streamed as tool.call and tool.result,
recorded on the run (by a statement of its own, like the settlement; a call interrupted by a
cancellation too) and fed back, for at most `tool_max_steps` rounds — one last round then asks
for text only — and within the tokens reserved: a run with tools reserves a round's worth for
each, and stops when what it spent and the next round could take would pass that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Coroutine, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError

from fluxopus.ai.prompts import PromptError, input_text, validate_input
from fluxopus.ai.providers import (
    ChatProvider,
    Delta,
    ProviderError,
    Step,
    ToolCall,
    ToolResult,
    ToolSpec,
    estimate_tokens,
    max_prompt_tokens,
)
from fluxopus.ai.sandbox import TemplateLimit
from fluxopus.ai.tools import ToolError, offered, result_text
from fluxopus.errors import Invalid, NotFound, Unavailable
from fluxopus.models.common import Page, PageQuery
from fluxopus.models.skills import (
    Citation,
    CitedChunk,
    RunEvent,
    RunEventType,
    RunInput,
    RunStatus,
    RunUsage,
    SkillKnowledge,
    SkillRun,
    SkillVersion,
    ToolCallRecord,
    ToolCallStatus,
)
from fluxopus.models.tools import wire_name
from fluxopus.resolvers import budget, knowledge
from fluxopus.resolvers._sql import fetch_one, fetch_page
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.skills import get_skill, get_skill_version, skill_versions, skills
from fluxopus.resolvers.tools import call_tool, tools_enabled

log = logging.getLogger(__name__)

skill_runs = SkillRun.table

# Settlement tasks outlive the cancelled stream that started them; hold them until done.
_settling: set[asyncio.Task[None]] = set()
_SETTLE_ATTEMPTS = 6  # about half a minute of retries


@dataclass(frozen=True)
class _Run:
    id: UUID
    skill_id: UUID
    version: int
    provider: ChatProvider
    model: str
    prompt: str
    temperature: float | None
    max_tokens: int
    refused: str | None = None  # the template went over the sandbox's bounds: the run fails at once
    citations: tuple[Citation, ...] = ()  # the knowledge its prompt was given (a grounded skill)
    tools: tuple[dict[str, Any], ...] = ()  # the skill's tools, offered to the model (none when turned off)
    reserved: int = 0

    def tool(self, name: str) -> dict[str, Any] | None:
        """The declared tool the model calls `name` (models/tools.wire_name)."""
        return next((t for t in self.tools if wire_name(t["name"]) == name), None)


@dataclass(frozen=True)
class StartedRun:
    """A run recorded and its tokens reserved, the model not called yet. Nothing that follows needs
    the caller's transaction: the edge commits it before consuming the run with `events()` (a stream)
    or `finished()` (waited for)."""

    ctx: Context
    run: _Run

    def events(self) -> AsyncGenerator[RunEvent, None]:
        return _events(self.ctx, self.run)

    async def finished(self) -> SkillRun:
        """The finished SkillRun; Invalid when its template went over the bounds (the failed run is
        recorded all the same)."""
        async with aclosing(self.events()) as events:
            async for _ in events:
                pass
        if self.run.refused is not None:
            raise Invalid(self.run.refused)
        return await get_skill_run(self.ctx, id=self.run.id)


async def run_skill(ctx: Context, *, id: UUID, data: RunInput) -> StartedRun:
    """Checks everything and records the run before returning, so errors come before any event."""
    return StartedRun(ctx, await _start(ctx, id, data))


def run_row(id: Any) -> Select[Any]:
    return select(*skill_runs.c).where(skill_runs.c.id == id)


def runs_of(skill_id: Any) -> Select[Any]:
    """A skill's runs the caller sees (their own; an admin everyone's), newest first, unpaged."""
    newest_first = (skill_runs.c.created_at.desc(), skill_runs.c.id)
    return select(*skill_runs.c).where(skill_runs.c.skill_id == skill_id).order_by(*newest_first)


async def get_skill_run(ctx: Context, *, id: UUID) -> SkillRun:
    row = await fetch_one(ctx, run_row, id=id)
    if row is None:
        raise NotFound("Run not found")
    return SkillRun.model_validate(row)


async def list_skill_runs(ctx: Context, *, id: UUID, query: PageQuery) -> Page[SkillRun]:
    """A skill's runs, newest first: the caller's own, or everyone's for an admin."""
    await get_skill(ctx, id=id)
    return await fetch_page(ctx, runs_of, SkillRun, limit=query.limit, offset=query.offset, skill_id=id)


async def _start(ctx: Context, id: UUID, data: RunInput) -> _Run:
    # The skill (as RLS shows it) and the version to run, in one round trip.
    wanted = skill_versions.c.version == func.coalesce(data.version, skills.c.version)
    stmt = select(*skill_versions.c).join(skills, (skills.c.id == skill_versions.c.skill_id) & wanted)
    row = (await ctx.db.execute(stmt.where(skills.c.id == id))).mappings().first()
    if row is None:  # these say why: no such skill (404), or no such version (400)
        skill = await get_skill(ctx, id=id)
        version = await get_skill_version(ctx, id=id, version=data.version or skill.version)
    else:
        version = SkillVersion.model_validate(row)
    refused: str | None = None
    hits: list[knowledge.Retrieved] | None = None  # None: the skill is not grounded
    try:
        validate_input(version.input_schema, data.input)
        provider, model = ctx.ai.resolve(version.provider, version.model)
        if version.knowledge is not None and version.knowledge.enabled:
            hits = await _retrieve(ctx, version.knowledge, data.input)
        shown = None if hits is None else [_shown(hit) for hit in hits]
        prompt = await ctx.ai.templates.render(version.instructions, data.input, knowledge=shown)
    except TemplateLimit as exc:  # it ran, and could not finish: recorded as a failed run, nothing reserved
        prompt, refused = "", str(exc)
    except (PromptError, LookupError) as exc:
        raise Invalid(str(exc)) from None
    tools = tuple(version.tools) if version.tools and not refused and await tools_enabled(ctx) else ()
    reserved = 0 if refused else max_prompt_tokens(prompt) + version.max_tokens
    if tools and provider.name != "echo":  # a round's worth for each round of tool calls, and the last
        reserved *= ctx.ai.tool_max_steps + 1
    run_id = await budget.start_run(
        ctx,
        skill_id=id,
        version=version.version,
        input=data.input,
        provider=provider.name,
        model=model,
        tokens=reserved,
    )
    citations = tuple(_citation(hit) for hit in hits or ()) if not refused else ()
    if citations:
        recorded = [c.model_dump(mode="json") for c in citations]
        await ctx.db.call_alone(func.fluxopus.cite_run, run_id, type_coerce(recorded, JSONB))
    settings = (version.temperature, version.max_tokens)
    return _Run(run_id, id, version.version, provider, model, prompt, *settings, refused, citations, tools, reserved)


async def _retrieve(ctx: Context, settings: SkillKnowledge, input: dict[str, Any]) -> list[knowledge.Retrieved]:
    """The grounding search, as the caller (their RLS transaction: only items they may read). Its
    embedding is charged to the budget like a search's; an empty query searches nothing."""
    if settings.query is None:
        q = input_text(input)
    else:
        try:
            q = await ctx.ai.templates.render_query(settings.query, input)
        except TemplateLimit:
            raise
        except PromptError as exc:
            raise PromptError(f"knowledge.query: {exc}") from None
    if not q:
        return []
    async with ctx.ai.per_caller.turn(ctx.user_id):
        return await knowledge.retrieve(ctx, q=q, mode=settings.mode, limit=settings.top_k, tag_ids=settings.tags)


def _shown(hit: knowledge.Retrieved) -> dict[str, Any]:
    """A hit as the instructions' template sees it in `knowledge`."""
    return {"title": hit.item.title, "snippet": hit.snippet, "item_id": str(hit.item.id), "score": hit.score}


def _citation(hit: knowledge.Retrieved) -> Citation:
    chunks = [CitedChunk(position=p) for p in hit.positions]
    return Citation(score=hit.score, title=hit.item.title, chunks=chunks, item_id=hit.item.id)


async def _events(ctx: Context, run: _Run) -> AsyncGenerator[RunEvent, None]:
    yield RunEvent(
        type=RunEventType.started, run_id=run.id, skill_id=run.skill_id, version=run.version, model=run.model
    )
    if run.refused is not None:
        await _settle(
            ctx, run.id, RunStatus.failed, output="", usage=RunUsage(input_tokens=0, output_tokens=0), error=run.refused
        )
        yield RunEvent(type=RunEventType.failed, run_id=run.id, error=run.refused)
        return
    parts: list[str] = []
    used = RunUsage(input_tokens=0, output_tokens=0)  # what the finished rounds took
    steps: list[Step] = []
    specs: list[ToolSpec] = offered(list(run.tools))
    status, error = RunStatus.cancelled, None
    in_round, round_usage, round_parts = False, None, list[str]()
    recordings: list[asyncio.Task[None]] = []  # tool calls being recorded: the settlement waits for them
    # The deadline applies to each wait on the provider, never across a `yield`: a timeout
    # scope left open while suspended would fire inside whoever is consuming the events.
    deadline = asyncio.get_running_loop().time() + ctx.ai.run_timeout
    try:
        while True:
            calls: list[ToolCall] = []
            in_round, round_usage, round_parts = True, None, []
            stream = run.provider.stream(
                model=run.model,
                prompt=run.prompt,
                temperature=run.temperature,
                max_tokens=run.max_tokens,
                tools=specs,
                steps=steps,
                final=len(steps) >= ctx.ai.tool_max_steps,
            )
            async with aclosing(stream):
                while True:
                    async with asyncio.timeout_at(deadline):
                        item = await anext(stream, None)
                    if item is None:
                        break
                    if isinstance(item, Delta):
                        parts.append(item.text)
                        round_parts.append(item.text)
                        yield RunEvent(type=RunEventType.delta, run_id=run.id, text=item.text)
                    elif isinstance(item, ToolCall):
                        calls.append(item)
                    else:
                        round_usage = RunUsage(input_tokens=item.input_tokens, output_tokens=item.output_tokens)
            in_round = False
            used = _plus(
                used, round_usage or _estimate(run, steps, round_parts, calls, read=bool(round_parts or calls))
            )
            if not calls:
                break
            if len(steps) >= ctx.ai.tool_max_steps:
                raise _Stopped(f"The model kept calling tools after the run's {ctx.ai.tool_max_steps} rounds of them")
            results: list[ToolResult] = []
            for call in calls:
                yield RunEvent(
                    type=RunEventType.tool_call,
                    run_id=run.id,
                    call_id=call.id,
                    tool=_declared_name(run, call.name),
                    arguments=call.parsed() or {},
                )
                record, content = await _call(ctx, run, call, recordings)
                results.append(ToolResult(call.id, content, record.status is not ToolCallStatus.succeeded))
                yield RunEvent(
                    type=RunEventType.tool_result,
                    run_id=run.id,
                    call_id=call.id,
                    tool=record.tool,
                    status=record.status,
                    result=content,
                    duration_ms=record.duration_ms,
                )
            steps.append(Step("".join(round_parts), tuple(calls), tuple(results)))
            upcoming = max_prompt_tokens(run.prompt + _transcript(steps)) + run.max_tokens
            if used.input_tokens + used.output_tokens + upcoming > run.reserved:
                raise _Stopped(f"The run's reserved tokens are spent after {len(steps)} rounds of tool calls")
        status = RunStatus.succeeded
    except (ProviderError, _Stopped) as exc:
        status, error = RunStatus.failed, str(exc)
    except TimeoutError:
        status, error = RunStatus.failed, f"The run took longer than {ctx.ai.run_timeout:g} s"
    except Exception:
        log.exception("skill run %s failed", run.id)
        status, error = RunStatus.failed, "The run failed unexpectedly"
    finally:
        output = "".join(parts)
        if in_round:
            # A round cut short: unreported usage is estimated once the model has likely read the prompt.
            read = bool(round_parts) or status is RunStatus.cancelled
            used = _plus(used, round_usage or _estimate(run, steps, round_parts, [], read=read))
        await _settle(ctx, run.id, status, output=output, usage=used, error=error, after=recordings)
    if status is RunStatus.succeeded:
        yield RunEvent(
            type=RunEventType.completed, run_id=run.id, output=output, usage=used, citations=list(run.citations)
        )
    else:
        yield RunEvent(type=RunEventType.failed, run_id=run.id, error=error)


class _Stopped(Exception):
    """The run ends here: too many rounds of tool calls, or its tokens are spent."""


def _plus(a: RunUsage, b: RunUsage) -> RunUsage:
    return RunUsage(input_tokens=a.input_tokens + b.input_tokens, output_tokens=a.output_tokens + b.output_tokens)


def _transcript(steps: list[Step]) -> str:
    """The rounds so far as text, to bound what the next request sends."""
    return "".join(
        s.text + "".join(c.name + c.arguments for c in s.calls) + "".join(r.content for r in s.results) for s in steps
    )


def _estimate(run: _Run, steps: list[Step], texts: list[str], calls: list[ToolCall], *, read: bool) -> RunUsage:
    """A round's usage its provider did not report; its prompt counts once the model has `read` it."""
    answer = "".join(texts) + "".join(c.name + c.arguments for c in calls)
    prompt = estimate_tokens(run.prompt + _transcript(steps)) if read else 0
    return RunUsage(input_tokens=prompt, output_tokens=estimate_tokens(answer))


def _declared_name(run: _Run, name: str) -> str:
    tool = run.tool(name)
    return str(tool["name"]) if tool is not None else name[:100]


async def _call(
    ctx: Context, run: _Run, call: ToolCall, recordings: list[asyncio.Task[None]]
) -> tuple[ToolCallRecord, str]:
    """Makes one call the model asked for and records it on the run (the task joins `recordings`);
    returns the record and what the model reads. A cancellation (the client went away) is recorded,
    then goes on."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    tool, arguments = run.tool(call.name), call.parsed()
    status, error, content = ToolCallStatus.succeeded, None, ""
    try:
        if tool is None:
            names = ", ".join(wire_name(t["name"]) for t in run.tools)
            raise ToolError(f"There is no tool {call.name[:100]!r}; the tools are: {names}", refused=True)
        if arguments is None:
            raise ToolError("The arguments are not a JSON object", refused=True)
        async with asyncio.timeout(ctx.ai.tool_timeout):
            content = result_text(await call_tool(ctx, tool, arguments))
    except ToolError as exc:
        status, error = (ToolCallStatus.refused if exc.refused else ToolCallStatus.failed), exc.message
    except TimeoutError:
        status, error = ToolCallStatus.failed, f"The tool did not answer within {ctx.ai.tool_timeout:g} s"
    except asyncio.CancelledError:
        status, error = ToolCallStatus.cancelled, "The run was cancelled while the tool was working"
        raise
    except Exception:
        log.exception("tool %s of run %s failed", call.name[:100], run.id)
        status, error = ToolCallStatus.failed, "The tool failed unexpectedly"
    finally:
        record = ToolCallRecord(
            call_id=call.id[:200],
            tool=_declared_name(run, call.name),
            arguments=arguments or {},
            status=status,
            error=error,
            duration_ms=round((loop.time() - started) * 1000),
        )
        recordings.append(_background(_record(ctx, run.id, record)))
        await asyncio.shield(recordings[-1])
    return record, content if status is ToolCallStatus.succeeded else f"Error: {error}"


async def _record(ctx: Context, run_id: UUID, record: ToolCallRecord) -> None:
    try:
        call = type_coerce(record.model_dump(mode="json"), JSONB)
        await ctx.db.call_alone(func.fluxopus.record_tool_call, run_id, call)
    except (Unavailable, DBAPIError):
        log.warning("recording a tool call of run %s failed", run_id, exc_info=True)


def _background(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """`work` in a task of its own, which a cancelled stream may wait for but cannot cancel. (A stream
    cancelled by its transport may be cancelled again at each await: anyio's cancellation is
    level-triggered, so a wait for such a task can end at once while the task goes on.)"""
    task = asyncio.create_task(work)
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    return task


async def _settle(
    ctx: Context,
    run_id: UUID,
    status: RunStatus,
    *,
    output: str,
    usage: RunUsage,
    error: str | None,
    after: Sequence[asyncio.Task[None]] = (),
) -> None:
    """Closes the run in a task of its own, which a cancelled stream waits for but cannot cancel; once
    the tool calls `after` are recorded (a closed run takes no more)."""

    async def close() -> None:
        await asyncio.gather(*after, return_exceptions=True)
        await _finish(ctx, run_id, status, output=output, usage=usage, error=error)

    await asyncio.shield(_background(close()))


async def _finish(
    ctx: Context, run_id: UUID, status: RunStatus, *, output: str, usage: RunUsage, error: str | None
) -> None:
    """Retries while the database is busy: the model has been paid for, so the run must be charged.
    A run that still cannot be closed is left to the stale-run release (its reservation is freed)."""
    for attempt in range(_SETTLE_ATTEMPTS):
        try:
            await budget.finish_run(
                ctx,
                run_id,
                status,
                output=output,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                error=error,
            )
            return
        except (Unavailable, DBAPIError):
            log.warning("closing run %s failed (attempt %d); retrying", run_id, attempt + 1, exc_info=True)
            await asyncio.sleep(min(2**attempt, 10))
    log.error("run %s could not be closed; it will be released as stale", run_id)
