"""Redocly CLI (tests/js, pinned) lints the committed openapi.json with its `recommended` rules:
no error and no warning, so tools that read the document have nothing to complain about."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.js]

REPO_ROOT = Path(__file__).resolve().parent.parent
JS = REPO_ROOT / "tests" / "js"


def lint(path: Path) -> dict[str, Any]:
    npx = shutil.which("npx")
    assert npx, "Node.js and npm are required for tests/test_openapi_lint.py"
    assert (JS / "node_modules" / "@redocly" / "cli").is_dir(), "run: npm ci --prefix tests/js"
    # Nothing from the network: no telemetry, no update check, no install by npx.
    env = os.environ | {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    command = [npx, "--no-install", "--prefix", str(JS), "redocly", "lint", str(path), "--format=json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=path.parent)
    report: dict[str, Any] = json.loads(result.stdout)
    # Its exit status says the same as the totals (1 when there are errors).
    assert result.returncode == (1 if report["totals"]["errors"] else 0), result.stderr[-2000:]
    return report


def test_the_committed_document_has_no_lint_error_or_warning() -> None:
    report = lint(REPO_ROOT / "openapi.json")
    problems = [(p["ruleId"], p["severity"], p["message"]) for p in report["problems"]]
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}, problems
    assert problems == []


def test_the_lint_finds_what_the_document_used_to_have(tmp_path: Path) -> None:
    """The check can fail: the two problems the generator used to write are each reported."""
    document = json.loads((REPO_ROOT / "openapi.json").read_text(encoding="utf-8"))
    del document["info"]["license"]
    document["components"]["schemas"]["Broken"] = {
        "type": "object",
        "properties": {"status": {"nullable": True, "allOf": [{"$ref": "#/components/schemas/TaskStatus"}]}},
    }
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    report = lint(path)
    rules = {p["ruleId"] for p in report["problems"]}
    assert {"info-license", "nullable-type-sibling", "no-unused-components"} <= rules, report["problems"]
    assert report["totals"]["errors"] >= 1 and report["totals"]["warnings"] >= 2
