"""Browser tabs over real sockets to server processes, for the multi-process
tests; the processes, databases, Redis servers and the host API client are
the harness's (scripts/load/), shared with the load test and re-exported
here for the tests that take them from this module.

Nothing here imports pytest. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from scripts.load.backends import PG_ADMIN_URL as PG_ADMIN_URL
from scripts.load.backends import SECRET as SECRET
from scripts.load.backends import SHARED_REDIS_URL as SHARED_REDIS_URL
from scripts.load.backends import PgDatabase as PgDatabase
from scripts.load.backends import RedisProcess as RedisProcess
from scripts.load.host import API_KEY as API_KEY
from scripts.load.host import HostApi as HostApi
from scripts.load.host import Room as Room
from scripts.load.host import new_room as new_room
from scripts.load.own_copies import OwnCopies
from scripts.load.processes import REPO as REPO
from scripts.load.processes import START_TIMEOUT as START_TIMEOUT
from scripts.load.processes import free_port as free_port
from scripts.load.processes import rss_kib as rss_kib
from scripts.load.processes import unique as unique
from scripts.load.servers import ServerProcess as ServerProcess
from scripts.load.servers import start_all as start_all


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
    anything but seq + 1 is recorded in `problems`. An ack of the next seq is
    that message received (the server may leave out the sender's copy), and
    a copy that still comes after it is dropped, as clients drop a repeat.
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
        # Per conversation, its own messages had by their ack.
        self._own: defaultdict[str, OwnCopies] = defaultdict(OwnCopies)
        self._subscribing: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed: set[str] = set()
        self._closing = False
        # Set on every message frame: `wait_for_seq` looks again then.
        self._arrived = asyncio.Event()

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
        try:
            async with asyncio.timeout(within):
                while self.last_seq(conversation) < seq:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.name} has seq {self.last_seq(conversation)} of {seq} after {within:.0f} s"
            ) from None

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
            self._arrived.set()
        elif kind == "ack":
            self._on_ack(frame["message"])
            future = self._acks.get(str(frame.get("client_id")))
            if future is not None and not future.done():
                future.set_result(frame["message"])
        elif kind == "subscribed":
            future = self._subscribing.pop(str(frame.get("conversation")), None)
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "error":
            self._on_error(frame)

    def _on_ack(self, message: dict[str, Any]) -> None:
        conversation = str(message["conversation"])
        seen = self.messages.get(conversation)
        last = self.last_seq(conversation)
        if seen is not None and self._own[conversation].by_ack(message["seq"], last):
            seen.append(message)
            self._arrived.set()

    def _on_message(self, message: dict[str, Any]) -> None:
        conversation = str(message["conversation"])
        if self._own[conversation].is_copy(message["seq"]):
            return
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
                except (OSError, InvalidHandshake, ConnectionLost, TimeoutError, FrameError):
                    # InvalidHandshake: a busy worker refused it (503).
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
