"""The per-person limits' Redis calls, coalesced (issue 10, cost per
message): the calls of one script that arrive while a round trip of it is
in flight, or in the same event-loop turn, go to Redis together in one
non-transactional pipeline, and each caller gets its own answer. Used for
every send's `TAKE_SEND`, and for the connection scripts, whose calls come
in crowds (sockets reconnecting after a deploy, the periodic refresh).

One EVALSHA per call cost a round trip and redis-py's per-command overhead
(packing, a socket write, a timeout) per call, and a connection of the
pool each: past the pool's 100 concurrent calls redis-py refuses ("Too
many connections") and the worker fell back to its own counts. A batch
pays the write and the wait once, on one connection. At most one batch of
a script is in flight per worker, so under load a batch holds what arrived
during the previous one, and an idle worker still sends a lone call at once.

The pipeline (`broker/pipelines.py`) sends EVALSHA itself rather than
calling the registered Script with `client=pipe`: a redis-py pipeline then
asks `SCRIPT EXISTS` before every execute, a second round trip per batch,
and redis-py documents scripts in cluster pipelines as unsupported (its
ClusterPipeline blocks the `evalsha` method). Each EVALSHA names its one key, hash-tagged with the
person, so a cluster pipeline routes it to that key's node like any keyed
command. A NOSCRIPT answer (Redis restarted or flushed its scripts) loads
the script (on every primary of a cluster) and sends the refused calls
again, as the Script object does for a single call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from chatserver.broker.clients import KEY_ERRORS, KeyClient
from chatserver.broker.pipelines import Pipelines
from chatserver.chat.batches import Batches

# Calls in one pipeline: bounds the bytes of one request and how long Redis
# runs scripts for one worker before it answers anyone else.
MAX_BATCH = 256

Arg: TypeAlias = str | int | float


@dataclass(frozen=True, slots=True)
class Call:
    """One caller's script call: KEYS[1] and ARGV."""

    key: str
    args: tuple[Arg, ...]


class ScriptBatches(Batches[Call, int]):
    """Runs one single-key script for every waiting call, a pipeline per
    batch. `call` raises what the batch met (a Redis error, or TimeoutError
    past `timeout`) so the caller can fall back to its local count."""

    def __init__(
        self,
        client: KeyClient,
        pipelines: Pipelines,
        script: AsyncScript,
        timeout: float,
        name: str,
    ) -> None:
        super().__init__(name, MAX_BATCH, stop_timeout=timeout)
        self._client = client
        self._pipelines = pipelines
        self._script = script
        self._timeout = timeout

    async def call(self, key: str, *args: Arg) -> int:
        """The script's integer answer for KEYS[1] = `key` and ARGV = `args`."""
        return await self.ask(Call(key, args))

    async def read(self, calls: Sequence[Call]) -> list[int | BaseException]:
        async with asyncio.timeout(self._timeout):
            return [_checked(answer) for answer in await self._pipeline(calls)]

    def failed(self, error: Exception) -> None:
        if isinstance(error, (*KEY_ERRORS, TimeoutError)):
            # Those queued behind a failed batch would meet the same Redis:
            # they fall back now rather than after a timeout of their own.
            # (Any other error is a fault: its callers raise it, as a
            # single call would, and the next batch goes on.)
            self.fail_waiting(error)

    def stopped(self) -> BaseException:
        return RedisConnectionError("limits stopped")

    async def _pipeline(self, batch: Sequence[Call]) -> list[object]:
        answers = await self._evalshas(batch)
        missing = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:
            self._script.sha = await self._client.script_load(self._script.script)
            again = await self._evalshas([batch[n] for n in missing])
            for n, answer in zip(missing, again, strict=True):
                answers[n] = answer
        return answers

    async def _evalshas(self, batch: Sequence[Call]) -> list[object]:
        # EVALSHA as a plain command: a cluster pipeline refuses
        # `pipe.evalsha`, though it routes an EVALSHA by its one key like
        # any keyed command.
        return await self._pipelines.execute(
            [("EVALSHA", self._script.sha, 1, call.key, *call.args) for call in batch],
            raise_on_error=False,
        )


def _checked(answer: object) -> int | BaseException:
    """A script's answer as its caller gets it: an integer, or an error."""
    if isinstance(answer, int | BaseException):
        return answer
    return TypeError(f"a limits script answered {answer!r}")
