"""Running a skill: render, reserve tokens, stream the model's answer, record the run.

No transaction stays open while the model streams: `run_skill` checks the skill and records the
run (its reservation an autocommitted statement of its own, see budget.start_run) and returns a
StartedRun; the transport edge then commits — its named early step — before it consumes the run,
and the outcome is written by another short, autocommitted statement. A stream that is abandoned (the
client went away) is cancelled here, and its run is still closed — as `cancelled`, charged
with the tokens used so far — by a task the cancellation cannot interrupt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError

from fluxopus.ai.prompts import PromptError, input_text, validate_input
from fluxopus.ai.providers import ChatProvider, Delta, ProviderError, estimate_tokens, max_prompt_tokens
from fluxopus.ai.sandbox import TemplateLimit
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
)
from fluxopus.resolvers import budget, knowledge
from fluxopus.resolvers._sql import fetch_one, fetch_page
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.skills import get_skill, get_skill_version, skill_versions, skills

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
    reserved = 0 if refused else max_prompt_tokens(prompt) + version.max_tokens
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
    return _Run(run_id, id, version.version, provider, model, prompt, *settings, refused, citations)


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
    usage: RunUsage | None = None
    status, error = RunStatus.cancelled, None
    stream = run.provider.stream(
        model=run.model, prompt=run.prompt, temperature=run.temperature, max_tokens=run.max_tokens
    )
    # The deadline applies to each wait on the provider, never across a `yield`: a timeout
    # scope left open while suspended would fire inside whoever is consuming the events.
    deadline = asyncio.get_running_loop().time() + ctx.ai.run_timeout
    try:
        async with aclosing(stream):
            while True:
                async with asyncio.timeout_at(deadline):
                    item = await anext(stream, None)
                if item is None:
                    break
                if isinstance(item, Delta):
                    parts.append(item.text)
                    yield RunEvent(type=RunEventType.delta, run_id=run.id, text=item.text)
                else:
                    usage = RunUsage(input_tokens=item.input_tokens, output_tokens=item.output_tokens)
        status = RunStatus.succeeded
    except ProviderError as exc:
        status, error = RunStatus.failed, str(exc)
    except TimeoutError:
        status, error = RunStatus.failed, f"The run took longer than {ctx.ai.run_timeout:g} s"
    except Exception:
        log.exception("skill run %s failed", run.id)
        status, error = RunStatus.failed, "The run failed unexpectedly"
    finally:
        output = "".join(parts)
        if usage is None:
            # Unreported usage is estimated once the model has likely read the prompt.
            charged = bool(parts) or status is RunStatus.cancelled
            usage = RunUsage(
                input_tokens=estimate_tokens(run.prompt) if charged else 0, output_tokens=estimate_tokens(output)
            )
        await _settle(ctx, run.id, status, output=output, usage=usage, error=error)
    if status is RunStatus.succeeded:
        yield RunEvent(
            type=RunEventType.completed, run_id=run.id, output=output, usage=usage, citations=list(run.citations)
        )
    else:
        yield RunEvent(type=RunEventType.failed, run_id=run.id, error=error)


async def _settle(
    ctx: Context, run_id: UUID, status: RunStatus, *, output: str, usage: RunUsage, error: str | None
) -> None:
    """Closes the run in a task of its own, which a cancelled stream waits for but cannot cancel."""
    task = asyncio.create_task(_finish(ctx, run_id, status, output=output, usage=usage, error=error))
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    await asyncio.shield(task)


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
