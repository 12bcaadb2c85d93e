"""The change log (migration 015), seen from the process that fans its changes out to subscribers.

Triggers record every committed change in `change_log` and NOTIFY `fluxopus_changes` with its id,
company and kind; ids follow commit order. These functions read the log as the service, and decide
visibility as each subscriber, in short transactions of their own on the service pool.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from fluxopus.db.session import service_transaction

CHANNEL = "fluxopus_changes"


@dataclass(frozen=True)
class ChangeRef:
    """What a notification says: a change's id, its company and kind (ids only, never row contents)."""

    id: int
    company_id: UUID
    kind: str

    @classmethod
    def parse(cls, payload: str) -> ChangeRef:
        change_id, company, kind = payload.split(" ")
        return cls(int(change_id), UUID(company), kind)


@dataclass(frozen=True)
class Change:
    id: int
    company_id: UUID
    kind: str  # task, knowledge, skill_run, tag, entity_tag
    op: str  # created, updated, deleted, status, assigned, unassigned
    entity_id: UUID
    old: Mapping[str, Any] | None  # the row's visibility and filter columns before an update or delete
    detail: Mapping[str, Any] | None


@dataclass(frozen=True)
class Seen:
    """Whether one identity may read a change's row now, and could before the change."""

    identity: int  # index into the identities asked about
    change_id: int
    now: bool
    before: bool


@dataclass(frozen=True)
class Batch:
    changes: list[Change]  # in commit order
    rows: dict[int, Mapping[str, Any]]  # change id -> the changed row as it is now (when it still exists)
    seen: list[Seen]


_CHANGES = text(
    "select id, company_id, kind, op, entity_id, old, detail from change_log where id = any(:ids) order by id"
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))
_VISIBILITY = text(
    "select identity, change_id, visible_now, visible_before from fluxopus.live_visibility(:identities, :ids)"
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))


async def read_batch(
    engine: AsyncEngine,
    refs: Sequence[ChangeRef],
    identities: Sequence[Mapping[str, Any]],
    rows_of: Mapping[str, Any],
) -> Batch:
    """The changes `refs` name, the rows they changed as they are now (`rows_of[kind](ids)`: the
    resolvers' own statements, read as the service — RLS filters rows, never columns, so a row reads
    the same for whoever may see it), and which of `identities` (JWT claims) may see each change — all
    in one snapshot, the last step as `authenticated` under each identity's claims in turn
    (fluxopus.live_visibility)."""
    ids = [ref.id for ref in refs]
    async with service_transaction(engine) as conn:
        await conn.execute(text("set transaction isolation level repeatable read"))
        changes = [
            Change(
                id=r.id,
                company_id=r.company_id,
                kind=r.kind,
                op=r.op,
                entity_id=r.entity_id,
                old=r.old,
                detail=r.detail,
            )
            for r in (await conn.execute(_CHANGES, {"ids": ids}))
        ]
        rows: dict[int, Mapping[str, Any]] = {}
        by_kind: dict[str, list[Change]] = {}
        for change in changes:
            if change.op != "deleted" and change.kind in rows_of:
                by_kind.setdefault(change.kind, []).append(change)
        for kind, kind_changes in by_kind.items():
            statement: Select[Any] = rows_of[kind](sorted({c.entity_id for c in kind_changes}))
            found = {row["id"]: row for row in (await conn.execute(statement)).mappings()}
            for change in kind_changes:
                if change.entity_id in found:
                    rows[change.id] = found[change.entity_id]
        seen: list[Seen] = []
        if identities and changes:  # the last statement: it leaves the transaction as `authenticated`
            result = await conn.execute(
                _VISIBILITY, {"identities": [json.dumps(dict(c)) for c in identities], "ids": ids}
            )
            seen = [Seen(r.identity - 1, r.change_id, r.visible_now, r.visible_before) for r in result]
    return Batch(changes=changes, rows=rows, seen=seen)


async def latest_change(engine: AsyncEngine) -> int:
    """The id of the last change committed (0 for none yet), also when the log was pruned empty."""
    async with service_transaction(engine) as conn:
        found = (
            await conn.execute(
                text(
                    "select greatest(coalesce(max(id), 0), (select pruned_upto from change_log_horizon))"
                    " from change_log"
                )
            )
        ).scalar_one()
    return int(found)


async def changes_after(
    engine: AsyncEngine, after: int, *, limit: int, company_id: UUID | None = None, kinds: Sequence[str] = ()
) -> list[ChangeRef] | None:
    """The changes committed after change `after` (in a company, of some kinds), oldest first, at most
    `limit`; None when the log no longer holds them all (pruned past `after`)."""
    async with service_transaction(engine) as conn:
        pruned = (await conn.execute(text("select pruned_upto from change_log_horizon"))).scalar_one()
        if after < pruned:
            return None
        result = await conn.execute(
            text(
                "select id, company_id, kind from change_log where id > :after"
                " and (cast(:company as uuid) is null or company_id = :company)"
                " and (cardinality(cast(:kinds as text[])) = 0 or kind = any(:kinds))"
                " order by id limit :limit"
            ),
            {"after": after, "company": company_id, "kinds": list(kinds), "limit": limit},
        )
        return [ChangeRef(r.id, r.company_id, r.kind) for r in result]


async def prune(engine: AsyncEngine, retention: dt.timedelta) -> int:
    """Drop changes older than `retention`, remembering up to which id: how many were dropped."""
    async with service_transaction(engine) as conn:
        result = await conn.execute(
            text(
                "with gone as (delete from change_log where at < now() - cast(:retention as interval) returning id)"
                " update change_log_horizon set pruned_upto = greatest(pruned_upto, (select max(id) from gone))"
                " where exists (select 1 from gone) returning (select count(*) from gone)"
            ),
            {"retention": retention},
        )
        dropped = result.scalar_one_or_none()
    return int(dropped or 0)
