"""Small SQL helpers shared by resolver modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, RowMapping, Select, any_, bindparam, func
from sqlalchemy.sql import Executable

from fluxopus.errors import Forbidden
from fluxopus.models.common import M, Page, Rows
from fluxopus.resolvers.context import Context


def one_of(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column = any($1)`: one array parameter, so a batch of any size is one prepared statement."""
    result: ColumnElement[bool] = column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return result


def contains(column: Any, q: str) -> ColumnElement[bool]:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    result: ColumnElement[bool] = column.ilike(f"%{escaped}%", escape="\\")
    return result


async def fetch_page(
    ctx: Context,
    stmt: Select[Any],
    model: type[M],
    *,
    limit: int,
    offset: int,
    row: Callable[[dict[str, Any]], M] | None = None,
) -> Page[M]:
    """The page; its total counted apart, and only when asked. The page statement has no window count:
    with one, PostgreSQL had to build every visible row — derived columns (a task's total_minutes)
    included — before LIMIT, so a page cost as much as everything the caller can see. Now a page costs
    what its rows cost, and the total is a count of the filtered rows alone (no derived columns, no
    sort), skipped when the page itself tells it (a short page). The rows stay as the database gave
    them (models.common.Rows): REST writes them to JSON without a model per row; `row`, for a model
    that is more than its columns, makes each one instead."""
    result = await ctx.db.execute(stmt.limit(limit).offset(offset))
    keys = list(result.keys())
    rows: Sequence[M] = (
        Rows.of(model, keys, result.all()) if row is None else [row(dict(zip(keys, r, strict=True))) for r in result]
    )
    if len(rows) < limit and (rows or offset == 0):
        return Page(rows, Page.known(offset + len(rows)))

    async def count() -> int:
        counted = stmt.order_by(None).with_only_columns(func.count(), maintain_column_froms=True)
        total: int = (await ctx.db.execute(counted)).scalar_one()
        return total

    return Page(rows, count)


async def change(
    ctx: Context, stmt: Executable, *, visible: Callable[[], Awaitable[object]], refusal: str
) -> RowMapping:
    """Runs an UPDATE or DELETE … RETURNING that RLS filters. No row back means the caller cannot
    see the row (`visible` raises NotFound: 404) or may see but not change it (403, `refusal`)."""
    row = (await ctx.db.execute(stmt)).mappings().first()
    if row is None:
        await visible()
        raise Forbidden(refusal)
    return row
