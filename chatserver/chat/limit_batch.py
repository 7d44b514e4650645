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
from typing import TypeAlias

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from chatserver.broker.clients import KEY_ERRORS, KeyClient

# Calls in one pipeline: bounds the bytes of one request and how long Redis
# runs scripts for one worker before it answers anyone else; more waiting
# calls go in the next batch, right after.
MAX_BATCH = 256

Arg: TypeAlias = str | int | float


class _Call:
    """One caller's script call and the future it waits on."""

    __slots__ = ("answer", "args", "key")

    def __init__(self, key: str, args: tuple[Arg, ...], answer: asyncio.Future[int]) -> None:
        self.key = key
        self.args = args
        self.answer = answer


class ScriptBatches:
    """Runs one single-key script for every waiting call, a pipeline per
    batch. `call` raises what the batch met (a Redis error, or TimeoutError
    past `timeout`) so the caller can fall back to its local count."""

    def __init__(self, client: KeyClient, script: AsyncScript, timeout: float, name: str) -> None:
        self._client = client
        self._script = script
        self._timeout = timeout
        self._name = name
        self._waiting: collections.deque[_Call] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    async def call(self, key: str, *args: Arg) -> int:
        """The script's integer answer for KEYS[1] = `key` and ARGV = `args`."""
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Call(key, args, answer))
        if self._runner is None:
            # Started on the loop's next turn: every call of this turn joins.
            self._runner = asyncio.create_task(self._run(), name=self._name)
        # A cancelled caller cancels only its own future; the batch skips it.
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch: list[_Call] = []
                while self._waiting and len(batch) < MAX_BATCH:
                    call = self._waiting.popleft()
                    if not call.answer.done():
                        batch.append(call)
                if batch:
                    await self._send(batch)
        finally:
            self._runner = None
            # Stopped mid-batch: nobody is left waiting for an answer.
            self._fail_waiting(RedisConnectionError("limits stopped"))

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                answers = await self._pipeline(batch)
        except (*KEY_ERRORS, TimeoutError) as exc:
            for call in batch:
                _settle(call.answer, exc)
            # Those queued behind a failed batch would meet the same Redis:
            # they fall back now rather than after a timeout of their own.
            self._fail_waiting(exc)
            return
        except Exception as exc:
            # Not Redis being away but a fault: its callers raise it, as a
            # single call would, and the next batch goes on.
            for call in batch:
                _settle(call.answer, exc)
            return
        except BaseException:
            for call in batch:
                _settle(call.answer, RedisConnectionError("limits stopped"))
            raise
        for call, result in zip(batch, answers, strict=True):
            _settle(call.answer, result)

    async def _pipeline(self, batch: list[_Call]) -> list[object]:
        answers = await self._evalshas(batch)
        missing = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:
            self._script.sha = await self._client.script_load(self._script.script)
            again = await self._evalshas([batch[n] for n in missing])
            for n, answer in zip(missing, again, strict=True):
                answers[n] = answer
        return answers

    async def _evalshas(self, batch: list[_Call]) -> list[object]:
        async with self._client.pipeline(transaction=False) as pipe:
            for call in batch:
                # Not `pipe.evalsha`: a cluster pipeline refuses that method,
                # though it routes an EVALSHA by its one key like any command.
                pipe.execute_command("EVALSHA", self._script.sha, 1, call.key, *call.args)
            return list(await pipe.execute(raise_on_error=False))

    @property
    def queued(self) -> int:
        """Calls waiting for the next batch (not yet sent to Redis)."""
        return sum(not call.answer.done() for call in self._waiting)

    @property
    def sending(self) -> bool:
        """Whether a batch is out to Redis or about to leave."""
        return self._runner is not None

    def _fail_waiting(self, exc: BaseException) -> None:
        while self._waiting:
            _settle(self._waiting.popleft().answer, exc)

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
        answer.set_exception(TypeError(f"a limits script answered {result!r}"))
