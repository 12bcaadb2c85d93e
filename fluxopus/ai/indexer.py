"""The background worker that embeds knowledge: claim a job, chunk, embed, store, repeat.

It wakes on NOTIFY from the queueing trigger and also polls, so a missed notification only
delays work. A failure is retried with exponential backoff and, after `max_attempts`, marks
the item `failed` with the reason. Chunking and embedding run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.chunking import chunk
from fluxopus.ai.embeddings import Embedder
from fluxopus.db import jobs

log = logging.getLogger(__name__)

TITLE_TOKENS = 128  # at most this much of a title is embedded with each chunk (500 characters: ~100)


def _clip(title: str, count_tokens: Callable[[str], int], limit: int) -> str:
    """The title's first words, up to `limit` tokens (and `limit` characters of an unbroken one)."""
    kept: list[str] = []
    for word in title.split():
        if count_tokens(" ".join([*kept, word])) > limit:
            if not kept:
                kept.append(word[:limit])
            break
        kept.append(word)
    return " ".join(kept)


class Indexer:
    def __init__(
        self,
        engine: AsyncEngine,
        embedder: Embedder,
        *,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        max_attempts: int = 5,
        backoff: float = 2.0,
        poll: float = 5.0,
    ) -> None:
        self.engine = engine
        self.embedder = embedder
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll = poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fluxopus-indexer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def work(self) -> int:
        """Processes due jobs until none is left; returns how many it handled."""
        done = 0
        while (job := await jobs.claim(self.engine, lease=self.lease)) is not None:
            await self.process(job)
            done += 1
        return done

    async def process(self, job: jobs.Job) -> None:
        try:
            # The title travels with every chunk: it is often what a query names. Title and chunk
            # must fit the model's window together ([CLS] and [SEP] too), or the chunk's end is cut off.
            title = _clip(job.title, self.embedder.count_tokens, TITLE_TOKENS)
            size = min(240, self.embedder.max_tokens - 2 - self.embedder.count_tokens(title))
            pieces = await asyncio.to_thread(chunk, job.content, self.embedder.count_tokens, size=size)
            embedded = await self.embedder.embed([f"{title}\n\n{piece}" for piece in pieces])
            chunks = [jobs.Chunk(i, p, v) for i, (p, v) in enumerate(zip(pieces, embedded.vectors, strict=True))]
            await jobs.complete(self.engine, job, chunks, self.embedder.model_id)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, and retried
            log.warning("embedding %s failed (attempt %d)", job.knowledge_id, job.attempts, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"[:500]
            if job.attempts >= self.max_attempts:
                await jobs.fail(self.engine, job, error, retry_in=None)
            else:
                delay = dt.timedelta(seconds=self.backoff * 2 ** (job.attempts - 1))
                await jobs.fail(self.engine, job, error, retry_in=delay)

    async def _run(self) -> None:
        async with jobs.notifications(self.engine, self._wake.set):
            while True:
                self._wake.clear()  # before working: a job queued meanwhile wakes the next wait
                try:
                    await self.work()
                except Exception:  # noqa: BLE001 - the database may be restarting: wait, then go on
                    log.exception("the indexer could not reach the queue")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
