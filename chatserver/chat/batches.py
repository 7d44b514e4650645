"""One database read for many callers at once: the shape shared by the
session check (`chat/viewers.py`) and the subscribe's opening
(`chat/openings.py`), so that a crowd of reconnecting sockets costs a
transaction per batch, not one per socket (docs/performance.md, "The
reconnect storm").

- Nothing is cached: a question asked while a batch is in flight waits
  for the next one, so its answer comes from a transaction that began
  after it was asked (a session ended a moment ago is refused at once).
- One batch in flight per worker: an idle worker reads a lone question on
  the loop's next turn, a busy one gathers what arrived meanwhile, at
  most `max_batch` a batch.
- What the batch's read raises, every caller of that batch raises, as a
  single read would have; a caller that stopped waiting is skipped.
"""

from __future__ import annotations

import abc
import asyncio
import collections
from collections.abc import Sequence
from typing import Generic, TypeVar

from chatserver.errors import ChatError, unavailable

Q = TypeVar("Q")
A = TypeVar("A")


class _Waiter(Generic[Q, A]):
    __slots__ = ("answer", "question")

    def __init__(self, question: Q, answer: asyncio.Future[A]) -> None:
        self.question = question
        self.answer = answer


class Batches(abc.ABC, Generic[Q, A]):
    """Questions of type Q answered with A, a batch at a time."""

    def __init__(self, name: str, max_batch: int) -> None:
        self._name = name
        self._max_batch = max_batch
        self._waiting: collections.deque[_Waiter[Q, A]] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def read(self, questions: Sequence[Q]) -> Sequence[A | ChatError]:
        """The answers, in the questions' order, read in one transaction;
        an error in place of an answer is raised by that caller alone."""

    async def ask(self, question: Q) -> A:
        """The answer to `question`, from the next batch."""
        answer: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiter(question, answer))
        if self._runner is None:
            # Started on the loop's next turn: every question of this turn joins.
            self._runner = asyncio.create_task(self._run(), name=self._name)
        # A cancelled caller cancels only its own future; the batch skips it.
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch: list[_Waiter[Q, A]] = []
                while self._waiting and len(batch) < self._max_batch:
                    waiter = self._waiting.popleft()
                    if not waiter.answer.done():
                        batch.append(waiter)
                if batch:
                    await self._answer(batch)
        finally:
            self._runner = None
            # Stopped mid-batch: nobody is left waiting for an answer.
            while self._waiting:
                _settle(self._waiting.popleft().answer, unavailable())

    async def _answer(self, batch: list[_Waiter[Q, A]]) -> None:
        try:
            answers = await self.read([waiter.question for waiter in batch])
        except Exception as exc:
            # What a single caller's transaction would have raised.
            for waiter in batch:
                _settle(waiter.answer, exc)
            return
        except BaseException:
            for waiter in batch:
                _settle(waiter.answer, unavailable())
            raise
        for waiter, answer in zip(batch, answers, strict=True):
            _settle(waiter.answer, answer)

    @property
    def queued(self) -> int:
        """Questions waiting for the next batch (not yet asked of the database)."""
        return sum(not w.answer.done() for w in self._waiting)

    async def stop(self) -> None:
        """Cancel the batch in flight; its callers get `unavailable`."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.wait({runner})


def _settle(answer: asyncio.Future[A], result: A | BaseException) -> None:
    """Hand one caller its answer, unless it stopped waiting."""
    if answer.done():
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
