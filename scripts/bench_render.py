"""What `formatting.render` costs per body: the fast path against the full renderer.

The peer benchmark sends `ts:<milliseconds>|xxxx…` and real chat lines hold
times, numbers, hyphens and slashes; whether they take `render`'s fast path
decides if each send pays markdown-it and nh3 (issue 10). Prints, for each
body, whether it took the fast path and microseconds per `render` call.

    PYTHONPATH=. .venv/bin/python scripts/bench_render.py

Run it with another checkout first on PYTHONPATH to compare versions.
"""

from __future__ import annotations

import argparse
import timeit
from functools import partial

from chatserver.chat import formatting

BODIES = [
    "ts:1733112000000|" + "x" * 40,
    "Hello, how are you?",
    "See you at 10:30, ok?",
    "The meeting moved to 2024-12-03 14:00 - room 4/B (e.g. the big one).",
    "@alice I'm ~5 min late, 50% done; v2.1 works",
    "I\u2019m on it 👍 — back in 5…",
    "snake_case_name is R&D's x<3 y",
    "**bold** and a link https://example.org",
]


def _takes_fast_path(body: str) -> bool:
    """Whether `render` answers without the full renderer (asked, not re-derived)."""
    full = formatting.render_markdown
    called: list[str] = []

    def spy(text: str) -> str:
        called.append(text)
        return full(text)

    formatting.render_markdown = spy  # type: ignore[assignment]
    try:
        formatting.render(body)
    finally:
        formatting.render_markdown = full
    return not called


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    for body in BODIES:
        fast = _takes_fast_path(body)
        best = min(timeit.repeat(partial(formatting.render, body), number=args.number, repeat=5))
        print(f"{best / args.number * 1e6:8.2f} µs  {'fast' if fast else 'full'}  {body!r}")


if __name__ == "__main__":
    main()
