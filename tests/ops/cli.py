"""Running `chatserver` as an operator does: a process of its own, in a
folder of its own, with exactly the environment the test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.e2e.servers import REPO

# A command that only reads settings or probes a dead service answers in a
# few seconds; a loaded machine gets room, a hang still fails.
CLI_TIMEOUT = 60.0


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment without any chatserver setting."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CHAT_")
        and key not in {"DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY"}
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "chatserver", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
