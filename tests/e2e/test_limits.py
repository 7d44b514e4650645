"""Per-person limits across real worker processes (issue 9 item 9): a person
with sockets on two workers meets the connection cap and the send burst
once, not once per worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import StartServers
from tests.e2e.servers import HostApi, ServerProcess, new_room

pytestmark = pytest.mark.slow

CAP = 4
BURST = 6
# Far below one token in the test's few seconds: the burst is all there is.
RATE = "0.01"
WITHIN = 10.0


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as sockets:
        yield sockets


async def frame_of(
    ws: ClientConnection, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The next frame that `wanted` accepts, skipping others (fan-out)."""
    async with asyncio.timeout(WITHIN):
        while True:
            frame = orjson.loads(await ws.recv())
            if wanted(frame):
                return dict(frame)


async def open_socket(
    stack: AsyncExitStack, server: ServerProcess, cookie: str
) -> ClientConnection:
    return await stack.enter_async_context(
        connect(server.ws_url, additional_headers={"Cookie": cookie}, open_timeout=WITHIN)
    )


async def refused(server: ServerProcess, cookie: str) -> tuple[str, int | None]:
    """A socket over the cap: the error code it is sent, and its close code."""
    async with connect(
        server.ws_url, additional_headers={"Cookie": cookie}, open_timeout=WITHIN
    ) as ws:
        error = await frame_of(ws, lambda f: f["type"] == "error")
        try:
            await frame_of(ws, lambda f: False)
        except ConnectionClosed as closed:
            return str(error["code"]), closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the socket over the cap stayed open")


def answering(client_id: str) -> Callable[[dict[str, Any]], bool]:
    """Accepts the ack or the error of the send with `client_id`."""
    return lambda f: f["type"] in ("ack", "error") and f.get("client_id") == client_id


async def test_a_person_on_two_workers_meets_each_limit_once(
    start_servers: StartServers, host_of: Callable[[ServerProcess], HostApi], stack: AsyncExitStack
) -> None:
    cluster = start_servers(
        count=2,
        extra_env={
            "CHAT_SEND_RATE": RATE,
            "CHAT_SEND_BURST": str(BURST),
            "CHAT_MAX_CONNECTIONS_PER_USER": str(CAP),
        },
    )
    room = await new_room(host_of(cluster.a))
    workers = [cluster.a, cluster.b]
    sockets = []
    for n in range(CAP):
        ws = await open_socket(stack, workers[n % 2], room.staff_cookie)
        await ws.send(orjson.dumps({"type": "ping"}).decode())
        await frame_of(ws, lambda f: f["type"] == "pong")
        sockets.append(ws)
    for server in workers:
        assert await refused(server, room.staff_cookie) == ("rate_limited", 1013)
    # Another person is not counted with them.
    other = await open_socket(stack, cluster.b, room.candidate_cookie)
    await other.send(orjson.dumps({"type": "ping"}).decode())
    await frame_of(other, lambda f: f["type"] == "pong")

    answers: list[str] = []
    for n in range(BURST * 2):
        ws = sockets[n % 2]  # alternately on worker A and worker B
        client_id = str(uuid.uuid4())
        frame = {
            "type": "send",
            "conversation": room.conversation,
            "client_id": client_id,
            "body": f"try {n}",
            "attachments": [],
        }
        await ws.send(orjson.dumps(frame).decode())
        answer = await frame_of(ws, answering(client_id))
        answers.append(answer["type"] if answer["type"] == "ack" else answer["code"])
    assert answers.count("ack") == BURST, answers
    assert answers.count("rate_limited") == BURST, answers
