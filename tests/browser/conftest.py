"""Browser tests: a real `chatserver serve` process on a free loopback port,
driven by Debian's Chromium through Playwright.

The server runs as a subprocess (not in the test's event loop) so that a
test can kill and restart it like an operator would, and so Playwright's
synchronous API has the loop to itself. Each test makes its own people and
applications with unique ids, so tests share one server per module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from scripts.load.processes import free_port
from tests.helpers import eventually

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVE = [sys.executable, "-m", "chatserver", "serve", "--host", "127.0.0.1"]
API_KEY = "browser-test-api-key"
SECRET = "browser-test-secret-0123456789abcdef"
# Generous: a loaded CI machine can take many seconds to import and migrate.
STARTUP_SECONDS = 60.0
ROOT = Path(__file__).resolve().parents[2]
# The tracked screenshots in docs/ are refreshed only on request
# (`scripts/screenshots` sets this to docs/screenshots); a plain test run
# writes its screenshots to a temporary folder, so it never dirties the tree.
SCREENSHOTS_ENV = "CHAT_TEST_SCREENSHOTS_DIR"
# Generous for a loaded CI machine; a live update normally lands in < 100 ms.
LIVE_MS = 10_000

T = TypeVar("T")


class Server:
    """`python -m chatserver serve` with its own data folder and port."""

    # Those running now: a failed test's report ends with their logs.
    running: set[Server] = set()

    def __init__(
        self,
        data_dir: Path,
        extra_env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.command = command or SERVE
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "CHAT_BASE_URL": self.url,
            "CHAT_DATA_DIR": str(data_dir),
            "CHAT_API_KEYS": API_KEY,
            "CHAT_SECRET_KEYS": SECRET,
            "CHAT_SEND_RATE": "1000",
            "CHAT_SEND_BURST": "1000",
            "CHAT_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        Server.running.add(self)
        try:
            eventually(self._answers, within=STARTUP_SECONDS, what="the server answering")
        except AssertionError as exc:
            raise RuntimeError(f"{exc}: {self.log.read_text()[-2000:]}") from None

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/", timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    def log_tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:]

    def stacks(self) -> str:
        """What every thread of the server is doing now (py-spy), for the
        report of a test that found it not answering: with native frames
        (a thread inside SQLite shows whether it waits for a lock) and
        locals (which statement it runs)."""
        if self.process is None or self.process.poll() is not None:
            return "(not running)"
        spy = Path(sys.executable).with_name("py-spy")
        try:
            dump = subprocess.run(
                [str(spy), "dump", "--native", "--locals", "--pid", str(self.process.pid)],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(py-spy failed: {exc})"
        return dump.stdout + dump.stderr

    def stop(self) -> None:
        Server.running.discard(self)
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """A crash: no graceful close frames, sockets just drop."""
        Server.running.discard(self)
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class Ats:
    """The host ATS, over the integration API of the running server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.tag = uuid.uuid4().hex[:6]

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = httpx.request(
            method,
            f"{self.server.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def staff(
        self, name: str, *, org: str = "org", timezone: str = "UTC", ops: bool = False
    ) -> str:
        """A staff member (`ops`: an operator, who may open /ops)."""
        staff_id = f"{name.split()[0].lower()}-{self.tag}"
        self._call(
            "PUT",
            f"/api/v1/staff/{staff_id}",
            {
                "org": {"id": f"{org}-{self.tag}", "name": "Northfield Academy"},
                "name": name,
                "email": f"{staff_id}@school.example",
                "timezone": timezone,
                "ops": ops,
            },
        )
        return staff_id

    def application(
        self,
        key: str,
        candidate: str,
        *,
        job: str = "Teacher of Mathematics",
        status: str = "interviewing",
        org: str = "org",
        applied_at: str = "2026-11-02T09:30:00Z",
    ) -> Application:
        application_id = f"{key}-{self.tag}"
        first = unicodedata.normalize("NFKD", candidate.split()[0].lower())
        candidate_id = f"{first.encode('ascii', 'ignore').decode()}-{self.tag}"
        # Ids are ASCII letters, digits and -; a title may be "Lehrer für Musik (Teilzeit)".
        ascii_title = unicodedata.normalize("NFKD", job.lower()).encode("ascii", "ignore").decode()
        job_slug = re.sub(r"[^a-z0-9]+", " ", ascii_title).strip()
        result = self._call(
            "PUT",
            f"/api/v1/applications/{application_id}",
            {
                "org": {"id": f"{org}-{self.tag}", "name": "Northfield Academy"},
                "job": {"id": f"job-{job_slug.replace(' ', '-')}-{self.tag}", "title": job},
                "candidate": {
                    "id": candidate_id,
                    "name": candidate,
                    "email": f"{candidate_id}@mail.example",
                },
                "status": status,
                "applied_at": applied_at,
            },
        )
        return Application(application_id, str(result["conversation_id"]), candidate_id)

    def set_status(self, app: Application, candidate: str, status: str, **kw: Any) -> None:
        self.application(app.id.rsplit("-", 1)[0], candidate, status=status, **kw)

    def staff_says(self, staff_id: str, conversation: str, *texts: str) -> None:
        """A colleague writing from another browser, through the session API."""
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            client.get(self.staff_link(staff_id), follow_redirects=True)
            csrf = client.get("/api/me").json()["csrf_token"]
            for text in texts:
                response = client.post(
                    f"/api/conversations/{conversation}/messages",
                    json={"client_id": str(uuid.uuid4()), "body": text},
                    headers={"X-CSRF-Token": csrf},
                )
                assert response.status_code == 201, response.text

    def remove_staff(self, staff_id: str) -> None:
        """`DELETE /api/v1/staff/{id}`: the staff member left."""
        response = httpx.delete(
            f"{self.server.url}/api/v1/staff/{staff_id}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        assert response.status_code == 204, response.text

    def staff_link(self, staff_id: str) -> str:
        return str(self._call("POST", f"/api/v1/staff/{staff_id}/login-link")["url"])

    def candidate_link(self, application_id: str) -> str:
        return str(
            self._call("POST", f"/api/v1/applications/{application_id}/candidate-link")["url"]
        )


@dataclass
class Application:
    id: str
    conversation: str
    candidate_id: str


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "screenshots: takes the docs' screenshots")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take screenshots are marked, so `scripts/screenshots` runs just them."""
    for item in items:
        if "screenshots" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.screenshots)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed browser test's report ends with what its servers logged
    (warnings and errors) and where their threads are, so a stalled or
    failing server explains itself."""
    report = yield
    if report.failed:
        for server in Server.running:
            report.sections.append((f"server log ({server.url})", server.log_tail()))
            report.sections.append((f"server stacks ({server.url})", server.stacks()))
    return report


