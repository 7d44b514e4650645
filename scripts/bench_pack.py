"""What packing a send batch's Redis commands costs: hiredis' packer, which
`broker/pipelines.py` uses, against redis-py's asyncio connection's
pure-Python one, which it used before (3 % of a worker's samples in a
profile at 2,000 sends/s). Prints microseconds per pipeline of each.

    PYTHONPATH=. .venv/bin/python scripts/bench_pack.py
"""

from __future__ import annotations

import timeit

from redis.asyncio.connection import Connection

from chatserver.broker.pipelines import packed
from chatserver.broker.writer import Command

# One batch's publishes (a message, the inbox change, the bell) and one
# sender's rate-limit script, at the sizes the peer benchmark sends.
BATCH: list[Command] = [
    ("PUBLISH", "chat:conversation:5f1c2a9e0b7d4e3a", b"m" * 420),
    ("PUBLISH", "chat:org:acme", b"i" * 90),
    ("PUBLISH", "chat:person:candidate:cand-1", b"n" * 230),
    ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff831", 1, "chat:rate:staff:alice", 5.0, 20),
]
ROUNDS = 20_000


def main() -> None:
    library = Connection()
    assert packed(BATCH) == b"".join(library.pack_commands(BATCH))
    for name, pack in (
        ("redis-py (before)", lambda: library.pack_commands(BATCH)),
        ("hiredis (now)", lambda: packed(BATCH)),
    ):
        seconds = min(timeit.repeat(pack, number=ROUNDS, repeat=5)) / ROUNDS
        print(f"{name:>18}: {seconds * 1e6:6.2f} µs per pipeline of {len(BATCH)} commands")


if __name__ == "__main__":
    main()
