"""Per-person limits that hold across workers: the send rate and the number
of open sockets (SPEC section 8, "Limits per user ... hold across all
workers").

Counted in one worker's memory, a person spreading sockets over N workers
would get N times each limit. With REDIS_URL set the counts live in Redis,
keyed per person with the person's channel as hash tag
(`<prefix>sends:{person:staff:alice}`), so each person's keys sit on one
shard of a cluster:

- sends: a token bucket in a hash, spent by one Lua script on the server's
  clock, so workers with skewed clocks agree;
- connections: a sorted set whose members are the worker's tickets and
  whose scores are the time until which the worker vouches for them. The
  worker refreshes its tickets periodically, so a crashed worker's sockets
  stop counting within `TICKET_SECONDS`.

Each script's calls that wait at the same time go to Redis in one pipeline
(`chat/limit_batch.py`), not a round trip and a pooled connection each.

If Redis cannot be reached the worker falls back to its own counts (logged)
rather than refuse everyone: a Redis outage must not stop chat, and a
person still meets each limit once per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import time
from collections.abc import Sequence
from typing import Protocol, TypeAlias

from chatserver.broker.clients import KEY_ERRORS, KeyClient, key_client
from chatserver.broker.pipelines import Pipelines
from chatserver.chat.events import person_channel
from chatserver.chat.limit_batch import Call, ScriptBatches
from chatserver.chat.ratelimit import RateLimiter
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings

log = logging.getLogger(__name__)

# A worker re-asserts its tickets this often; a ticket lives three periods,
# so one missed refresh (a Redis blip) does not free a slot, and a crashed
# worker's sockets stop counting within half a minute.
REFRESH_SECONDS = 10.0
TICKET_SECONDS = 3 * REFRESH_SECONDS
# Redis answers in well under a millisecond; a limit check that waits longer
# than this falls back to the local count instead of holding a send.
REDIS_TIMEOUT_SECONDS = 1.0
# People refreshed at once: bounds the commands in flight on one client.
REFRESH_CHUNK = 100
# After a failed call the worker counts locally for this long before it
# tries Redis again, so a hung Redis costs one timeout, not one per send.
RETRY_REDIS_SECONDS = 5.0
# A fallback is logged at most this often, not once per send.
WARN_EVERY_SECONDS = 30.0

# KEYS[1] the bucket hash; ARGV rate per second, burst. Returns 0 when a
# token was spent, else the milliseconds until one is there.
TAKE_SEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(b[1])
local stamp = tonumber(b[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens < 1 then
  wait = math.max(1, math.ceil((1 - tokens) / rate * 1000))
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""

# KEYS[1] the person's sorted set; ARGV cap, ticket, lifetime in seconds.
# Prunes expired tickets, then adds this one unless the cap is reached.
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""

# KEYS[1] the person's sorted set; ARGV lifetime, then the worker's tickets.
REFRESH = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_, ARGV[i])
end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
return #ARGV - 1
"""


Sender: TypeAlias = tuple[str, str]  # (kind, person id), as `person_channel` names them


def _too_fast(wait_ms: int) -> ChatError:
    return ChatError(
        ErrorCode.RATE_LIMITED,
        "You are sending messages too quickly; wait a moment.",
        retry_after_ms=wait_ms,
    )


class Limits(Protocol):
    async def take_sends(self, senders: Sequence[Sender]) -> dict[int, ChatError]:
        """Spend one send of each sender in order (the send queue's batch):
        the sends refused, by index, with their `rate_limited`."""

    async def claim(self, kind: str, person_id: str) -> str | None:
        """A ticket for one more socket of the person, or None at the cap."""

    def release(self, kind: str, person_id: str, ticket: str) -> None:
        """The socket holding `ticket` is gone; never waits."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalLimits:
    """One worker's own counts: the embedded default, and the fallback of
    `RedisLimits` while Redis is down."""

    def __init__(self, settings: Settings) -> None:
        self.sends = RateLimiter(settings.send_rate, settings.send_burst)
        self.cap = settings.max_connections_per_user
        self.held: dict[str, set[str]] = {}
        self._numbers = itertools.count(1)

    async def take_sends(self, senders: Sequence[Sender]) -> dict[int, ChatError]:
        return self.take_sends_now(senders)

    def take_sends_now(self, senders: Sequence[Sender]) -> dict[int, ChatError]:
        return {i: r for i, s in enumerate(senders) if (r := self.take_send_now(s)) is not None}

    def take_send_now(self, sender: Sender) -> ChatError | None:
        """Spend one of the person's sends, or the refusal."""
        wait_ms = self.sends.wait_ms(":".join(sender))
        return _too_fast(wait_ms) if wait_ms else None

    async def claim(self, kind: str, person_id: str) -> str | None:
        return self.claim_now(kind, person_id, f"local-{next(self._numbers)}")

    def claim_now(self, kind: str, person_id: str, ticket: str) -> str | None:
        tickets = self.held.setdefault(person_channel(kind, person_id), set())
        if len(tickets) >= self.cap:
            if not tickets:
                del self.held[person_channel(kind, person_id)]
            return None
        tickets.add(ticket)
        return ticket

    def release(self, kind: str, person_id: str, ticket: str) -> None:
        channel = person_channel(kind, person_id)
        tickets = self.held.get(channel)
        if tickets is None:
            return
        tickets.discard(ticket)
        if not tickets:
            del self.held[channel]

    async def start(self) -> None:
        """Nothing to run; present so both implementations share a lifecycle."""

    async def stop(self) -> None:
        self.held.clear()


