"""Skill tools: the company's switch, and one tool call made for a run's caller.

A call is made as the run's caller: a built-in tool reads the caller's own connection through
`get_access_token` (refreshed when due) in a short transaction of its own — the run's transaction
ended before the model was asked — and the token goes nowhere but the provider's Authorization header.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select, update

from fluxopus.ai.tools import BUILT_IN, ToolError, call_built_in, call_http, check_arguments
from fluxopus.errors import DomainError, Forbidden
from fluxopus.models.members import Role, companies
from fluxopus.models.skills import ToolSettings, ToolSettingsInput
from fluxopus.resolvers.connections import get_access_token
from fluxopus.resolvers.context import Context
from fluxopus.resolvers.members import require_membership

_ADMINS_ONLY = "Only an admin of your company can turn its tools on or off"


async def tools_enabled(ctx: Context) -> bool:
    """Whether the caller's company lets runs call tools (RLS shows the caller's company only)."""
    enabled = (await ctx.db.execute(select(companies.c.tools_enabled))).scalar()
    return bool(enabled)


async def tool_settings(ctx: Context) -> ToolSettings:
    await require_membership(ctx)
    return ToolSettings(enabled=await tools_enabled(ctx), built_in=list(BUILT_IN))


async def update_tool_settings(ctx: Context, *, data: ToolSettingsInput) -> ToolSettings:
    """Admins only: turn the company's tools on or off."""
    caller = await require_membership(ctx)
    if caller.role != Role.admin:
        raise Forbidden(_ADMINS_ONLY)
    stmt = update(companies).values(tools_enabled=data.enabled).returning(companies.c.tools_enabled)
    row = (await ctx.db.execute(stmt)).first()
    if row is None:
        raise Forbidden(_ADMINS_ONLY)
    return ToolSettings(enabled=bool(row[0]), built_in=list(BUILT_IN))


async def call_tool(ctx: Context, tool: dict[str, Any], arguments: dict[str, Any]) -> Any:
    """Calls a tool a skill declares, for the caller: its arguments checked against its schema first.
    ToolError says, for the model, why there is no answer."""
    built_in = BUILT_IN.get(tool["name"])
    check_arguments(built_in.parameters if built_in else tool["parameters"], arguments)
    if built_in is None:
        return await call_http(tool, arguments, ctx.ai.tool_hosts, ctx.ai.tool_timeout)
    try:
        provider = ctx.oauth.configured(built_in.provider)
        if not provider.api_url:
            raise ToolError(f"{provider.title} has no API URL configured on this server")
        async with ctx.db.apart() as db:
            token = await get_access_token(dataclasses.replace(ctx, db=db, cache={}), built_in.provider)
    except DomainError as exc:
        raise ToolError(f"{exc.message} (connect it at /api/connections/authorize/{built_in.provider})") from None
    return await call_built_in(built_in, provider.api_url, token, arguments, ctx.ai.tool_timeout)
