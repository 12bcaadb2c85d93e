"""The company's monthly token budget: reserve before a model call, settle after.

The arithmetic lives in SQL (fluxopus.start_run / fluxopus.finish_run) so that two
server processes, or twenty concurrent runs, can never spend more than the budget."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from sqlalchemy import func, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from fluxopus.db import queries as sql
from fluxopus.errors import BudgetExceeded
from fluxopus.models.skills import RunStatus, TokenBudget
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import require_membership

# A run is cut off after run_timeout; one still open well past that lost its server.
_STALE_MARGIN = dt.timedelta(seconds=60)


async def token_budget(ctx: Context) -> TokenBudget:
    await require_membership(ctx)
    row = (await ctx.db.execute(sql.TOKEN_BUDGET, {"default_limit": ctx.ai.token_budget})).mappings().one()
    return TokenBudget.model_validate(row)


async def start_run(
    ctx: Context, *, skill_id: UUID, version: int, input: dict[str, Any], provider: str, model: str, tokens: int
) -> UUID:
    """Reserves `tokens` and records the run, in one autocommitted statement (see fluxopus.start_run).
    Over budget: BudgetExceeded, and still the release of stale runs is kept."""
    stale_after = dt.timedelta(seconds=ctx.ai.run_timeout) + _STALE_MARGIN
    run_id: UUID | None = await ctx.db.call_alone(
        func.fluxopus.start_run,
        skill_id,
        version,
        type_coerce(input, JSONB),
        provider,
        model,
        tokens,
        ctx.ai.token_budget,
        stale_after,
    )
    if run_id is None:
        raise BudgetExceeded()
    return run_id


async def finish_run(
    ctx: Context,
    run_id: UUID,
    status: RunStatus,
    *,
    output: str | None,
    input_tokens: int,
    output_tokens: int,
    error: str | None,
) -> None:
    """Records the outcome and turns the reservation into real usage, in one autocommitted statement."""
    await ctx.db.call_alone(func.fluxopus.finish_run, run_id, status.value, output, input_tokens, output_tokens, error)
