"""Small SQL helpers shared by resolver modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, RowMapping, Select, any_, bindparam, func, select
from sqlalchemy.sql import Executable

from fluxopus.errors import Forbidden
from fluxopus.models.common import Page
from fluxopus.resolvers.context import Context


def one_of(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column = any($1)`: one array parameter, so a batch of any size is one prepared statement."""
    result: ColumnElement[bool] = column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return result


def contains(column: Any, q: str) -> ColumnElement[bool]:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    result: ColumnElement[bool] = column.ilike(f"%{escaped}%", escape="\\")
    return result


async def fetch_page(ctx: Context, stmt: Select[Any], *, limit: int, offset: int) -> Page[dict[str, Any]]:
    """Rows and the total in one round trip (a window count); a second only past the end."""
    counted = stmt.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
    rows = [dict(r) for r in (await ctx.db.execute(counted)).mappings()]
    if rows:
        total = rows[0]["_total"]
    elif offset == 0:
        total = 0
    else:
        total_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
        total = (await ctx.db.execute(total_stmt)).scalar_one()
    for row in rows:
        del row["_total"]
    return Page(items=rows, total=total)


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
