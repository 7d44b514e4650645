"""One read for many callers at once: the shape shared by the session
check (`chat/viewers.py`) and the subscribe's opening (`chat/openings.py`),
one database transaction per batch, and the per-person limits' scripts
(`chat/limit_batch.py`), one Redis pipeline per batch; so that a crowd of
reconnecting sockets or a stream of sends costs a round trip per batch,
not one per caller (docs/performance.md, "The reconnect storm").

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

from chatserver.errors import unavailable

Q = TypeVar("Q")
A = TypeVar("A")


class _Waiter(Generic[Q, A]):
    __slots__ = ("answer", "question")

    def __init__(self, question: Q, answer: asyncio.Future[A]) -> None:
        self.question = question
        self.answer = answer


class Batches(abc.ABC, Generic[Q, A]):
    """Questions of type Q answered with A, a batch at a time."""

    def __init__(self, name: str, max_batch: int, *, stop_timeout: float | None = None) -> None:
        self._name = name
        # Questions in one read: bounds its size and how long it holds a
        # connection; more waiting questions go in the next batch, right after.
        self.max_batch = max_batch
        self._stop_timeout = stop_timeout
        self._waiting: collections.deque[_Waiter[Q, A]] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def read(self, questions: Sequence[Q]) -> Sequence[A | BaseException]:
        """The answers, in the questions' order, read in one round trip;
        an error in place of an answer is raised by that caller alone."""

    def stopped(self) -> BaseException:
        """What callers still waiting when the batcher stops raise."""
        return unavailable()

    def failed(self, error: Exception) -> None:
        """After a read raised `error` (each of its callers raises it)."""

    async def ask(self, question: Q) -> A:
        """The answer to `question`, from the next batch."""
        # A cancelled caller cancels only its own future; the batch skips it.
        return await self._queue([question])[0]

    async def ask_all(self, questions: Sequence[Q]) -> list[A | BaseException]:
        """The answers to one caller's questions, in order, from the next
        batch (or batches, past `max_batch`); an error in place of an
        answer is that question's own, or its batch's."""
        answers = self._queue(questions)
        try:
            if answers:
                await asyncio.wait(answers)
        finally:
            # A cancelled caller cancels only its own futures; the batch skips them.
            for answer in answers:
                answer.cancel()
        return [a.exception() or a.result() for a in answers]

    def _queue(self, questions: Sequence[Q]) -> list[asyncio.Future[A]]:
        """The questions queued for the next batch; a future for each answer."""
        loop = asyncio.get_running_loop()
        answers: list[asyncio.Future[A]] = [loop.create_future() for _ in questions]
        self._waiting.extend(map(_Waiter, questions, answers))
        if self._runner is None:
            # Started on the loop's next turn: every question of this turn joins.
            self._runner = asyncio.create_task(self._run(), name=self._name)
        return answers

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch: list[_Waiter[Q, A]] = []
                while self._waiting and len(batch) < self.max_batch:
                    waiter = self._waiting.popleft()
                    if not waiter.answer.done():
                        batch.append(waiter)
                if batch:
                    await self._answer(batch)
        finally:
            self._runner = None
            # Stopped mid-batch: nobody is left waiting for an answer.
            self.fail_waiting(self.stopped())

    async def _answer(self, batch: list[_Waiter[Q, A]]) -> None:
        try:
            answers = await self.read([waiter.question for waiter in batch])
        except Exception as exc:
            # What a single caller's read would have raised.
            for waiter in batch:
                _settle(waiter.answer, exc)
            self.failed(exc)
            return
        except BaseException:
            for waiter in batch:
                _settle(waiter.answer, self.stopped())
            raise
        for waiter, answer in zip(batch, answers, strict=True):
            _settle(waiter.answer, answer)

    def fail_waiting(self, error: BaseException) -> None:
        """Answer every caller still queued with `error`."""
        while self._waiting:
            _settle(self._waiting.popleft().answer, error)

    @property
    def queued(self) -> int:
        """Questions waiting for the next batch (not yet asked)."""
        return sum(not w.answer.done() for w in self._waiting)

    @property
    def sending(self) -> bool:
        """Whether a batch is out or about to leave."""
        return self._runner is not None

    async def stop(self) -> None:
        """Cancel the batch in flight; its callers raise `stopped()`."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.wait({runner}, timeout=self._stop_timeout)


def _settle(answer: asyncio.Future[A], result: A | BaseException) -> None:
    """Hand one caller its answer, unless it stopped waiting."""
    if answer.done():
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
