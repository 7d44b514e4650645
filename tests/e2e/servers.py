"""Real chatserver processes, private Redis servers and fresh PostgreSQL
databases on loopback, for the multi-process tests and the load test.

Nothing here imports pytest: `scripts/loadtest` starts its own servers with
the same helpers. Every wait is bounded by a deadline, and every process that
is started here is ended here (by its own pid, never by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import psycopg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatserver.settings import Settings
from chatserver.store.migrate import upgrade

# The host API client lives with the load test, which shares it; re-exported
# for the tests that take it from here.
from scripts.load.host import API_KEY as API_KEY
from scripts.load.host import HostApi as HostApi
from scripts.load.host import Room as Room
from scripts.load.host import new_room as new_room

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "e2e-secret-key-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]

# A server process imports the app and opens its pools in about a second on
# an idle machine; 30 s leaves room for a loaded CI box without hiding a hang.
START_TIMEOUT = 30.0
# How long a stopped process may take to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(label: str) -> str:
    return f"{label}_{uuid.uuid4().hex[:10]}"


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


def _wait_until(ready: Any, timeout: float, what: str, alive: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited before it was ready")
        if ready():
            return
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f} s")


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
        log = (self.log_dir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_until(self._answers, START_TIMEOUT, f"redis-server :{self.port}", self._alive)
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
        _stop(self.process)


def _complete_array(data: bytes) -> bool:
    """Whether `data` holds a whole RESP array of bulk strings."""
    if not data.startswith(b"*") or b"\r\n" not in data:
        return False
    count = int(data[1 : data.index(b"\r\n")])
    return data.count(b"\r\n") >= 1 + 2 * max(count, 0)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


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
        _wait_until(self._ready, timeout, f"server :{self.port}", self.alive)
        if self.workers > 1:
            _wait_until(
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
        return [pid for pid in _children(self.process.pid) if _is_worker(pid)]

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown code runs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        _stop(self.process)

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


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


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


class ConnectionLost(Exception):
    """The socket closed before the answer came; retry on a new connection."""


class FrameError(Exception):
    """The server answered with an `error` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code = str(frame.get("code"))
        self.frame = frame


# Rounds of trying every server URL before a reconnect gives up, and the pause
# between rounds: a surviving worker answers at once, so 100 rounds of 0.1 s
# only run out when every server is gone.
RECONNECT_ROUNDS = 100
RECONNECT_PAUSE = 0.1
# A resubscribe during a reconnect storm waits this long for `subscribed`.
RESUBSCRIBE_WITHIN = 15.0


