"""The background worker that embeds knowledge: claim jobs, chunk, charge, embed, store.

It wakes on NOTIFY from the queueing trigger and also polls, so a missed notification only
delays work; the LISTEN connection is reopened (with backoff) when the database goes away.

It is fair between companies. A claim takes the company served longest ago, a worker holds at most
one job per company, and it embeds its jobs a batch at a time, in turn: one company's bulk import
or 1 MB item (a thousand chunks, minutes of CPU) delays another company's item by a batch or so,
not by the whole backlog. Each batch is charged to the company's monthly token budget before it
is embedded; a budget that runs out fails the item with the reason (saving it again retries).
Other failures are retried with exponential backoff and, after `max_attempts`, fail the item.
Chunking and embedding run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

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


class BudgetExhausted(Exception):
    """The company's monthly token budget does not cover the next batch: not worth retrying soon."""


@dataclass
class _Work:
    """A claimed job in progress: its chunks, and the vectors of those embedded so far."""

    job: jobs.Job
    title: str
    pieces: list[str]
    vectors: list[list[float]] = field(default_factory=list)
    renewed: float = field(default_factory=time.monotonic)


class Indexer:
    def __init__(
        self,
        engine: AsyncEngine,
        embedder: Embedder,
        *,
        token_budget: int,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        max_attempts: int = 5,
        backoff: float = 2.0,
        poll: float = 5.0,
        batch: int | None = None,
        companies: int = 4,
    ) -> None:
        self.engine = engine
        self.embedder = embedder
        self.token_budget = token_budget  # the default monthly budget (companies may have their own)
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll = poll
        self.batch = batch or embedder.indexing_batch  # chunks embedded at a time
        self.companies = companies  # jobs (of as many companies) in progress at once
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
        active: dict[UUID, _Work] = {}
        done = 0
        while True:
            # New companies' jobs join at every round, so they wait for a round, not for the backlog.
            while len(active) < self.companies:
                job = await jobs.claim(self.engine, lease=self.lease, busy=list(active))
                if job is None:
                    break
                try:
                    active[job.company_id] = await self._prepare(job)
                except Exception as exc:  # noqa: BLE001 - recorded on the job, and retried
                    await self._failed(job, exc)
                    done += 1
            if not active:
                return done
            for company, work in list(active.items()):
                if await self._step(work):
                    del active[company]
                    done += 1

    async def _prepare(self, job: jobs.Job) -> _Work:
        # The title travels with every chunk: it is often what a query names. Title and chunk must fit
        # the model's window together ([CLS] and [SEP] too), or the chunk's end is cut off.
        title = _clip(job.title, self.embedder.count_tokens, TITLE_TOKENS)
        size = min(240, self.embedder.max_tokens - 2 - self.embedder.count_tokens(title))
        pieces = await asyncio.to_thread(chunk, job.content, self.embedder.count_tokens, size=size)
        return _Work(job, title, pieces)

    async def _step(self, work: _Work) -> bool:
        """Embeds the job's next batch, or stores it when all are; True when the job is finished."""
        job = work.job
        try:
            if len(work.vectors) < len(work.pieces):
                texts = [f"{work.title}\n\n{p}" for p in work.pieces[len(work.vectors) :][: self.batch]]
                tokens = sum(min(self.embedder.count_tokens(t) + 2, self.embedder.max_tokens) for t in texts)
                if not await jobs.charge(self.engine, job, tokens, default_limit=self.token_budget):
                    raise BudgetExhausted(
                        f"Token budget exceeded: indexing needs {tokens} more tokens than the company's monthly"
                        " budget has left; save the item again once the budget allows"
                    )
                embedded = await self.embedder.embed(texts, background=True)
                work.vectors.extend(embedded.vectors)
                if len(work.vectors) < len(work.pieces):
                    return not await self._keep_lease(work)
            chunks = [jobs.Chunk(i, p, v) for i, (p, v) in enumerate(zip(work.pieces, work.vectors, strict=True))]
            await jobs.complete(self.engine, job, chunks, self.embedder.model_id)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job
            await self._failed(job, exc)
        return True

    async def _failed(self, job: jobs.Job, exc: Exception) -> None:
        """Retried later with backoff, or, after max_attempts (or when the budget is used up), the item
        is failed with the reason."""
        if isinstance(exc, BudgetExhausted):
            await jobs.fail(self.engine, job, str(exc), retry_in=None)
            return
        log.warning("embedding %s failed (attempt %d)", job.knowledge_id, job.attempts, exc_info=exc)
        error = f"{type(exc).__name__}: {exc}"[:500]
        if job.attempts >= self.max_attempts:
            await jobs.fail(self.engine, job, error, retry_in=None)
        else:
            delay = dt.timedelta(seconds=self.backoff * 2 ** (job.attempts - 1))
            await jobs.fail(self.engine, job, error, retry_in=delay)

    async def _keep_lease(self, work: _Work) -> bool:
        """Renews the lease once a third of it has passed; False when the job is no longer this
        worker's (its item was edited, or another worker took it): then it is dropped."""
        if time.monotonic() - work.renewed < self.lease.total_seconds() / 3:
            return True
        work.renewed = time.monotonic()
        return await jobs.renew(self.engine, work.job, lease=self.lease)

    async def _run(self) -> None:
        listener = asyncio.create_task(self._listen(), name="fluxopus-indexer-listen")
        try:
            while True:
                self._wake.clear()  # before working: a job queued meanwhile wakes the next wait
                try:
                    await self.work()
                except Exception:  # noqa: BLE001 - the database may be restarting: wait, then go on
                    log.exception("the indexer could not reach the queue")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """Keeps a LISTEN connection open. When the database goes away (a restart, a failover) it is
        opened again, backing off from half a second to 30; each new one wakes the worker, for the
        jobs queued while nobody listened."""
        dsn = jobs.listen_dsn(self.engine)
        delay = 0.5
        while True:
            try:
                async with jobs.listening(dsn, self._wake.set) as listener:
                    delay = 0.5
                    self._wake.set()
                    while not listener.lost.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(listener.lost.wait(), 30)
                        if not listener.lost.is_set():
                            await listener.check(timeout=10)  # a connection can die without a word
                log.warning("the indexer's LISTEN connection was lost; reconnecting")
            except Exception:  # noqa: BLE001 - any failure to connect: try again later
                log.warning("the indexer cannot LISTEN (retrying in %g s)", delay, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
