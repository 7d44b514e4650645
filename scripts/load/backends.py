"""The backing services of a server under test: a fresh PostgreSQL database
(migrated, or cloned from a migrated template) and a private redis-server
that a test may kill, pause and bring back without touching the shared one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from chatserver.settings import Settings
from chatserver.store.migrate import upgrade
from scripts.load.processes import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    free_port,
    stop_process,
    unique,
    wait_until,
)

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The machine's Redis, shared by every test and load run under prefixes of
# their own (never flushed).
SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The secret of the harness's servers and of the databases it migrates.
SECRET = "e2e-secret-key-0123456789abcdef"


class PgDatabase:
    """A PostgreSQL database of its own, created migrated (or cloned from a
    migrated template) and dropped on `drop()`."""

    def __init__(self, name: str | None = None, *, admin_url: str = PG_ADMIN_URL) -> None:
        self.name = name or unique("chat_e2e")
        self.admin_url = admin_url

    @property
    def url(self) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def create(self, template: str | None = None) -> PgDatabase:
        suffix = f' TEMPLATE "{template}"' if template else ""
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"{suffix}')
        if template is None:
            upgrade(Settings(database_url=self.url, secret_keys=(SECRET,)))
        return self

    def drop(self) -> None:
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def refuse_connections(self) -> None:
        """The database goes away for the server: new connections are refused
        and the open ones are terminated, as in a failover."""
        with self._admin() as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (self.name,),
            )

    def accept_connections(self) -> None:
        with self._admin() as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def messages(self, conversation_id: str) -> list[tuple[int, str, str]]:
        """(seq, message id, client_id) of a conversation, in seq order."""
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT seq, id, client_id FROM messages WHERE conversation_id = %s ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [(int(seq), str(mid), str(cid)) for seq, mid, cid in rows]


def launch_redis(port: int, log_dir: Path, *options: str) -> subprocess.Popen[bytes]:
    """A private redis-server on a loopback port that keeps nothing on disk,
    logging to `log_dir`; `options` add to its command line (a cluster node's)."""
    with (log_dir / f"redis-{port}.log").open("ab") as log:
        return subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class RedisProcess:
    """A private redis-server on a free loopback port, without persistence,
    so a test can kill it and bring it back without touching the shared one."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.process = launch_redis(self.port, self.log_dir)
        wait_until(self._answers, START_TIMEOUT, f"redis-server :{self.port}", self._alive)
        return self

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-stream, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: Redis stalls with its sockets open, as on a wedged host."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def channels(self, pattern: str) -> list[str]:
        """The channels matching `pattern` that some client subscribes to."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(f"PUBSUB CHANNELS {pattern}\r\n".encode())
            data = b""
            while not _complete_array(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return [line.decode() for line in data.split(b"\r\n")[1:] if line and line[:1] != b"$"]

    def stop(self) -> None:
        self.resume()
        stop_process(self.process)


def _complete_array(data: bytes) -> bool:
    """Whether `data` holds a whole RESP array of bulk strings."""
    if not data.startswith(b"*") or b"\r\n" not in data:
        return False
    count = int(data[1 : data.index(b"\r\n")])
    return data.count(b"\r\n") >= 1 + 2 * max(count, 0)
