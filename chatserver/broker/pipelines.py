"""Non-transactional pipelines that cost their commands and little more.

A send batch sends two pipelines to Redis (the senders' rate limits, then
the publishes). redis-py's pipeline pays about 150 µs of the worker's CPU
per execute on top of its commands (a pool checkout, which records its
observability counters and reads the socket for stale data, a retry
wrapper, a timeout for each reply): a sixth of a worker's CPU per message
at the batch sizes of 2,000 sends/s (docs/performance.md). On one Redis
server, `Pipelines.execute` writes the commands at once on a connection
of its own short free list and reads their replies under one timeout;
beyond that list (a crowd of concurrent callers) and on a cluster, whose
commands are split per primary, it is redis-py's pipeline.

The commands are packed by hiredis (redis-py's own dependency for its
parser), in C: about a fifth of the time of the asyncio connection's
pure-Python packer, which profiles of the send path showed at 3 % of a
worker's samples; byte for byte the same (tests/broker/test_pipelines.py).

Replies are Redis's own: redis-py's response callbacks (SET → True, say)
are not applied on a connection of our own, so this is for commands that
have none (PUBLISH, SPUBLISH, EVALSHA, INCR), which reply alike either way.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from chatserver.broker.clients import KeyClient
from chatserver.broker.writer import Command

# Connections kept between pipelines: a worker runs a few at once (its send
# writers' publishes, one batch per limits script); more callers at once
# than this take redis-py's pool.
SPARE_CONNECTIONS = 4


class Pipelines:
    """Pipelines on `client`, each bounded by `timeout` seconds."""

    def __init__(self, client: KeyClient, timeout: float) -> None:
        self.client = client
        self._timeout = timeout
        self._spare: list[AbstractConnection] = []
        self._open = 0
        self._closed = False

    async def execute(
        self, commands: Sequence[Command], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Each command's reply, in order; with `raise_on_error` False an
        error reply is returned in its place (a ResponseError) instead of
        raised. Raises what redis-py raises for a failed connection, or
        TimeoutError past the bound."""
        if not commands:
            return []
        if not isinstance(self.client, Redis) or (
            not self._spare and self._open >= SPARE_CONNECTIONS
        ):
            return await self._library(commands, raise_on_error)
        try:
            return await self._on_own_connection(commands, raise_on_error)
        except RedisConnectionError:
            # Most likely a spare connection that Redis closed meanwhile (a
            # restart): once more, on a new one. Nothing of the first attempt
            # ran on a connection that was already closed.
            return await self._on_own_connection(commands, raise_on_error)

    async def close(self) -> None:
        """Disconnect the spare connections; one in use is disconnected
        when its pipeline is done."""
        self._closed = True
        spare, self._spare = self._spare, []
        self._open -= len(spare)
        for connection in spare:
            await connection.disconnect(nowait=True)

    async def _on_own_connection(
        self, commands: Sequence[Command], raise_on_error: bool
    ) -> list[Any]:
        connection = self._spare.pop() if self._spare else self._new()
        try:
            async with asyncio.timeout(self._timeout):
                if not connection.is_connected:
                    await connection.connect()  # type: ignore[no-untyped-call]  # unannotated upstream
                await connection.send_packed_command(packed(commands), check_health=False)
                replies = [await _reply(connection, raise_on_error) for _ in commands]
        except BaseException:
            # Replies may still be on their way: the connection is unusable.
            self._open -= 1
            await connection.disconnect(nowait=True)
            raise
        if self._closed:
            self._open -= 1
            await connection.disconnect(nowait=True)
        else:
            self._spare.append(connection)
        return replies

    def _new(self) -> AbstractConnection:
        assert isinstance(self.client, Redis)
        pool = self.client.connection_pool
        self._open += 1
        return pool.connection_class(**pool.connection_kwargs)

    async def _library(self, commands: Sequence[Command], raise_on_error: bool) -> list[Any]:
        async with asyncio.timeout(self._timeout):
            async with self.client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=raise_on_error))


def packed(commands: Sequence[Command]) -> bytes:
    """The commands in Redis's protocol (RESP), as one buffer."""
    # hiredis' stub types a one-element tuple; it packs any length.
    return b"".join([hiredis.pack_command(command) for command in commands])  # type: ignore[arg-type]


async def _reply(connection: AbstractConnection, raise_on_error: bool) -> Any:
    try:
        return await connection.read_response(timeout=math.inf, disconnect_on_error=False)
    except ResponseError as exc:
        # The reply was read whole: the next one follows on the connection.
        if raise_on_error:
            raise
        return exc
