"""The domain's dependencies in one object, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatserver.chat.events import Events
from chatserver.chat.limits import Limits, limits_from_settings
from chatserver.chat.openings import OpeningBatches
from chatserver.chat.sending import SendQueue
from chatserver.chat.viewers import ViewerBatches
from chatserver.clock import Clock, utcnow
from chatserver.ops import faults, instruments
from chatserver.settings import Settings
from chatserver.store.blobs import Blobs, blobs_for
from chatserver.store.db import Database

# One batch in flight per worker. Overlapping batches looked attractive
# (one fills while another waits for fsync) but they queue on each other's
# conversation row locks; the load test measured p99 at 400 sends/s drop
# from 114 ms to 20 ms with a single writer (docs/performance.md).
SEND_WRITERS = 1


@dataclass
class Chat:
    settings: Settings
    db: Database
    events: Events
    clock: Clock = utcnow
    sends: SendQueue = field(init=False)
    limits: Limits = field(init=False)
    viewers: ViewerBatches = field(init=False)
    openings: OpeningBatches = field(init=False)
    blobs: Blobs = field(init=False)

    def __post_init__(self) -> None:
        faults.arm(self.settings.test_fault)
        self.limits = limits_from_settings(self.settings)
        self.sends = SendQueue(
            self.db,
            self.events,
            self.limits,
            self.clock,
            max_batch=self.settings.send_batch_max,
            writers=SEND_WRITERS,
            publish_timeout=self.settings.publish_timeout_seconds,
            send_timeout=self.settings.send_timeout_seconds,
            on_stored=instruments.record_stored,
        )
        self.viewers = ViewerBatches(self.db)
        self.openings = OpeningBatches(self.db)
        self.blobs = blobs_for(self.db, self.settings.attachments_dir)

    async def start(self) -> None:
        await self.limits.start()
        await self.sends.start()

    async def stop(self) -> None:
        await self.sends.stop()
        await self.viewers.stop()
        await self.openings.stop()
        await self.limits.stop()
