"""One pub/sub connection to one cluster primary, for the channels it owns.

A shard channel can only be subscribed on the primary that owns its slot,
so the cluster broker keeps one such link per primary in use. A link
subscribes its channels one command each (a command may only name channels
of one slot) and reports to the broker what the broker must act on: a
message, a confirmation, a channel Redis unsubscribed on its own (its slot
moved), a subscription refused with MOVED, or the connection lost. It never
re-routes a channel itself: that is the broker's router's job.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, MovedError, ResponseError

from chatserver.broker.channels import LocalChannel
from chatserver.broker.missed import MISSED
from chatserver.broker.reader import PubSubReader
from chatserver.broker.writer import Command

if TYPE_CHECKING:
    from chatserver.broker.cluster import ClusterBroker

# The cluster backend's logger: what a link says is what the broker says.
logger = logging.getLogger("chatserver.broker.cluster")


class ShardChannel(LocalChannel):
    """Local subscribers of one channel and the link it is subscribed on."""

    __slots__ = ("link", "stale")

    def __init__(self) -> None:
        super().__init__()
        self.link: ClusterLink | None = None
        # Unsubscribed by Redis (slot moved) or refused with MOVED: the
        # router subscribes it again even if the slot map still names `link`.
        self.stale = False

    def may_wait(self) -> bool:
        """A confirmation can come; else catch up once it is subscribed."""
        if self.link is None or self.link.down:
            self.resync_on_confirm = True
            return False
        return True

    def unplace(self, channel: str) -> None:
        """The last local subscriber left: off the wire."""
        if self.link is not None:
            self.link.detach(channel)
            self.link = None


class ClusterLink(PubSubReader):
    """One pub/sub connection to one primary and the channels it carries."""

    writer_name = "broker-link-writer"

    def __init__(self, broker: ClusterBroker, node: ClusterNode) -> None:
        super().__init__(health_check_interval=broker.health_check_interval)
        self.broker = broker
        self.name = node.name
        self.host = node.host
        self.port = int(node.port)
        self.reader_name = f"broker-link-{self.name}"
        self.channels: set[str] = set()
        # Lost, and not yet connected again.
        self.down = False
        # SUNSUBSCRIBEs sent and not yet answered: any other `sunsubscribe`
        # is Redis moving the channel away.
        self._unsubscribing: Counter[str] = Counter()

    # -- channels ----------------------------------------------------------

    def attach(self, channel: str) -> None:
        """Carry `channel`; SSUBSCRIBE now if connected, else on connect."""
        self.channels.add(channel)
        self.send_subscribe("SSUBSCRIBE", channel, self.broker.wire(channel))

    def detach(self, channel: str) -> None:
        # `unconfirmed` keeps counting: a SSUBSCRIBE still in flight will be
        # answered, and must not settle a later subscription of the channel.
        self.channels.discard(channel)
        if self.send("SUNSUBSCRIBE", self.broker.wire(channel)):
            self._unsubscribing[channel] += 1

    # -- the connection's hooks ----------------------------------------------

    def new_connection(self) -> AbstractConnection:
        return self.broker.connection(self.host, self.port)

    def connection_made(self) -> None:
        self.down = False

    def serving(self) -> list[Command]:
        self._unsubscribing.clear()
        for channel in self.channels:
            self.unconfirmed[channel] += 1
        return [("SSUBSCRIBE", self.broker.wire(channel)) for channel in self.channels]

    def failed(self, exc: Exception, served: bool) -> None:
        if not self.stopping:
            logger.warning("Redis Cluster pub/sub link to %s failed: %s", self.name, exc)

    def crashed(self) -> None:
        logger.exception("Redis Cluster pub/sub link to %s failed; reconnecting", self.name)

    def lost(self) -> None:
        self.down = True
        self.broker.link_lost(self)

    def backoff(self, failures: int) -> float:
        return self.broker.backoff(failures)

    def closed_error(self) -> Exception:
        return ConnectionError(f"pub/sub link to {self.name} closed")

    def silence_error(self) -> Exception:
        return TimeoutError(f"Redis Cluster node {self.name} did not answer PING")

    def refused(self, exc: ResponseError) -> None:
        if isinstance(exc, (MovedError, AskError)):
            # SSUBSCRIBE reached a node that no longer owns the slot.
            self._refused(exc.slot_id)
            return
        # CLUSTERDOWN, TRYAGAIN and the like: the reply does not say which
        # channel, so every unconfirmed one is retried.
        logger.warning("Redis Cluster node %s refused SSUBSCRIBE: %s", self.name, exc)
        self._refused(None)

    def dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return
        kind, wire = response[0], response[1]
        if not isinstance(wire, bytes):
            return  # PONG
        channel = self.broker.logical(wire)
        if channel is None:
            return
        if kind == b"smessage":
            if response[2] == MISSED:
                self.broker.missed(channel)
            else:
                self.broker.deliver(channel, response[2])
        elif kind == b"ssubscribe":
            if self.settles(channel) and channel in self.channels:
                self.broker.confirmed(self, channel)
        elif kind == b"sunsubscribe":
            if self._unsubscribing[channel] > 0:
                self._unsubscribing[channel] -= 1
                if not self._unsubscribing[channel]:
                    del self._unsubscribing[channel]
                return
            # Unsolicited: the slot moved to another primary (or was
            # removed). Messages published there meanwhile did not reach us.
            if channel in self.channels:
                self.broker.displaced(self, channel)

    def _refused(self, slot: int | None) -> None:
        # A SUNSUBSCRIBE of a slot that moved is refused too; its reply
        # will not come.
        for channel in list(self._unsubscribing):
            if slot is None or self.broker.slot(channel) == slot:
                del self._unsubscribing[channel]
        for channel in list(self.unconfirmed):
            if slot is None or self.broker.slot(channel) == slot:
                del self.unconfirmed[channel]
                if channel in self.channels:
                    self.broker.displaced(self, channel)
