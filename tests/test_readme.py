"""The README documents every setting: its Configuration table against the settings class, and any other
FLUXOPUS_* variable the code reads against the README as a whole."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from fluxopus.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
VARIABLE = re.compile(r"\b(?:FLUXOPUS_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL)\b")
# Settings that are not one variable: FLUXOPUS_OAUTH_<NAME>_<FIELD> is a family (its own rows).
FAMILIES = {"oauth": "FLUXOPUS_OAUTH_<NAME>_"}


def configuration_table(readme: str) -> str:
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(rows) > 10, "the Configuration section has no table"
    return "\n".join(row.split(" | ", 1)[0] for row in rows)  # the first column: the variables


def env_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"FLUXOPUS_{name.upper()}"]


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = configuration_table(README)
    missing = [
        name
        for name in Settings.model_fields
        if (
            FAMILIES[name] not in documented
            if name in FAMILIES
            else not set(env_names(name)) & set(VARIABLE.findall(documented))
        )
    ]
    assert not missing, f"settings missing from README's Configuration table: {missing}"


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    known = {env for name in Settings.model_fields for env in env_names(name)}
    stale = {
        v
        for v in VARIABLE.findall(configuration_table(README))
        if v not in known and not v.startswith("FLUXOPUS_OAUTH_")
    }
    assert not stale, f"README documents variables the settings class does not have: {sorted(stale)}"


def test_every_variable_the_code_reads_is_documented() -> None:
    read = {
        match
        for path in (ROOT / "fluxopus").rglob("*.py")
        for match in re.findall(r"[\"'](FLUXOPUS_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text())
    }
    assert read, "the scan found no variable at all: the pattern is broken"
    missing = sorted(v for v in read if v not in README and not v.startswith("FLUXOPUS_OAUTH_"))
    assert not missing, f"variables read in fluxopus/ but not in README: {missing}"


def test_the_checks_can_fail() -> None:
    without_port = README.replace(
        "`FLUXOPUS_HOST` / `--host`, `FLUXOPUS_PORT` / `--port`", "`FLUXOPUS_HOST` / `--host`"
    )
    documented = configuration_table(without_port)
    assert "FLUXOPUS_PORT" not in VARIABLE.findall(documented)
    assert "FLUXOPUS_HOST" in VARIABLE.findall(documented)
