"""One person's WebSocket in the load test: picows (a Cython client) on
uvloop, so the generator spends as little of the shared CPU as possible.
It records every ack, delivery, error and disconnect in the `Recorder`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from scripts.load.host import Room
from scripts.load.measure import Recorder, now_ns
from scripts.load.own_copies import OwnCopies


class Socket(WSListener):
    """One person's connection, subscribed to their conversation."""

    def __init__(self, recorder: Recorder, conversation: str, kind: str) -> None:
        super().__init__()
        self.recorder = recorder
        self.conversation = conversation
        self.kind = kind
        self.transport: WSTransport | None = None
        self.last_seq = 0
        # Seqs received in the current step, and the last seq before it.
        self.received: set[int] = set()
        self.step_base = 0
        self.own = OwnCopies()
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.recorder.disconnects += 1
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("socket closed"))

    def send_frame(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        arrived = now_ns()
        data = orjson.loads(frame.get_payload_as_bytes())
        kind = data.get("type")
        recorder = self.recorder
        if kind == "message":
            self._on_message(data["message"], arrived)
        elif kind == "ack":
            seq = data["message"]["seq"]
            sent = recorder.sent_at.pop(data["client_id"], None)
            if sent is not None:
                recorder.ack_ms.append((arrived - sent) / 1e6)
                recorder.acked[self.conversation].add(seq)
            self._on_ack(seq)
        elif kind == "error":
            recorder.errors[data.get("code", "?")] += 1
            recorder.sent_at.pop(data.get("client_id") or "", None)
        elif kind == "subscribed" and not self.subscribed.done():
            self.last_seq = data["last_seq"]
            self.subscribed.set_result(None)

    def _on_ack(self, seq: int) -> None:
        if self.own.by_ack(seq, self.last_seq):
            self.last_seq = seq
            self.received.add(seq)

    def _on_message(self, message: dict[str, Any], arrived: int) -> None:
        recorder = self.recorder
        seq = message["seq"]
        if self.own.is_copy(seq):
            return
        if seq in self.received or seq <= self.step_base:
            recorder.duplicates += 1
            return
        if seq != self.last_seq + 1:
            recorder.order_violations += 1
        self.last_seq = max(self.last_seq, seq)
        self.received.add(seq)
        if message["sender"]["kind"] == self.kind:
            return  # the sender's own copy: latency is measured at the other end
        recorder.deliveries += 1
        recorder.last_delivery_ns = arrived
        sent = int(message["body"].rsplit(" ", 1)[-1])
        recorder.deliver_ms.append((arrived - sent) / 1e6)


@dataclass
class Pair:
    room: Room
    staff: Socket
    candidate: Socket
