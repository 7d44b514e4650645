"""Sending a pub/sub connection's commands, in order, in as few writes as possible.

Subscribing and unsubscribing change local state synchronously and queue
the matching wire command; one writer task per connection sends the queue.
So the commands on the wire always follow the local state, even when a
subscription is cancelled mid-flight, and a crowd of rooms subscribing at
once costs a few writes instead of one round trip each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeAlias

from redis.asyncio.connection import AbstractConnection

from chatserver.broker.clients import KEY_ERRORS

# A Redis command as redis-py packs it: its name, then its arguments.
Command: TypeAlias = tuple[str | bytes | int | float, ...]
# Commands for a writer task; None tells it to stop.
Commands: TypeAlias = "asyncio.Queue[Command | None]"

# Channels per merged SUBSCRIBE/UNSUBSCRIBE: one command stays a few KiB.
MERGE_CHANNELS = 500
# Only these take many channels of any slot; a shard command (SSUBSCRIBE)
# may only name channels of one slot, so it is never merged.
_MERGEABLE = frozenset({"SUBSCRIBE", "UNSUBSCRIBE"})


def merged(commands: Sequence[Command]) -> list[Command]:
    """Consecutive SUBSCRIBEs (or UNSUBSCRIBEs) as one command each run, in
    order: Redis confirms each channel of a SUBSCRIBE on its own, so the
    reader's bookkeeping is the same, and the order of a SUBSCRIBE and an
    UNSUBSCRIBE of one channel is kept."""
    out: list[Command] = []
    for command in commands:
        last = out[-1] if out else None
        if (
            last is not None
            and command[0] in _MERGEABLE
            and last[0] == command[0]
            and len(last) <= MERGE_CHANNELS
        ):
            out[-1] = (*last, *command[1:])
        else:
            out.append(command)
    return out


async def write_commands(connection: AbstractConnection, commands: Commands) -> None:
    """Send what is queued until told to stop or the connection fails."""
    while True:
        batch = [await commands.get()]
        while not commands.empty() and batch[-1] is not None:
            batch.append(commands.get_nowait())
        stop = batch[-1] is None
        wire = merged([c for c in batch if c is not None])
        if not connection.is_connected:
            # Checked right before sending: send_command would otherwise
            # silently reconnect behind the reader's back.
            return
        if wire:
            try:
                # Everything queued meanwhile in one write; a crowd's
                # SUBSCRIBEs become one command per few hundred channels.
                await connection.send_packed_command(
                    connection.pack_commands(wire), check_health=False
                )
            except (*KEY_ERRORS, AttributeError):
                # AttributeError: redis-py's send on a connection closed
                # meanwhile (at shutdown) finds no writer. Either way the
                # failed send closed the socket; the reader sees it and
                # starts the reconnect.
                return
        if stop:
            return
