"""docs/production.md, followed step by step on loopback: the installed wheel,
the settings (and the documented refusals and warnings), the release
migrations and check, web workers and a notifier, health probes, the
guide's own nginx configuration with TLS in front, a chat over the
WebSocket through the proxy, an email over SMTP, a reply to it through
`chatserver mail-in` that reaches the open socket, and a deploy's graceful
shutdown (1012, clients resume without loss or duplicates).

Every `chatserver` command in the guide's `sh` blocks is run here as
written (with this test's port); the nginx block is used as written with
its addresses, port and certificate paths moved to loopback and a
temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from markdown_it import MarkdownIt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.servers import PgDatabase, free_port, unique
from tests.helpers import eventually
from tests.ops.wheel import Installed
from tests.waits import eventually_async

pytestmark = pytest.mark.slow

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "production.md"
SECRET = "walk-through-secret-" + uuid.uuid4().hex
API_KEY = "walk-through-api-key-" + uuid.uuid4().hex
OPS_KEY = "walk-through-ops-key-" + uuid.uuid4().hex
# Bounded waits: a loaded machine starts a worker in a few seconds.
START_TIMEOUT = 60.0
EMAIL_TIMEOUT = 30.0


def guide_blocks(language: str) -> list[str]:
    tokens = MarkdownIt().parse(GUIDE.read_text())
    return [t.content for t in tokens if t.type == "fence" and t.info.strip() == language]


def guide_commands() -> list[str]:
    """The `chatserver …` lines of the guide's sh blocks."""
    return [
        line.strip()
        for block in guide_blocks("sh")
        for line in block.splitlines()
        if line.strip().startswith("chatserver ")
    ]


