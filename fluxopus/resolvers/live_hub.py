"""The live events hub: the change log fanned out to each subscriber, under their own RLS.

One `LiveHub` per process LISTENs once (db/listen.py) and reads each batch of changes once
(db/live.read_batch): the changed rows as they are now, and — in the same statement for every
subscriber identity of the process — whether each identity may see each change now and could before.
Each subscription then gets the events its filter wants, in commit order, through a bounded queue: a
subscriber that falls behind is cut off (FellBehind), never waited for.

A subscriber that passes `lastEventId` first gets what it missed from the log, then live events; when
the log no longer holds them (pruned, FLUXOPUS_LIVE_RETENTION) it gets RESYNC instead. When the LISTEN
connection is lost, the hub reads what it missed from the log once it listens again.

What each kind of change reads, and which events a subscription wants, are given to it
(resolvers/live.py): the hub knows no entity.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from fluxopus.db import live as log_
from fluxopus.db.listen import keep_listening
from fluxopus.errors import FellBehind, Unauthorized
from fluxopus.models.live import ChangeType

log = logging.getLogger(__name__)

REPLAY_LIMIT = 10_000  # a subscriber further behind than this is told to RESYNC
_BATCH = 1_000  # changes read at once
_TOLD_GONE = 1_000  # deletions a subscriber remembers telling (to say each once)
_EXPIRY_GRACE = 2.0  # seconds past a token's expiry before its subscriptions end (see LiveStream)
_GIVE_UP = 30  # catch-ups (a second apart) that read the log and failed to fan it out, before RESYNC


@dataclass(frozen=True)
class Kind:
    """A kind of change (task, knowledge …): how to read its row by id, and the model the row is."""

    row: Callable[[Any], Select[Any]]  # the resolver's statement for one row, by id
    model: type[BaseModel]


def _rows_of(kind: Kind) -> Callable[[Sequence[UUID]], Select[Any]]:
    return lambda ids: kind.row(any_(bindparam(None, list(ids), type_=ARRAY(PG_UUID(as_uuid=True)))))


def change_type(change: log_.Change, now: bool, before: bool) -> ChangeType | None:
    """What a change is to someone who may see its row now (`now`) and could before (`before`): a row
    they can no longer see is DELETED for them; one they never saw, nothing."""
    if change.op in ("assigned", "unassigned"):
        return ChangeType(change.op) if now else None
    if now and change.op != "deleted":
        return ChangeType(change.op)
    if before and change.op != "created":
        return ChangeType.deleted
    return None


# What happened, the change, the row now (None when deleted or hidden from the subscriber).
Wants = Callable[[ChangeType, log_.Change, Any], bool]


@dataclass(frozen=True)
class Feed:
    """A subscription field (taskEvents …): the kinds of change it follows and the event it says them
    with — the same for every subscriber, so subscribers of one user share an event object, and GraphQL
    resolves a shared event once per document (schema/live.SharedEvents)."""

    name: str
    kinds: frozenset[str]
    event: Callable[[ChangeType, log_.Change, Any], BaseModel]
    resync: Callable[[str], BaseModel]


@dataclass(eq=False)
class Subscriber:
    """One subscription: whose it is, what it wants, and the events waiting for it."""

    feed: Feed
    company_id: UUID
    user_id: UUID
    claims: Mapping[str, Any]
    wants: Wants  # the subscription's filter
    limit: int
    _items: deque[tuple[int, BaseModel]] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _told_gone: dict[UUID, None] = field(default_factory=dict)  # rows it was last told are DELETED (bounded)
    fell_behind: bool = False
    last_sent: int | None = None

    def news(self, kind: ChangeType, entity_id: UUID) -> bool:
        """Whether an event is news to this subscriber. Rows are read at delivery, so an update read
        after the row was deleted is already a deletion: the deletion's own event then says it twice."""
        if kind is ChangeType.deleted:
            if entity_id in self._told_gone:
                return False
            self._told_gone[entity_id] = None
            if len(self._told_gone) > _TOLD_GONE:
                del self._told_gone[next(iter(self._told_gone))]
        else:
            self._told_gone.pop(entity_id, None)
        return True

    def offer(self, change_id: int, event: BaseModel) -> bool:
        """Never waits: a subscriber with `limit` events waiting is cut off instead. Whether it was queued."""
        if self.fell_behind:
            return False
        queued = len(self._items) < self.limit
        if queued:
            self._items.append((change_id, event))
        else:
            self.fell_behind = True
            self._items.clear()
        self._ready.set()
        return queued

    async def next(self) -> tuple[int, BaseModel]:
        while not self._items:
            if self.fell_behind:
                resume = f' with lastEventId: "{self.last_sent}"' if self.last_sent is not None else ""
                raise FellBehind(
                    f"This subscription fell behind: more than {self.limit} events were waiting for it, so it"
                    f" was closed. Subscribe again{resume} to receive what it missed"
                )
            self._ready.clear()
            await self._ready.wait()
        change_id, event = self._items.popleft()
        self.last_sent = change_id
        return change_id, event


