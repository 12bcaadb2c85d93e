"""The company's monthly token budget: reserve before a model call, settle after.

The arithmetic lives in SQL (fluxopus.start_run / fluxopus.finish_run) so that two
server processes, or twenty concurrent runs, can never spend more than the budget."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from sqlalchemy import func, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from fluxopus.errors import BudgetExceeded
from fluxopus.models.skills import RunStatus, TokenBudget
from fluxopus.resolvers.accounts import require_membership
from fluxopus.resolvers.context import Context

# A run is cut off after run_timeout; one still open well past that lost its server.
_STALE_MARGIN = dt.timedelta(seconds=60)

_BUDGET = text(
    """
    select p.period_start, coalesce(u.used, 0) as used, coalesce(u.reserved, 0) as reserved,
           coalesce(c.monthly_token_budget, :default_limit) as "limit"
    from (select date_trunc('month', now() at time zone 'utc')::date as period_start) p
    cross join companies c
    left join token_usage u on u.company_id = c.id and u.period_start = p.period_start
    where c.id = fluxopus.company_id()
    """
)


async def token_budget(ctx: Context) -> TokenBudget:
    await require_membership(ctx)
    row = (await ctx.db.execute(_BUDGET, {"default_limit": ctx.ai.token_budget})).mappings().one()
    return TokenBudget.model_validate(row)


async def start_run(
    ctx: Context, *, skill_id: UUID, version: int, input: dict[str, Any], provider: str, model: str, tokens: int
) -> UUID:
    """Reserves `tokens` and records the run, in one autocommitted statement (see fluxopus.start_run).
    Over budget: BudgetExceeded, and still the release of stale runs is kept."""
    stale_after = dt.timedelta(seconds=ctx.ai.run_timeout) + _STALE_MARGIN
    await ctx.db.finish(commit=True)  # what was read to get here is done with
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
