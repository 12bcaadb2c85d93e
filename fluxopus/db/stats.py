"""What /metrics reports from the database, counted when it is scraped (never per request)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, text
from sqlalchemy.ext.asyncio import AsyncEngine

# Across every company: run as the service, outside RLS, like the indexer's statements (db/jobs.py).
_STATS = text(
    """
    select (select count(*) from embedding_jobs) as queue_depth,
           (select coalesce(extract(epoch from now() - min(created_at)), 0) from embedding_jobs) as oldest_pending,
           (select coalesce(sum(used), 0) from token_usage) as tokens_used,
           (select coalesce(sum(reserved), 0) from token_usage) as tokens_reserved,
           (select coalesce(json_object_agg(status, n), '{}')
              from (select status, count(*) as n from skill_runs group by status) runs) as runs,
           (select coalesce(max(id), 0) from change_log) as latest_change
    """
).columns(runs=JSON)


@dataclass(frozen=True)
class DatabaseStats:
    queue_depth: int  # knowledge items waiting to be embedded (or retried)
    oldest_pending_seconds: float  # how long the oldest of them has waited; 0 when none
    tokens_used: int  # model tokens spent, all companies, every month
    tokens_reserved: int  # reserved by runs and indexing still going on
    runs: dict[str, int]  # skill runs by status
    latest_change: int  # the change log's last id (live events)


async def database_stats(engine: AsyncEngine) -> DatabaseStats:
    async with engine.connect() as conn:
        row = (await conn.execute(_STATS)).mappings().one()
    return DatabaseStats(
        queue_depth=int(row["queue_depth"]),
        oldest_pending_seconds=float(row["oldest_pending"]),
        tokens_used=int(row["tokens_used"]),
        tokens_reserved=int(row["tokens_reserved"]),
        runs={str(status): int(count) for status, count in dict(row["runs"]).items()},
        latest_change=int(row["latest_change"]),
    )
