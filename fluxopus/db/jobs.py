"""The embedding queue, seen from the worker: claim a job, charge and store its chunks, or fail it.

The worker acts for the service, not for a user, so these run outside RLS, each in a short
transaction of its own. A claim is a lease: a worker that dies mid-job leaves `locked_until`
behind, and the job is claimed again once it passes; a worker still at it renews its lease.
Claims take companies in turn: the due job of the company served longest ago comes first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncEngine

CHANNEL = "fluxopus_embedding_jobs"
DIMENSIONS = 384  # knowledge_chunks.embedding is vector(384)

# `busy`: companies this worker already has a round's worth of work of (so a bulk import cannot fill a
# worker); `within`, when given: the only companies it may take more of (it has as many companies in
# progress as it serves at once). The claim records the company's turn in the same statement.
_CLAIM = text(
    """
    with picked as (
        select j.knowledge_id
          from embedding_jobs j
          left join embedding_turns t on t.company_id = j.company_id
         where j.run_after <= now() and (j.locked_until is null or j.locked_until < now())
           and j.company_id <> all(:busy) and (cast(:within as uuid[]) is null or j.company_id = any(:within))
         order by t.served_at nulls first, j.run_after
         limit 1
         for update of j skip locked
    ), claimed as (
        update embedding_jobs j set locked_until = now() + :lease, attempts = j.attempts + 1
          from picked
         where j.knowledge_id = picked.knowledge_id
        returning j.knowledge_id, j.company_id, j.revision, j.attempts
    ), turn as (
        insert into embedding_turns (company_id, served_at)
        select company_id, clock_timestamp() from claimed
        on conflict (company_id) do update set served_at = excluded.served_at
    )
    select c.knowledge_id, c.company_id, c.revision, c.attempts, k.title, k.content
      from claimed c join knowledge k on k.id = c.knowledge_id
    """
).bindparams(
    bindparam("busy", type_=ARRAY(PG_UUID(as_uuid=True))), bindparam("within", type_=ARRAY(PG_UUID(as_uuid=True)))
)


@dataclass(frozen=True)
class Job:
    knowledge_id: UUID
    company_id: UUID
    revision: int
    attempts: int
    title: str
    content: str


@dataclass(frozen=True)
class Chunk:
    position: int
    content: str
    embedding: list[float]


async def claim(
    engine: AsyncEngine, *, lease: dt.timedelta, busy: Sequence[UUID] = (), within: Sequence[UUID] | None = None
) -> Job | None:
    params = {"lease": lease, "busy": list(busy), "within": None if within is None else list(within)}
    async with engine.begin() as conn:
        row = (await conn.execute(_CLAIM, params)).mappings().first()
    if row is None:
        return None
    return Job(**row)


async def renew(engine: AsyncEngine, job: Job, *, lease: dt.timedelta) -> bool:
    """Extends the lease of a job still being worked on; False when it is no longer this worker's (its
    item was edited, or its lease ran out and another worker took it)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "update embedding_jobs set locked_until = now() + :lease"
                " where knowledge_id = :id and revision = :rev and attempts = :attempts"
            ),
            {"lease": lease, "id": job.knowledge_id, "rev": job.revision, "attempts": job.attempts},
        )
    return bool(result.rowcount)


async def charge(engine: AsyncEngine, job: Job, tokens: int, *, default_limit: int) -> bool:
    """Spends `tokens` of the job's company's monthly budget; False when it does not cover them."""
    async with engine.begin() as conn:
        spent = await conn.execute(select(func.fluxopus.spend_tokens(job.company_id, tokens, default_limit)))
    return bool(spent.scalar_one())


async def charge_each(engine: AsyncEngine, charges: Sequence[tuple[Job, int]], *, default_limit: int) -> list[bool]:
    """`charge` for several jobs (each to its own company), in one transaction; in order, each True when
    its company's budget covered it."""
    if not charges:
        return []
    spend = text("select fluxopus.spend_tokens(:company, :tokens, :limit)")
    async with engine.begin() as conn:
        return [
            bool(
                (await conn.execute(spend, {"company": j.company_id, "tokens": t, "limit": default_limit})).scalar_one()
            )
            for j, t in charges
        ]


async def complete(engine: AsyncEngine, job: Job, chunks: list[Chunk], model: str) -> bool:
    """Replaces the item's chunks, if the item is still at the job's revision; False otherwise
    (edited or deleted meanwhile: the newer job will do it)."""
    async with engine.begin() as conn:
        current = await conn.execute(
            text("select revision from knowledge where id = :id for update"), {"id": job.knowledge_id}
        )
        if current.scalar_one_or_none() != job.revision:
            return False
        await conn.execute(text("delete from knowledge_chunks where knowledge_id = :id"), {"id": job.knowledge_id})
        if chunks:
            await conn.execute(_INSERT_CHUNK, [_chunk_row(job, c, model) for c in chunks])
        await conn.execute(
            text("update knowledge set status = 'indexed', error = null where id = :id"), {"id": job.knowledge_id}
        )
        await conn.execute(
            text("delete from embedding_jobs where knowledge_id = :id and revision = :rev"),
            {"id": job.knowledge_id, "rev": job.revision},
        )
    return True


_INSERT_CHUNK = text(
    """
    insert into knowledge_chunks (knowledge_id, company_id, position, content, tsv, embedding, model)
    values (:knowledge_id, :company_id, :position, :content,
            setweight(to_tsvector('english', :title), 'A') || to_tsvector('english', :content),
            :embedding, :model)
    """
).bindparams(bindparam("embedding", type_=Vector(DIMENSIONS)))


def _chunk_row(job: Job, chunk: Chunk, model: str) -> dict[str, Any]:
    return {
        "knowledge_id": job.knowledge_id,
        "company_id": job.company_id,
        "position": chunk.position,
        "content": chunk.content,
        "title": job.title,
        "embedding": chunk.embedding,
        "model": model,
    }


async def fail(engine: AsyncEngine, job: Job, error: str, *, retry_in: dt.timedelta | None) -> None:
    """Retries later, or (retry_in None) gives up and marks the item failed with the reason."""
    async with engine.begin() as conn:
        if retry_in is not None:
            await conn.execute(
                text(
                    "update embedding_jobs set run_after = now() + :delay, locked_until = null, last_error = :error"
                    " where knowledge_id = :id and revision = :rev"
                ),
                {"delay": retry_in, "error": error, "id": job.knowledge_id, "rev": job.revision},
            )
            return
        await conn.execute(
            # Only if still pending: a worker whose lease ran out must not undo another's success.
            text(
                "update knowledge set status = 'failed', error = :error"
                " where id = :id and revision = :rev and status = 'pending'"
            ),
            {"error": error, "id": job.knowledge_id, "rev": job.revision},
        )
        await conn.execute(
            text("delete from embedding_jobs where knowledge_id = :id and revision = :rev"),
            {"id": job.knowledge_id, "rev": job.revision},
        )


async def requeue_other_models(engine: AsyncEngine, model: str) -> int:
    """Queues every item with a chunk made by another model (`fluxopus reindex`)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                """
                insert into embedding_jobs (knowledge_id, company_id, revision)
                select k.id, k.company_id, k.revision from knowledge k
                 where exists (select 1 from knowledge_chunks c where c.knowledge_id = k.id and c.model <> :model)
                on conflict (knowledge_id) do update set run_after = now(), locked_until = null, attempts = 0
                """
            ),
            {"model": model},
        )
        await conn.execute(text("select pg_notify(:channel, '')"), {"channel": CHANNEL})
    return int(result.rowcount or 0)
