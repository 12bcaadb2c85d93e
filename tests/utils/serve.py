"""`fluxopus serve` as a real process, for tests about the process itself: embedded PostgreSQL
lifecycle, signals, crash recovery, and abuse that must not stall it.

Every process a test starts (serve, and the PostgreSQL it starts) is stopped by PID by `Processes.close`
(the `processes` fixture), also when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import psutil

from fluxopus.auth.jwt import mint_token
from fluxopus.auth.keys import SigningKey
from fluxopus.config import BUILT_IN_ISSUER
from fluxopus.db.engine import operator_engine
from fluxopus.db.users import ensure_member, start_token_session
from tests.utils.server import free_port

STARTUP_SECONDS = 20
STOP_SECONDS = 15


def fluxopus_command() -> list[str]:
    script = Path(sys.executable).parent / "fluxopus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fluxopus.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any Fluxopus configuration, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("FLUXOPUS_") and not k.startswith("PYTEST_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def is_alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may linger where PID 1 does not reap)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stopped(pid: int) -> Callable[[], bool]:
    return lambda: not is_alive(pid)


def postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    first_line = pid_file.read_text().splitlines()[:1]
    return int(first_line[0]) if first_line and first_line[0].strip().isdigit() else None


def is_postgres_of(pid: int, pgdata: Path) -> bool:
    try:
        proc = psutil.Process(pid)
        return "postgres" in proc.name() and str(pgdata.resolve()) in " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False


class Serve:
    """One `fluxopus serve` subprocess with its output in files."""

    def __init__(self, data_dir: Path, env: dict[str, str], log_dir: Path, n: int, args: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = log_dir / f"serve-{n}.stdout"
        self.stderr_path = log_dir / f"serve-{n}.stderr"
        self.env = env
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*fluxopus_command(), "serve", "--data-dir", str(data_dir), "--port", str(self.port), *args],
                env=env,
                cwd=log_dir,  # no stray .env file is picked up
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # signals reach only the process we aim at
            )

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def healthz(self) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2)
        except httpx.TransportError:
            return None  # not listening yet

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode} before it was ready\n{self.logs()}")
            response = self.healthz()
            if response is not None and response.status_code == 200:
                assert response.json() == {"status": "ok"}
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not become healthy\n{self.logs()}")
            time.sleep(0.1)

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not exit after signal {signum}\n{self.logs()}") from None

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*fluxopus_command(), *args, "--data-dir", str(self.data_dir)],
            env=self.env,
            cwd=self.stdout_path.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def token(self, email: str) -> str:
        result = self.run_cli("token", "--email", email)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        token = result.stdout.strip()
        assert token.count(".") == 2 and "\n" not in token, result.stdout
        return token


class Processes:
    """Starts serve processes and, at teardown, stops them and any PostgreSQL they left running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Serve] = []
        self.postgres: set[tuple[int, Path]] = set()

    def serve(self, data_dir: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> Serve:
        server = Serve(data_dir, env if env is not None else clean_env(), self.tmp_path, len(self.started), args)
        self.started.append(server)
        return server

    def remember_postgres(self, server: Serve) -> int:
        pid = postmaster_pid(server.pgdata)
        assert pid is not None, f"no postmaster.pid in {server.pgdata}\n{server.logs()}"
        self.postgres.add((pid, server.pgdata))
        return pid

    def close(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.terminate()
                try:
                    server.proc.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait(timeout=STOP_SECONDS)
        candidates = set(self.postgres)
        for server in self.started:
            pid = postmaster_pid(server.pgdata)
            if pid is not None:
                candidates.add((pid, server.pgdata))
        for pid, pgdata in candidates:
            if is_alive(pid) and is_postgres_of(pid, pgdata):
                os.kill(pid, signal.SIGINT)  # postgres: fast shutdown
                deadline = time.monotonic() + STOP_SECONDS
                while is_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if is_alive(pid):
                    os.kill(pid, signal.SIGKILL)


def embedded_url(server: Serve) -> str:
    """The URL of the embedded PostgreSQL a serve process started (over its Unix socket)."""
    lines = (server.pgdata / "postmaster.pid").read_text().splitlines()
    socket_dir = lines[4].strip()  # postmaster.pid line 5: the Unix socket directory
    assert socket_dir, lines
    return f"postgresql://postgres:@/postgres?host={socket_dir}"


async def provision_token(server: Serve, email: str) -> str:
    """What `fluxopus token` does, in-process (saves a CLI start where the CLI itself is not under test):
    the member is created in the running embedded server, the token signed with the data dir's key."""
    async with operator_engine(embedded_url(server)) as engine:
        member = await ensure_member(engine, email=email, company=None, role=None)
        session_id = await start_token_session(engine, user_id=member.user_id, seconds=3600)
    key_path = server.data_dir / "jwt-signing-key.pem"
    assert key_path.exists(), f"serve generated no signing key in the data dir\n{server.logs()}"
    return mint_token(
        SigningKey.load_or_create(key_path),
        user_id=member.user_id,
        email=member.email,
        role=member.role,
        company_id=member.company_id,
        ttl=3600,
        session_id=session_id,
        issuer=BUILT_IN_ISSUER,
    )


class HealthProbe:
    """Asks a server's /healthz every 20 ms from a thread of its own (so the test's event loop, busy
    sending the abuse, does not delay the measurement) for as long as the `with` block runs."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.url = url
        self.interval = interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    status = client.get("/healthz").status_code
                    if status != 200:
                        self.failures.append(f"status {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.perf_counter() - began)
                self._stop.wait(self.interval)

    def assert_answered_within(self, seconds: float) -> None:
        assert not self.failures, self.failures[:5]
        assert len(self.latencies) >= 5, self.latencies
        worst = sorted(self.latencies)[-5:]
        assert worst[-1] < seconds, f"/healthz took up to {worst[-1] * 1000:.0f} ms (worst five: {worst})"
