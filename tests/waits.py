"""`eventually` for async tests: the twin of tests/helpers.py's `eventually`,
which sleeps its thread and so would stop the test's event loop (and the
in-process server, broker and SMTP server running on it) while it waits.

For what happens somewhere the test cannot hear about it (a row in
PostgreSQL, a Redis subscriber count, another process's log); where there
is an event, a frame or a condition to wait on, the test waits on that.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

from tests.helpers import EVENTUALLY_EVERY_SECONDS

T = TypeVar("T")


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: str | Callable[[], str],
    every: float = ...,
) -> T: ...


@overload
async def eventually_async(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str | Callable[[], str],
    every: float = ...,
) -> T: ...


async def eventually_async(
    check: Callable[[], object],
    *,
    within: float,
    what: str | Callable[[], str],
    every: float = EVENTUALLY_EVERY_SECONDS,
) -> object:
    """The first result of `check()` (awaited if it is a coroutine) that is
    not None or False. Looks every 50 ms, as `eventually` does (`every`: more
    often, for a test that must act close to the moment, as a kill
    mid-stream); past `within` seconds the test fails saying `what` did not
    happen (a callable `what` is asked then, so the message tells how far
    things got). `check` may raise to stop at once (a process that exited)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"{said}: not within {within:g} s")
        await asyncio.sleep(every)
