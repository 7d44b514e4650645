"""A real `chatserver serve` as an operator runs it: what its log says
(format, request ids, and never a sign-in token), what `--port` does to its
links and Origin check, how it stops (1012, clients go elsewhere) and how
a failed start ends."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import SECRET
from tests.e2e.servers import (
    API_KEY,
    REPO,
    HostApi,
    PgDatabase,
    ServerProcess,
    free_port,
    unique,
)
from tests.ops.cli import clean_env, run_cli
from tests.ws_helpers import Socket

pytestmark = pytest.mark.slow

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[a-z-]+\[\d+\] [\w.]+ req=[\w.-]+ "
)
# How long a started server may take to write and flush its last lines.
FLUSH_SECONDS = 10.0


@pytest.fixture
def database(pg_template: str) -> Iterator[PgDatabase]:
    db = PgDatabase().create(template=pg_template)
    try:
        yield db
    finally:
        db.drop()


def _server(tmp_path: Path, db: PgDatabase, redis_url: str, **extra: str) -> ServerProcess:
    return ServerProcess(
        tmp_path,
        database_url=db.url,
        redis_url=redis_url,
        prefix=f"{unique('ops')}:",
        extra_env={"CHAT_LOG_LEVEL": "info", **extra},
    )


async def _sign_in_everyone(server: ServerProcess) -> tuple[list[str], list[str]]:
    """Open a staff link and a candidate link as a browser does (and a
    forged one); the tokens, and the request ids the server answered."""
    host = HostApi(server.url)
    tokens: list[str] = []
    request_ids: list[str] = []
    try:
        org = unique("org")
        await host.staff("alice", org=org)
        await host.application("app-1", org=org, candidate="cara", status="interviewing")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
            for path in (
                "/api/v1/staff/alice/login-link",
                "/api/v1/applications/app-1/candidate-link",
            ):
                link = (await host.client.post(path)).json()["url"]
                tokens.append(link.split("token=", 1)[1])
                opened = await browser.get(httpx.URL(link).raw_path.decode())
                assert opened.status_code == 303
                request_ids.append(opened.headers["x-request-id"])
            forged = await browser.get("/auth/staff", params={"token": tokens[0][:-3] + "abc"})
            assert forged.status_code == 401
            given = await browser.get("/healthz", headers={"X-Request-ID": "from-the-proxy-42"})
            assert given.headers["x-request-id"] == "from-the-proxy-42"
            request_ids.append("from-the-proxy-42")
    finally:
        await host.aclose()
    return tokens, request_ids


def _stopped_log(server: ServerProcess) -> str:
    server.stop()
    return server.log_path.read_text()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_sign_in_token_reaches_the_log(
    tmp_path: Path, database: PgDatabase, redis_available: str, log_format: str
) -> None:
    server = _server(tmp_path, database, redis_available, CHAT_LOG_FORMAT=log_format).start()
    try:
        tokens, request_ids = await _sign_in_everyone(server)
    finally:
        log = _stopped_log(server)
    lines = [line for line in log.splitlines() if line.strip()]
    for token in tokens:
        assert token not in log
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in log, f"a piece of a token is in the log: {part}"
    access = [line for line in lines if "uvicorn.access" in line]
    for path in ("/auth/staff?token=[redacted]", "/auth/candidate?token=[redacted]"):
        assert sum(path in line for line in access) >= 1, access
    if log_format == "text":
        for line in lines:
            assert TEXT_LINE.match(line), line
        for request_id in request_ids:
            assert any(f"req={request_id} " in line for line in access), request_id
    else:
        records = [json.loads(line) for line in lines]
        for record in records:
            assert {"time", "level", "role", "process", "logger", "request_id", "message"} <= set(
                record
            ), record
            assert record["role"] == "web"
        logged_ids = {r["request_id"] for r in records if r["logger"] == "uvicorn.access"}
        assert set(request_ids) <= logged_ids


async def test_production_warns_at_start_about_missing_keys_and_smtp(
    tmp_path: Path, database: PgDatabase, redis_available: str
) -> None:
    server = _server(tmp_path, database, redis_available, CHAT_API_KEYS="").start()
    log = _stopped_log(server)
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert any("CHAT_API_KEYS is empty" in line for line in warnings), log
    assert any("CHAT_SMTP_URL is empty" in line for line in warnings), log


async def test_a_worker_reports_the_pauses_of_its_cycle_collector(
    tmp_path: Path, database: PgDatabase, redis_available: str
) -> None:
    """Each worker tunes its collector once started (chatserver/ops/collector.py),
    with a full collection that /metrics counts among the pauses by generation."""
    ops_key = "ops-key-0123456789abcdef"
    server = _server(tmp_path, database, redis_available, CHAT_OPS_KEYS=ops_key).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {ops_key}"})
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    full = re.search(r'^chat_gc_pause_seconds_count\{generation="2"\} (\S+)$', response.text, re.M)
    assert full is not None, response.text
    assert float(full.group(1)) >= 1


def test_an_unsupported_redis_url_is_one_line(tmp_path: Path, database: PgDatabase) -> None:
    result = run_cli(
        ["serve", "--workers", "2"],
        tmp_path,
        {"DATABASE_URL": database.url, "REDIS_URL": "amqp://q/", "CHAT_SECRET_KEYS": SECRET},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "chatserver: REDIS_URL scheme 'amqp' is not supported: use redis://, rediss://, "
        "unix:// or redis+cluster://"
    ]


# Workers whose start-up fails: settings that passed the CLI's checks but that
# the app refuses when it opens its broker, as a worker meets a dependency
# that fails during start-up.
FAILING_WORKERS = """
import sys
from chatserver import logs
from chatserver.settings import Settings
from chatserver.web.server import run

