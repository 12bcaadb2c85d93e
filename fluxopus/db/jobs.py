"""The embedding queue, seen from the worker: claim a job, store its chunks, or fail it.

The worker acts for the service, not for a user, so these run outside RLS, each in a short
transaction of its own. A claim is a lease: a worker that dies mid-job leaves `locked_until`
behind, and the job is claimed again once it passes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

CHANNEL = "fluxopus_embedding_jobs"
DIMENSIONS = 384  # knowledge_chunks.embedding is vector(384)

_CLAIM = text(
    """
    update embedding_jobs j
       set locked_until = now() + :lease, attempts = j.attempts + 1
     where j.knowledge_id = (
             select knowledge_id from embedding_jobs
              where run_after <= now() and (locked_until is null or locked_until < now())
              order by run_after
              for update skip locked
              limit 1)
    returning j.knowledge_id, j.revision, j.attempts,
              (select k.title from knowledge k where k.id = j.knowledge_id) as title,
              (select k.content from knowledge k where k.id = j.knowledge_id) as content,
              (select k.company_id from knowledge k where k.id = j.knowledge_id) as company_id
    """
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


@asynccontextmanager
async def notifications(engine: AsyncEngine, on_notify: Callable[[], None]) -> AsyncIterator[None]:
    """Calls `on_notify` whenever a job is queued (LISTEN on one pooled connection, held meanwhile)."""

    def notified(*_: object) -> None:
        on_notify()

    async with engine.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        await raw.add_listener(CHANNEL, notified)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone with the database
                await raw.remove_listener(CHANNEL, notified)


async def claim(engine: AsyncEngine, *, lease: dt.timedelta) -> Job | None:
    async with engine.begin() as conn:
        row = (await conn.execute(_CLAIM, {"lease": lease})).mappings().first()
    if row is None:
        return None
    return Job(**row)


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
                insert into embedding_jobs (knowledge_id, revision)
                select k.id, k.revision from knowledge k
                 where exists (select 1 from knowledge_chunks c where c.knowledge_id = k.id and c.model <> :model)
                on conflict (knowledge_id) do update set run_after = now(), locked_until = null, attempts = 0
                """
            ),
            {"model": model},
        )
        await conn.execute(text("select pg_notify(:channel, '')"), {"channel": CHANNEL})
    return int(result.rowcount or 0)
