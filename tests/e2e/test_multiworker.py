"""SPEC section 3 across real worker processes: a message sent on one worker
reaches subscribers on another, in seq order, once, and a retried client_id
never makes a second message."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import Cluster, OpenPeer
from tests.e2e.servers import (
    REPO,
    SECRET,
    Peer,
    Room,
    ServerProcess,
    free_port,
    send_until_acked,
)

pytestmark = pytest.mark.slow

MakeRoom = Callable[[ServerProcess], Awaitable[Room]]
# Bounds of every wait in this module: delivery on loopback takes
# milliseconds, so these only trip on a real failure.
DELIVERY_WITHIN = 10.0
SENDS_WITHIN = 30.0


async def send_many(
    peer: Peer, conversation: str, count: int, *, lanes: int, label: str
) -> dict[str, dict[str, object]]:
    """`count` sends over `lanes` concurrent in-flight sends; client_id →
    acknowledged MESSAGE."""
    acked: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + SENDS_WITHIN
    numbers = iter(range(count))

    async def lane() -> None:
        for n in numbers:
            client_id = str(uuid.uuid4())
            body = f"{label} {n}"
            acked[client_id] = await send_until_acked(peer, conversation, body, client_id, deadline)

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return acked


async def test_a_message_sent_on_one_worker_reaches_a_subscriber_on_the_other(
    cluster: Cluster, make_room: MakeRoom, open_peer: OpenPeer
) -> None:
    room = await make_room(cluster.a)
    staff = await open_peer("staff@A", room.staff_cookie, [cluster.a.ws_url])
    candidate = await open_peer("candidate@B", room.candidate_cookie, [cluster.b.ws_url])
    subscribed = await staff.subscribe(room.conversation, after=0)
    assert subscribed["last_seq"] == 0
    assert subscribed["state"] == "open"

    message = await candidate.send(room.conversation, "Hello from worker B")

    await staff.wait_for_seq(room.conversation, 1, within=DELIVERY_WITHIN)
    [delivered] = staff.messages[room.conversation]
    assert delivered["id"] == message["id"]
    assert delivered["body"] == "Hello from worker B"
    assert delivered["sender"]["kind"] == "candidate"
    assert staff.problems == []


async def test_concurrent_senders_on_both_workers_give_every_subscriber_one_ordered_stream(
    cluster: Cluster, make_room: MakeRoom, open_peer: OpenPeer
) -> None:
    room = await make_room(cluster.a)
    a, b = cluster.a.ws_url, cluster.b.ws_url
    peers = [
        await open_peer("staff@A", room.staff_cookie, [a]),
        await open_peer("candidate@B", room.candidate_cookie, [b]),
        await open_peer("staff-tab@B", room.staff_cookie, [b]),
        await open_peer("candidate-tab@A", room.candidate_cookie, [a]),
    ]
    for peer in peers:
        await peer.subscribe(room.conversation, after=0)
    per_sender = 100

    staff_acks, candidate_acks = await asyncio.gather(
        send_many(peers[0], room.conversation, per_sender, lanes=8, label="staff"),
        send_many(peers[1], room.conversation, per_sender, lanes=8, label="candidate"),
    )

    stored = cluster.db.messages(room.conversation)
    assert [seq for seq, _, _ in stored] == list(range(1, 2 * per_sender + 1))
    acked = {**staff_acks, **candidate_acks}
    assert {cid: mid for _, mid, cid in stored} == {cid: m["id"] for cid, m in acked.items()}
    for peer in peers:
        await peer.wait_for_seq(room.conversation, 2 * per_sender, within=DELIVERY_WITHIN)
        assert peer.problems == []
        assert peer.view(room.conversation) == [(seq, mid) for seq, mid, _ in stored]


async def test_the_same_client_id_sent_on_both_workers_at_once_makes_one_message(
    cluster: Cluster, make_room: MakeRoom, open_peer: OpenPeer
) -> None:
    room = await make_room(cluster.a)
    tab_a = await open_peer("staff-tab@A", room.staff_cookie, [cluster.a.ws_url])
    tab_b = await open_peer("staff-tab@B", room.staff_cookie, [cluster.b.ws_url])
    candidate = await open_peer("candidate@A", room.candidate_cookie, [cluster.a.ws_url])
    await candidate.subscribe(room.conversation, after=0)
    attempts = 20

    for n in range(attempts):
        client_id = str(uuid.uuid4())
        first, second = await asyncio.gather(
            tab_a.send(room.conversation, f"once {n}", client_id),
            tab_b.send(room.conversation, f"once {n}", client_id),
        )
        assert first["id"] == second["id"]
        assert first["seq"] == second["seq"] == n + 1

    stored = cluster.db.messages(room.conversation)
    assert [seq for seq, _, _ in stored] == list(range(1, attempts + 1))
    assert len({cid for _, _, cid in stored}) == attempts
    await candidate.wait_for_seq(room.conversation, attempts, within=DELIVERY_WITHIN)
    assert candidate.problems == []
    assert candidate.view(room.conversation) == [(seq, mid) for seq, mid, _ in stored]


async def test_a_subscriber_resumes_after_a_disconnect_from_the_seq_it_has(
    cluster: Cluster, make_room: MakeRoom, open_peer: OpenPeer
) -> None:
    room = await make_room(cluster.a)
    sender = await open_peer("candidate@B", room.candidate_cookie, [cluster.b.ws_url])
    first = await open_peer("staff@A", room.staff_cookie, [cluster.a.ws_url])
    await first.subscribe(room.conversation, after=0)
    for n in range(5):
        await sender.send(room.conversation, f"before {n}")
    await first.wait_for_seq(room.conversation, 5, within=DELIVERY_WITHIN)
    await first.close()
    for n in range(5):
        await sender.send(room.conversation, f"while away {n}")

    resumed = await open_peer("staff-again@B", room.staff_cookie, [cluster.b.ws_url])
    subscribed = await resumed.subscribe(room.conversation, after=first.last_seq(room.conversation))
    assert subscribed["last_seq"] == 10
    await resumed.wait_for_seq(room.conversation, 10, within=DELIVERY_WITHIN)
    await sender.send(room.conversation, "live again")
    await resumed.wait_for_seq(room.conversation, 11, within=DELIVERY_WITHIN)

    stored = cluster.db.messages(room.conversation)
    assert resumed.problems == []
    assert first.view(room.conversation) + resumed.view(room.conversation) == [
        (seq, mid) for seq, mid, _ in stored
    ]


def test_two_workers_without_redis_are_refused_with_a_clear_message() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "WEB_CONCURRENCY"} and not key.startswith("CHAT_")
    }
    env.update(
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres",
        CHAT_SECRET_KEYS=SECRET,
        PYTHONPATH=str(REPO),
    )
    port = str(free_port())
    result = subprocess.run(
        [sys.executable, "-m", "chatserver", "serve", "--workers", "2", "--port", port],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr
