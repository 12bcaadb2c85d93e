"""The one place a database session is opened: a transaction per request with RLS claims.

`role` and `request.jwt.claims` are set with set_config(..., true), i.e. transaction-local,
so nothing leaks to the next user of a pooled connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.sql import Executable
from sqlalchemy.sql.functions import FunctionElement

from fluxopus.db.prepared import Prepared
from fluxopus.errors import Conflict, DomainError, Forbidden, Invalid, QuotaExceeded, Unauthorized, Unavailable

# connection_exception (08…), admin_shutdown, crash_shutdown, cannot_connect_now (starting up, recovering)
_GONE_SQLSTATES = ("57P01", "57P02", "57P03")
log = logging.getLogger(__name__)
DATABASE_UNAVAILABLE = "The database is not available right now; retry in a few seconds"


def database_gone(exc: BaseException) -> bool:
    """The database went away, is restarting or cannot be reached: a reason to retry, not a bug."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = _sqlstate(exc) or ""
        return sqlstate.startswith("08") or sqlstate in _GONE_SQLSTATES or database_gone(exc.orig or Exception())
    # What asyncpg raises when its socket is gone or refused (a missing Unix socket is ENOENT).
    if isinstance(exc, ConnectionError | FileNotFoundError):
        return True
    module = type(exc).__module__
    return module.startswith("asyncpg") and type(exc).__name__ in (
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "InterfaceError",
    )


async def connect(engine: AsyncEngine) -> AsyncConnection:
    """A pooled connection, or Unavailable: the pool stayed exhausted for pool_timeout seconds, or the
    database cannot be reached (retry shortly either way)."""
    try:
        return await engine.connect()
    except SATimeoutError:
        raise Unavailable() from None
    except (OSError, DBAPIError) as exc:
        if database_gone(exc):
            raise Unavailable(DATABASE_UNAVAILABLE) from exc
        raise


@dataclass(frozen=True)
class _Lease:
    conn: AsyncConnection
    driver: Any  # the asyncpg connection under conn, for BEGIN, COMMIT, ROLLBACK and prepared reads
    generation: int  # the engine's disposals when it was opened: an older one is closed when given back


