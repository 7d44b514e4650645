"""Processes and ports on this machine, for the harness: a free loopback
port, a bounded wait for a process to be ready, a stop that ends with
SIGKILL, a process's children and resident memory, and which worker holds
each client's connection (from /proc).

Every wait is bounded by a deadline, and every process that is started by
the harness is ended by it (by its own pid, never by name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.load.storm_report import established_by_inode, owners

REPO = Path(__file__).resolve().parents[2]

# A server process imports the app and opens its pools in about a second on
# an idle machine; 30 s leaves room for a loaded CI box without hiding a hang.
START_TIMEOUT = 30.0
# How long a stopped process may take to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` loopback ports nobody listens on, all different: each is
    held until all are picked (picked one by one and let go, two could be
    the same: a cluster node's bus port once was another node's port)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def unique(label: str) -> str:
    return f"{label}_{uuid.uuid4().hex[:10]}"


def wait_until(ready: Any, timeout: float, what: str, alive: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited before it was ready")
        if ready():
            return
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def worker_of_ports(server_port: int, pids: Sequence[int]) -> dict[int, int]:
    """Client port → the worker pid holding the connection's server end."""
    by_inode = established_by_inode(Path("/proc/net/tcp").read_text(), server_port)
    inodes_of: dict[int, list[int]] = {}
    for pid in pids:
        found = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                found.append(int(target[8:-1]))
        inodes_of[pid] = found
    return owners(by_inode, inodes_of)
