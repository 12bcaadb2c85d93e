"""The type checker and linter run with the tests, so CI holds the code to them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

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


def test_layering_holds() -> None:
    """DESIGN.md's layers, no package cycles, asyncpg only in db/: the contracts in pyproject.toml."""
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"import-linter found a broken contract:\n{result.stdout}\n{result.stderr}"


def _imported_packages() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "fluxopus").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"fluxopus"}


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]).lower()


def test_every_imported_package_is_a_declared_dependency() -> None:
    declared = {_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    distributions = metadata.packages_distributions()
    undeclared = {
        module: distributions.get(module)
        for module in _imported_packages()
        if not any(_name(d) in declared for d in distributions.get(module, [module]))
    }
    assert not undeclared, f"imported by fluxopus/ but not in [project] dependencies: {undeclared}"
    # and the check itself can fail: a package the code never imports directly is not "declared" by accident
    assert _name("SQLAlchemy[asyncio]>=2") == "sqlalchemy" and "sqlmodel" not in declared


def test_the_lock_file_satisfies_pyproject() -> None:
    """CI installs requirements.lock: every dependency of pyproject.toml (and its test extra) is pinned
    there, at a version its range allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {
        _name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", (ROOT / "requirements.lock").read_text(), re.M)
    }
    problems = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(line)
        version = locked.get(_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{line} (locked: {version})")
    assert not problems, "requirements.lock is stale; regenerate it (README, Test it): " + ", ".join(problems)


def _resolver_violations(source: str) -> list[str]:
    """Where a resolver ends a transaction or writes SQL by hand (both belong elsewhere)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("commit", "rollback", "finish", "begin"):
                found.append(f"line {node.lineno}: .{node.func.attr}() — transactions end at the transport edge")
        if isinstance(node, ast.ImportFrom) and node.module == "sqlalchemy":
            if any(alias.name == "text" for alias in node.names):
                found.append(f"line {node.lineno}: sqlalchemy.text — hand-written SQL lives in db/queries.py")
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "fluxopus" / "resolvers").glob("*.py")), ids=lambda p: p.name)
def test_resolvers_neither_end_transactions_nor_write_sql_by_hand(path: Path) -> None:
    assert _resolver_violations(path.read_text(encoding="utf-8")) == []


def test_the_resolver_rule_can_fail() -> None:
    bad = "from sqlalchemy import select, text\nasync def f(ctx):\n    await ctx.db.commit()\n"
    assert len(_resolver_violations(bad)) == 2
