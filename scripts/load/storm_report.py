"""The pure parts of the `storm` mode (scripts/load/storm.py): the browser's
reconnect delay and connect timeout, which worker holds which client socket (from the kernel's
TCP table), and the summary of a storm: how fast the sockets that lost
their worker were subscribed again, and whether every acknowledged message
reached both members of its conversation once and in order.

Kept apart from the sockets so a fast unit test can check them
(tests/test_loadtest_storm.py).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scripts.load.measure import percentile

# static/js/backoff.js, mirrored: the first retries come after 125-250 ms,
# then doubling, capped at 2 s during an outage's first 2 minutes (15 s
# after), each drawn from [cap/2, cap] ("equal jitter").
BASE_DELAY_S = 0.25
QUICK_MAX_DELAY_S = 2.0
SLOW_MAX_DELAY_S = 15.0
QUICK_PHASE_S = 120.0
# static/js/backoff.js `connectTimeout`, mirrored: a connect attempt that
# has not opened is abandoned after 5 s, each such timeout in a row doubles
# the next attempt's (10 s, 20 s, then 30 s at most), an open resets it.
CONNECT_TIMEOUT_S = 5.0
MAX_CONNECT_TIMEOUT_S = 30.0
# The shares of the lost sockets whose recovery time the report gives.
RECOVERY_SHARES = (0.50, 0.99, 1.0)
# /proc/net/tcp's state of an established connection.
TCP_ESTABLISHED = "01"


def backoff_delay(attempt: int, down_for_s: float, rand: random.Random | None = None) -> float:
    """Seconds before connect attempt `attempt` (0 first) of an outage that
    began `down_for_s` ago, as static/js/backoff.js computes it."""
    cap_max = SLOW_MAX_DELAY_S if down_for_s > QUICK_PHASE_S else QUICK_MAX_DELAY_S
    cap = min(cap_max, BASE_DELAY_S * (1 << min(attempt, 16)))
    draw = rand.random() if rand is not None else random.random()
    return cap / 2 + draw * (cap / 2)


def connect_timeout(timeouts_in_row: int) -> float:
    """Seconds a connect attempt may stay pending after `timeouts_in_row`
    attempts in a row were abandoned pending, as static/js/backoff.js
    computes it."""
    return min(MAX_CONNECT_TIMEOUT_S, CONNECT_TIMEOUT_S * (1 << min(timeouts_in_row, 16)))


def established_by_inode(table: str, server_port: int) -> dict[int, int]:
    """The established connections a server on `server_port` accepted, from
    the text of /proc/net/tcp: socket inode → the client's port."""
    found: dict[int, int] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_ESTABLISHED:
            continue
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port != server_port:
            continue
        found[int(fields[9])] = int(fields[2].rsplit(":", 1)[1], 16)
    return found


def owners(by_inode: Mapping[int, int], inodes_of: Mapping[int, Iterable[int]]) -> dict[int, int]:
    """Client port → the pid of the worker holding the server's end, given
    each worker's socket inodes (from /proc/<pid>/fd)."""
    found: dict[int, int] = {}
    for pid, inodes in inodes_of.items():
        for inode in inodes:
            port = by_inode.get(inode)
            if port is not None:
                found[port] = pid
    return found


def recovery_times(times: Sequence[float | None]) -> dict[str, float | None]:
    """Seconds after the kill by which 50 %, 99 % and 100 % of the sockets
    that lost their connection were subscribed again (None: never reached;
    `times` holds None for a socket that was not subscribed again)."""
    done = sorted(t for t in times if t is not None)
    result: dict[str, float | None] = {}
    for share in RECOVERY_SHARES:
        key = f"p{round(share * 100)}_s"
        if not times:
            result[key] = None
            continue
        rank = max(math.ceil(share * len(times)), 1)
        result[key] = round(done[rank - 1], 3) if rank <= len(done) else None
    return result


def recovery_by_worker(landed: Sequence[tuple[int | None, float | None]]) -> dict[str, Any]:
    """`recovery_times` for each worker the sockets came back to, from
    (worker pid, seconds after the kill) of each socket."""
    workers = sorted({worker for worker, _ in landed}, key=str)
    return {str(w): recovery_times([t for x, t in landed if x == w]) for w in workers}


def recovery_cpu(
    before: dict[str, float],
    during: dict[str, float],
    storm_s: float,
    restarted_cpu_s: float,
    sockets: int,
) -> dict[str, Any]:
    """What the recovery cost the workers beyond the send stream: CPU
    seconds of the survivor (`during`, in cores) and the new worker over
    the storm, less what both spent on the stream before the kill
    (`before`), per socket that was to come back."""
    spent = during["workers"] * storm_s + restarted_cpu_s
    extra_ms = 1000 * (spent - before["workers"] * storm_s)
    return {
        "before_kill_cores": before,
        "storm_cores": during,
        "workers_cpu_s": round(spent, 2),
        "extra_cpu_ms_per_socket": round(extra_ms / max(sockets, 1), 1),
    }


@dataclass
class Delivery:
    """What one member (one person's tab, across its connections) received:
    (seq, the load test's send number from the body) in arrival order."""

    conversation: str
    base: int = 0
    messages: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Audit:
    """Acknowledged messages against what each member received."""

    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    doubled: int = 0


def audit(acked: Mapping[str, Mapping[str, int]], members: Sequence[Delivery]) -> Audit:
    """`acked` maps a conversation to {client_id: seq} of its acknowledged
    sends. Every member must receive each acknowledged seq exactly once
    (again is a duplicate, never is lost), its seqs going up by one from
    its starting seq (`base`). One send number under two seqs is doubled: a
    retried send stored twice."""
    result = Audit(acked=sum(len(sends) for sends in acked.values()))
    for member in members:
        wanted = set(acked.get(member.conversation, {}).values())
        counts = Counter(seq for seq, _ in member.messages)
        result.duplicates += sum(n - 1 for n in counts.values() if n > 1)
        result.lost += len(wanted - counts.keys())
        seqs_of: dict[int, set[int]] = {}
        last = member.base
        for seq, number in member.messages:
            if seq != last + 1 and counts[seq] == 1:
                result.order_violations += 1
            last = max(last, seq)
            seqs_of.setdefault(number, set()).add(seq)
        result.doubled += sum(len(s) - 1 for s in seqs_of.values())
    return result


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of a phase's durations, in seconds."""
    return {
        "count": len(values),
        "p50": round(percentile(values, 0.50), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values, default=float("nan")), 3),
    }
