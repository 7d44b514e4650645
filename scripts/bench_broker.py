"""What one live message costs the worker on each broker backend.

Publishes N payloads (one at a time, and with publish_many in batches of 3
and 60, as a worker's send batches do)
on channels spread over every shard, with a subscriber in the same process,
and reports the worker's CPU microseconds per message (publish + receive),
which is what a worker pays per message on top of the database. Wall time is
printed too, but on a shared machine only the CPU figure is comparable.

    PYTHONPATH=. .venv/bin/python scripts/bench_broker.py            # all three
    PYTHONPATH=. .venv/bin/python scripts/bench_broker.py --messages 20000

The single Redis is the machine's (127.0.0.1:6379, under a unique prefix);
the cluster is a private three-primary, three-replica one started here and
stopped after. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path

from chatserver.broker import Broker, MemoryBroker, Subscription
from chatserver.broker.cluster import ClusterBroker
from chatserver.broker.redis import RedisBroker
from tests.redis_cluster import RedisClusterProcesses

SHARED_REDIS = "redis://127.0.0.1:6379"
CHANNELS = 30
# publish() one at a time; publish_many() of a send's few channels (its
# conversation, organisation feed, people), and of a busy worker's batch.
BATCHES = (1, 3, 60)
RECEIVE_TIMEOUT = 30.0
PAYLOAD = b'{"type":"message","message":{"seq":1,"body":"' + b"x" * 200 + b'"}}'


async def measure(broker: Broker, messages: int, batch: int) -> tuple[float, float]:
    """CPU µs and wall µs per message, publish through receive."""
    channels = [f"conv:bench-{i}" for i in range(CHANNELS)]
    received = 0
    done = asyncio.Event()

    async def drain(subscription: Subscription) -> None:
        nonlocal received
        while received < messages:
            await subscription.get()
            received += 1
        done.set()

    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(broker.subscribe(c)) for c in channels]
        readers = [asyncio.create_task(drain(s)) for s in subscriptions]
        cpu, wall = time.process_time(), time.perf_counter()
        if batch > 1:
            for start in range(0, messages, batch):
                await broker.publish_many(
                    [(channels[n % CHANNELS], PAYLOAD) for n in range(start, start + batch)]
                )
        else:
            for n in range(messages):
                await broker.publish(channels[n % CHANNELS], PAYLOAD)
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await done.wait()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        for reader in readers:
            reader.cancel()
    return cpu / messages * 1e6, wall / messages * 1e6


async def run(messages: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = RedisClusterProcesses(Path(tmp)).start()
        try:
            prefix = f"bench-{uuid.uuid4().hex[:8]}:"
            backends: list[tuple[str, Broker]] = [
                ("memory", MemoryBroker(queue_size=messages)),
                ("redis", RedisBroker(SHARED_REDIS, prefix=prefix, queue_size=messages)),
                ("cluster", ClusterBroker(cluster.url, prefix=prefix, queue_size=messages)),
            ]
            print(f"{messages} messages of {len(PAYLOAD)} bytes over {CHANNELS} channels")
            print(f"{'backend':<8} {'mode':<8} {'cpu µs/msg':>11} {'wall µs/msg':>12}")
            for name, broker in backends:
                await broker.connect()
                try:
                    for batch in BATCHES:
                        cpu, wall = await measure(broker, messages, batch)
                        mode = f"batch {batch}" if batch > 1 else "single"
                        print(f"{name:<8} {mode:<8} {cpu:>11.1f} {wall:>12.1f}")
                finally:
                    await broker.disconnect()
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args.messages))


if __name__ == "__main__":
    main()
