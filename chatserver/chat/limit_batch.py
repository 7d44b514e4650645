"""The send rate limit's Redis calls, coalesced (issue 10, cost per
message): the sends that arrive while a round trip is in flight, or in the
same event-loop turn, go to Redis together in one non-transactional
pipeline of `TAKE_SEND` calls, and each caller gets its own answer.

One EVALSHA per send cost a round trip and redis-py's per-command overhead
(packing, a socket write, a timeout) per send; a batch pays the write and
the wait once. At most one batch is in flight per worker, so under load a
batch holds what arrived during the previous one, and an idle worker still
sends a lone message at once.

The pipeline sends EVALSHA itself rather than calling the registered Script
with `client=pipe`: a plain redis-py pipeline then asks `SCRIPT EXISTS`
before every execute, a second round trip per batch, and redis-py documents
scripts in cluster pipelines as unsupported (its ClusterPipeline blocks the
`evalsha` method). Each EVALSHA names its one key, hash-tagged with the
person, so a cluster pipeline routes it to that key's node like any keyed
command. A NOSCRIPT answer (Redis restarted or flushed its scripts) loads
the script (on every primary of a cluster) and sends the refused calls
again, as the Script object does for a single call.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from chatserver.broker.clients import KEY_ERRORS, KeyClient

# Sends in one pipeline: bounds the bytes of one request and how long Redis
# runs scripts for one worker before it answers anyone else; more waiting
# sends go in the next batch, right after.
MAX_BATCH = 256


class SendBatches:
    """Runs the token-bucket script for every waiting send, a pipeline per
    batch. `take` raises what the batch met (a Redis error, or TimeoutError
    past `timeout`) so the caller can fall back to its local count."""

    def __init__(
        self, client: KeyClient, script: AsyncScript, args: Sequence[float], timeout: float
    ) -> None:
        self._client = client
        self._script = script
        self._args = tuple(args)
        self._timeout = timeout
        self._waiting: collections.deque[tuple[str, asyncio.Future[int]]] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    async def take(self, key: str) -> int:
        """Spend a token of the bucket at `key`: 0, or the milliseconds until
        one is there."""
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, answer))
        if self._runner is None:
            # Started on the loop's next turn: every send of this turn joins.
            self._runner = asyncio.create_task(self._run(), name="limits-sends")
        # A cancelled caller cancels only its own future; the batch skips it.
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[str, asyncio.Future[int]]] = []
                while self._waiting and len(batch) < MAX_BATCH:
                    key, answer = self._waiting.popleft()
                    if not answer.done():
                        batch.append((key, answer))
                if batch:
                    await self._send(batch)
        finally:
            self._runner = None
            # Stopped mid-batch: nobody is left waiting for an answer.
            self._fail_waiting(RedisConnectionError("send limits stopped"))

    async def _send(self, batch: list[tuple[str, asyncio.Future[int]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                answers = await self._pipeline([key for key, _ in batch])
        except (*KEY_ERRORS, TimeoutError) as exc:
            for _, answer in batch:
                _settle(answer, exc)
            # Those queued behind a failed batch would meet the same Redis:
            # they fall back now rather than after a timeout of their own.
            self._fail_waiting(exc)
            return
        except Exception as exc:
            # Not Redis being away but a fault: its callers raise it, as a
            # single call would, and the next batch goes on.
            for _, answer in batch:
                _settle(answer, exc)
            return
        except BaseException:
            for _, answer in batch:
                _settle(answer, RedisConnectionError("send limits stopped"))
            raise
        for (_, answer), result in zip(batch, answers, strict=True):
            _settle(answer, result)

    async def _pipeline(self, keys: list[str]) -> list[object]:
        answers = await self._evalshas(keys)
        missing = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:
            self._script.sha = await self._client.script_load(self._script.script)
            again = await self._evalshas([keys[n] for n in missing])
            for n, answer in zip(missing, again, strict=True):
                answers[n] = answer
        return answers

    async def _evalshas(self, keys: list[str]) -> list[object]:
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                # Not `pipe.evalsha`: a cluster pipeline refuses that method,
                # though it routes an EVALSHA by its one key like any command.
                pipe.execute_command("EVALSHA", self._script.sha, 1, key, *self._args)
            return list(await pipe.execute(raise_on_error=False))

    @property
    def queued(self) -> int:
        """Sends waiting for the next batch (not yet sent to Redis)."""
        return sum(not answer.done() for _, answer in self._waiting)

    @property
    def sending(self) -> bool:
        """Whether a batch is out to Redis or about to leave."""
        return self._runner is not None

    def _fail_waiting(self, exc: BaseException) -> None:
        while self._waiting:
            _, answer = self._waiting.popleft()
            _settle(answer, exc)

    async def stop(self) -> None:
        """Cancel the batch in flight; its callers fall back."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait({self._runner}, timeout=self._timeout)


def _settle(answer: asyncio.Future[int], result: object) -> None:
    """Hand one caller its answer, unless it stopped waiting."""
    if answer.done():
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    elif isinstance(result, int):
        answer.set_result(result)
    else:
        answer.set_exception(TypeError(f"TAKE_SEND answered {result!r}"))
