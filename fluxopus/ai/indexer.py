"""The background worker that embeds knowledge: claim jobs, chunk, charge, embed, store.

It wakes on NOTIFY from the queueing trigger and also polls, so a missed notification only
delays work; the LISTEN connection is reopened (with backoff) when the database goes away.

It is fair between companies. A claim takes the company served longest ago, a worker holds a round's
worth of chunks per company (one item, or several small ones) for at most `companies` companies, and
each round embeds the next `batch` chunks of each of them together, in one call: one company's bulk
import or 1 MB item (a thousand chunks, minutes of CPU) delays another company's item by a round,
not by the whole backlog, and the model is fed as fast as it can go. Each job's part of a round is
charged to its company's monthly token budget before it is embedded; a budget that runs out fails
the item with the reason (saving it again retries).
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
from fluxopus.db.listen import keep_listening, listen_dsn

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


def texts_to_embed(
    title: str, content: str, count_tokens: Callable[[str], int], max_tokens: int
) -> tuple[list[str], list[str]]:
    """The item's chunks, and what is embedded of each: the chunk after the title.

    The title travels with every chunk: it is often what a query names. Title and chunk must fit the
    model's window together ([CLS] and [SEP] too), or the chunk's end is cut off."""
    clipped = _clip(title, count_tokens, TITLE_TOKENS)
    size = min(240, max_tokens - 2 - count_tokens(clipped))
    pieces = chunk(content, count_tokens, size=size)
    return pieces, [f"{clipped}\n\n{p}" for p in pieces]


class BudgetExhausted(Exception):
    """The company's monthly token budget does not cover the next batch: not worth retrying soon."""

    def __init__(self, tokens: int) -> None:
        super().__init__(
            f"Token budget exceeded: indexing needs {tokens} more tokens than the company's monthly"
            " budget has left; save the item again once the budget allows"
        )


class _Dropped(Exception):
    """The job is no longer this worker's (its item was edited, or another worker took it)."""


@dataclass
class _Work:
    """A claimed job in progress: its chunks, and the vectors of those embedded so far."""

    job: jobs.Job
    pieces: list[str]
    texts: list[str]  # what is embedded of each piece
    vectors: list[list[float]] = field(default_factory=list)
    renewed: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> int:
        return len(self.pieces) - len(self.vectors)


