"""chatserver built as a wheel and installed into a fresh virtualenv outside
the checkout, as `pip install` gives it to an operator: no editable install,
no PYTHONPATH, nothing found relative to the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.servers import REPO

# Building takes seconds; installing the dependencies takes a minute or two
# from a cold pip cache on a loaded machine.
BUILD_TIMEOUT = 300.0
INSTALL_TIMEOUT = 900.0


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The operator's environment: the venv on PATH, no chatserver
        settings, no PYTHONPATH pointing back at the checkout."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CHAT_", "PYTHON", "VIRTUAL_ENV"))
            and key not in {"DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY"}
        }
        env["PATH"] = f"{self.bin}:{env.get('PATH', '')}"
        env.update(extra or {})
        return env


def build_and_install(folder: Path) -> Installed:
    """`pip wheel .` from the checkout, then `pip install` of that wheel
    into a new venv under `folder` (outside the checkout)."""
    # Built from a copy, so the build leaves nothing in the checkout.
    source = folder / "source"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "data",
            "build",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            "node_modules",
        ),
    )
    dist = folder / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        timeout=BUILD_TIMEOUT,
        capture_output=True,
    )
    (wheel,) = dist.glob("chatserver-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=BUILD_TIMEOUT)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        check=True,
        timeout=INSTALL_TIMEOUT,
        capture_output=True,
        cwd=folder,
    )
    return Installed(wheel, venv)
