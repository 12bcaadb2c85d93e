"""PostgreSQL LISTEN, kept open: one connection of its own per listener and process, opened again
whenever the database goes away (a restart, a failover, pg_terminate_backend).

asyncpg directly: LISTEN needs its add_listener, which SQLAlchemy lacks; and outside the pool, which it
would hold forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


def listen_dsn(engine: AsyncEngine) -> str:
    """The engine's database as a plain postgresql:// DSN, for a connection of its own (LISTEN)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def keep_listening(
    dsn: str,
    channel: str,
    on_notify: Callable[[str], None],
    *,
    on_listening: Callable[[], None],
    on_lost: Callable[[], None] = lambda: None,
    name: str,
    check_every: float = 30.0,
) -> None:
    """Calls `on_notify(payload)` for each notification on `channel`, until cancelled. `on_listening` is
    called each time a connection starts listening — first and after every reconnection — since what
    was notified while nobody listened is lost: the caller catches up from its own records. A lost
    connection is opened again, backing off from half a second to 30; `name` is its application_name
    (pg_stat_activity) and what the log calls it."""
    delay = 0.5
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=10, server_settings={"application_name": name})
            try:
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(channel, lambda *args: on_notify(str(args[-1])))
                delay = 0.5
                on_listening()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), check_every)
                    if not lost.is_set():
                        try:  # a connection can die without a word
                            await asyncio.wait_for(conn.execute("select 1"), 10)
                        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                            lost.set()
                on_lost()
                log.warning("%s: the LISTEN connection was lost; reconnecting", name)
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone with the database
                    await asyncio.wait_for(conn.close(), 5)
                conn.terminate()
        except Exception:  # noqa: BLE001 - any failure to connect: try again later
            log.warning("%s cannot LISTEN (retrying in %g s)", name, delay, exc_info=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