@dataclass
class _Share:
    """A job's part of a round: the texts embedded for it, and what they cost."""

    work: _Work
    texts: list[str]
    tokens: int


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
        self.batch = batch or embedder.indexing_batch  # chunks of each company a round embeds
        self.companies = companies  # companies whose jobs are in progress at once
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

    async def work(self, progress: Callable[[int], None] | None = None) -> int:
        """Processes due jobs until none is left; returns how many it handled (`progress(done)` is told
        after each round: `fluxopus reindex` prints it).

        It works in rounds. A round takes the next `batch` chunks of each company in progress (from
        several of its items when they are small, in the order they were claimed) and embeds them all in
        one call: the model runs as fast as it can, and no company waits for more than a round."""
        active: dict[UUID, list[_Work]] = {}
        done = 0
        # A round's finished jobs are stored while the next round is embedded: the model does not wait for
        # the database (one transaction an item, a few milliseconds each: a tenth of the time of small items).
        storing: asyncio.Task[None] | None = None
        try:
            while True:
                # New companies' jobs join at every round, so they wait for a round, not for the backlog.
                done += await self._claim(active)
                if not active:
                    return done
                ended = await self._round(active)
                done += len(ended)
                if progress is not None and ended:
                    progress(done)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(self._store(ended)) if ended else None
        finally:
            if storing is not None:
                await storing

    async def _claim(self, active: dict[UUID, list[_Work]]) -> int:
        """Claims jobs until every company in progress has a round's worth of chunks (and no more than
        `companies` are in progress); returns how many failed to be prepared."""
        failed = 0
        while True:
            hungry = [c for c, works in active.items() if sum(w.left for w in works) < self.batch]
            if len(active) >= self.companies and not hungry:
                return failed
            full = [c for c in active if c not in hungry]
            job = await jobs.claim(
                self.engine, lease=self.lease, busy=full, within=hungry if len(active) >= self.companies else None
            )
            if job is None:
                return failed
            try:
                pieces, texts = await asyncio.to_thread(
                    texts_to_embed, job.title, job.content, self.embedder.count_tokens, self.embedder.max_tokens
                )
            except Exception as exc:  # noqa: BLE001 - recorded on the job, and retried
                await self._failed(job, exc)
                failed += 1
                continue
            active.setdefault(job.company_id, []).append(_Work(job, pieces, texts))

    async def _round(self, active: dict[UUID, list[_Work]]) -> list[tuple[_Work, Exception | None]]:
        """Charges and embeds one round; returns the jobs it ended (to store, or with their error), which
        are no longer in `active`."""
        shares: list[_Share] = []
        for works in active.values():
            room = self.batch
            for work in works:
                texts = work.texts[len(work.vectors) :][:room]
                room -= len(texts)
                tokens = sum(min(self.embedder.count_tokens(t) + 2, self.embedder.max_tokens) for t in texts)
                shares.append(_Share(work, texts, tokens))
                if room <= 0:
                    break
        ended: list[tuple[_Work, Exception | None]] = []
        embedding: list[_Share] = []
        # Each job is charged to its own company, before anything of it is embedded.
        charges = [(s.work.job, s.tokens) for s in shares if s.texts]
        try:
            paid = iter(await jobs.charge_each(self.engine, charges, default_limit=self.token_budget))
        except Exception as exc:  # noqa: BLE001 - recorded on the jobs, and retried
            ended += [(s.work, exc) for s in shares]
            shares = []
        for share in shares:
            if share.texts and not next(paid):
                ended.append((share.work, BudgetExhausted(share.tokens)))
            else:
                embedding.append(share)
        for share, error in await self._embed([s for s in embedding if s.texts]):
            if error is not None:
                ended.append((share.work, error))
        for share in embedding:
            work = share.work
            if any(w is work for w, _ in ended):
                continue
            if work.left == 0:
                ended.append((work, None))
            elif not await self._keep_lease(work):
                ended.append((work, _Dropped()))
        for works in active.values():  # the jobs this round did not reach hold their lease too
            for work in works:
                if not any(s.work is work for s in shares) and not await self._keep_lease(work):
                    ended.append((work, _Dropped()))
        for work, _ in ended:
            works = active[work.job.company_id]
            works.remove(work)
            if not works:
                del active[work.job.company_id]
        return ended

    async def _store(self, ended: list[tuple[_Work, Exception | None]]) -> None:
        """Stores the finished jobs' chunks, or records why they failed."""
        for work, error in ended:
            try:
                if error is None:
                    stored = zip(work.pieces, work.vectors, strict=True)
                    chunks = [jobs.Chunk(i, p, v) for i, (p, v) in enumerate(stored)]
                    await jobs.complete(self.engine, work.job, chunks, self.embedder.model_id)
                elif not isinstance(error, _Dropped):
                    await self._failed(work.job, error)
            except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job
                with contextlib.suppress(Exception):  # the database may be gone: the lease runs out, it is retried
                    await self._failed(work.job, exc)

    async def _embed(self, shares: list[_Share]) -> list[tuple[_Share, Exception | None]]:
        """Embeds the round's texts in one call and hands each job its vectors. When that fails, each job's
        texts are tried alone, so one item the model refuses fails only itself."""
        if not shares:
            return []
        try:
            embedded = await self.embedder.embed([t for s in shares for t in s.texts], background=True)
            at = 0
            for share in shares:
                share.work.vectors.extend(embedded.vectors[at : at + len(share.texts)])
                at += len(share.texts)
            return [(s, None) for s in shares]
        except Exception as exc:  # noqa: BLE001 - recorded on the jobs below
            if len(shares) == 1:
                return [(shares[0], exc)]
        results: list[tuple[_Share, Exception | None]] = []
        for share in shares:
            results += await self._embed([share])
        return results

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
        """Keeps a LISTEN connection open; each new one wakes the worker, for the jobs queued while
        nobody listened."""
        await keep_listening(
            listen_dsn(self.engine),
            jobs.CHANNEL,
            lambda _: self._wake.set(),
            on_listening=self._wake.set,
            name="fluxopus-indexer",
        )
