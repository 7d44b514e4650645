"""Every committed message reaches every live subscriber within about 2 s,
even when the worker that committed it dies before publishing it (issue 16
item 1). The worker is killed by a test-only fault point
(`CHAT_TEST_FAULT=kill_after_commit`) right after its commit, so the test
does not depend on timing; nobody publishes the message, and the rooms of
the surviving worker find it with their tail check."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.e2e.conftest import OpenPeer, StartServers
from tests.e2e.servers import ConnectionLost, HostApi, new_room, send_until_acked

pytestmark = pytest.mark.slow

# The guarantee is 2 s (two tail-check intervals and a catch-up read); the
# slack is for a loaded test machine.
DELIVERED_WITHIN = 3.0
DIED_WITHIN = 10.0
RETRY_WITHIN = 20.0


async def test_a_message_committed_by_a_worker_killed_before_publishing_reaches_subscribers(
    start_servers: StartServers, open_peer: OpenPeer
) -> None:
    cluster = start_servers(2, first_env={"CHAT_TEST_FAULT": "kill_after_commit"})
    a, b = cluster.a, cluster.b
    host = HostApi(b.url)
    try:
        room = await new_room(host)
    finally:
        await host.aclose()
    watchers = [
        await open_peer("staff@B", room.staff_cookie, [b.ws_url]),
        await open_peer("candidate-tab@B", room.candidate_cookie, [b.ws_url]),
    ]
    for peer in watchers:
        await peer.subscribe(room.conversation, after=0)
    # The sender never retries: nothing but the tail check can publish it.
    sender = await open_peer("candidate@A", room.candidate_cookie, [a.ws_url])
    sent = time.monotonic()
    with pytest.raises(ConnectionLost):  # the socket dies with its worker
        await sender.send(room.conversation, "committed, never published", within=DIED_WITHIN)
    assert a.process is not None
    await asyncio.to_thread(a.process.wait, DIED_WITHIN)
    stored = [(seq, mid) for seq, mid, _ in cluster.db.messages(room.conversation)]
    assert [seq for seq, _ in stored] == [1]
    for peer in watchers:
        await peer.wait_for_seq(room.conversation, 1, within=DELIVERED_WITHIN)
    took = time.monotonic() - sent
    assert took < DELIVERED_WITHIN, took

    # A sender that retries on the surviving worker gets the stored message
    # back, and nobody sees it twice.
    client_id = str(uuid.uuid4())
    retrying = await open_peer("staff@B-sender", room.staff_cookie, [b.ws_url])
    first = await send_until_acked(
        retrying, room.conversation, "second", client_id, time.monotonic() + RETRY_WITHIN
    )
    again = await send_until_acked(
        retrying, room.conversation, "second", client_id, time.monotonic() + RETRY_WITHIN
    )
    assert again["id"] == first["id"]
    stored = [(seq, mid) for seq, mid, _ in cluster.db.messages(room.conversation)]
    assert [seq for seq, _ in stored] == [1, 2]
    for peer in watchers:
        await peer.wait_for_seq(room.conversation, 2, within=DELIVERED_WITHIN)
        await asyncio.sleep(0.2)  # time for a duplicate to show up: nothing signals its absence
        assert peer.problems == []
        assert peer.view(room.conversation) == stored
