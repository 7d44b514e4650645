"""The pure parts of the load test's `storm` mode (scripts/load/storm_report.py):
the browser's reconnect delay, which worker holds a client's socket, the
recovery percentiles and the audit of acknowledged messages."""

from __future__ import annotations

import random

from scripts.load.storm_report import (
    Audit,
    Delivery,
    audit,
    backoff_delay,
    connect_timeout,
    established_by_inode,
    owners,
    recovery_by_worker,
    recovery_cpu,
    recovery_times,
)

# /proc/net/tcp: a listener on :8000 (0x1F40), two established connections
# to it from ports 50000 (0xC350) and 50001 (0xC351), the client end of one
# of them, and a connection in TIME_WAIT.
TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1
   1: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 222 1
   2: 0100007F:1F40 0100007F:C351 01 00000000:00000000 00:00000000 00000000  1000        0 333 1
   3: 0100007F:C350 0100007F:1F40 01 00000000:00000000 00:00000000 00000000  1000        0 444 1
   4: 0100007F:1F40 0100007F:C352 06 00000000:00000000 00:00000000 00000000  1000        0 0 1
"""


def test_backoff_mirrors_the_browser() -> None:
    low, high = random.Random(), random.Random()
    low.random = lambda: 0.0  # type: ignore[method-assign]
    high.random = lambda: 1.0  # type: ignore[method-assign]
    assert backoff_delay(0, 0.0, low) == 0.125
    assert backoff_delay(0, 0.0, high) == 0.25
    assert backoff_delay(2, 1.0, high) == 1.0
    assert backoff_delay(10, 60.0, high) == 2.0
    assert backoff_delay(10, 121.0, high) == 15.0


def test_connect_timeout_mirrors_the_browser() -> None:
    assert [connect_timeout(n) for n in range(6)] == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    assert connect_timeout(1000) == 30.0


def test_the_server_end_of_each_connection_names_its_worker() -> None:
    by_inode = established_by_inode(TCP_TABLE, 8000)
    assert by_inode == {222: 50000, 333: 50001}
    assert owners(by_inode, {7: [5, 222], 8: [333, 444]}) == {50000: 7, 50001: 8}


def test_recovery_times_are_nearest_rank_and_none_until_reached() -> None:
    times = [0.1 * i for i in range(1, 101)]
    summary = recovery_times(times)
    assert summary == {"p50_s": 5.0, "p99_s": 9.9, "p100_s": 10.0}
    assert recovery_times([0.5, None, 0.2, 0.3]) == {"p50_s": 0.3, "p99_s": None, "p100_s": None}
    assert recovery_times([]) == {"p50_s": None, "p99_s": None, "p100_s": None}


def test_audit_counts_lost_duplicate_reordered_and_doubled() -> None:
    acked = {"c1": {"a": 3, "b": 4, "c": 5}, "c2": {"d": 1}}
    clean = Delivery("c1", base=2, messages=[(3, 0), (4, 1), (5, 2)])
    assert audit(acked, [clean]) == Audit(acked=4)
    members = [
        Delivery("c1", base=2, messages=[(3, 0), (5, 2)]),  # 4 lost, 5 out of order
        Delivery("c1", base=2, messages=[(3, 0), (4, 1), (4, 1), (5, 2)]),  # 4 twice
        Delivery("c2", messages=[(1, 7), (2, 7)]),  # send 7 stored as seqs 1 and 2
    ]
    result = audit(acked, members)
    assert (result.acked, result.lost, result.duplicates) == (4, 1, 1)
    assert (result.order_violations, result.doubled) == (1, 1)


def test_recovery_by_worker_splits_the_sockets_by_where_they_landed() -> None:
    landed = [(7, 1.0), (7, 3.0), (8, 2.0), (None, None)]
    assert recovery_by_worker(landed) == {
        "7": {"p50_s": 1.0, "p99_s": 3.0, "p100_s": 3.0},
        "8": {"p50_s": 2.0, "p99_s": 2.0, "p100_s": 2.0},
        "None": {"p50_s": None, "p99_s": None, "p100_s": None},
    }


def test_recovery_cpu_is_what_the_workers_spent_beyond_the_stream() -> None:
    # 10 s of storm: the survivor at 0.5 core and the new worker's 2 s,
    # against 0.2 core for the stream before the kill: 5 s extra, 5 ms each.
    cost = recovery_cpu({"workers": 0.2}, {"workers": 0.5}, 10.0, 2.0, 1000)
    assert cost["workers_cpu_s"] == 7.0
    assert cost["extra_cpu_ms_per_socket"] == 5.0