class Peer:
    """A browser tab speaking SPEC section 5 over a real socket.

    It does what the spec asks of clients: on a lost connection it reconnects
    (to the next server URL), resubscribes with `after` = the last seq it has,
    and its callers retry unacknowledged sends with the same client_id. Every
    `message` frame is checked against the previous one of its conversation;
    anything but seq + 1 is recorded in `problems`.
    """

    def __init__(self, name: str, cookie: str, urls: Sequence[str]) -> None:
        self.name = name
        self.cookie = cookie
        self.urls = list(urls)
        self.messages: dict[str, list[dict[str, Any]]] = {}
        # The seq a conversation's view starts after (a subscribe with `after`).
        self._base: dict[str, int] = {}
        self.problems: list[str] = []
        self.reconnects = 0
        self.connected = asyncio.Event()
        self._url_index = 0
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribing: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed: set[str] = set()
        self._closing = False

    def last_seq(self, conversation: str) -> int:
        seen = self.messages.get(conversation)
        return int(seen[-1]["seq"]) if seen else self._base.get(conversation, 0)

    def view(self, conversation: str) -> list[tuple[int, str]]:
        return [(int(m["seq"]), str(m["id"])) for m in self.messages.get(conversation, [])]

    async def connect(self) -> Peer:
        url = self.urls[self._url_index % len(self.urls)]
        self._ws = await connect(
            url, additional_headers={"Cookie": self.cookie}, open_timeout=5, max_queue=None
        )
        self._reader = asyncio.create_task(self._read(self._ws), name=f"peer-{self.name}")
        self.connected.set()
        return self

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnecting, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None:
            await self._ws.close()

    async def subscribe(
        self, conversation: str, after: int | None = None, within: float = 5.0
    ) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self._subscribing[conversation] = future
        self._subscribed.add(conversation)
        if conversation not in self.messages:
            self._base[conversation] = after or 0
            self.messages[conversation] = []
        after = self.last_seq(conversation) if after is None else after
        await self._send_frame({"type": "subscribe", "conversation": conversation, "after": after})
        return await asyncio.wait_for(future, within)

    async def send(
        self, conversation: str, body: str, client_id: str | None = None, within: float = 5.0
    ) -> dict[str, Any]:
        """The acknowledged MESSAGE; FrameError on an error frame,
        ConnectionLost if the socket closed first."""
        client_id = client_id or str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._acks[client_id] = future
        try:
            await self._send_frame(
                {
                    "type": "send",
                    "conversation": conversation,
                    "client_id": client_id,
                    "body": body,
                    "attachments": [],
                }
            )
            return await asyncio.wait_for(future, within)
        finally:
            self._acks.pop(client_id, None)

    async def follow_inbox(self) -> None:
        """Follow the organisation's inbox feed (staff); its frames are ignored."""
        await self._send_frame({"type": "inbox"})

    async def wait_for_seq(self, conversation: str, seq: int, within: float) -> None:
        deadline = time.monotonic() + within
        while self.last_seq(conversation) < seq:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} has seq {self.last_seq(conversation)} of {seq} "
                    f"after {within:.0f} s"
                )
            await asyncio.sleep(POLL_INTERVAL / 5)

    async def wait_connected(self, within: float) -> None:
        await asyncio.wait_for(self.connected.wait(), within)

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        if self._ws is None or not self.connected.is_set():
            raise ConnectionLost(self.name)
        try:
            await self._ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed as exc:
            raise ConnectionLost(self.name) from exc

    async def _read(self, ws: ClientConnection) -> None:
        try:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    self._dispatch(orjson.loads(raw))
        finally:
            self._lost()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._on_message(frame["message"])
        elif kind == "ack":
            future = self._acks.get(str(frame.get("client_id")))
            if future is not None and not future.done():
                future.set_result(frame["message"])
        elif kind == "subscribed":
            future = self._subscribing.pop(str(frame.get("conversation")), None)
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "error":
            self._on_error(frame)

    def _on_message(self, message: dict[str, Any]) -> None:
        conversation = str(message["conversation"])
        seen = self.messages.setdefault(conversation, [])
        expected = self.last_seq(conversation) + 1
        if message["seq"] != expected:
            self.problems.append(f"{self.name}: got seq {message['seq']}, expected {expected}")
            if message["seq"] < expected:
                return
        seen.append(message)

    def _on_error(self, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        if client_id is not None:
            future = self._acks.get(str(client_id))
        else:
            pending = [f for f in self._subscribing.values() if not f.done()]
            future = pending[0] if pending else None
        if future is not None and not future.done():
            future.set_exception(FrameError(frame))
        elif future is None:
            self.problems.append(f"{self.name}: unexpected error frame {frame}")

    def _lost(self) -> None:
        self.connected.clear()
        lost = ConnectionLost(self.name)
        for future in [*self._acks.values(), *self._subscribing.values()]:
            if not future.done():
                future.set_exception(lost)
        self._subscribing.clear()
        if not self._closing and self._reconnecting is None:
            self._reconnecting = asyncio.create_task(self._reconnect())

    async def _drop_socket(self) -> None:
        ws, reader, self._ws, self._reader = self._ws, self._reader, None, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _reconnect(self) -> None:
        """Next server, then every conversation again from the last seq held."""
        try:
            for attempt in range(RECONNECT_ROUNDS * len(self.urls)):
                self._url_index += 1
                try:
                    await self.connect()
                    for conversation in sorted(self._subscribed):
                        await self.subscribe(conversation, within=RESUBSCRIBE_WITHIN)
                except (OSError, ConnectionLost, TimeoutError, FrameError):
                    self.connected.clear()
                    # As a browser does: the failed socket goes before the
                    # next one opens, so retries never pile up on a server.
                    await self._drop_socket()
                    if attempt % len(self.urls) == len(self.urls) - 1:
                        await asyncio.sleep(RECONNECT_PAUSE)
                    continue
                self.reconnects += 1
                return
            self.problems.append(f"{self.name}: could not reconnect")
        finally:
            self._reconnecting = None


async def send_until_acked(
    peer: Peer, conversation: str, body: str, client_id: str, deadline: float
) -> dict[str, Any]:
    """Send, and on a lost connection or `unavailable` wait and retry with
    the same client_id, as the browser client does; bounded by `deadline`
    (a time.monotonic() value)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{peer.name}: {client_id} not acknowledged in time")
        try:
            return await peer.send(conversation, body, client_id, within=min(remaining, 5.0))
        except ConnectionLost:
            with contextlib.suppress(TimeoutError):
                await peer.wait_connected(max(deadline - time.monotonic(), 0.01))
        except FrameError as exc:
            if exc.code != "unavailable":
                raise
            await asyncio.sleep(RECONNECT_PAUSE)
        except TimeoutError:
            continue
