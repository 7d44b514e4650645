"""The `storm` mode's clients: one `Member` per person, a browser tab that
outlives its connections, as static/js/socket.js keeps one: it holds the
last seq seen (the `after` of its next subscribe) and its unacknowledged
sends (re-sent with their client_id on every new connection, after 8 s
without an ack, and after an `unavailable` answer's retry delay).

`Ledger` is what all of them record: acks, refusals, close codes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from scripts.load.own_copies import OwnCopies
from scripts.load.storm_report import Delivery

# static/js/socket.js: an unacknowledged send goes again after 8 s on the
# same socket; `unavailable` and `rate_limited` answers are retried after
# their retry_after_ms, or 4 x 250 ms without one.
ACK_TIMEOUT_S = 8.0
RETRYABLE = frozenset({"unavailable", "rate_limited"})
DEFAULT_RETRY_S = 1.0
# A connection that lived this long was healthy: its loss starts the
# backoff afresh (socket.js STABLE_AFTER_MS).
STABLE_AFTER_S = 5.0
# picows's code for a connection that ended without a close frame.
NO_CLOSE_FRAME = "1006"


def _send_number(message: dict[str, Any]) -> int:
    """The load test's number of a send, from its body (`storm N <ns>`)."""
    return int(message["body"].split(" ", 2)[1])


@dataclass
class Pending:
    """A send not yet acknowledged."""

    frame: bytes
    sent_at: float = 0.0
    not_before: float = 0.0


class Ledger:
    """Everything the members record, shared by all of them."""

    def __init__(self) -> None:
        self.acked: dict[str, dict[str, int]] = defaultdict(dict)
        self.doubled_acks = 0
        self.errors: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.subscribe_refused: Counter[str] = Counter()
        self.close_codes: Counter[str] = Counter()
        self.ack_ms: list[float] = []
        self.sent_ns: dict[str, int] = {}
        self.transmits = 0
        self.retransmits = 0
        self.lost_again = 0
        self.recovery_cpu: dict[str, Any] = {}


