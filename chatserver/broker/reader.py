"""One pub/sub connection kept open: reconnect, write queued commands, read.

A pub/sub connection is kept the same way whether it carries every channel
of one Redis server or the shard channels of one cluster primary: connect
(a connection of its own, since pub/sub mode makes it unusable for anything
else), re-subscribe, run a writer task for queued commands and read replies
until the connection fails, PINGing when it is idle to notice a dead peer;
then back off and start again. `PubSubReader` does that once; a backend
says, through the hooks, how to connect, what to re-subscribe, what a
reply means and what a failure means to it.

Most of what a busy worker reads here are messages, several per message
sent (issue 10), so a reply costs as little as redis-py allows: RESP2,
whose messages are plain arrays (RESP3 makes each a push notification,
which redis-py formats for a debug log line whether or not it is
logged), and no timeout of its own: one timer per health-check interval
notices silence instead. Together about 2 µs a message instead of 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import abstractmethod
from collections import Counter
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from chatserver.broker.clients import KEY_ERRORS
from chatserver.broker.writer import Command, Commands, write_commands

# The protocol of pub/sub connections (see the module's docstring).
PUBSUB_PROTOCOL = 2


class PubSubReader:
    """The reconnect loop and the reading of one pub/sub connection.

    A backend overrides the abstract hooks (mypy insists) and any of the
    others it cares about; those do nothing by default.
    """

    # Task names, for debugging a running process.
    reader_name = "broker-reader"
    writer_name = "broker-writer"

    def __init__(self, *, health_check_interval: float) -> None:
        self.health_check_interval = health_check_interval
        # SUBSCRIBEs sent on the current connection and not yet confirmed,
        # by channel; a channel settles when its last one is confirmed.
        self.unconfirmed: Counter[str] = Counter()
        self.stopping = False
        # Something was read in the current health-check interval.
        self._heard = False
        self._commands: Commands | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.stopping = False
        self._task = asyncio.create_task(self._run(), name=self.reader_name)

    async def stop(self) -> None:
        # The flag stops the loop even if redis-py swallowed the cancel
        # (Python 3.11's wait_for can, when its send completes meanwhile).
        task, self._task = self._task, None
        self.stopping = True
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    # -- commands ----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A connection is being served: queued commands will be sent on it."""
        return self._commands is not None

    def send(self, *command: str | bytes) -> bool:
        """Queue a command for the current connection; False while down (the
        next connection re-subscribes from local state instead)."""
        if self._commands is None:
            return False
        self._commands.put_nowait(command)
        return True

    def send_subscribe(self, command: str, channel: str, wire: bytes) -> bool:
        """Queue a SUBSCRIBE-like command and count it until confirmed."""
        if self._commands is None:
            return False
        self.unconfirmed[channel] += 1
        self._commands.put_nowait((command, wire))
        return True

    def settles(self, channel: str) -> bool:
        """A SUBSCRIBE of `channel` was confirmed: True unless a later one of
        the same channel is still in flight (that one settles it)."""
        waiting = self.unconfirmed.get(channel, 0)
        if waiting > 1:
            self.unconfirmed[channel] = waiting - 1
            return False
        self.unconfirmed.pop(channel, None)
        return True

    # -- hooks -------------------------------------------------------------

    @abstractmethod
    def new_connection(self) -> AbstractConnection: ...

    @abstractmethod
    def serving(self) -> list[Command]:
        """The connection is up: return the commands that re-subscribe."""

    @abstractmethod
    def dispatch(self, response: Any) -> None: ...

    @abstractmethod
    def failed(self, exc: Exception, served: bool) -> None:
        """The connection failed (or could not be made)."""

    @abstractmethod
    def crashed(self) -> None:
        """A bug ended the connection; called inside the except block."""

    @abstractmethod
    def backoff(self, failures: int) -> float: ...

    def connection_made(self) -> None:
        """The socket is open; the connection is not served yet."""

    def attempted(self) -> None:
        """One attempt at a connection is over, whatever came of it."""

    def ended(self) -> None:
        """The served connection is gone; its commands go nowhere now."""

    def lost(self) -> None:
        """The connection is gone and another will be tried after a pause."""

    def refused(self, exc: ResponseError) -> None:
        """Redis answered a command with an error; by default the connection
        is in doubt and made again."""
        raise exc

    def closed_error(self) -> Exception:
        return ConnectionError("pub/sub connection closed")

    def silence_error(self) -> Exception:
        return TimeoutError("Redis did not answer PING")

    # -- the connection ----------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self.stopping:
            connection = self.new_connection()
            served = False
            try:
                await connection.connect()  # type: ignore[no-untyped-call]  # unannotated upstream
                failures = 0
                self.connection_made()
                if not self.stopping:
                    served = True
                    await self._serve(connection)
            except KEY_ERRORS as exc:
                self.failed(exc, served)
                failures += 1
            except Exception:
                # A bug must not end live fan-out for the life of the process.
                self.crashed()
                failures += 1
            finally:
                self.attempted()
                await connection.disconnect(nowait=True)
            if self.stopping:
                return
            self.lost()
            await asyncio.sleep(self.backoff(failures))

    async def _serve(self, connection: AbstractConnection) -> None:
        """Run one connection: re-subscribe, then read until it fails."""
        commands: Commands = asyncio.Queue()
        self.unconfirmed.clear()
        for command in self.serving():
            commands.put_nowait(command)
        self._commands = commands
        writer = asyncio.create_task(write_commands(connection, commands), name=self.writer_name)
        try:
            await self._read(connection, commands)
        finally:
            self._commands = None
            # The sentinel ends the writer even if a send swallowed the cancel.
            commands.put_nowait(None)
            writer.cancel()
            await asyncio.wait({writer})
            self.ended()

    async def _read(self, connection: AbstractConnection, commands: Commands) -> None:
        """Read until the connection fails. An interval in which nothing
        was heard sends a PING; a second one ends the connection."""
        awaiting_pong = False
        while not self.stopping:
            if not connection.is_connected:
                raise self.closed_error()
            self._heard = False
            try:
                # The interval ends; what was heard in it decides below.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.health_check_interval):
                        await self._read_replies(connection)
            except ResponseError as exc:
                self._heard = True
                self.refused(exc)
            if self._heard:
                awaiting_pong = False
                continue
            if awaiting_pong:
                raise self.silence_error()
            commands.put_nowait(("PING",))
            awaiting_pong = True

    async def _read_replies(self, connection: AbstractConnection) -> None:
        """Dispatch replies as they come, noting that something was heard.
        The interval's timer may cancel the read; the connection is kept
        (a cancelled read has consumed nothing)."""
        while not self.stopping:
            response = await connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            self._heard = True
            self.dispatch(response)
