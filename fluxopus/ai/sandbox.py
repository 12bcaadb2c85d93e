"""Skill templates are parsed and rendered in worker processes with hard bounds.

Jinja's sandbox keeps a template away from Python's internals, and prompts.py caps the operations
that build huge strings; neither bounds the work a template may do (`range(100000)` twice) or the
memory it may build up without printing (`ns.s + ns.s`, 27 times). A worker process bounds both,
for every template:

- CPU time: a profiling timer (SIGPROF) interrupts a render after `cpu_seconds` of CPU time; one
  stuck where the interrupt cannot reach (inside a single C call) is killed by the parent after
  twice that in wall-clock time, plus a second.
- memory: the worker's address space is capped at what it uses idle plus `memory_mb`; a render that
  needs more gets MemoryError, and the worker is replaced.

The event loop only waits: each worker is driven by a thread of a small pool, one worker each, and a
render queues for a free one. Workers are plain `python -m fluxopus.ai.sandbox` processes speaking
JSON lines on their stdin and stdout, started on first use; they exit with their stdin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from fluxopus.ai.prompts import PromptError, check_template, render, render_query

log = logging.getLogger(__name__)

MB = 1024 * 1024


class TemplateLimit(PromptError):
    """A template that went over the sandbox's CPU time or memory: it ran, and could not finish."""


class TemplateSandbox:
    def __init__(self, *, workers: int = 2, cpu_seconds: float = 0.5, memory_mb: int = 128) -> None:
        self.cpu_seconds = cpu_seconds
        self.memory_mb = memory_mb
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="template-sandbox")
        self._local = threading.local()
        self._workers: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    async def render(self, source: str, input: Mapping[str, Any], knowledge: list[dict[str, Any]] | None = None) -> str:
        """The rendered prompt; PromptError for a template or input the user must fix, TemplateLimit
        for one over the bounds. `knowledge`: a grounded skill's hits (prompts.render)."""
        request: dict[str, Any] = {"op": "render", "source": source, "input": input}
        if knowledge is not None:
            request["knowledge"] = knowledge
        answer: str = await self._call(request)
        return answer

    async def render_query(self, source: str, input: Mapping[str, Any]) -> str:
        """A grounded skill's search query from its template (prompts.render_query)."""
        answer: str = await self._call({"op": "query", "source": source, "input": input})
        return answer

    async def check(self, source: str) -> None:
        """Parses a template (as a skill is saved): PromptError with the line of a syntax error."""
        await self._call({"op": "check", "source": source})

    def close(self) -> None:
        """Stops every worker (they would also exit once this process is gone: their stdin closes)."""
        with self._lock:
            workers, self._workers = self._workers, set()
        for worker in workers:
            _stop(worker)

    async def _call(self, request: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._exchange, json.dumps(request).encode() + b"\n")

    def _exchange(self, request: bytes) -> Any:
        """In a pool thread: one request to this thread's worker, waiting at most the wall-clock bound."""
        worker = self._worker()
        try:
            assert worker.stdin is not None
            worker.stdin.write(request)
            worker.stdin.flush()
        except (BrokenPipeError, OSError):  # it died since its last request: once more, with a new one
            self._drop(worker)
            worker = self._worker()
            assert worker.stdin is not None
            worker.stdin.write(request)
            worker.stdin.flush()
        assert worker.stdout is not None
        ready, _, _ = select.select([worker.stdout], [], [], self.cpu_seconds * 2 + 1)
        line = worker.stdout.readline() if ready else b""
        if not line:
            self._drop(worker)
            raise TemplateLimit(f"The template did not finish within {self.cpu_seconds:g} s of CPU time")
        answer = json.loads(line)
        if "limit" in answer:
            if answer.get("replace"):
                self._drop(worker)
            raise TemplateLimit(answer["limit"])
        if "error" in answer:
            raise PromptError(answer["error"])
        return answer["ok"]

    def _worker(self) -> subprocess.Popen[bytes]:
        worker: subprocess.Popen[bytes] | None = getattr(self._local, "worker", None)
        if worker is not None and worker.poll() is None:
            return worker
        worker = subprocess.Popen(
            [sys.executable, "-m", "fluxopus.ai.sandbox", str(self.cpu_seconds), str(self.memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self._local.worker = worker
        with self._lock:
            self._workers.add(worker)
        return worker

    def _drop(self, worker: subprocess.Popen[bytes]) -> None:
        self._local.worker = None
        with self._lock:
            self._workers.discard(worker)
        _stop(worker)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    for stream in (worker.stdin, worker.stdout):
        if stream is not None:
            stream.close()


# --- the worker process ------------------------------------------------------------------------


class _OutOfCpu(BaseException):
    """Raised by the SIGPROF handler; a BaseException, so no `except Exception` in a template's path
    (Jinja's or ours) can swallow it."""


def _on_sigprof(signum: int, frame: Any) -> None:
    raise _OutOfCpu


def _serve(cpu_seconds: float, memory_mb: int, requests: IO[bytes], answers: IO[bytes]) -> None:
    with open("/proc/self/statm") as statm:  # the address space in use now, idle
        in_use = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = in_use + memory_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGPROF, _on_sigprof)
    for line in requests:
        answer = _answer(json.loads(line), cpu_seconds, memory_mb)
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()
        if answer.get("replace"):
            return  # after a MemoryError the heap is not to be trusted: the parent starts a new worker


def _answer(request: dict[str, Any], cpu_seconds: float, memory_mb: int) -> dict[str, Any]:
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        if request["op"] == "check":
            check_template(request["source"])
            return {"ok": None}
        if request["op"] == "query":
            return {"ok": render_query(request["source"], request["input"])}
        return {"ok": render(request["source"], request["input"], request.get("knowledge"))}
    except _OutOfCpu:
        return {"limit": f"The template used more than {cpu_seconds:g} s of CPU time"}
    except MemoryError:
        return {"limit": f"The template needed more than {memory_mb} MB of memory", "replace": True}
    except PromptError as exc:
        return {"error": str(exc)}
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


if __name__ == "__main__":
    _serve(float(sys.argv[1]), int(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer)