class _CatchUp:
    """In the hub's inbox: a LISTEN connection (re)started; what was committed meanwhile is in the log."""


_CATCH_UP = _CatchUp()


class LiveHub:
    def __init__(
        self,
        engine: AsyncEngine,
        dsn: str,
        kinds: Mapping[str, Kind],
        *,
        queue_limit: int,
        retention: dt.timedelta,
        name: str = "fluxopus-live",
    ) -> None:
        self.engine = engine  # the service pool: the hub reads as the service, and as each identity
        self.dsn = dsn
        self.kinds = kinds
        self._rows_of = {name: _rows_of(kind) for name, kind in kinds.items()}
        self.queue_limit = queue_limit
        self.retention = retention
        self.name = name
        self.last_id: int | None = None  # the last change fanned out
        self.listening = asyncio.Event()
        self._subscribers: dict[UUID, set[Subscriber]] = {}  # by company
        self._inbox: asyncio.Queue[log_.ChangeRef | _CatchUp] = asyncio.Queue()
        self._behind = False  # a batch failed: changes are read from the log until caught up
        self._failed_fan_outs = 0  # catch-ups in a row that read the log but could not fan it out
        self.events_sent = 0  # events queued for subscribers, and subscribers cut off (/metrics)
        self.cut_off = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle

    async def start(self) -> None:
        with contextlib.suppress(Exception):  # the first catch-up starts from the end instead
            self.last_id = await log_.latest_change(self.engine)
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"{self.name}-listen"),
            asyncio.create_task(self._deliver(), name=f"{self.name}-deliver"),
            asyncio.create_task(self._prune(), name=f"{self.name}-prune"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    def subscriptions_of(self, company_id: UUID, user_id: UUID) -> int:
        """How many subscriptions of this user the hub is fanning changes out to now."""
        return sum(1 for s in self._subscribers.get(company_id, ()) if s.user_id == user_id)

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(subscriber.company_id, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        subs = self._subscribers.get(subscriber.company_id)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[subscriber.company_id]

    # -- the loops

    async def _listen(self) -> None:
        def notified(payload: str) -> None:
            try:
                self._inbox.put_nowait(log_.ChangeRef.parse(payload))
            except ValueError:
                log.warning("%s: ignoring a malformed notification %r", self.name, payload)

        def started() -> None:
            self.listening.set()
            self._inbox.put_nowait(_CATCH_UP)

        await keep_listening(
            self.dsn, log_.CHANNEL, notified, on_listening=started, on_lost=self.listening.clear, name=self.name
        )

    async def _deliver(self) -> None:
        while True:
            items = [await self._inbox.get()]
            while not self._inbox.empty() and len(items) < _BATCH:
                items.append(self._inbox.get_nowait())
            refs: list[log_.ChangeRef] = []
            for item in items:
                if isinstance(item, _CatchUp):
                    await self._fan_out(refs)
                    refs = []
                    self._behind = True
                else:
                    refs.append(item)
            await self._fan_out(refs)
            while self._behind:
                await self._catch_up()
                if self._behind:
                    await asyncio.sleep(1.0)  # the database is away: try again shortly

    async def _catch_up(self) -> None:
        """Fan out what the log holds after the last change fanned out (or RESYNC everyone). When that
        keeps failing though the log answers (a change it cannot fan out?), RESYNC and skip ahead."""
        try:
            if self.last_id is None or self._failed_fan_outs >= _GIVE_UP:
                latest = await log_.latest_change(self.engine)
                if self.last_id is not None:
                    log.error("%s: cannot fan changes out; skipping to change %d with RESYNC", self.name, latest)
                    self._resync_all(latest)
                self.last_id, self._behind, self._failed_fan_outs = latest, False, 0
                return
            while True:
                refs = await log_.changes_after(self.engine, self.last_id, limit=_BATCH)
                if refs is None:
                    latest = await log_.latest_change(self.engine)
                    log.warning(
                        "%s: changes up to %d were pruned before they were fanned out: RESYNC", self.name, latest
                    )
                    self._resync_all(latest)
                    self.last_id = latest
                    break
                try:
                    await self._fan_out(refs, catching_up=True)
                except Exception:
                    self._failed_fan_outs += 1
                    raise
                if len(refs) < _BATCH:
                    break
            self._behind, self._failed_fan_outs = False, 0
        except Exception:  # noqa: BLE001 - the database is away; _deliver tries again
            log.warning("%s: cannot read the change log", self.name, exc_info=True)

    async def _fan_out(self, refs: Sequence[log_.ChangeRef], *, catching_up: bool = False) -> None:
        if self._behind and not catching_up:
            return  # the catch-up reads these from the log, in order
        fresh = [ref for ref in refs if self.last_id is None or ref.id > self.last_id]
        if not fresh:
            return
        interested: dict[tuple[UUID, str], list[Subscriber]] = {}
        for ref in fresh:
            if (ref.company_id, ref.kind) not in interested:
                subs = self._subscribers.get(ref.company_id, ())
                interested[ref.company_id, ref.kind] = [s for s in subs if ref.kind in s.feed.kinds]
        wanted = [ref for ref in fresh if interested[ref.company_id, ref.kind]]
        if wanted:
            subscribers = {s for subs in interested.values() for s in subs}
            try:
                batch = await self._read(wanted, subscribers)
            except Exception:
                if catching_up:
                    raise
                # Read again from the log, in order, once the database answers.
                log.warning("%s: cannot read changes; catching up from the log", self.name, exc_info=True)
                self._behind = True
                return
            for subscriber, change_id, event in _events(batch, subscribers, self.kinds):
                self._offer(subscriber, change_id, event)
        self.last_id = fresh[-1].id

    async def _read(self, refs: Sequence[log_.ChangeRef], subscribers: Iterable[Subscriber]) -> _Read:
        identities: dict[UUID, int] = {}
        claims: list[Mapping[str, Any]] = []
        for subscriber in subscribers:
            if subscriber.user_id not in identities:
                identities[subscriber.user_id] = len(claims)
                claims.append(subscriber.claims)
        batch = await log_.read_batch(self.engine, refs, claims, self._rows_of)
        return _Read(batch, identities)

    def _offer(self, subscriber: Subscriber, change_id: int, event: BaseModel) -> None:
        was_behind = subscriber.fell_behind
        if subscriber.offer(change_id, event):
            self.events_sent += 1
        elif not was_behind:  # this offer cut it off
            self.cut_off += 1

    def _resync_all(self, latest: int) -> None:
        for subs in self._subscribers.values():
            for subscriber in subs:
                self._offer(subscriber, latest, subscriber.feed.resync(str(latest)))

    async def _prune(self) -> None:
        every = min(max(self.retention.total_seconds() / 10, 1.0), 60.0)
        while True:
            await asyncio.sleep(every)
            try:
                dropped = await log_.prune(self.engine, self.retention)
                if dropped:
                    log.debug("%s: pruned %d changes", self.name, dropped)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.warning("%s: cannot prune the change log", self.name, exc_info=True)

    # -- one subscriber's past

    async def replay(self, subscriber: Subscriber, after: int) -> list[tuple[int, BaseModel]]:
        """What `subscriber` missed after change `after`, in order; RESYNC when the log cannot say."""
        refs = await log_.changes_after(
            self.engine,
            after,
            limit=REPLAY_LIMIT + 1,
            company_id=subscriber.company_id,
            kinds=sorted(subscriber.feed.kinds),
        )
        latest = await log_.latest_change(self.engine)
        if refs is None or len(refs) > REPLAY_LIMIT or after > latest:
            return [(latest, subscriber.feed.resync(str(latest)))]
        if not refs:
            return []
        read = await self._read(refs, [subscriber])
        return [(change_id, event) for _, change_id, event in _events(read, [subscriber], self.kinds)]


@dataclass(frozen=True)
class _Read:
    batch: log_.Batch
    identities: dict[UUID, int]  # user id -> its index in the batch's visibility rows


def _events(
    read: _Read, subscribers: Iterable[Subscriber], kinds: Mapping[str, Kind]
) -> Iterable[tuple[Subscriber, int, BaseModel]]:
    """Each subscriber's events of a batch, in commit order."""
    batch = read.batch
    by_identity: dict[int, list[Subscriber]] = {}
    for subscriber in set(subscribers):
        by_identity.setdefault(read.identities[subscriber.user_id], []).append(subscriber)
    seen: dict[int, list[log_.Seen]] = {}
    for answer in batch.seen:
        seen.setdefault(answer.change_id, []).append(answer)
    for change in batch.changes:
        raw = batch.rows.get(change.id)
        model = kinds[change.kind].model.model_validate(raw) if raw is not None else None
        for seen_by in seen.get(change.id, ()):
            kind = change_type(change, seen_by.now and model is not None, seen_by.before)
            if kind is None:
                continue
            row = model if kind is not ChangeType.deleted else None
            shared: dict[str, BaseModel] = {}  # by feed: one event object for this user's subscribers
            for subscriber in by_identity.get(seen_by.identity, ()):
                feed = subscriber.feed
                if change.kind not in feed.kinds or not subscriber.wants(kind, change, row):
                    continue
                if subscriber.news(kind, change.entity_id):
                    event = shared.get(feed.name)
                    if event is None:
                        event = shared[feed.name] = feed.event(kind, change, row)
                    yield subscriber, change.id, event


class LiveStream:
    """One subscription's events: the missed ones first (lastEventId), then live ones, until closed."""

    def __init__(self, hub: LiveHub, subscriber: Subscriber, after: int | None) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.after = after

    async def events(self) -> AsyncGenerator[BaseModel, None]:
        self.hub.add(self.subscriber)  # before reading the past: nothing falls between the two
        try:
            upto = -1
            if self.after is not None:
                for change_id, event in await self.hub.replay(self.subscriber, self.after):
                    upto = change_id
                    yield event
            # A subscription lasts as long as the token that opened it. A WebSocket is closed at expiry
            # (4401, schema/router.py); a graphql-sse stream has no socket to close, so it ends here — a
            # moment later, so that a WebSocket gets the one signal, not a race of two.
            expires = float(self.subscriber.claims.get("exp", math.inf)) + _EXPIRY_GRACE
            while True:
                try:
                    async with asyncio.timeout(max(expires - time.time(), 0.0) if expires < math.inf else None):
                        change_id, event = await self.subscriber.next()
                except TimeoutError:
                    raise Unauthorized("The token this subscription was opened with expired: subscribe again") from None
                if change_id > upto or _is_resync(event):
                    yield event
        finally:
            self.hub.remove(self.subscriber)


def _is_resync(event: BaseModel) -> bool:
    return getattr(event, "type", None) is ChangeType.resync
