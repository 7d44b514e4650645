"""Load test of the send → persist → publish → deliver path over real sockets.

Run through `scripts/loadtest` (it sets the interpreter and PYTHONPATH):

    scripts/loadtest rate --start --rate 1000 --duration 10
    scripts/loadtest search --start
    scripts/loadtest idle --start --workers 1 --connections 5000
    scripts/loadtest storm --start --conversations 2500 --rate 200

With `--start` it makes a fresh PostgreSQL database, migrates it, and starts
`chatserver serve --workers N` against the machine's Redis under a unique
prefix, with the per-user rate limits and connection caps raised (a benchmark
is not a person typing). With `--url` it targets a running server instead
(which must have been started with such limits). Either way it provisions
R conversations of one staff member and one candidate each through the host
API, signs everyone in through their links and opens one socket per person,
subscribed to their conversation.

The client is picows (a Cython WebSocket client) on uvloop, so the load
generator spends as little of the shared CPU as possible. Every phase is
bounded in count and time, and only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import uvloop

from scripts.load.backends import SHARED_REDIS_URL
from scripts.load.host import API_KEY
from scripts.load.measure import TARGET_P99_MS, Step
from scripts.load.runner import LoadTest
from scripts.load.storm import Storm

MAX_SEARCH_STEPS = 20


# -- reporting ---------------------------------------------------------

COLUMNS = [
    ("target/s", "target_rate"),
    ("sent/s", "send_rate"),
    ("deliv/s", "delivered_per_s"),
    ("p50 ms", "deliver_p50_ms"),
    ("p99 ms", "deliver_p99_ms"),
    ("max ms", "deliver_max_ms"),
    ("ack p50", "ack_p50_ms"),
    ("ack p99", "ack_p99_ms"),
    ("lost", "lost"),
    ("dup", "duplicates"),
    ("order", "order_violations"),
    ("unacked", "unacked"),
]


def print_steps(steps: Sequence[Step]) -> None:
    header = " ".join(f"{title:>9}" for title, _ in COLUMNS) + "  errors  cpu(cores)  pass"
    print(header)
    for step in steps:
        values = " ".join(f"{getattr(step, key):>9}" for _, key in COLUMNS)
        cpu = " ".join(f"{k}={v}" for k, v in step.cpu.items())
        print(f"{values}  {step.errors or '-'}  {cpu}  {'yes' if step.passed else 'NO'}")


def print_storm(storm: dict[str, Any]) -> None:
    profiles = storm.pop("profiles", {})
    print(orjson.dumps(storm, option=orjson.OPT_INDENT_2).decode())
    print_profiles(profiles)
    storm["profiles"] = profiles


def print_profiles(profiles: dict[str, dict[str, list[tuple[str, float]]]]) -> None:
    for pid, summary in profiles.items():
        print(f"\nprofile of worker {pid} (share of samples)")
        for title in ("self_pct", "inclusive_pct"):
            print(f"  {title}:")
            for name, pct in summary.get(title, []):
                print(f"    {pct:5.1f}%  {name}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    test = LoadTest(args)
    report: dict[str, Any] = {"mode": args.mode, "args": vars(args)}
    if args.start:
        test.start_server()
    if args.mode == "storm":
        try:
            report["storm"] = storm = await Storm(test).run()
        finally:
            test.stop_server()
        print_storm(storm)
        return report
    try:
        rooms = await test.provision()
        await test.open_pairs(rooms)
        report["setup"] = test.setup
        setup = test.setup
        print(
            f"{len(test.pairs)} conversations, {2 * len(test.pairs)} sockets; provisioned "
            f"in {setup['provision_s']} s, connected in {setup['connect_s']} s"
        )
        if args.mode == "rate":
            if args.warmup:
                await test.run_step(args.rate, args.warmup)
            steps = [await test.run_step(args.rate, args.duration, profile=bool(args.profile))]
            print_steps(steps)
            report["steps"] = [asdict(s) | {"passed": s.passed} for s in steps]
        elif args.mode == "search":
            steps = await search(test, args)
            best = max((s.target_rate for s in steps if s.passed), default=None)
            print_steps(steps)
            print(f"\nhighest rate with zero loss and p99 < {TARGET_P99_MS:.0f} ms: {best}")
            report["steps"] = [asdict(s) | {"passed": s.passed} for s in steps]
            report["best_rate"] = best
        else:
            report["idle"] = await test.idle(args.connections)
            print(orjson.dumps(report["idle"], option=orjson.OPT_INDENT_2).decode())
        if "profiles" in test.setup:
            print_profiles(test.setup["profiles"])
    finally:
        test.stop_server()
    return report


async def search(test: LoadTest, args: argparse.Namespace) -> list[Step]:
    """Raise the rate by `--factor` from `--rate` until a step fails; the
    last passing one is the answer."""
    steps: list[Step] = []
    rate = float(args.rate)
    for _ in range(MAX_SEARCH_STEPS):
        if rate > args.rate_max:
            break
        step = await test.run_step(rate, args.duration)
        steps.append(step)
        print_steps([step])
        if not step.passed:
            break
        rate = round(rate * args.factor, -2)
    return steps


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["rate", "search", "idle", "storm"])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--start", action="store_true", help="start a server of its own")
    where.add_argument("--url", help="target a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, action="append", help="worker pid (for RSS/CPU)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default=SHARED_REDIS_URL)
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument(
        "--org-size",
        type=int,
        default=0,
        help="conversations per organisation (default 0: all in one, as a real customer; "
        "1: each its own, the former default)",
    )
    parser.add_argument(
        "--provision-concurrency",
        type=int,
        default=16,
        help="host API calls at once while provisioning",
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="sends/s (search: first; default 1000, storm 200)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--factor", type=float, default=1.25, help="search: rate step factor")
    parser.add_argument("--rate-max", type=float, default=20000.0)
    parser.add_argument("--connections", type=int, default=5000, help="idle: sockets")
    parser.add_argument("--profile", help="rate, storm: py-spy the workers into this folder")
    storm = parser.add_argument_group("storm: SIGKILL the busier of the workers mid-stream")
    storm.add_argument("--before", type=float, default=3.0, help="seconds of sends before the kill")
    storm.add_argument("--after", type=float, default=3.0, help="seconds of sends after recovery")
    storm.add_argument(
        "--storm-timeout", type=float, default=60.0, help="at most this long for the recovery"
    )
    storm.add_argument(
        "--profile-seconds", type=float, default=15.0, help="py-spy the survivor this long"
    )
    parser.add_argument("--log-dir", default="/tmp/chatserver-loadtest")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--api-key", default=API_KEY, help="with --url: a CHAT_API_KEYS key")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 600:
        parser.error("--duration must be in (0, 600] seconds")
    if args.rate is None:
        args.rate = 200.0 if args.mode == "storm" else 1000.0
    for name in ("before", "after", "storm_timeout", "profile_seconds"):
        if not 0 < getattr(args, name) <= 600:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 600] seconds")
    if args.mode == "storm" and not args.start:
        parser.error("storm needs --start: it SIGKILLs a worker of the server it started")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    report = uvloop.run(run(args))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"report written to {args.json}")
    if args.mode == "rate":
        return 0 if report["steps"][0]["passed"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
