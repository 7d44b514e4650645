"""Who has a conversation open right now, across workers.

The notifier asks `online(conversation, kind, person)` before emailing: a
person looking at the conversation does not need an email about it. The hub
calls `enter` / `leave` as sockets subscribe and go, synchronously and
without I/O; the Redis implementation writes in the background.

Redis layout: one hash per (conversation, person), `<prefix>presence:
{conv:<conv>}:<kind>:<id>`, with one field per worker whose value is the time (epoch
seconds) until which that worker vouches for the person. Workers refresh
their fields periodically, so a crashed worker's claims expire by themselves
and the key's own TTL removes hashes nobody refreshes. The hash tag is the
conversation's channel name, so on a Redis Cluster a conversation's presence
lives on the shard that carries its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from typing import Protocol

from chatserver.broker.clients import KEY_ERRORS, key_client
from chatserver.chat.events import conversation_name
from chatserver.settings import Settings

log = logging.getLogger(__name__)

# A worker re-asserts its presence claims this often; a claim lives three
# periods, so one missed refresh (a Redis blip) does not make anybody look
# offline, and a crashed worker's claims vanish within a minute and a half.
REFRESH_SECONDS = 30.0
CLAIM_SECONDS = 3 * REFRESH_SECONDS
# Local changes are written in batches this often: subscribes come in bursts
# (a page load, a reconnect storm) and one pipeline beats hundreds of calls.
FLUSH_SECONDS = 0.2
# While Redis does not answer, `online` says "offline" for this long without
# asking again: a planning pass asks once per email due, and each question
# to a stalled Redis would wait out its timeout.
UNKNOWN_SECONDS = 10.0

Key = tuple[str, str, str]  # (conversation, kind, person)


class Presence(Protocol):
    async def online(self, conversation_id: str, kind: str, person_id: str) -> bool: ...

    def enter(self, conversation_id: str, kind: str, person_id: str) -> None: ...

    def leave(self, conversation_id: str, kind: str, person_id: str) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class MemoryPresence:
    """One process: the embedded default, where the notifier runs in-process."""

    def __init__(self) -> None:
        self._counts: Counter[Key] = Counter()

    async def online(self, conversation_id: str, kind: str, person_id: str) -> bool:
        return self._counts[(conversation_id, kind, person_id)] > 0

    def enter(self, conversation_id: str, kind: str, person_id: str) -> None:
        self._counts[(conversation_id, kind, person_id)] += 1

    def leave(self, conversation_id: str, kind: str, person_id: str) -> None:
        key = (conversation_id, kind, person_id)
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]

    async def start(self) -> None:
        """Nothing to run; present so both implementations share a lifecycle."""

    async def stop(self) -> None:
        self._counts.clear()


class RedisPresence:
    """Several workers (and a separate notifier process) share presence in Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = key_client(url, timeout=5)
        self._prefix = prefix
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        # `online` answers without Redis until then (it did not answer).
        self._unknown_until = 0.0
        self._counts: Counter[Key] = Counter()
        self._dirty: set[Key] = set()
        self._wake = asyncio.Event()
        # Stopping by event, not by cancelling: redis-py's own timeouts can
        # swallow a cancellation on Python 3.11, which hung shutdown.
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _key(self, key: Key) -> str:
        conversation_id, kind, person_id = key
        tag = conversation_name(conversation_id)
        return f"{self._prefix}presence:{{{tag}}}:{kind}:{person_id}"

    async def online(self, conversation_id: str, kind: str, person_id: str) -> bool:
        """Whether a worker vouches for the person now. Unknown while Redis
        does not answer, and taken as offline then: an email too many is
        better than none to anyone for as long as Redis is down."""
        if time.monotonic() < self._unknown_until:
            return False
        try:
            claims = await self._redis.hvals(self._key((conversation_id, kind, person_id)))
        except KEY_ERRORS as exc:
            log.warning(
                "presence unknown (%s): everyone counts as offline for %gs", exc, UNKNOWN_SECONDS
            )
            self._unknown_until = time.monotonic() + UNKNOWN_SECONDS
            return False
        now = time.time()
        return any(float(until) > now for until in claims)

    def enter(self, conversation_id: str, kind: str, person_id: str) -> None:
        key = (conversation_id, kind, person_id)
        self._counts[key] += 1
        if self._counts[key] == 1:
            self._mark(key)

    def leave(self, conversation_id: str, kind: str, person_id: str) -> None:
        key = (conversation_id, kind, person_id)
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]
            self._mark(key)

    def _mark(self, key: Key) -> None:
        self._dirty.add(key)
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._write_forever(), name="presence-writer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            self._wake.set()
            await task
        # Withdraw this worker's claims so nobody looks online after a clean stop.
        with contextlib.suppress(*KEY_ERRORS):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in self._counts:
                    pipe.hdel(self._key(key), self.worker)
                await pipe.execute()
        self._counts.clear()
        await self._redis.aclose()

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while not self._stopping.is_set():
            timeout = max(0.0, next_refresh - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            refresh = loop.time() >= next_refresh
            keys = set(self._counts) if refresh else set()
            keys |= self._dirty
            self._dirty = set()
            try:
                await self._write(keys)
            except KEY_ERRORS as exc:
                log.warning("presence update failed (%s); retrying on the next refresh", exc)
                self._dirty |= keys
                next_refresh = loop.time() + FLUSH_SECONDS * 10
                continue
            if refresh:
                next_refresh = loop.time() + REFRESH_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), FLUSH_SECONDS)

    async def _write(self, keys: set[Key]) -> None:
        if not keys:
            return
        until = str(time.time() + CLAIM_SECONDS)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                name = self._key(key)
                if key in self._counts:
                    pipe.hset(name, self.worker, until)
                    pipe.expire(name, int(CLAIM_SECONDS))
                else:
                    pipe.hdel(name, self.worker)
            await pipe.execute()


def presence_from_settings(settings: Settings) -> Presence:
    """Redis when configured (several workers, or a separate notifier),
    else this process's memory. In the embedded setup the in-process
    notifier must be handed the hub's own instance (`hub.presence`)."""
    if settings.redis_url:
        return RedisPresence(settings.redis_url, settings.redis_prefix)
    return MemoryPresence()
