"""Running the `fluxopus` command as a user would: a subprocess with its own environment."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def cli_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """This process's environment without our settings, plus the data dir and (when given) DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXOPUS_") and k != "DATABASE_URL"}
    env["FLUXOPUS_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return {**env, **extra}


async def run_cli(env: dict[str, str], cwd: Path, *args: str) -> CliResult:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fluxopus.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())
