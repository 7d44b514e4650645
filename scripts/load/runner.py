"""The load test's phases against one server: provision conversations
through the host API, open a socket per person, send at a fixed rate and
measure (`rate_step`), and measure memory per idle connection (`idle`).
Optionally starts the server (a fresh database, `chatserver serve`) itself.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from picows import ws_connect

from scripts.load.backends import PgDatabase
from scripts.load.cpu import PROFILE_RATE, CpuMeter, py_spy, summarise_profile
from scripts.load.host import HostApi, Room, new_room
from scripts.load.measure import Recorder, Step, now_ns, percentile
from scripts.load.processes import rss_kib, unique
from scripts.load.servers import ServerProcess
from scripts.load.sockets import Pair, Socket

# The scheduler tick: sends due since the last tick go out together, so at
# 10,000 msgs/s a tick carries about 10 sends. uvloop's timers have 1 ms
# resolution and a shorter sleep would spin, burning a core of the machine.
TICK_SECONDS = 0.001
# After the sending phase, wait at most this long for outstanding acks and
# deliveries; anything still missing then counts as lost.
DRAIN_SECONDS = 10.0
# Concurrent socket handshakes.
SETUP_CONCURRENCY = 64
# Provisioning prints its progress in this many steps, from this many
# conversations on.
PROGRESS_STEPS = 10
PROGRESS_EVERY = 200
# Tries per conversation when a host API call fails in transport.
PROVISION_ATTEMPTS = 3
# The idle connections settle (handshakes finish, subscriptions register,
# allocator pools fill) for this long before RSS is read again.
IDLE_SETTLE_SECONDS = 3.0


class LoadTest:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.recorder = Recorder()
        self.pairs: list[Pair] = []
        self.server: ServerProcess | None = None
        self.db: PgDatabase | None = None
        self.base_url: str = args.url or ""
        self.worker_pids: list[int] = list(args.pid or [])
        self.setup: dict[str, Any] = {}
        self.provision_retries = 0

    # -- set-up ------------------------------------------------------------

    def start_server(self) -> None:
        log_dir = Path(self.args.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.db = PgDatabase(unique("chat_load")).create()
        self.server = ServerProcess(
            log_dir,
            database_url=self.db.url,
            redis_url=self.args.redis_url,
            prefix=f"{unique('load')}:",
            workers=self.args.workers,
            extra_env={"CHAT_MAX_CONNECTIONS_PER_USER": str(self.args.connections + 100)},
        ).start()
        self.base_url = self.server.url
        self.worker_pids = self.server.worker_pids()
        print(f"server {self.base_url} workers {self.worker_pids} log {self.server.log_path}")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.db is not None:
            self.db.drop()

    async def provision(self) -> list[tuple[Room, int]]:
        """The conversations, through the host API, `--provision-concurrency`
        at a time (more at once does not make set-up faster on this
        machine: the server's CPU, not a lock, sets its pace)."""
        host = HostApi(self.base_url, api_key=self.args.api_key)
        gate = asyncio.Semaphore(self.args.provision_concurrency)
        run = uuid.uuid4().hex[:6]
        total = self.args.conversations
        size = self.args.org_size
        done = 0
        started = time.perf_counter()

        async def one(index: int) -> tuple[Room, int]:
            nonlocal done
            # One organisation for all (a customer's shared inbox), or one
            # per `--org-size` conversations.
            org = f"org-{run}" if size <= 0 else f"org-{run}-{index // size}"
            async with gate:
                room = await self._provision_one(host, f"{run}-{index}", org)
            done += 1
            if total >= PROGRESS_EVERY and done % (total // PROGRESS_STEPS) == 0:
                rate = done / (time.perf_counter() - started)
                print(f"  provisioned {done}/{total} ({rate:.1f}/s)", flush=True)
            return room, index

        try:
            rooms = await asyncio.gather(*(one(i) for i in range(total)))
        finally:
            await host.aclose()
        self.setup["provision_s"] = round(time.perf_counter() - started, 2)
        self.setup["provision_per_s"] = round(total / max(self.setup["provision_s"], 1e-9), 1)
        self.setup["provision_retries"] = self.provision_retries
        return list(rooms)

    async def _provision_one(self, host: HostApi, tag: str, org: str) -> Room:
        """One conversation, again after a transport failure (a keep-alive
        connection the server closed as it was reused, a call past its
        timeout on the busy machine): the host API's upserts are idempotent
        and a second sign-in link is as good as the first."""
        for attempt in range(PROVISION_ATTEMPTS):
            try:
                return await new_room(host, tag, org)
            except httpx.TransportError:
                if attempt == PROVISION_ATTEMPTS - 1:
                    raise
                self.provision_retries += 1
        raise AssertionError("unreachable")

    async def open_socket(self, cookie: str, conversation: str, kind: str) -> Socket:
        ws_url = self.base_url.replace("http://", "ws://") + "/ws"
        _, socket = await ws_connect(
            lambda: Socket(self.recorder, conversation, kind),
            ws_url,
            extra_headers={"Cookie": cookie},
            websocket_handshake_timeout=30,
        )
        assert isinstance(socket, Socket)
        socket.send_frame({"type": "subscribe", "conversation": conversation, "after": 0})
        await asyncio.wait_for(socket.subscribed, 30)
        return socket

    async def open_pairs(self, rooms: Sequence[tuple[Room, int]]) -> None:
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def pair(room: Room) -> Pair:
            async with gate:
                staff = await self.open_socket(room.staff_cookie, room.conversation, "staff")
                candidate = await self.open_socket(
                    room.candidate_cookie, room.conversation, "candidate"
                )
            return Pair(room, staff, candidate)

        started = time.perf_counter()
        self.pairs = list(await asyncio.gather(*(pair(room) for room, _ in rooms)))
        self.setup["connect_s"] = round(time.perf_counter() - started, 2)

    # -- the rate step -----------------------------------------------------

    async def run_step(self, rate: float, duration: float, profile: bool = False) -> Step:
        recorder = self.recorder
        recorder.reset()
        for pair in self.pairs:
            for socket in (pair.staff, pair.candidate):
                socket.received.clear()
                socket.step_base = socket.last_seq
        disconnects_before = recorder.disconnects
        meter = CpuMeter(self.worker_pids)
        profilers = self.start_profilers(duration) if profile else []
        meter.begin()
        step = Step(target_rate=rate, duration=duration)
        step.sent = await self.drive(rate, duration)
        step.cpu = meter.end()
        step.send_rate = round(step.sent / duration, 1)
        await self.drain()
        self.finish_profilers(profilers)

        step.acked = sum(len(s) for s in recorder.acked.values())
        step.errors = dict(recorder.errors)
        step.unacked = len(recorder.sent_at)
        recorder.sent_at.clear()
        step.deliveries = recorder.deliveries
        step.lost = self.lost()
        step.duplicates = recorder.duplicates
        step.order_violations = recorder.order_violations
        step.disconnects = recorder.disconnects - disconnects_before
        step.delivered_per_s = round(recorder.deliveries / duration, 1)
        step.deliver_p50_ms = round(percentile(recorder.deliver_ms, 0.50), 2)
        step.deliver_p99_ms = round(percentile(recorder.deliver_ms, 0.99), 2)
        step.deliver_max_ms = round(max(recorder.deliver_ms, default=float("nan")), 2)
        step.ack_p50_ms = round(percentile(recorder.ack_ms, 0.50), 2)
        step.ack_p99_ms = round(percentile(recorder.ack_ms, 0.99), 2)
        return step

    async def drive(self, rate: float, duration: float) -> int:
        """Open loop: sends go out on schedule whether or not earlier ones
        were answered, round-robin over conversations, alternating sides."""
        pairs = self.pairs
        count = len(pairs)
        sent_at = self.recorder.sent_at
        sent = 0
        started = time.perf_counter()
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= duration:
                return sent
            due = int(rate * elapsed) - sent
            for _ in range(due):
                pair = pairs[sent % count]
                socket = pair.staff if (sent // count) % 2 == 0 else pair.candidate
                client_id = str(uuid.uuid4())
                stamp = now_ns()
                sent_at[client_id] = stamp
                socket.send_frame(
                    {
                        "type": "send",
                        "conversation": pair.room.conversation,
                        "client_id": client_id,
                        "body": f"load test message {sent} {stamp}",
                        "attachments": [],
                    }
                )
                sent += 1
            elapsed = time.perf_counter() - started
            next_due = min((sent + 1) / rate, duration) - elapsed
            await asyncio.sleep(max(next_due, TICK_SECONDS))

    async def drain(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            if not self.recorder.sent_at and not self.lost():
                return
            await asyncio.sleep(0.05)

    def lost(self) -> int:
        """Acknowledged messages that a member of the conversation has not received."""
        missing = 0
        for pair in self.pairs:
            acked = self.recorder.acked.get(pair.room.conversation)
            if acked:
                missing += len(acked - pair.staff.received)
                missing += len(acked - pair.candidate.received)
        return missing

    # -- profiling -------------------------------------------------------

    def start_profilers(
        self, duration: float, pids: Sequence[int] | None = None
    ) -> list[tuple[int, Path, subprocess.Popen[bytes]]]:
        """py-spy the workers (or `pids`) for `duration` seconds."""
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        started = []
        for pid in self.worker_pids if pids is None else pids:
            path = out / f"worker-{pid}.txt"
            command = [
                py_spy(),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(int(duration), 1)),
                "--rate",
                str(PROFILE_RATE),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(path),
            ]
            started.append(
                (pid, path, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=None))
            )
        return started

    def finish_profilers(
        self, profilers: Sequence[tuple[int, Path, subprocess.Popen[bytes]]]
    ) -> None:
        for pid, path, process in profilers:
            process.wait(DRAIN_SECONDS + 30)
            self.setup.setdefault("profiles", {})[str(pid)] = summarise_profile(path)

    # -- idle connections ----------------------------------------------

    async def idle(self, connections: int) -> dict[str, Any]:
        pids = self.worker_pids
        if not pids:
            raise SystemExit("idle mode needs the worker pids: --start or --pid")
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        before = {str(pid): rss_kib(pid) for pid in pids}
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        people = [
            (cookie, pair.room.conversation, kind)
            for pair in self.pairs
            for cookie, kind in (
                (pair.room.staff_cookie, "staff"),
                (pair.room.candidate_cookie, "candidate"),
            )
        ]

        async def one(index: int) -> Socket:
            cookie, conversation, kind = people[index % len(people)]
            async with gate:
                return await self.open_socket(cookie, conversation, kind)

        started = time.perf_counter()
        sockets = await asyncio.gather(*(one(i) for i in range(connections)))
        opened_s = time.perf_counter() - started
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        after = {str(pid): rss_kib(pid) for pid in pids}
        growth = sum(after.values()) - sum(before.values())
        result = {
            "connections": len(sockets),
            "open_s": round(opened_s, 2),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_growth_kib": growth,
            "kib_per_connection": round(growth / max(len(sockets), 1), 2),
            "disconnects": self.recorder.disconnects,
        }
        for socket in sockets:
            if socket.transport is not None:
                socket.transport.disconnect()
        return result