class _Kept:
    """The request pool: a transaction's connection, opened once, set to autocommit (the transaction is
    ours: _begin_as) and kept between requests, handed out first come, first served.

    Kept, not checked out of SQLAlchemy's pool for each request: a checkout and its return were two
    greenlets (each a fresh 16 KiB frame stack, mapped and unmapped: two page faults) and SQLAlchemy's
    pool bookkeeping, ~70 µs of a 0.4 ms `GET`. The connections are the kept pool's own (opened through
    an engine without a pool of its own, on the request engine's URL): kept out of the request engine's
    pool, they would starve its other users (sign-in, session checks, the indexer), which keep it.
    First come, first served because SQLAlchemy's async pool hands a returned connection to whoever asks
    next — a request just arrived before those already waiting — so under load some requests waited many
    times longer than others (p99 2.4x the raw floor's at 32 clients on a pool of 20; 1.1x in turn).
    Sized as the request engine's pool (size + overflow, its timeout). Disposing the request engine
    (shutdown, a database that restarted) closes the idle connections and those in use as they come back."""

    def __init__(self, engine: AsyncEngine) -> None:
        pool = engine.sync_engine.pool
        # An engine without a pool (NullPool: the CLI's) keeps nothing: a connection per transaction.
        self.keeps = isinstance(pool, QueuePool)
        self.size, self.timeout, self._opener = sys.maxsize, 0.0, engine
        if isinstance(pool, QueuePool):
            self.size = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)
            self.timeout = pool.timeout()
            self._opener = create_async_engine(engine.url, poolclass=NullPool)
        self._idle: list[_Lease] = []
        self._opened = 0  # idle and in use
        self._waiting: deque[asyncio.Future[_Lease | None]] = deque()  # a lease, or None: a slot to open one in
        self._generation = 0
        if self.keeps:
            event.listen(engine.sync_engine, "engine_disposed", self._disposed)

    @property
    def in_use(self) -> int:
        return self._opened - len(self._idle)

    @property
    def waiting(self) -> int:
        return sum(1 for turn in self._waiting if not turn.done())

    async def take(self) -> _Lease:
        if not self._waiting:
            if self._idle:
                return self._idle.pop()
            if self._opened < self.size:
                self._opened += 1
                return await self._open()
        turn: asyncio.Future[_Lease | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(self.timeout):
                handed = await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._hand_on(turn.result())  # handed over as it was abandoned: pass it on
            else:
                self._waiting.remove(turn)
            if isinstance(exc, TimeoutError):
                raise Unavailable() from exc
            raise
        return handed if handed is not None else await self._open()

    async def give_back(self, lease: _Lease) -> None:
        if (
            not self.keeps
            or lease.generation != self._generation
            or lease.driver.is_closed()
            or lease.driver.is_in_transaction()
        ):
            await self.drop(lease)  # never kept inside a transaction, nor from before a disposal
            return
        if lease.conn.in_transaction():  # SQLAlchemy's own bookkeeping of a write's statements; nothing is sent
            await lease.conn.rollback()
        self._hand_on(lease)

    async def drop(self, lease: _Lease) -> None:
        """Close it for good (dead, cancelled mid-statement, or stale); its slot opens a new one when asked."""
        try:
            await _drop(lease.conn)
        finally:
            self._hand_on(None)

    async def _open(self) -> _Lease:
        generation = self._generation
        try:
            conn = await connect(self._opener)
        except BaseException:
            self._hand_on(None)
            raise
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            driver = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await self.drop(_Lease(conn, None, generation))
            raise
        return _Lease(conn, driver, generation)

    def _hand_on(self, lease: _Lease | None) -> None:
        """A connection (or, None, the slot of one closed) to the longest waiting, else kept idle (or freed)."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(lease)
                return
        if lease is None:
            self._opened -= 1
        else:
            self._idle.append(lease)

    def _disposed(self, engine: Any) -> None:
        """SQLAlchemy's engine_disposed, inside AsyncEngine.dispose's greenlet: close the idle connections
        (terminated first: after a restart they are dead), and those in use when they come back."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for lease in idle:
            try:
                lease.driver.terminate()
                if (sync := lease.conn.sync_connection) is not None:
                    sync.invalidate()
                    sync.close()
            except Exception:  # noqa: BLE001 - it is being thrown away either way
                log.debug("closing a kept connection failed", exc_info=True)
            self._hand_on(None)


_kept: weakref.WeakKeyDictionary[Any, _Kept] = weakref.WeakKeyDictionary()


def _kept_of(engine: AsyncEngine) -> _Kept:
    if not isinstance(engine.sync_engine.pool, QueuePool):
        return _Kept(engine)  # keeps nothing, so nothing to remember (and it holds the engine)
    kept = _kept.get(engine.sync_engine)
    if kept is None:
        kept = _kept[engine.sync_engine] = _Kept(engine)
    return kept


@dataclass(frozen=True)
class PoolStats:
    size: int  # connections it may open (pool size + overflow)
    in_use: int  # held by a transaction now
    waiting: int  # requests waiting for a connection


def pool_stats(engine: AsyncEngine, *, requests: bool = False) -> PoolStats:
    """For /metrics: the requests' kept pool (`requests`), or an engine's own pool."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):
        return PoolStats(size=0, in_use=0, waiting=0)  # NullPool (CLI engines): nothing is kept or waited for
    size = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)
    if not requests:
        return PoolStats(size=size, in_use=pool.checkedout(), waiting=0)
    kept = _kept.get(engine.sync_engine)
    return PoolStats(size, kept.in_use, kept.waiting) if kept is not None else PoolStats(size, 0, 0)


def _postgres_error(exc: BaseException) -> Any:
    """The error as asyncpg raised it (sqlstate, message), whether SQLAlchemy wrapped it or not."""
    orig = getattr(exc, "orig", None)
    for candidate in (getattr(orig, "__cause__", None), orig, exc):
        if getattr(candidate, "sqlstate", None):
            return candidate
    return None


def _sqlstate(exc: BaseException) -> str | None:
    sqlstate = getattr(_postgres_error(exc), "sqlstate", None)
    return str(sqlstate) if sqlstate else None


def _begin_as(claims: Mapping[str, Any]) -> str:
    """`begin` and the claims as one simple query. The claims are a literal: json.dumps escapes every
    non-ASCII character and control character, so doubling the quotes is all a literal needs.

    Generic plans: every statement is prepared (asyncpg), and by default PostgreSQL plans a prepared
    statement again for each execution while the plan it made without the values costs more by its
    estimate — always, for a page (`limit $n` is estimated as a tenth of the table), though the plan it
    then makes is the same. Planning a page of tasks, RLS policies and all, took 0.3 ms of the 0.7 ms
    it cost PostgreSQL. Where a value would change the plan (the search's limit), it is written into
    the SQL (db/queries.py)."""
    literal = json.dumps(claims).replace("'", "''")
    return (
        "begin; select set_config('role', 'authenticated', true),"
        f" set_config('request.jwt.claims', '{literal}', true),"
        " set_config('plan_cache_mode', 'force_generic_plan', true)"
    )


class RlsTransaction:
    """Opens lazily (introspection-only GraphQL requests need no connection) and serialises
    statements: GraphQL resolves sibling fields concurrently, a connection runs one at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        claims: Mapping[str, Any] | None,
        auth_error: DomainError | None = None,
        service_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # Where statements outside this transaction run (db/engine.create_service_engine): never this
        # transaction's pool, which it may be holding a connection of.
        self.service_engine = service_engine or engine
        self.claims = claims
        self.auth_error = auth_error
        self._lease: _Lease | None = None  # the connection the kept pool lent this transaction
        self._lock = asyncio.Lock()

    def assume(self, claims: Mapping[str, Any]) -> None:
        """Act for this user from the first statement on: for a request that proves who it acts for
        by other means than a bearer token (an OAuth callback's single-use state)."""
        if self._lease is not None:
            raise RuntimeError("a transaction is already open under other claims")
        self.claims, self.auth_error = claims, None

    async def execute(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Result[Any]:
        async with self._lock:
            lease = self._lease or await self._begin()
            try:
                return await lease.conn.execute(statement, params)
            except DBAPIError as exc:
                raise translate_db_error(exc) from exc

    async def fetch(self, prepared: Prepared, args: Sequence[Any]) -> list[Any]:
        """Rows (asyncpg records, keyed as `prepared.keys`) of a statement compiled once (db/prepared.py),
        run on the driver: none of SQLAlchemy's per-execution work."""
        async with self._lock:
            lease = self._lease or await self._begin()
            try:
                rows: list[Any] = await lease.driver.fetch(prepared.sql, *args)
            except Exception as exc:
                raise translate_db_error(exc) from exc
            return rows

    async def call_alone(self, function: Callable[..., FunctionElement[Any]], *args: Any) -> Any:
        """`select function(claims, *args)` in an autocommitted transaction of its own, as the service's
        role, on the service pool: for a statement that locks a shared row (a company's budget) and must
        release it the moment it is done. The function acts for the caller named by the claims it is given."""
        if self.claims is None:
            raise self.auth_error or Unauthorized("Missing Authorization header: send 'Authorization: Bearer <jwt>'")
        statement = select(function(type_coerce(dict(self.claims), JSONB), *args))
        conn = await connect(self.service_engine)
        try:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return (await autocommit.execute(statement)).scalar_one()
        except DBAPIError as exc:
            raise translate_db_error(exc) from exc
        finally:
            await conn.close()

    async def _begin(self) -> _Lease:
        """BEGIN and the claims in one round trip (the simple query protocol takes both at once), on a
        kept connection SQLAlchemy treats as autocommit so it sends no BEGIN of its own: the transaction
        is ours, ended by _end. A kept connection is not pinged before use (a round trip per request); one
        found dead here — the database restarted — is dropped with the engine's other connections, and
        the transaction opened on a fresh one."""
        if self.claims is None:
            raise self.auth_error or Unauthorized("Missing Authorization header: send 'Authorization: Bearer <jwt>'")
        begin = _begin_as(self.claims)
        kept = _kept_of(self.engine)
        for attempt in (1, 2):
            lease = await kept.take()
            try:
                await lease.driver.execute(begin)
            except BaseException as exc:
                # Dead, cancelled (GraphQL cancels a failed operation's other fields) or failed after BEGIN
                # ran: the connection may be inside a transaction, so it is dropped, never kept.
                await kept.drop(lease)
                if attempt == 1 and isinstance(exc, Exception):
                    # Nothing has run yet, so opening again on a fresh connection is safe. (A backend
                    # killed under asyncpg may also surface as an InternalClientError, not only as "gone".)
                    if database_gone(exc):
                        await self.engine.dispose(close=False)  # its other connections died with this one
                    continue
                if database_gone(exc):
                    raise Unavailable(DATABASE_UNAVAILABLE) from exc
                raise
            self._lease = lease
            return lease
        raise AssertionError("unreachable: the second attempt returns or raises")

    @asynccontextmanager
    async def apart(self) -> AsyncIterator[RlsTransaction]:
        """A short transaction of its own, under the same claims, ended with the block: committed, or
        rolled back if the block raises anything but a DomainError (a refusal may follow writes worth
        keeping, such as a connection found revoked). For work in the middle of a run, whose own
        transaction the edge committed before the model was asked: nothing may stay open meanwhile."""
        other = RlsTransaction(self.engine, self.claims, self.auth_error, self.service_engine)
        try:
            yield other
        except DomainError:
            await other.commit()
            raise
        except BaseException:
            await other.rollback()
            raise
        await other.commit()

    async def commit(self) -> None:
        """End the transaction, keeping its work; the next statement opens a new one. Called only by
        the transport edges: at the end of a request or operation, and as their named early step before
        a run waits for the model (tests/test_code_quality.py keeps it out of resolvers/)."""
        await self._end(commit=True)

    async def rollback(self) -> None:
        """End the transaction, undoing its work (the edges, on an error)."""
        await self._end(commit=False)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Undo what the block wrote if it raises, and carry on in the same transaction: how a resolver
        recovers from a refused write without deciding when the request's transaction ends."""
        async with self._lock:
            lease = self._lease or await self._begin()
            nested = await lease.conn.begin_nested()
        try:
            yield
        except BaseException:
            async with self._lock:
                await nested.rollback()
            raise
        async with self._lock:
            await nested.commit()

    async def _end(self, *, commit: bool) -> None:
        async with self._lock:
            lease, self._lease = self._lease, None
            if lease is None:
                return
            try:
                await lease.driver.execute("commit" if commit else "rollback")
            except Exception as exc:
                # A rollback on a connection that is gone (a cancelled statement can close it) has
                # nothing left to undo: PostgreSQL ended that transaction with the connection.
                if commit or not database_gone(exc):
                    raise translate_db_error(exc) from exc
            finally:
                await _kept_of(self.engine).give_back(lease)  # dropped if still inside a transaction


async def _drop(conn: AsyncConnection) -> None:
    """Close the connection itself; its pool slot opens a new one when next asked."""
    await conn.invalidate()
    await conn.close()


def translate_db_error(exc: Exception) -> Exception:
    """Constraint and RLS violations become domain errors, a lost database Unavailable; anything else
    stays unexpected."""
    if database_gone(exc):
        return Unavailable(DATABASE_UNAVAILABLE)
    sqlstate = _sqlstate(exc)
    if sqlstate == "42501":  # insufficient_privilege: an RLS `with check` refused the row
        return Forbidden("You do not have permission to do that")
    if sqlstate == "FXQ01":  # fluxopus.count_knowledge_bytes: its message says how full the company is
        message = getattr(_postgres_error(exc), "message", None)
        return QuotaExceeded(str(message or "Knowledge storage quota exceeded"))
    if isinstance(exc, IntegrityError) or (sqlstate or "").startswith("23"):
        if sqlstate == "23505":
            return Conflict("That already exists")
        if sqlstate == "23503":
            return Invalid("A referenced record does not exist")
        return Invalid("The data violates a constraint")
    # character_not_in_repertoire / untranslatable_character (jsonb): JSON allows \u0000, PostgreSQL does not
    if sqlstate in ("22021", "22P05"):
        return Invalid("Text must not contain NUL (\\u0000) characters")
    if sqlstate in ("22P02", "22001", "22003", "22007", "22008"):
        return Invalid("Invalid value")
    return exc


async def call_as_service(engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
    """A statement run as the service itself, not as any user, in a transaction of its own: only
    for the few security-definer functions kept from `authenticated` (fluxopus.take_oauth_state)."""
    conn = await connect(engine)
    try:
        async with conn.begin():
            return list((await conn.execute(statement, params)).mappings())
    except DBAPIError as exc:
        raise translate_db_error(exc) from exc
    finally:
        await conn.close()


@asynccontextmanager
async def service_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    conn = await connect(engine)
    try:
        async with conn.begin():
            yield conn
    except DBAPIError as exc:
        if database_gone(exc):
            raise Unavailable(DATABASE_UNAVAILABLE) from exc
        raise
    finally:
        await conn.close()


async def ping(engine: AsyncEngine, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure to answer means "not healthy"
        return False
