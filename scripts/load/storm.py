"""The `storm` mode: SIGKILL the worker holding the most sockets while a
steady send stream runs, and measure how its clients come back.

Every person is a `Member` (scripts/load/tabs.py) that behaves as the app's
own client (static/js/socket.js with backoff.js): on a lost connection it
reconnects after the browser's jittered delay (125-250 ms first, then
doubling, capped at 2 s), abandons a handshake pending past the browser's
connect timeout (5 s, doubled by each timeout in a row up to 30 s),
subscribes with `after` = its last seq and re-sends its unacknowledged sends
under their client_ids. Which worker holds a socket is read from the
kernel: the server end's inode in /proc/net/tcp, found among
/proc/<worker>/fd. The report says how many sockets lost their
connection, when 50/99/100 % were subscribed again, and whether every
acknowledged send reached both members once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
from picows import ws_connect

from scripts.load.cpu import CpuMeter, cpu_seconds
from scripts.load.host import Room
from scripts.load.measure import percentile
from scripts.load.processes import worker_of_ports
from scripts.load.runner import DRAIN_SECONDS, SETUP_CONCURRENCY, TICK_SECONDS, LoadTest
from scripts.load.storm_report import (
    audit,
    backoff_delay,
    connect_timeout,
    recovery_by_worker,
    recovery_cpu,
    recovery_times,
    spread,
)
from scripts.load.tabs import Ledger, Member, Tab

# The first subscription of the set-up must be answered in this long.
SUBSCRIBE_TIMEOUT_S = 30.0
SETUP_ATTEMPTS = 3
# socket.js ticks once a second (ack timeouts, retry delays).
TICK_EVERY_S = 1.0
POLL_S = 0.05
# With no socket lost this long after the kill, the kill found none.
FIRST_LOSS_WAIT_S = 5.0


class Storm:
    def __init__(self, test: LoadTest) -> None:
        self.test = test
        self.args = test.args
        self.ledger = Ledger()
        self.members: list[Member] = []
        self.storming = False
        self.stopping = False
        self.deadline = 0.0
        self.reconnects: set[asyncio.Task[None]] = set()
        self.attempts = 0
        self.setup_errors: Counter[str] = Counter()

    # -- connections -----------------------------------------------------

    async def connect(self, member: Member, handshake_s: float) -> None:
        url = self.test.base_url.replace("http://", "ws://") + "/ws"
        await ws_connect(
            lambda: Tab(member, self.lost),
            url,
            extra_headers={"Cookie": member.cookie},
            websocket_handshake_timeout=handshake_s,
        )
        member.on_open()

    async def open_all(self, rooms: Sequence[tuple[Room, int]]) -> None:
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(member: Member) -> None:
            """The set-up is not under test: a connect that fails (the
            server refuses or times out under the crowd) is tried again,
            SETUP_ATTEMPTS times at most, and counted."""
            async with gate:
                for attempt in range(SETUP_ATTEMPTS):
                    try:
                        await self.connect(member, SUBSCRIBE_TIMEOUT_S)
                        await asyncio.wait_for(asyncio.shield(member.first), SUBSCRIBE_TIMEOUT_S)
                        return
                    except Exception as exc:
                        if attempt == SETUP_ATTEMPTS - 1:
                            raise
                        self.setup_errors[type(exc).__name__] += 1
                        member.restart()

        for room, _ in rooms:
            people = (("staff", room.staff_cookie), ("candidate", room.candidate_cookie))
            for kind, cookie in people:
                self.members.append(Member(room.conversation, kind, cookie, self.ledger))
        started = time.perf_counter()
        await asyncio.gather(*(one(m) for m in self.members))
        self.test.setup["connect_s"] = round(time.perf_counter() - started, 2)
        self.test.setup["connect_errors"] = dict(self.setup_errors)

    def lost(self, member: Member) -> None:
        """A member's connection ended: reconnect as the browser would."""
        if self.stopping or not self.deadline:
            return  # the set-up retries on its own
        if member.lost_at is None:
            member.lost_at = time.monotonic()
        elif member.resubscribed_at is not None:
            # Lost again after coming back: it counts as back only when the
            # last connection is subscribed.
            member.resubscribed_at = None
            self.ledger.lost_again += 1
        task = asyncio.get_running_loop().create_task(self.reconnect(member))
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    async def reconnect(self, member: Member) -> None:
        down_since = time.monotonic()
        while not self.stopping and time.monotonic() < self.deadline:
            delay = backoff_delay(member.attempt, time.monotonic() - down_since)
            member.attempt += 1
            await asyncio.sleep(delay)
            self.attempts += 1
            started = time.monotonic()
            # socket.js: each attempt abandoned pending doubles the next
            # one's timeout (5, 10, 20, 30 s), an open resets it.
            timeout = connect_timeout(member.timeouts_in_row)
            try:
                await asyncio.wait_for(self.connect(member, timeout), timeout)
                member.timeouts_in_row = 0
                member.handshake_s.append(time.monotonic() - started)
                return
            except Exception as exc:  # every failed attempt is counted, then retried
                if isinstance(exc, TimeoutError):
                    member.timeouts_in_row += 1
                self.ledger.errors[f"connect:{type(exc).__name__}"] += 1
                if member.tab is not None and member.tab.transport is not None:
                    member.tab.transport.disconnect()
                    return  # its disconnect schedules the next attempt

    # -- the send stream ---------------------------------------------------

    async def drive(self, rate: float, stop: asyncio.Event) -> int:
        """Open loop at `rate` sends/s until `stop`, round-robin over the
        conversations, alternating sides; a member whose socket is down
        keeps its sends until it is back (as the page does)."""
        count = len(self.members) // 2
        sent = 0
        started = time.perf_counter()
        while not stop.is_set():
            elapsed = time.perf_counter() - started
            for _ in range(int(rate * elapsed) - sent):
                pair = sent % count
                side = (sent // count) % 2
                member = self.members[2 * pair + side]
                client_id = str(uuid.uuid4())
                frame = {
                    "type": "send",
                    "conversation": member.conversation,
                    "client_id": client_id,
                    "body": f"storm {sent} {time.perf_counter_ns()}",
                    "attachments": [],
                }
                member.send(client_id, orjson.dumps(frame))
                sent += 1
            await asyncio.sleep(max((sent + 1) / rate - elapsed, TICK_SECONDS))
        return sent

    async def ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            for member in self.members:
                if member.pending:
                    member.tick(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_EVERY_S)

    # -- the storm -------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        args = self.args
        server = self.test.server
        if server is None:
            raise SystemExit("storm mode needs --start (it kills a worker of its own server)")
        rooms = await self.test.provision()
        await self.open_all(rooms)
        setup = self.test.setup
        pids = server.worker_pids()
        ports = worker_of_ports(server.port, pids)
        for member in self.members:
            port = member.client_port()
            member.worker = ports.get(port) if port is not None else None
        held = Counter(m.worker for m in self.members)
        print(
            f"{len(self.members) // 2} conversations, {len(self.members)} sockets; provisioned "
            f"in {setup['provision_s']} s, connected in {setup['connect_s']} s; "
            f"sockets per worker {dict(held)}"
        )
        victim = max(pids, key=lambda pid: held.get(pid, 0))
        survivors = [pid for pid in pids if pid != victim]
        self.deadline = time.monotonic() + args.before + args.storm_timeout + args.after + 60
        stop = asyncio.Event()
        sender = asyncio.create_task(self.drive(args.rate, stop))
        ticker = asyncio.create_task(self.ticker(stop))
        steady = CpuMeter(pids)
        steady.begin()
        await asyncio.sleep(args.before)
        cpu_before = steady.end()
        lost_before = sum(1 for m in self.members if m.lost_at is not None)
        for member in self.members:
            member.lost_at = member.resubscribed_at = None

        meter = CpuMeter(survivors)
        meter.begin()
        profilers = (
            self.test.start_profilers(args.profile_seconds, survivors) if args.profile else []
        )
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        restarted_s, new_pids = await self.wait_recovered(server, pids, killed_at, held[victim])
        recovered_at = time.monotonic()
        storm_s = recovered_at - killed_at
        # Where the sockets that came back landed: the survivor or the
        # supervisor's new worker.
        now_held = worker_of_ports(server.port, survivors + new_pids)
        for member in self.members:
            if member.lost_at is not None:
                port = member.client_port()
                member.worker = now_held.get(port) if port is not None else None
        self.ledger.recovery_cpu = recovery_cpu(
            cpu_before, meter.end(), storm_s, cpu_seconds(new_pids), held[victim]
        )
        await asyncio.sleep(args.after)
        stop.set()
        sent = await sender
        await ticker
        window = time.monotonic() - killed_at
        # Backends of the killed worker's database connections exited: their
        # CPU time left the sum, which can make a group's figure negative.
        cpu = {group: max(cores, 0.0) for group, cores in meter.end().items()}
        if new_pids:
            restarted = round(cpu_seconds(new_pids) / window, 2)
            cpu["restarted_worker"] = restarted
            cpu["others"] = round(max(cpu["others"] - restarted, 0.0), 2)
        await self.drain()
        self.stopping = True
        for member in self.members:
            member.close()
        for task in list(self.reconnects):
            task.cancel()
        report = self.summary(
            victim, held, killed_at, recovered_at, restarted_s, sent, lost_before, cpu
        )
        self.test.finish_profilers(profilers)
        report["profiles"] = self.test.setup.pop("profiles", {})
        return report

    async def wait_recovered(
        self, server: Any, before: Sequence[int], killed_at: float, expected: int
    ) -> tuple[float | None, list[int]]:
        """Until every socket that lost its connection is subscribed again
        (bounded by --storm-timeout); also notes when the supervisor's new
        worker appeared."""
        restarted_s: float | None = None
        new_pids: list[int] = []
        limit = killed_at + self.args.storm_timeout
        while time.monotonic() < limit:
            if restarted_s is None:
                new_pids = [p for p in server.worker_pids() if p not in before]
                if new_pids:
                    restarted_s = round(time.monotonic() - killed_at, 2)
            lost = [m for m in self.members if m.lost_at is not None and m.lost_at >= killed_at]
            waited = time.monotonic() - killed_at
            everyone = len(lost) >= max(expected, 1) or waited > FIRST_LOSS_WAIT_S
            if everyone and all(m.resubscribed_at is not None for m in lost):
                break
            await asyncio.sleep(POLL_S)
        return restarted_s, new_pids

    async def drain(self) -> None:
        """Wait (at most DRAIN_SECONDS) for outstanding acks and deliveries."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            if not any(m.pending for m in self.members) and not self.audit().lost:
                return
            await asyncio.sleep(POLL_S * 2)

    def audit(self) -> Any:
        return audit(self.ledger.acked, [m.delivery for m in self.members])

    # -- the report --------------------------------------------------------

    def summary(
        self,
        victim: int,
        held: Counter[int | None],
        killed_at: float,
        recovered_at: float,
        restarted_s: float | None,
        sent: int,
        lost_before: int,
        cpu: dict[str, float],
    ) -> dict[str, Any]:
        ledger = self.ledger
        lost = [m for m in self.members if m.lost_at is not None and m.lost_at >= killed_at]
        times = [None if m.resubscribed_at is None else m.resubscribed_at - killed_at for m in lost]
        detected = [m.lost_at - killed_at for m in lost if m.lost_at is not None]
        result = self.audit()
        return {
            "conversations": len(self.members) // 2,
            "sockets": len(self.members),
            "setup": {k: v for k, v in self.test.setup.items() if k != "profiles"},
            "sockets_per_worker": {str(k): v for k, v in held.items()},
            "killed_worker": victim,
            "killed_held": held[victim],
            "worker_restarted_after_s": restarted_s,
            "lost_connection": len(lost),
            "lost_before_kill": lost_before,
            "lost_detected_p100_s": round(max(detected, default=0.0), 3),
            "resubscribed": sum(t is not None for t in times),
            "resubscribed_after": recovery_times(times),
            "resubscribed_after_by_worker": recovery_by_worker(
                [(m.worker, t) for m, t in zip(lost, times, strict=True)]
            ),
            "storm_phase_s": round(recovered_at - killed_at, 2),
            "handshake_s": spread([t for m in lost for t in m.handshake_s]),
            "open_to_subscribed_s": spread([t for m in lost for t in m.subscribe_s]),
            "connect_attempts": self.attempts,
            "lost_again": ledger.lost_again,
            "sent": sent,
            "acked": result.acked,
            "unacked": sum(len(m.pending) for m in self.members),
            "lost": result.lost,
            "duplicates": result.duplicates,
            "doubled": result.doubled + ledger.doubled_acks,
            "order_violations": result.order_violations,
            "retransmits": ledger.retransmits,
            "ack_p50_ms": round(percentile(ledger.ack_ms, 0.50), 1),
            "ack_p99_ms": round(percentile(ledger.ack_ms, 0.99), 1),
            "ack_max_ms": round(max(ledger.ack_ms, default=float("nan")), 1),
            "errors": dict(ledger.errors),
            "refused_sends": dict(ledger.refused),
            "subscribe_refused": dict(ledger.subscribe_refused),
            "close_codes": dict(ledger.close_codes),
            "cpu_cores": cpu,
            "recovery_cpu": ledger.recovery_cpu,
        }
