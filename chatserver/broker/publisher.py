"""Publishing that never fails the publisher.

By the time a message is published it is committed (SPEC section 3): the
broker only carries news of it. So a Redis failure must not reach the
caller; it is counted, logged once per outage (then quietly until Redis
answers again) and handed to the backend, which may have more to do about
it (the cluster remembers the channel to say so later). Both Redis backends
publish this way, with their own command (PUBLISH or SPUBLISH).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chatserver.broker.clients import KEY_ERRORS
from chatserver.broker.pipelines import Pipelines


@dataclass(eq=False)
class Publisher:
    """Publishes with `command` through the client `client` gives (which
    raises before the broker connects); `failed` hears of the channels a
    failure may have cost."""

    client: Callable[[], Any]
    command: Literal["publish", "spublish"]
    wire: Callable[[str], bytes]
    failed: Callable[[Sequence[str]], None]
    backend: str
    logger: logging.Logger
    # Bounds a batch's publishing (`Pipelines`).
    timeout: float
    # The last publish went through: a failure is news worth a warning.
    ok: bool = False
    # Batches go out through these, made for the client of the moment.
    _pipelines: Pipelines | None = None

    async def publish(self, channel: str, payload: bytes) -> None:
        await self.publish_many([(channel, payload)])

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """A batch in one round trip per server involved, each channel's
        messages in order."""
        if not items:
            return
        client = self.client()
        pipelines = self._pipelines
        if pipelines is None or pipelines.client is not client:
            await self.close()
            pipelines = self._pipelines = Pipelines(client, self.timeout)
        command = self.command.upper()
        try:
            await pipelines.execute(
                [(command, self.wire(channel), payload) for channel, payload in items]
            )
        except KEY_ERRORS as exc:
            self.fail(exc, [channel for channel, _ in items])
        else:
            self.ok = True

    async def close(self) -> None:
        """Let go of the connections kept for batches (the broker disconnects)."""
        pipelines, self._pipelines = self._pipelines, None
        if pipelines is not None:
            await pipelines.close()

    def fail(self, exc: BaseException, channels: Sequence[str]) -> None:
        self.failed(channels)
        if self.ok:
            self.logger.warning("%s publish failed; live fan-out paused: %s", self.backend, exc)
        else:
            self.logger.debug("%s publish failed during outage: %s", self.backend, exc)
        self.ok = False
