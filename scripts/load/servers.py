"""`chatserver serve` in processes of its own, configured as production
(PostgreSQL, Redis, secrets, keys) with the per-person limits a benchmark
would trip lifted, so a test can SIGKILL or SIGTERM one like a crashed or
stopped worker and the load test can measure one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from scripts.load.backends import SECRET
from scripts.load.host import API_KEY
from scripts.load.processes import (
    REPO,
    START_TIMEOUT,
    STOP_TIMEOUT,
    children,
    free_port,
    is_worker,
    stop_process,
    wait_until,
)


def server_env(
    *,
    database_url: str,
    redis_url: str,
    prefix: str,
    port: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a production-mode server with limits raised for
    tests: rate limits that a benchmark would trip are lifted."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CHAT_") and key not in {"DATABASE_URL", "REDIS_URL", "PORT"}
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CHAT_REDIS_PREFIX=prefix,
        CHAT_SECRET_KEYS=SECRET,
        CHAT_API_KEYS=API_KEY,
        CHAT_BASE_URL=f"http://127.0.0.1:{port}",
        CHAT_SEND_RATE="100000",
        CHAT_SEND_BURST="100000",
        CHAT_MAX_CONNECTIONS_PER_USER="1000",
        CHAT_LOG_LEVEL="warning",
        PYTHONPATH=str(REPO),
    )
    if extra:
        env.update(extra)
    return env


class ServerProcess:
    """`python -m chatserver serve` in a process of its own, so a test can
    SIGKILL it like a crashed worker."""

    def __init__(
        self,
        log_dir: Path,
        *,
        database_url: str,
        redis_url: str,
        prefix: str,
        workers: int = 1,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.log_path = log_dir / f"server-{self.port}.log"
        self.env = server_env(
            database_url=database_url,
            redis_url=redis_url,
            prefix=prefix,
            port=self.port,
            extra=extra_env,
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def launch(self) -> ServerProcess:
        """Start the process without waiting (several servers start in parallel)."""
        log: IO[bytes] = self.log_path.open("ab")
        command = [sys.executable, "-m", "chatserver", "serve", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        self.process = subprocess.Popen(
            command, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        wait_until(self._ready, timeout, f"server :{self.port}", self.alive)
        if self.workers > 1:
            wait_until(
                lambda: len(self.worker_pids()) >= self.workers,
                timeout,
                f"{self.workers} workers on :{self.port}",
                self.alive,
            )
        return self

    def start(self) -> ServerProcess:
        return self.launch().wait_ready()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _ready(self) -> bool:
        """Up once the app answers: /healthz when the ops endpoints exist, or
        an unauthenticated /api/me (401) once the lifespan has started."""
        try:
            with httpx.Client(base_url=self.url, timeout=1.0) as client:
                if client.get("/healthz").status_code == 200:
                    return True
                return client.get("/api/me").status_code == 401
        except httpx.HTTPError:
            return False

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself with one
        worker, the supervisor's Python children with several."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        return [pid for pid in children(self.process.pid) if is_worker(pid)]

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown code runs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        stop_process(self.process)

    def terminate(self) -> float:
        """SIGTERM, as a platform stopping the worker; seconds until it exited
        (raises subprocess.TimeoutExpired if not within STOP_TIMEOUT * 3)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(STOP_TIMEOUT * 3)
        return time.monotonic() - started

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_all(servers: list[ServerProcess]) -> list[ServerProcess]:
    """Launch every server, then wait for each: start-up overlaps."""
    for server in servers:
        server.launch()
    try:
        for server in servers:
            server.wait_ready()
    except Exception:
        for server in servers:
            server.stop()
        raise
    return servers
