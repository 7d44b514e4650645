"""PLACEHOLDER: replaced by the notifications helper."""

from __future__ import annotations

import asyncio
from typing import Any


class Notifier:
    def __init__(self, chat: Any, settings: Any) -> None: ...
    async def run_forever(self) -> None:
        await asyncio.Event().wait()


async def run_standalone(settings: Any) -> None: ...