class RedisLimits:
    """Counts shared by every worker through Redis (or a Redis Cluster)."""

    def __init__(
        self, settings: Settings, client: KeyClient | None = None, *, prefix: str | None = None
    ) -> None:
        self._redis = client or key_client(settings.redis_url, timeout=REDIS_TIMEOUT_SECONDS)
        # The scripts' batches go out through these (`broker/pipelines.py`).
        self._pipelines = Pipelines(self._redis, REDIS_TIMEOUT_SECONDS)
        self._prefix = settings.redis_prefix if prefix is None else prefix
        self._rate = settings.send_rate
        self._burst = settings.send_burst
        self._cap = settings.max_connections_per_user
        # The worker's own tickets (refreshed in Redis) and its fallback.
        self.local = LocalLimits(settings)
        self.worker = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._numbers = itertools.count(1)
        # Each script's calls waiting at the same time go in one pipeline.
        self.sends = self._batches(TAKE_SEND, "limits-sends")
        self._claims = self._batches(CLAIM, "limits-claims")
        self._refreshes = self._batches(REFRESH, "limits-refresh")
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = 0.0
        self._down_until = 0.0

    def _batches(self, script: str, name: str) -> ScriptBatches:
        return ScriptBatches(
            self._redis,
            self._pipelines,
            self._redis.register_script(script),
            REDIS_TIMEOUT_SECONDS,
            name,
        )

    def _key(self, what: str, kind: str, person_id: str) -> str:
        return f"{self._prefix}{what}:{{{person_channel(kind, person_id)}}}"

    def _redis_down(self) -> bool:
        return time.monotonic() < self._down_until

    async def take_sends(self, senders: Sequence[Sender]) -> dict[int, ChatError]:
        if self._redis_down():
            return self.local.take_sends_now(senders)
        calls = [Call(self._key("sends", *sender), (self._rate, self._burst)) for sender in senders]
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                answers = await self.sends.ask_all(calls)
        except TimeoutError as exc:
            self._fell_back("send rate", exc)
            return self.local.take_sends_now(senders)
        refused: dict[int, ChatError] = {}
        for i, answer in enumerate(answers):
            if isinstance(answer, (*KEY_ERRORS, TimeoutError)):
                # This call met a Redis that failed: the worker counts it itself.
                self._fell_back("send rate", answer)
                refusal = self.local.take_send_now(senders[i])
            elif isinstance(answer, BaseException):
                raise answer
            else:
                refusal = _too_fast(answer) if answer else None
            if refusal is not None:
                refused[i] = refusal
        return refused

    async def claim(self, kind: str, person_id: str) -> str | None:
        ticket = f"{self.worker}-{next(self._numbers)}"
        if self._redis_down():
            return self.local.claim_now(kind, person_id, ticket)
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                granted = await self._claims.call(
                    self._key("conns", kind, person_id), self._cap, ticket, TICKET_SECONDS
                )
        except (*KEY_ERRORS, TimeoutError) as exc:
            # Counted locally now; the next refresh writes it to Redis.
            self._fell_back("connections", exc)
            return self.local.claim_now(kind, person_id, ticket)
        if not granted:
            return None
        self.local.held.setdefault(person_channel(kind, person_id), set()).add(ticket)
        return ticket

    def release(self, kind: str, person_id: str, ticket: str) -> None:
        self.local.release(kind, person_id, ticket)
        task = asyncio.create_task(self._forget(self._key("conns", kind, person_id), ticket))
        task.add_done_callback(_log_failure)

    async def _forget(self, key: str, ticket: str) -> None:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self._redis.zrem(key, ticket)
        except (*KEY_ERRORS, TimeoutError) as exc:
            # The ticket expires on its own within TICKET_SECONDS.
            log.debug("connection ticket not removed: %s", exc)

    async def refresh(self) -> None:
        """Re-assert every ticket this worker holds, one script per person,
        a chunk of people at a time (each chunk goes in pipelines)."""
        held = [
            (f"{self._prefix}conns:{{{channel}}}", sorted(tickets))
            for channel, tickets in self.local.held.items()
        ]
        for start in range(0, len(held), REFRESH_CHUNK):
            await asyncio.gather(
                *(
                    self._refreshes.call(key, TICKET_SECONDS, *tickets)
                    for key, tickets in held[start : start + REFRESH_CHUNK]
                )
            )

    async def _refresh_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), REFRESH_SECONDS)
            if self._stopping.is_set():
                return
            try:
                async with asyncio.timeout(REFRESH_SECONDS):
                    await self.refresh()
            except (*KEY_ERRORS, TimeoutError) as exc:
                self._fell_back("connection refresh", exc)

    def _fell_back(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + RETRY_REDIS_SECONDS
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            # A timeout's text is empty: its type says what happened.
            log.warning(
                "Redis unreachable for per-user %s limits; counting per worker: %s",
                what,
                str(exc) or type(exc).__name__,
            )

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._refresh_forever(), name="limits")

    async def stop(self) -> None:
        self._stopping.set()
        for batches in (self.sends, self._claims, self._refreshes):
            await batches.stop()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=REFRESH_SECONDS)
            self._task = None
        held = dict(self.local.held)
        self.local.held.clear()
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, tickets in held.items():
                        pipe.zrem(f"{self._prefix}conns:{{{channel}}}", *tickets)
                    await pipe.execute()
        except (*KEY_ERRORS, TimeoutError) as exc:
            log.debug("connection tickets left to expire: %s", exc)
        await self._pipelines.close()
        await self._redis.aclose()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("releasing a connection ticket failed", exc_info=task.exception())


def limits_from_settings(settings: Settings) -> Limits:
    """Redis-backed limits when REDIS_URL is set, else the worker's own."""
    if settings.redis_url:
        return RedisLimits(settings)
    return LocalLimits(settings)
