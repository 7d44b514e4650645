"""Catch-up after a Redis outage is paced against each socket, like history
replay, so the slow-client guard (close 1013) never cuts off a healthy
reader (issue 16 item 2): several conversations with hundreds of messages
stored while Redis was gone reach every subscriber once, in order."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import OpenPeer, StartServers
from tests.e2e.servers import HostApi, Peer, RedisProcess, send_until_acked

pytestmark = pytest.mark.slow

CONVERSATIONS = 4
# More than one socket's outbox (CHAT_WS_SEND_QUEUE, 256 frames) per
# conversation, and more than a catch-up page (200).
MESSAGES = 300
# Sends in flight at once per sender (the server pipelines 32 per socket).
WINDOW = 24
SENDS_WITHIN = 60.0
CATCH_UP_WITHIN = 30.0


async def _send_many(peer: Peer, conversation: str, count: int) -> dict[str, dict[str, Any]]:
    acked: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + SENDS_WITHIN
    for start in range(0, count, WINDOW):
        ids = [str(uuid.uuid4()) for _ in range(min(WINDOW, count - start))]
        results = await asyncio.gather(
            *(
                send_until_acked(peer, conversation, f"during {start + i}", cid, deadline)
                for i, cid in enumerate(ids)
            )
        )
        acked.update(zip(ids, results, strict=True))
    return acked


async def test_catch_up_after_a_redis_outage_never_cuts_off_a_healthy_client(
    start_servers: StartServers, private_redis: RedisProcess, open_peer: OpenPeer
) -> None:
    cluster = start_servers(2, redis_url=private_redis.url)
    host = HostApi(cluster.a.url)
    tag = uuid.uuid4().hex[:8]
    org = f"org-{tag}"
    try:
        await host.staff(f"staff-{tag}", org=org)
        created = [
            await host.application(
                f"app-{tag}-{n}", org=org, candidate=f"cand-{tag}-{n}", status="interviewing"
            )
            for n in range(CONVERSATIONS)
        ]
        conversations = [str(made["conversation_id"]) for made in created]
        staff_cookie = await host.staff_cookie(f"staff-{tag}")
        candidate_cookies = [
            await host.candidate_cookie(f"app-{tag}-{n}") for n in range(CONVERSATIONS)
        ]
    finally:
        await host.aclose()
    # Staff tabs on both workers, each following every conversation and the
    # inbox feed: one outbox gets every conversation's catch-up at once.
    readers: list[Peer] = []
    for n in range(2):
        for server in cluster.servers:
            peer = await open_peer(f"staff{n}@{server.port}", staff_cookie, [server.ws_url])
            for conversation in conversations:
                await peer.subscribe(conversation, after=0)
            await peer.follow_inbox()
            readers.append(peer)
    senders = [
        await open_peer(f"cand{n}", cookie, [cluster.b.ws_url])
        for n, cookie in enumerate(candidate_cookies)
    ]

    private_redis.kill()
    acked_lists = await asyncio.gather(
        *(_send_many(s, c, MESSAGES) for s, c in zip(senders, conversations, strict=True))
    )
    private_redis.start()

    for conversation, acked in zip(conversations, acked_lists, strict=True):
        stored = cluster.db.messages(conversation)
        # Every acknowledged message is stored once.
        assert [seq for seq, _, _ in stored] == list(range(1, MESSAGES + 1))
        assert {cid: mid for _, mid, cid in stored} == {c: m["id"] for c, m in acked.items()}
    for peer in readers:
        for conversation in conversations:
            await peer.wait_for_seq(conversation, MESSAGES, within=CATCH_UP_WITHIN)
    for peer in readers:
        # Never cut off; every message once, in order.
        assert peer.reconnects == 0, peer.name
        assert peer.connected.is_set(), peer.name
        assert peer.problems == []
        for conversation in conversations:
            stored_view = [(seq, mid) for seq, mid, _ in cluster.db.messages(conversation)]
            assert peer.view(conversation) == stored_view
