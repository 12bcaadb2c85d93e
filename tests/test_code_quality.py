"""The type checker and linter run with the tests, so CI holds the code to them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["mypy", "fluxopus"],  # strict on resolvers/, db/, auth/ (pyproject.toml)
        ["ruff", "check", "fluxopus", "tests", "bench"],
        ["ruff", "format", "--check", "fluxopus", "tests", "bench"],
    ],
    ids=["mypy", "ruff-check", "ruff-format"],
)
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"`{' '.join(command)}` failed:\n{result.stdout}\n{result.stderr}"