class Mailbox:
    """An SMTP server on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.content))
        return "250 OK"


@dataclass
class Deployment:
    installed: Installed
    folder: Path
    env: dict[str, str]
    app_port: int
    tls_port: int
    http_port: int
    ca: ssl.SSLContext
    ran: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def command(self, line: str) -> list[str]:
        """A guide command with this deployment's port, noted as run."""
        self.ran.append(line)
        words = line.replace("--port 8000", f"--port {self.app_port}").split()
        return [str(self.installed.bin / words[0]), *words[1:]]

    def run(
        self, line: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(line),
            cwd=self.folder,
            env=dict(env if env is not None else self.env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self, name: str, line: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                self.command(line), cwd=self.folder, env=self.env, stdout=log, stderr=log
            )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, verify=self.ca, timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str, ca: ssl.SSLContext | bool = True) -> bool:
    try:
        return httpx.get(url, verify=ca, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _certificate(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def nginx_config(deployment: Deployment, certs: Path, logs: Path) -> str:
    """The guide's nginx block, moved to loopback ports, a temporary
    certificate and a log folder of its own; every replacement must find its
    text, so a guide that changes shape fails here rather than being tested
    on something else."""
    (block,) = guide_blocks("nginx")
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{deployment.http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{deployment.tls_port} ssl;",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{deployment.app_port};",
        "/etc/ssl/chat/": f"{certs}/",
        "/var/log/nginx/": f"{logs}/",
    }
    for old, new in replacements.items():
        assert old in block, f"the guide's nginx block no longer has {old!r}"
        block = block.replace(old, new)
    return block


@pytest.fixture
def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        pytest.fail("nginx is missing: scripts/services installs it", pytrace=False)
    return found


@pytest.fixture
def deployment(
    installed: Installed, tmp_path: Path, redis_available: str
) -> Iterator[tuple[Deployment, Mailbox, PgDatabase]]:
    db = PgDatabase()  # empty: the walk-through migrates it
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db.name}"')
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    ca = ssl.create_default_context()
    ports = (free_port(), free_port(), free_port())
    site = tmp_path / "site"
    site.mkdir()
    deployment = Deployment(installed, site, {}, *ports, ca)
    deployment.env = installed.env(
        {
            "DATABASE_URL": db.url,
            "REDIS_URL": redis_available,
            "CHAT_REDIS_PREFIX": f"{unique('prod')}:",
            "CHAT_BASE_URL": deployment.base,
            "CHAT_SECRET_KEYS": SECRET,
            "CHAT_API_KEYS": API_KEY,
            "CHAT_OPS_KEYS": OPS_KEY,
            "CHAT_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "CHAT_MAIL_FROM": "Acme Careers <careers@example.com>",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            # Reply by email (the guide's 4a), mail-in on a free loopback port.
            "CHAT_REPLY_DOMAIN": "reply.example.com",
            "CHAT_MAIL_IN_PORT": str(free_port()),
            # Only to keep the test short: emails after 1 s, looked for often.
            "CHAT_NOTIFY_DELAY_SECONDS": "1",
            "CHAT_NOTIFY_POLL_SECONDS": "0.2",
        }
    )
    try:
        yield deployment, mailbox, db
    finally:
        for name in list(deployment.processes):
            deployment.stop(name)
        smtp.stop()
        db.drop()


def test_the_production_guide_walk_through(
    deployment: tuple[Deployment, Mailbox, PgDatabase], nginx_binary: str
) -> None:
    d, mailbox, db = deployment
    guide = GUIDE.read_text()

    # 1. Installed from the wheel, outside the checkout.
    assert (d.installed.bin / "chatserver").exists()

    # 2. The settings: each refusal and warning is the line the guide quotes.
    no_secret = {k: v for k, v in d.env.items() if k != "CHAT_SECRET_KEYS"}
    refused = d.run("chatserver check", no_secret)
    assert refused.returncode == 2
    assert refused.stderr.strip().removeprefix("chatserver: ") in guide, refused.stderr
    no_redis = {k: v for k, v in d.env.items() if k != "REDIS_URL"} | {"WEB_CONCURRENCY": "2"}
    refused = d.run("chatserver check", no_redis)
    assert refused.returncode == 2
    assert refused.stderr.strip().removeprefix("chatserver: ") in guide, refused.stderr
    bare = {k: v for k, v in d.env.items() if k not in {"CHAT_API_KEYS", "CHAT_SMTP_URL"}}
    warned = d.run("chatserver check", bare)
    for line in warned.stdout.splitlines():
        if line.startswith("warning: "):
            assert line.removeprefix("warning: ").split(":")[0] in guide

    # 3. Release: migrations, quietly; then the check passes.
    migrated = d.run("chatserver migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "database is up to date (revision" in migrated.stderr
    assert "alembic" not in migrated.stderr
    checked = d.run("chatserver check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert SECRET not in checked.stdout
    assert API_KEY not in checked.stdout
    assert "warning" not in checked.stdout
    for probe in ("database", "redis", "smtp"):
        assert re.search(rf"^\s+ok  {probe}: ", checked.stdout, re.M), checked.stdout

    # 4. Web workers and a notifier.
    d.start("web", "chatserver serve --host 127.0.0.1 --port 8000 --workers 2")
    d.start("notifier", "chatserver notifier")
    local = f"http://127.0.0.1:{d.app_port}"
    eventually(lambda: _answers(f"{local}/healthz"), within=START_TIMEOUT, what="the web workers")
    # 4a. Reply by email over SMTP.
    d.start("mail", "chatserver mail-in")
    mail_in_port = int(d.env["CHAT_MAIL_IN_PORT"])
    eventually(lambda: _listening(mail_in_port), within=START_TIMEOUT, what="mail-in")

    # 5. Health.
    assert httpx.get(f"{local}/healthz").text == "ok"
    ready = httpx.get(f"{local}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"database": "ok", "broker": "ok"})
    # 11. Whichever worker a scrape reaches, /metrics counts every process.
    everyone = {
        'chat_deployment_processes{role="web"} 2.0',
        'chat_deployment_processes{role="notifier"} 1.0',
        'chat_deployment_processes{role="mail-in"} 1.0',
    }

    def scraped() -> bool:
        scrapes = [
            httpx.get(f"{local}/metrics", headers={"Authorization": f"Bearer {OPS_KEY}"})
            for _ in range(4)
        ]
        return all(everyone <= set(s.text.splitlines()) for s in scrapes)

    eventually(scraped, within=START_TIMEOUT, what="every process in /metrics")

    # 6 and 7. nginx in front, with TLS.
    certs = d.folder / "certs"
    cert, _ = _certificate(certs)
    d.ca.load_verify_locations(cert)
    nginx = d.folder / "nginx"
    for temp in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx / temp).mkdir(parents=True)
        (nginx / temp).chmod(0o777)
    (nginx / "chatserver.conf").write_text(nginx_config(d, certs, nginx))
    (nginx / "nginx.conf").write_text(
        # As root, nginx's workers would run as nobody, who cannot enter the
        # test's private temporary folders.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"""
pid {nginx}/nginx.pid;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {nginx}/access.log;
    client_body_temp_path {nginx}/client;
    proxy_temp_path {nginx}/proxy;
    fastcgi_temp_path {nginx}/fastcgi;
    uwsgi_temp_path {nginx}/uwsgi;
    scgi_temp_path {nginx}/scgi;
    include {nginx}/chatserver.conf;
}}
"""
    )
    with (d.folder / "nginx.log").open("ab") as log:
        d.processes["nginx"] = subprocess.Popen(
            [nginx_binary, "-p", str(nginx), "-c", str(nginx / "nginx.conf"),
             "-e", str(nginx / "error.log"), "-g", "daemon off;"],
            stdout=log, stderr=log,
        )  # fmt: skip
    eventually(lambda: _answers(f"{d.base}/healthz", d.ca), within=START_TIMEOUT, what="nginx")
    plain = httpx.get(f"http://127.0.0.1:{d.http_port}/inbox", follow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["location"].startswith("https://")

    asyncio.run(_chat_through_the_proxy(d, mailbox, db))


async def _chat_through_the_proxy(d: Deployment, mailbox: Mailbox, db: PgDatabase) -> None:
    org = {"id": "acme", "name": "Acme Academy"}
    async with d.client() as host:
        host.headers["Authorization"] = f"Bearer {API_KEY}"
        staff = {"org": org, "name": "Alice Recruiter", "email": "alice@acme.example"}
        assert (await host.put("/api/v1/staff/alice", json=staff)).status_code == 200
        application = {
            "org": org,
            "job": {"id": "job-7", "title": "Teacher of Physics"},
            "candidate": {"id": "cand-1", "name": "Cara Candidate", "email": "cara@mail.example"},
            "status": "interviewing",
            "applied_at": "2026-11-02T09:30:00Z",
        }
        answer = await host.put("/api/v1/applications/app-1", json=application)
        conversation = answer.json()["conversation_id"]
        link = (await host.post("/api/v1/staff/alice/login-link")).json()["url"]
    assert link.startswith(f"{d.base}/auth/staff?token=")

    async with d.client() as browser:
        # The proxy's headers reach the server: the client's address from
        # X-Forwarded-For (a documentation address, only a header here),
        # and nginx's request id in the answer and in the server's log.
        opened = await browser.get(
            httpx.URL(link).raw_path.decode(), headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert opened.status_code == 303
        request_id = opened.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id  # nginx's $request_id
        cookie = opened.headers["set-cookie"]
        assert "Secure" in cookie
        assert (await browser.get("/inbox")).status_code == 200
        assert (await browser.get("/static/app.css")).status_code == 200
        csrf = (await browser.get("/api/me")).json()["csrf_token"]
        # A 2 MiB attachment passes the proxy's body limit and comes back whole.
        content = ("Lesson plan line\n" * (2 * 1024 * 1024 // 17)).encode()
        uploaded = await browser.post(
            "/api/attachments",
            headers={"X-CSRF-Token": csrf},
            files={"file": ("plan.txt", content, "text/plain")},
        )
        assert uploaded.status_code == 201, uploaded.text
        downloaded = await browser.get(f"/api/attachments/{uploaded.json()['id']}")
        assert downloaded.content == content
        session = f"chat_session={browser.cookies['chat_session']}"

    web_log = d.log("web")
    access = [line for line in web_log.splitlines() if "uvicorn.access" in line]
    assert any(f"req={request_id} 203.0.113.9:" in line for line in access), access[-5:]
    assert "token=[redacted]" in web_log
    assert link.split("token=")[1] not in web_log
    # nginx's own log, in the guide's format: the path, never the token.
    proxy_log = (d.folder / "nginx" / "chatserver.log").read_text()
    assert '"GET /auth/staff HTTP/1.1" 303' in proxy_log, proxy_log[-500:]
    assert request_id in proxy_log
    assert "token=" not in proxy_log

    # A chat over wss:// through nginx, with the browser's Origin.
    client_id = str(uuid.uuid4())
    send = {
        "type": "send",
        "conversation": conversation,
        "client_id": client_id,
        "body": "Hello Cara, are you free on Tuesday?",
    }
    ws = await _socket(d, session)
    await ws.send(json.dumps({"type": "subscribe", "conversation": conversation, "after": 0}))
    assert (await _frame(ws, "subscribed"))["last_seq"] == 0
    await ws.send(json.dumps(send))
    ack = await _frame(ws, "ack")
    assert ack["message"]["seq"] == 1

    # The notifier emails Cara (offline) over SMTP, with a link to the public address.
    await eventually_async(
        lambda: bool(mailbox.messages),
        within=EMAIL_TIMEOUT,
        what=lambda: d.log("notifier")[-3000:],
    )
    email = mailbox.messages[0].decode(errors="replace")
    assert "cara@mail.example" in email
    assert f"{d.base}/auth/candidate?token=" in email.replace("=\r\n", "").replace("=3D", "=")

    # 8. A deploy: SIGTERM closes the socket with 1012 through the proxy...
    d.processes["web"].send_signal(signal.SIGTERM)
    code = await _close_code(ws)
    assert code == 1012
    assert d.stop("web") in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in d.log("web")
    # ...the new version starts, and the client resumes and retries.
    d.start("web", "chatserver serve --host 127.0.0.1 --port 8000 --workers 2")
    await asyncio.to_thread(
        eventually,
        lambda: _answers(f"{d.base}/readyz", d.ca),
        within=START_TIMEOUT,
        what="the new workers",
    )
    ws = await _socket(d, session)
    await ws.send(json.dumps({"type": "subscribe", "conversation": conversation, "after": 1}))
    assert (await _frame(ws, "subscribed"))["last_seq"] == 1
    await ws.send(json.dumps(send))  # the unacknowledged send, again
    again = await _frame(ws, "ack")
    assert again["message"]["id"] == ack["message"]["id"]
    await ws.close()
    with psycopg.connect(db.url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation,)
        ).fetchone()
    assert count == (1,)

    # Cara answers the email from her mail program: the reply goes through
    # mail-in, without its quoted history, and reaches Alice's socket live.
    received = message_from_bytes(mailbox.messages[0], policy=policy.default)
    reply_to = str(received["Reply-To"])
    assert re.fullmatch(r"reply\+[a-z2-7]{45}@reply\.example\.com", reply_to), reply_to
    ws = await _socket(d, session)
    await ws.send(json.dumps({"type": "subscribe", "conversation": conversation, "after": 1}))
    assert (await _frame(ws, "subscribed"))["last_seq"] == 1
    reply = EmailMessage()
    reply["From"] = "Cara Candidate <cara@mail.example>"
    reply["To"] = reply_to
    reply["Subject"] = f"Re: {received['Subject']}"
    reply["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    reply.set_content(
        "Yes, Tuesday works.\n\nOn Tue, 1 Dec 2026, Acme Careers wrote:\n"
        "> Hello Cara, are you free on Tuesday?\n"
    )
    await asyncio.to_thread(_send_mail, int(d.env["CHAT_MAIL_IN_PORT"]), reply)
    posted = (await _frame(ws, "message"))["message"]
    assert (posted["seq"], posted["body"], posted["via"]) == (2, "Yes, Tuesday works.", "email")
    assert posted["sender"] == {"kind": "candidate", "id": "cand-1", "name": "Cara Candidate"}
    await ws.close()
    assert d.stop("mail") == 0
    token = reply_to.split("@")[0].removeprefix("reply+")
    for name in ("web", "notifier", "mail"):
        assert token not in d.log(name).lower(), name

    # The notifier finishes and exits on SIGTERM.
    assert d.stop("notifier") == 0

    # One log format for every process, and no sign-in token in any line.
    line_format = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ (web|notifier|mail-in)\[\d+\] \S+ req=\S+ "
    )
    for name in ("web", "notifier", "mail"):
        for line in d.log(name).splitlines():
            assert line_format.match(line), f"{name}: {line}"

    # Every `chatserver` command of the guide was run as written.
    assert set(guide_commands()) <= set(d.ran), set(guide_commands()) - set(d.ran)


def _send_mail(port: int, message: EmailMessage) -> None:
    """Over SMTP to mail-in, as the sending mail server would."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.send_message(message)


async def _close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the socket; its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def _socket(d: Deployment, cookie: str) -> ClientConnection:
    return await connect(
        f"wss://127.0.0.1:{d.tls_port}/ws",
        ssl=d.ca,
        origin=d.base,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )


async def _frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of `kind`, skipping others (message copies, bell)."""
    frame: dict[str, Any]
    async with asyncio.timeout(15):
        while (frame := json.loads(await ws.recv()))["type"] != kind:
            assert frame["type"] != "error", frame
    return frame


def test_the_guide_names_a_command_for_each_process() -> None:
    commands = guide_commands()
    for expected in (
        "chatserver migrate",
        "chatserver check",
        "chatserver notifier",
        "chatserver mail-in",
    ):
        assert expected in commands
    assert any(c.startswith("chatserver serve ") for c in commands)
    procfile = (GUIDE.parents[1] / "Procfile").read_text()
    for process in ("release:", "web:", "notifier:", "mail:"):
        assert process in procfile
