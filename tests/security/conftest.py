"""Every test in tests/security/ is an abuse case: `pytest -m security` runs them all."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.serve import Processes, Serve, clean_env

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """One real `fluxopus serve` (embedded PostgreSQL) for a module's abuse tests, with the module's
    `SERVE_ENV` settings if it has any."""
    work = Path(tempfile.mkdtemp(prefix="fluxopus-serve-"))
    tracker = Processes(work)
    try:
        server = tracker.serve(work / "data", clean_env(**getattr(request.module, "SERVE_ENV", {})))
        server.wait_healthy()
        yield server
    finally:
        tracker.close()
        shutil.rmtree(work, ignore_errors=True)
