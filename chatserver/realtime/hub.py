"""PLACEHOLDER: replaced by the realtime helper."""

from __future__ import annotations

from typing import Any


class Hub:
    def __init__(self, chat: Any, broker: Any, settings: Any) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
