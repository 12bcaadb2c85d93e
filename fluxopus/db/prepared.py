"""Statements compiled to SQL once per shape and run on the asyncpg connection itself.

SQLAlchemy builds every statement's SQL (the one place that knows the tables), but running a statement
through it costs ~0.3 ms here before PostgreSQL sees it — building the statement, its cache key, the
execution context, the greenlet hop — more than the query itself. The reads every request makes (a
task, a page of tasks, a compiled GraphQL query) are compiled once instead: `prepare(build, **values)`
calls `build` with placeholders where the values go, the first time a *shape* is seen (which values
are present: a filter on status or not), and afterwards only binds the values. asyncpg keeps the
prepared statement per connection, so PostgreSQL plans it once per connection too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# The SQL is the same whatever server the dialect later meets (PostgreSQL ≥ 13); numeric_dollar
# ($1, $2 …) is what asyncpg takes.
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


class Prepared:
    """One statement's SQL, its parameters in order (with the values built into it, a `coalesce(…, 0)`'s
    0, as defaults) and its result's column names."""

    __slots__ = ("_defaults", "_names", "_processors", "keys", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        if any(b.expanding for b in compiled.binds.values()):
            # `in_(list)` renders one parameter per item at execution: not one SQL text. one_of() is.
            raise ValueError("a prepared statement cannot have expanding IN parameters; use one_of()")
        self.sql: str = compiled.string
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())
        defaults = compiled.params
        self._defaults = tuple(defaults.get(n) for n in self._names)
        # What SQLAlchemy would do to each value on the way in (a JSONB column's value to text …).
        self._processors = tuple(compiled.binds[n].type.bind_processor(_DIALECT) for n in self._names)
        columns = getattr(statement, "selected_columns", None)
        self.keys: tuple[str, ...] = tuple(columns.keys()) if columns is not None else ()

    def explained(self) -> Prepared:
        """The same statement under `EXPLAIN (FORMAT JSON)`, same parameters: the planner's plan for
        those values (one row, one column, the plan as JSON), the statement itself not run."""
        plan = copy.copy(self)
        plan.sql = "EXPLAIN (FORMAT JSON) " + self.sql
        plan.keys = ("QUERY PLAN",)
        return plan

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, default, process in zip(self._names, self._defaults, self._processors, strict=True):
            value = values[name] if name in values else default
            out.append(value if process is None or value is None else process(value))
        return out


_prepared: dict[Hashable, Prepared] = {}
MAX_SHAPES = 1024  # a bound that well-formed code never reaches; see _check


def prepare(
    build: Callable[..., Any],
    variant: Callable[[Any], ClauseElement] | None = None,
    variant_values: Mapping[str, Any] | None = None,
    **values: Any,
) -> tuple[Prepared, list[Any]]:
    """The statement `build(**values)` would make, compiled once per shape, and the arguments to run it
    with. A value may be None (part of the shape: `build` sees None), a scalar (`build` sees a named
    placeholder) or a pydantic model, a filter (`build` sees a copy whose set fields are placeholders).
    `variant` derives another statement from the built one (a page of it, its count), with placeholders
    of its own, bound to `variant_values`. `build` and `variant` must be module-level functions: they
    key the cache."""
    shape: list[Any] = [build, variant]
    bound: dict[str, Any] = dict(variant_values or {})
    for name, value in values.items():
        if value is None:
            shape.append((name, None))
        elif isinstance(value, BaseModel):
            present = tuple(f for f in type(value).model_fields if getattr(value, f) is not None)
            shape.append((name, present))
            for f in present:
                bound[f"{name}_{f}"] = getattr(value, f)
        else:
            shape.append((name, True))
            bound[name] = value
    key = tuple(shape)
    prepared = _prepared.get(key)
    if prepared is None:  # a shape seen for the first time: build it with placeholders, compile it
        _check(build, variant)
        statement = build(**{name: _placeholder(name, value) for name, value in values.items()})
        prepared = Prepared(variant(statement) if variant is not None else statement)
        _prepared[key] = prepared
    return prepared, prepared.args(bound)


def _placeholder(name: str, value: Any) -> Any:
    """What `build` sees for a value: None as it is, a placeholder for a scalar, a filter whose set
    fields are placeholders."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        fields: dict[str, Any] = {
            f: bindparam(f"{name}_{f}") for f in type(value).model_fields if getattr(value, f) is not None
        }
        return type(value).model_construct(**fields)
    return bindparam(name)


def _check(*functions: Callable[..., Any] | None) -> None:
    for f in functions:
        if f is not None and "<" in getattr(f, "__qualname__", "<"):  # <lambda>, <locals>
            raise TypeError(f"{f!r} must be a module-level function: it keys the prepared statements")
    if len(_prepared) >= MAX_SHAPES:
        raise RuntimeError(f"more than {MAX_SHAPES} prepared statement shapes: is a statement built per value?")