settings = Settings(
    database_url=sys.argv[1], secret_keys=(sys.argv[2],), redis_url="amqp://q/",
    workers=2, port=int(sys.argv[3]),
)
logs.configure(settings, "web")
sys.exit(0 if run(settings) else 1)
"""


def test_a_failed_start_with_several_workers_exits_non_zero(
    tmp_path: Path, database: PgDatabase
) -> None:
    """The supervisor stops (instead of restarting workers for ever) and
    says so with a non-zero status."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", FAILING_WORKERS, database.url, SECRET, str(free_port())],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "did not start; stopping" in result.stderr
    assert time.monotonic() - started < 100


async def _staff_origin_check(base: str, port: int) -> None:
    """The login link points at `base`, and a browser on that page may open
    the socket (its Origin is allowed); another origin may not."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ) as host:
        staff = {
            "org": {"id": "acme", "name": "Acme"},
            "name": "Alice",
            "email": "alice@acme.example",
        }
        assert (await host.put("/api/v1/staff/alice", json=staff)).status_code == 200
        link = (await host.post("/api/v1/staff/alice/login-link")).json()["url"]
        assert link.startswith(f"{base}/auth/staff?token=")
        opened = await host.get(httpx.URL(link).raw_path.decode())
        cookie = f"chat_session={opened.cookies['chat_session']}"
    ws_url = f"ws://127.0.0.1:{port}/ws"
    async with connect(ws_url, origin=base, additional_headers={"Cookie": cookie}) as ws:  # type: ignore[arg-type]
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}
    with pytest.raises(InvalidStatus):
        async with connect(
            ws_url,
            origin="http://127.0.0.1:8000",  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
        ):
            pass


def _launch(folder: Path, port: int, args: list[str], env: dict[str, str]) -> ServerProcess:
    """`chatserver ARGS` on the embedded default in `folder`, logging to a file."""
    server = ServerProcess(folder, database_url="", redis_url="", prefix="", port=port)
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(
            [sys.executable, "-m", "chatserver", *args],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return server


@pytest.mark.parametrize("how", ["--port", "PORT"])
async def test_the_port_flag_and_the_environment_give_the_same_links_and_origin(
    tmp_path: Path, how: str
) -> None:
    port = free_port()
    args = ["serve", "--port", str(port)] if how == "--port" else ["serve"]
    env = clean_env({"CHAT_API_KEYS": API_KEY, **({"PORT": str(port)} if how == "PORT" else {})})
    server = _launch(tmp_path, port, args, env)
    try:
        server.wait_ready()
        await _staff_origin_check(f"http://127.0.0.1:{port}", port)
    finally:
        server.stop()


async def test_demo_port_prints_links_to_that_port(tmp_path: Path) -> None:
    port = free_port()
    server = _launch(tmp_path, port, ["demo", "--port", str(port)], clean_env())
    try:
        server.wait_ready()
        printed = server.log_path.read_text()
        links = re.findall(r"https?://[^\s]+", printed)
        assert links, printed
        sign_in = [link for link in links if "/auth/" in link or "/dev/" in link]
        assert len(sign_in) >= 5
        assert all(link.startswith(f"http://127.0.0.1:{port}/") for link in sign_in), sign_in
        assert ":8000" not in printed
        async with httpx.AsyncClient(timeout=10) as browser:
            staff_link = next(link for link in sign_in if "/auth/staff" in link)
            opened = await browser.get(staff_link)
            cookie = f"chat_session={opened.cookies['chat_session']}"
        async with connect(
            f"ws://127.0.0.1:{port}/ws",
            origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
        ) as ws:
            await ws.send('{"type": "ping"}')
            assert json.loads(await ws.recv()) == {"type": "pong"}
        # The first screen shows the links, not the migrations' chatter.
        before_links = printed.split("Sign in", 1)[0]
        assert "alembic" not in before_links
        assert "Context impl" not in printed
    finally:
        server.stop()


async def test_sigterm_closes_sockets_with_1012_and_clients_resume_elsewhere(
    tmp_path: Path, database: PgDatabase, redis_available: str
) -> None:
    prefix = f"{unique('ops')}:"
    servers = [
        ServerProcess(
            tmp_path,
            database_url=database.url,
            redis_url=redis_available,
            prefix=prefix,
            extra_env={"CHAT_LOG_LEVEL": "info"},
        ).start()
        for _ in range(2)
    ]
    a, b = servers
    host = HostApi(a.url)
    try:
        await host.staff("alice", org="acme")
        created = await host.application(
            "app-1", org="acme", candidate="cara", status="interviewing"
        )
        conversation = str(created["conversation_id"])
        cookie = await host.staff_cookie("alice")
        headers = {"Cookie": cookie}
        async with connect(a.ws_url, additional_headers=headers) as ws:
            await ws.send(
                json.dumps({"type": "subscribe", "conversation": conversation, "after": 0})
            )
            assert json.loads(await ws.recv())["type"] == "subscribed"
            a.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 15)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1012
        # A message sent while the client was away reaches it on the other server.
        async with connect(b.ws_url, additional_headers=headers) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "send",
                        "conversation": conversation,
                        "client_id": "5f0c6a47-4f4c-4f43-9d7e-0d8f6b1c2a11",
                        "body": "After the restart",
                        "attachments": [],
                    }
                )
            )
            await ws.send(
                json.dumps({"type": "subscribe", "conversation": conversation, "after": 0})
            )
            seen = await Socket(ws).collect(
                lambda frames: any(f.get("type") == "message" for f in frames), within=15
            )
            message = next(f for f in seen if f["type"] == "message")["message"]
            assert (message["seq"], message["body"]) == (1, "After the restart")
        # A graceful stop: the app's shutdown ran; uvicorn then ends the
        # process by the signal it was sent, as a process manager expects.
        assert a.process is not None
        assert a.process.wait(FLUSH_SECONDS) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in a.log_path.read_text()
    finally:
        await host.aclose()
        for server in servers:
            server.stop()


def test_the_demo_script_opens_on_the_sign_in_links(tmp_path: Path) -> None:
    """`scripts/demo`'s first screen: one line about the install, then the
    sign-in links; no pip or setuptools chatter, no migration steps."""
    port = free_port()
    env = clean_env({"CHAT_DATA_DIR": str(tmp_path / "data")})
    env.pop("PYTHONPATH")
    server = ServerProcess(tmp_path, database_url="", redis_url="", prefix="", port=port)
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(
            [str(REPO / "scripts" / "demo"), "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        server.wait_ready(timeout=300)  # the install runs first
    finally:
        server.stop()
    screen = server.log_path.read_text().splitlines()
    assert screen[0].startswith("Installing chatserver")
    first_link = next(i for i, line in enumerate(screen) if f":{port}/auth/" in line)
    assert first_link <= 5, screen[:first_link]
    text = "\n".join(screen)
    for chatter in ("setuptools", "Warning", "WARNING", "alembic", "Running upgrade", "pip"):
        assert chatter not in text, chatter
