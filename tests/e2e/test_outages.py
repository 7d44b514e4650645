"""A database outage never tells a signed-in client to give up (issue 16
item 5): its socket is closed with 1013 (try again later), never 1008
(policy: sign in again), and once the database is back it connects as
before and gets every message."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import OpenPeer, StartServers
from tests.e2e.servers import HostApi, new_room, send_until_acked

pytestmark = pytest.mark.slow

FRAME_WITHIN = 15.0
ATTEMPTS = 5


async def _open_during_outage(url: str, cookie: str) -> tuple[list[dict[str, object]], int | None]:
    """Frames and close code of one socket opened while the database is down."""
    frames: list[dict[str, object]] = []
    async with connect(url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
        try:
            async with asyncio.timeout(FRAME_WITHIN):
                async for raw in ws:
                    frames.append(orjson.loads(raw))
        except ConnectionClosed:
            pass
        assert ws.close_code is not None, frames
        return frames, ws.close_code


async def test_a_signed_in_socket_opened_while_the_database_is_down_is_told_to_retry(
    start_servers: StartServers, open_peer: OpenPeer
) -> None:
    cluster = start_servers(1)
    server = cluster.a
    host = HostApi(server.url)
    try:
        room = await new_room(host)
    finally:
        await host.aclose()
    cluster.db.refuse_connections()
    try:
        for _ in range(ATTEMPTS):
            frames, code = await _open_during_outage(server.ws_url, room.staff_cookie)
            assert code == 1013, (code, frames)
            assert [f.get("code") for f in frames] == ["unavailable"]
    finally:
        cluster.db.accept_connections()

    # Back again: the same session signs in, and a message reaches both sides.
    staff = await open_peer("staff", room.staff_cookie, [server.ws_url])
    candidate = await open_peer("candidate", room.candidate_cookie, [server.ws_url])
    await candidate.subscribe(room.conversation, after=0)
    acked = await send_until_acked(
        staff,
        room.conversation,
        "after the outage",
        str(uuid.uuid4()),
        time.monotonic() + FRAME_WITHIN,
    )
    await candidate.wait_for_seq(room.conversation, int(str(acked["seq"])), within=FRAME_WITHIN)
    assert candidate.problems == []
    assert candidate.view(room.conversation) == [
        (seq, mid) for seq, mid, _ in cluster.db.messages(room.conversation)
    ]