# Module scope, not session: sync Playwright keeps an event loop running in
# this thread while it is started, which the asyncio tests that follow a
# browser module cannot share.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: apt-get install -y chromium", pytrace=False
        )
    expect.set_options(timeout=LIVE_MS)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("server"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def ats(server: Server) -> Ats:
    return Ats(server)


class Browsers:
    """Opens a signed-in page per person, each in its own browser context."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def open(
        self,
        url: str,
        *,
        timezone: str = "UTC",
        width: int = 1280,
        height: int = 800,
        mobile: bool = False,
        locale: str = "en-GB",
    ) -> Page:
        context = self.browser.new_context(
            viewport={"width": width, "height": height},
            timezone_id=timezone,
            locale=locale,
            is_mobile=mobile,
            has_touch=mobile,
            device_scale_factor=2 if mobile else 1,
        )
        context.set_default_timeout(LIVE_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.goto(url)
        return page

    def staff_at(self, ats: Ats, staff_id: str, app: Application, **options: Any) -> Page:
        """A staff member's page with `app`'s conversation open (`options`
        as for `open`)."""
        page = self.open(ats.staff_link(staff_id), **options)
        page.goto(f"{ats.server.url}/c/{app.conversation}")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsers(browser: Browser) -> Iterator[Browsers]:
    b = Browsers(browser)
    yield b
    b.close()
    assert b.errors == [], "script errors on the pages"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' screenshots go: a temporary folder, or the folder
    named by CHAT_TEST_SCREENSHOTS_DIR (scripts/screenshots)."""
    wanted = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def seqs(page: Page) -> list[int]:
    """The seqs of the stored messages the page shows, top to bottom."""
    found = page.locator('[data-testid="message"][data-seq]').evaluate_all(
        "els => els.map(e => Number(e.dataset.seq))"
    )
    return [int(seq) for seq in found]


def handled(page: Page, check: Callable[[], T | None], *, what: str) -> T:
    """`eventually`, for what a route handler records: Playwright's
    synchronous API runs handlers only while the test is inside one of its
    calls, so this waits in `wait_for_timeout` (a sleeping thread would
    run nothing)."""
    return eventually(
        check, within=LIVE_MS / 1000, what=what, pause=lambda s: page.wait_for_timeout(s * 1000)
    )


def said(region: Locator, *lines: str) -> None:
    """Wait until the live region `region` (static/js/live-region.js) has
    said exactly `lines`, oldest first: its words are in a closed shadow
    root, out of reach of locators, and listed in its `data-said`."""
    expect(region).to_have_attribute(
        "data-said", json.dumps(list(lines), separators=(",", ":"), ensure_ascii=False)
    )
