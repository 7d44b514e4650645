"""SPEC 6, operations: probes, Prometheus metrics and the staff ops page."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chatserver.app import create_app
from chatserver.settings import Settings
from tests.conftest import SECRET, Scene
from tests.ws_helpers import LiveServer, live_server, open_socket


@pytest.fixture
async def server(app: Any, settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(app, settings) as running:
        yield running


async def test_healthz_answers_while_the_process_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")


async def test_readyz_checks_the_database_and_the_broker(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_readyz_is_503_when_the_database_is_unreachable(redis_available: str) -> None:
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{dead_port()}/nothing",
        redis_url=redis_available,
        redis_prefix=f"test-{uuid.uuid4().hex[:10]}:",
        secret_keys=(SECRET,),
    )
    app = create_app(settings, run_notifier=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            response = await c.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {"database": "unreachable", "broker": "ok"}
            assert (await c.get("/healthz")).status_code == 200


async def test_metrics_expose_connections_deliveries_and_latency(
    server: LiveServer, scene: Scene, client: httpx.AsyncClient
) -> None:
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.cara) as cara:
        await alice.subscribe(scene.conversation)
        await cara.subscribe(scene.conversation)
        await scene.alice.send(scene.conversation, "measured")
        await cara.next_of("message")
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert 'chat_connections{role="staff"}' in text
        assert 'chat_connections{role="candidate"}' in text
        assert "chat_frames_delivered_total" in text
        assert "chat_delivery_latency_seconds_bucket" in text
        assert "chat_slow_client_disconnects_total" in text
        assert "chat_broker_resyncs_total" in text
        assert "chat_broker_publish_failures" in text
        assert "chat_send_batch_size_bucket" in text
        assert "chat_notifier_backlog" in text


async def test_the_ops_page_is_for_staff_only(scene: Scene, client: httpx.AsyncClient) -> None:
    assert (await client.get("/ops")).status_code == 403
    assert (await client.get("/ops/data")).status_code == 403
    assert (await scene.cara.client.get("/ops")).status_code == 403
    assert (await scene.cara.client.get("/ops/data")).status_code == 403
    page = await scene.alice.client.get("/ops")
    assert page.status_code == 200
    assert "/static/ops.js" in page.text


async def test_ops_data_shows_live_connections_by_role_and_worker(
    server: LiveServer, scene: Scene
) -> None:
    async with open_socket(server, scene.alice), open_socket(server, scene.cara) as cara:
        await cara.send({"type": "ping"})
        await cara.expect("pong")
        response = await scene.alice.client.get("/ops/data")
        assert response.status_code == 200
        data = response.json()
    assert data["workers"], "this worker reports itself"
    worker = data["workers"][0]
    assert {"pid", "worker", "connections", "messages_sent", "frames_delivered"} <= set(worker)
    assert data["totals"]["connections"]["staff"] >= 1
    assert data["totals"]["connections"]["candidate"] >= 1
    assert len(data["totals"]["latency_buckets"]) == len(data["latency_buckets"]) + 1