class Member:
    """One person's tab in one conversation, across reconnections."""

    def __init__(self, conversation: str, kind: str, cookie: str, ledger: Ledger) -> None:
        self.conversation = conversation
        self.kind = kind
        self.cookie = cookie
        self.ledger = ledger
        self.tab: Tab | None = None
        self.opened_at = 0.0
        self.delivery = Delivery(conversation)
        self.last_seq = 0
        self.own = OwnCopies()
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending: dict[str, Pending] = {}
        self.attempt = 0
        # Connect attempts abandoned pending in a row (socket.js
        # `timeoutsInRow`): each doubles the next one's timeout.
        self.timeouts_in_row = 0
        self.lost_at: float | None = None
        self.resubscribed_at: float | None = None
        self.worker: int | None = None
        # Of each reconnection: seconds in the WebSocket handshake (the
        # server checks the session before it accepts), and from the open
        # socket to `subscribed` (connection cap, access, room, replay).
        self.handshake_s: list[float] = []
        self.subscribe_s: list[float] = []

    def restart(self) -> None:
        """After a failed first connection: drop it and wait afresh."""
        self.close()
        self.tab = None
        if self.first.done() and not self.first.cancelled():
            self.first.exception()  # retrieved: the set-up tries again
        self.first = asyncio.get_running_loop().create_future()

    def close(self) -> None:
        if self.tab is not None and self.tab.transport is not None:
            self.tab.transport.disconnect()

    @property
    def is_open(self) -> bool:
        return self.tab is not None and self.tab.transport is not None

    def client_port(self) -> int | None:
        if self.tab is None or self.tab.transport is None:
            return None
        sockname = self.tab.transport.underlying_transport.get_extra_info("sockname")
        return int(sockname[1]) if sockname else None

    def write(self, frame: bytes) -> None:
        assert self.tab is not None
        assert self.tab.transport is not None
        self.tab.transport.send(WSMsgType.TEXT, frame)

    def subscribe(self) -> None:
        frame = {"type": "subscribe", "conversation": self.conversation, "after": self.last_seq}
        self.write(orjson.dumps(frame))

    def send(self, client_id: str, frame: bytes) -> None:
        """Queue a send; it goes now when the socket is open, else on the
        next connection (as the browser's pending sends do)."""
        self.pending[client_id] = Pending(frame)
        self.ledger.sent_ns[client_id] = time.perf_counter_ns()
        if self.is_open:
            self.transmit(self.pending[client_id], time.monotonic())

    def transmit(self, entry: Pending, now: float) -> None:
        if now < entry.not_before:
            return
        if entry.sent_at:
            self.ledger.retransmits += 1
        self.ledger.transmits += 1
        entry.sent_at = now
        self.write(entry.frame)

    def on_open(self) -> None:
        """socket.js `resubscribe`: subscribe with `after` = the last seq
        held, then re-send every unacknowledged send."""
        self.opened_at = time.monotonic()
        self.subscribe()
        now = time.monotonic()
        for entry in self.pending.values():
            self.transmit(entry, now)

    def tick(self, now: float) -> None:
        """socket.js `tick`: re-send what waited 8 s for an ack, or whose
        retry delay has passed."""
        if not self.is_open:
            return
        for entry in self.pending.values():
            if now >= entry.not_before and (
                not entry.sent_at or now - entry.sent_at > ACK_TIMEOUT_S
            ):
                self.transmit(entry, now)

    def on_frame(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        ledger = self.ledger
        if kind == "message":
            message = data["message"]
            seq = int(message["seq"])
            if seq <= self.delivery.base:
                return
            if self.own.is_copy(seq):
                return
            self.delivery.messages.append((seq, _send_number(message)))
            self.last_seq = max(self.last_seq, seq)
        elif kind == "ack":
            client_id = data["client_id"]
            seq = int(data["message"]["seq"])
            if self.first.done() and self.own.by_ack(seq, self.last_seq):
                self.delivery.messages.append((seq, _send_number(data["message"])))
                self.last_seq = seq
            self.pending.pop(client_id, None)
            acked = ledger.acked[self.conversation]
            if acked.setdefault(client_id, seq) != seq:
                ledger.doubled_acks += 1
            sent = ledger.sent_ns.pop(client_id, None)
            if sent is not None:
                ledger.ack_ms.append((time.perf_counter_ns() - sent) / 1e6)
        elif kind == "error":
            self._on_error(data)
        elif kind == "subscribed":
            if not self.first.done():
                self.delivery.base = self.last_seq = int(data["last_seq"])
                self.first.set_result(None)
            elif self.lost_at is not None and self.resubscribed_at is None:
                self.resubscribed_at = time.monotonic()
                self.subscribe_s.append(self.resubscribed_at - self.opened_at)

    def _on_error(self, data: dict[str, Any]) -> None:
        code = str(data.get("code", "?"))
        ledger = self.ledger
        ledger.errors[code] += 1
        client_id = data.get("client_id")
        entry = self.pending.get(client_id or "")
        if entry is not None:
            if code in RETRYABLE:
                retry_ms = data.get("retry_after_ms")
                entry.not_before = time.monotonic() + (
                    retry_ms / 1000 if retry_ms else DEFAULT_RETRY_S
                )
                entry.sent_at = 0.0
            else:
                ledger.refused[code] += 1
                self.pending.pop(client_id or "", None)
        elif data.get("conversation") == self.conversation:
            # The page shows a refused subscribe and does not ask again
            # (conversation.js onFrame "error"): the tab stays unsubscribed
            # until its next connection.
            ledger.subscribe_refused[code] += 1
            if not self.first.done():
                self.first.set_exception(ConnectionError(f"subscribe refused: {code}"))

    def on_closed(self, tab: Tab) -> None:
        if tab is not self.tab:
            return
        self.tab = None
        if time.monotonic() - self.opened_at > STABLE_AFTER_S:
            self.attempt = 0
        self.ledger.close_codes[tab.closed_with] += 1
        if not self.first.done():
            self.first.set_exception(ConnectionError("socket closed"))


class Tab(WSListener):
    """One connection of a member."""

    def __init__(self, member: Member, on_lost: Any) -> None:
        super().__init__()
        self.member = member
        self.on_lost = on_lost
        self.transport: WSTransport | None = None
        self.closed_with = NO_CLOSE_FRAME

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.member.tab = self

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        was_current = self.member.tab is self
        self.transport = None
        self.member.on_closed(self)
        if was_current:
            self.on_lost(self.member)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            # The server closes (try later, policy…): answer and drop, as a
            # browser does.
            self.closed_with = str(frame.get_close_code().value)
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        self.member.on_frame(orjson.loads(frame.get_payload_as_bytes()))
