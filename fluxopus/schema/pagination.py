"""Relay-style connections beside the plain lists: `tasksConnection(first, after, last, before)` answers
`edges { cursor node }`, `nodes`, `pageInfo` and `totalCount` over the same resolver, so the same rows,
order, filters and row-level security as `tasks(limit, offset)` and REST's list (whose X-Total-Count with
`Prefer: count=exact` is the same count). A cursor is opaque to clients: base64 of the item's position in
the list's order, checked when it comes back (anything else is BAD_USER_INPUT). Positions, not keys: a row
inserted before the cursor between two requests shifts the next page by one, as REST's offset pages do.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from fluxopus.errors import Invalid
from fluxopus.models.common import MAX_OFFSET, MAX_PAGE, Page
from fluxopus.schema.limits import RELAY_DEFAULT_PAGE

T = TypeVar("T")

_PREFIX = "fluxopus:v1:"
DEFAULT_FIRST = RELAY_DEFAULT_PAGE


@strawberry.type(description="Where a connection's page stands in the whole list")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether items follow this page (ask with `after: endCursor`)")
    has_previous_page: bool = strawberry.field(
        description="Whether items come before this page (ask with `last` and `before: startCursor`)"
    )
    start_cursor: str | None = strawberry.field(description="The first item's cursor; null when the page is empty")
    end_cursor: str | None = strawberry.field(description="The last item's cursor; null when the page is empty")


@strawberry.type(description="An item of a connection's page, with its cursor")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque: pass it as `after` or `before` to page from this item")
    node: T = strawberry.field(description="The item")


@strawberry.type(description="A page of a list, Relay style: its items, cursors to page on, and the list's total")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The page's items with their cursors, in the list's order")
    nodes: list[T] = strawberry.field(description="The page's items, in the list's order (the edges' nodes)")
    page_info: PageInfo = strawberry.field(description="Whether there is more, and the cursors to ask for it")
    total_count: int = strawberry.field(
        description="How many items the whole list has for the caller, filters applied: counted exactly "
        "(REST's X-Total-Count with `Prefer: count=exact`)"
    )


# The arguments of every connection field.
First = Annotated[
    int | None,
    strawberry.argument(description=f"At most this many items from the start (or after `after`), 0–{MAX_PAGE}"),
]
After = Annotated[str | None, strawberry.argument(description="Items after this cursor")]
Last = Annotated[
    int | None,
    strawberry.argument(description=f"At most this many items from the end (or before `before`), 0–{MAX_PAGE}"),
]
Before = Annotated[str | None, strawberry.argument(description="Items before this cursor")]

# How a connection reads a slice of its list: the list's resolver with this limit and offset.
Fetch = Callable[[int, int], Awaitable[Page[Any]]]


def cursor_of(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{position}".encode()).decode()


def position_of(cursor: str, argument: str) -> int:
    refusal = Invalid(f"`{argument}` is not a cursor this API gave: pass an edge's `cursor` or a pageInfo cursor")
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise refusal from None
    digits = text.removeprefix(_PREFIX)
    # Below MAX_OFFSET: the page after it still starts at an offset the lists accept.
    if not text.startswith(_PREFIX) or not digits.isdigit() or len(digits) > 9 or int(digits) >= MAX_OFFSET:
        raise refusal
    return int(digits)


def _count(value: int | None, argument: str) -> int | None:
    if value is not None and not 0 <= value <= MAX_PAGE:
        raise Invalid(f"`{argument}` must be between 0 and {MAX_PAGE}")
    return value


async def connection(
    fetch: Fetch, first: int | None, after: str | None, last: int | None, before: str | None
) -> Connection[Any]:
    """The page the Relay arguments ask for (graphql-relay's slicing: `after`/`before` bound the list,
    then `first` keeps its head and `last` its tail), with the list's total."""
    first, last = _count(first, "first"), _count(last, "last")
    if first is None and last is None:
        first = DEFAULT_FIRST
    start = position_of(after, "after") + 1 if after is not None else 0
    end = position_of(before, "before") if before is not None else None
    page: Page[Any] | None = None
    if end is None:
        if last is not None:  # the tail of the whole list: its length first
            page = await fetch(1, 0)
            end = await page.count()
        else:
            end = start + (first or 0)
    end = max(end, start)
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    items: Sequence[Any] = []
    if end > start:
        page = await fetch(end - start, start)
        items = page.items
    elif page is None:
        page = await fetch(1, start)
    total = await page.count()
    edges = [Edge(cursor=cursor_of(start + i), node=item) for i, item in enumerate(items)]
    info = PageInfo(
        has_next_page=start + len(items) < total,
        has_previous_page=start > 0 and total > 0,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return Connection(edges=edges, nodes=list(items), page_info=info, total_count=total)


@strawberry.interface(
    description="An object fetchable by its id alone with `node(id:)` (Relay's refetching). Its id is the object's"
    " UUID: UUIDs are unique across types, so no type prefix is needed"
)
class Node:
    id: strawberry.ID = strawberry.field(description="The object's id (a UUID)")
