"""Ending sessions across real worker processes (issue 9 item 8): the host
removes a staff user, or someone signs out, and their open sockets close at
once on every worker (two `chatserver serve` processes sharing PostgreSQL
and Redis); a candidate's sockets close when the application is given to
someone else. Nobody else's socket is touched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import Cluster
from tests.e2e.servers import SHARED_REDIS_URL, HostApi, ServerProcess
from tests.waits import eventually_async
from tests.ws_helpers import Socket

pytestmark = pytest.mark.slow

# A close that is "at once" arrives well within this, even on a loaded box.
CLOSE_WITHIN = 5.0
SUBSCRIBE_WITHIN = 10.0


@asynccontextmanager
async def socket(server: ServerProcess, cookie: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        server.ws_url, additional_headers={"Cookie": cookie}, open_timeout=5, max_queue=None
    ) as ws:
        yield ws


async def closed_with(ws: ClientConnection) -> int | None:
    """Read until the server closes the socket; its close code."""
    return await Socket(ws).closed_code(CLOSE_WITHIN)


async def pong(ws: ClientConnection) -> None:
    await ws.send(orjson.dumps({"type": "ping"}).decode())
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), CLOSE_WITHIN))
        if frame["type"] == "pong":
            return


async def wait_for_listeners(cluster: Cluster, channel: str, count: int) -> None:
    """Until `count` workers follow the person's channel in Redis: the
    disconnect must be published to someone who listens."""
    wire = cluster.a.env["CHAT_REDIS_PREFIX"] + channel
    redis = Redis.from_url(SHARED_REDIS_URL)
    listeners = 0

    async def followed() -> bool:
        nonlocal listeners
        [(_, listeners)] = await redis.pubsub_numsub(wire)
        return int(listeners) >= count

    try:
        await eventually_async(
            followed,
            within=SUBSCRIBE_WITHIN,
            what=lambda: f"{listeners} of {count} workers follow {wire}",
        )
    finally:
        await redis.aclose()


async def provision(host: HostApi, tag: str) -> tuple[str, str, str]:
    """Staff member, candidate and application in an organisation of their own."""
    org = f"org-{tag}"
    await host.staff(f"staff-{tag}", org=org)
    await host.staff(f"colleague-{tag}", org=org)
    created = await host.application(
        f"app-{tag}", org=org, candidate=f"cand-{tag}", status="interviewing"
    )
    conversation = str(created["conversation_id"])
    return f"staff-{tag}", f"app-{tag}", conversation


async def test_removing_a_staff_user_closes_their_sockets_on_every_worker(
    cluster: Cluster, host_of: Callable[[ServerProcess], HostApi]
) -> None:
    host = host_of(cluster.a)
    tag = uuid.uuid4().hex[:10]
    staff_id, application_id, _ = await provision(host, tag)
    cookie = await host.staff_cookie(staff_id)
    colleague = await host.staff_cookie(f"colleague-{tag}")
    candidate = await host.candidate_cookie(application_id)
    async with AsyncExitStack() as stack:
        on_a = await stack.enter_async_context(socket(cluster.a, cookie))
        on_b = await stack.enter_async_context(socket(cluster.b, cookie))
        others = [
            await stack.enter_async_context(socket(cluster.b, colleague)),
            await stack.enter_async_context(socket(cluster.a, candidate)),
        ]
        await wait_for_listeners(cluster, f"person:staff:{staff_id}", 2)

        removed = await host.client.delete(f"/api/v1/staff/{staff_id}")
        assert removed.status_code == 204, removed.text

        codes = await asyncio.gather(closed_with(on_a), closed_with(on_b))
        assert list(codes) == [1008, 1008], cluster.logs()
        for ws in others:
            await pong(ws)  # untouched

    for server in cluster.servers:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
            me = await browser.get("/api/me", headers={"Cookie": cookie})
            assert me.status_code == 401, me.text
        async with socket(server, cookie) as again:
            refusal = orjson.loads(await asyncio.wait_for(again.recv(), CLOSE_WITHIN))
            assert (refusal["type"], refusal["code"]) == ("error", "unauthorized")
            assert await closed_with(again) == 1008

    # A later PUT restores access with a new link; the old session stays ended.
    await host.staff(staff_id, org=f"org-{tag}")
    fresh = await host.staff_cookie(staff_id)
    async with socket(cluster.b, fresh) as ws:
        await pong(ws)
    async with httpx.AsyncClient(base_url=cluster.a.url, timeout=10) as browser:
        assert (await browser.get("/api/me", headers={"Cookie": cookie})).status_code == 401
        assert (await browser.get("/api/me", headers={"Cookie": fresh})).status_code == 200


async def test_signing_out_closes_that_persons_sockets_on_every_worker(
    cluster: Cluster, host_of: Callable[[ServerProcess], HostApi]
) -> None:
    host = host_of(cluster.a)
    staff_id, _, _ = await provision(host, uuid.uuid4().hex[:10])
    cookie = await host.staff_cookie(staff_id)
    async with httpx.AsyncClient(base_url=cluster.b.url, timeout=10) as browser:
        me = await browser.get("/api/me", headers={"Cookie": cookie})
        csrf = me.json()["csrf_token"]
        async with socket(cluster.a, cookie) as on_a, socket(cluster.b, cookie) as on_b:
            await wait_for_listeners(cluster, f"person:staff:{staff_id}", 2)
            out = await browser.post(
                "/auth/sign-out", headers={"Cookie": cookie, "X-CSRF-Token": csrf}
            )
            assert out.status_code == 303, out.text
            assert list(await asyncio.gather(closed_with(on_a), closed_with(on_b))) == [1008, 1008]
        assert (await browser.get("/api/me", headers={"Cookie": cookie})).status_code == 401


async def test_a_candidate_change_closes_the_old_candidates_sockets(
    cluster: Cluster, host_of: Callable[[ServerProcess], HostApi]
) -> None:
    host = host_of(cluster.a)
    tag = uuid.uuid4().hex[:10]
    _, application_id, conversation = await provision(host, tag)
    old = await host.candidate_cookie(application_id)
    async with socket(cluster.b, old) as ws:
        await ws.send(
            orjson.dumps({"type": "subscribe", "conversation": conversation, "after": 0}).decode()
        )
        await wait_for_listeners(cluster, f"person:candidate:cand-{tag}", 1)
        await host.application(
            application_id, org=f"org-{tag}", candidate=f"other-{tag}", status="interviewing"
        )
        # 1012: reconnect and carry on, without this conversation.
        assert await closed_with(ws) == 1012
    async with socket(cluster.b, old) as ws:
        await ws.send(
            orjson.dumps({"type": "subscribe", "conversation": conversation, "after": 0}).decode()
        )
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), CLOSE_WITHIN))
        assert (frame["type"], frame["code"]) == ("error", "not_found")
