"""SPEC 6, operations: probes, Prometheus metrics and the staff ops page."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx
import pytest

from chatserver.app import create_app
from chatserver.ops import instruments, stats
from chatserver.settings import Settings
from tests.conftest import SECRET, Scene
from tests.helpers import AUTH, Host, error_of
from tests.ws_helpers import LiveServer, open_socket

OPS_KEY = "test-ops-key-0123456789"
SCRAPER = {"Authorization": f"Bearer {OPS_KEY}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(ops_keys=(OPS_KEY,))


async def make_operator(host: Host, staff_id: str, name: str, ops: bool = True) -> None:
    body = {
        "org": {"id": "acme", "name": "Acme"},
        "name": name,
        "email": f"{staff_id}@acme.example",
        "ops": ops,
    }
    response = await host.client.put(f"/api/v1/staff/{staff_id}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["ops"] is ops


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
        response = await client.get("/metrics", headers=SCRAPER)
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
        # The deployment's sums, the same whichever worker answers.
        assert 'chat_deployment_connections{role="candidate"} 1.0' in text
        assert 'chat_deployment_connections{role="staff"} 1.0' in text
        assert 'chat_deployment_processes{role="web"} 1.0' in text


async def test_metrics_leave_the_deployment_out_while_redis_does_not_answer(
    tmp_path: Any,
) -> None:
    """This worker's own numbers are not the deployment's: with the
    snapshots' store out of reach, the scrape answers at once without them."""
    settings = Settings(
        data_dir=tmp_path,
        redis_url=f"redis://127.0.0.1:{dead_port()}/0",
        redis_prefix=f"test-{uuid.uuid4().hex[:10]}:",
        secret_keys=(SECRET,),
        ops_keys=(OPS_KEY,),
    )
    app = create_app(settings, run_notifier=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            response = await asyncio.wait_for(c.get("/metrics", headers=SCRAPER), 4)
    assert response.status_code == 200
    assert "chat_connections" in response.text
    assert "chat_deployment_" not in response.text


def test_the_deployment_lines_sum_every_process_the_ops_page_sees() -> None:
    """Two web workers and a separate notifier, as their snapshots say."""
    web = {"role": "web", "connections": {"staff": 3, "candidate": 5}, "notifier_backlog": None}
    other = {"role": "web", "connections": {"staff": 1}, "notifier_backlog": None}
    notifier = {"role": "notifier", "connections": {}, "notifier_backlog": 7}
    text = stats.deployment_metrics([web, other, notifier]).decode()
    lines = set(text.splitlines())
    assert {
        'chat_deployment_processes{role="web"} 2.0',
        'chat_deployment_processes{role="notifier"} 1.0',
        'chat_deployment_connections{role="staff"} 4.0',
        'chat_deployment_connections{role="candidate"} 5.0',
        "chat_deployment_notifier_backlog 7.0",
    } <= lines


async def test_metrics_need_a_key_from_chat_ops_keys(
    scene: Scene, client: httpx.AsyncClient
) -> None:
    for value in (
        None,
        "Bearer test-api-key",  # the host's key is not an ops key
        f"Basic {OPS_KEY}",
        "Bearer wrong-ops-key",
        "Bearer ключ",  # not ASCII: still 401, never 500
    ):
        headers = [] if value is None else [(b"authorization", value.encode())]
        error_of(await client.get("/metrics", headers=headers), 401, "unauthorized")
    # A signed-in person, even an operator, is not a scraper.
    error_of(await scene.alice.client.get("/metrics"), 401, "unauthorized")
    assert (await client.get("/metrics", headers=SCRAPER)).status_code == 200


async def test_the_ops_page_is_for_operators_only(
    scene: Scene, client: httpx.AsyncClient, host: Host
) -> None:
    await make_operator(host, "alice", "Alice Recruiter")
    for who in (client, scene.cara.client, scene.bob.client, scene.mallory.client):
        error_of(await who.get("/ops/data"), 403, "forbidden")
    page = await scene.alice.client.get("/ops")
    assert page.status_code == 200
    assert "/static/ops.js" in page.text
    # Its own icon, as every page has (no 404 for /favicon.ico in the console).
    assert '<link rel="icon" href="/static/icon.svg"' in page.text
    assert (await scene.alice.client.get("/ops/data")).status_code == 200

    # A routine re-sync without the flag keeps it; the host can take it away.
    await host.staff("alice", name="Alice Recruiter")
    assert (await scene.alice.client.get("/ops/data")).status_code == 200
    await make_operator(host, "alice", "Alice Recruiter", ops=False)
    error_of(await scene.alice.client.get("/ops/data"), 403, "forbidden")


async def test_the_ops_page_refuses_with_a_page_not_json(
    scene: Scene, client: httpx.AsyncClient, host: Host
) -> None:
    """Like the other pages: an HTML page saying what the page is and why
    not, 401 for a visitor who is not signed in, 403 for everyone else."""
    await make_operator(host, "alice", "Alice Recruiter")
    visitor = await client.get("/ops")
    assert visitor.status_code == 401
    assert visitor.headers["content-type"].startswith("text/html")
    assert visitor.headers["cache-control"] == "no-store"
    assert "This page is for operators" in visitor.text
    assert "sign in" in visitor.text
    assert "/static/ops.js" not in visitor.text
    for who in (scene.cara.client, scene.bob.client, scene.mallory.client):
        page = await who.get("/ops")
        assert page.status_code == 403
        assert page.headers["content-type"].startswith("text/html")
        assert "This page is for operators" in page.text
        assert "not marked as an operator" in page.text
        assert "/static/ops.js" not in page.text
        assert '"error"' not in page.text


async def test_ops_data_shows_live_connections_by_role_and_worker(
    server: LiveServer, scene: Scene, host: Host
) -> None:
    await make_operator(host, "alice", "Alice Recruiter")
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


def test_the_window_counts_what_happened_in_the_last_minutes() -> None:
    """Rates and latencies come from each process's last WINDOW_SECONDS, not
    from the page's 2-second polls: a message a minute ago still counts,
    one from before the window no longer does."""
    buckets = len(instruments.LATENCY_BUCKETS) + 1

    def totals(messages: int, latencies: int) -> dict[str, Any]:
        return {
            "messages_sent": messages,
            "frames_delivered": 2 * messages,
            "latency_count": latencies,
            "latency_sum": 0.004 * latencies,
            "latency_buckets": [0, 0, latencies] + [latencies] * (buckets - 3),
        }

    window = stats.Window(seconds=300)
    first = window.recent(1000.0, totals(10, 10))
    assert first["seconds"] == 0
    assert first["messages_per_minute"] is None
    window.recent(1002.0, totals(10, 10))
    # One message 60 s in, then polls every 2 s with nothing new: it stays.
    window.recent(1060.0, totals(11, 11))
    for at in range(1062, 1300, 2):
        recent = window.recent(float(at), totals(11, 11))
    assert recent["messages_sent"] == 1
    assert recent["frames_delivered"] == 2
    assert recent["latency_count"] == 1
    assert recent["latency_buckets"][2] == 1
    assert recent["messages_per_minute"] == pytest.approx(1 / (recent["seconds"] / 60))
    # Five minutes after it, it has left the window.
    recent = window.recent(1362.0, totals(11, 11))
    assert 300 <= recent["seconds"] < 305
    assert recent["messages_sent"] == 0
    assert recent["latency_count"] == 0
    assert recent["messages_per_minute"] == 0


async def test_ops_data_keeps_a_message_in_its_rates_across_polls(
    server: LiveServer, scene: Scene, host: Host
) -> None:
    """A message shows in the page's rates and latency on every poll of the
    next minutes, not just on the one poll that happened to see it."""
    await make_operator(host, "alice", "Alice Recruiter")
    first = (await scene.alice.client.get("/ops/data")).json()
    assert first["totals"]["recent"]["window_seconds"] == stats.WINDOW_SECONDS
    async with open_socket(server, scene.cara) as cara:
        await cara.subscribe(scene.conversation)
        await scene.alice.send(scene.conversation, "counted")
        await cara.next_of("message")
    await asyncio.sleep(stats.REPORT_SECONDS)
    for _ in range(2):  # two polls, one report period apart
        await asyncio.sleep(stats.REPORT_SECONDS / 2)
        data = (await scene.alice.client.get("/ops/data")).json()
        recent = data["totals"]["recent"]
        assert recent["messages_sent"] >= 1
        assert recent["messages_per_minute"] > 0
        assert recent["latency_count"] >= 1
        assert recent["latency_buckets"][-1] == recent["latency_count"]
        assert all("recent" in worker for worker in data["workers"])
