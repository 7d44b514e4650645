"""Issue 9 items 7 and 10: what the server exposes and to whom.

`/dev/*` (the demo's sign-in page and mailbox, which sign anyone in as
anyone) exists only under `chatserver demo`; the public development secret
is refused whenever the server is reachable beyond this machine; the CSP
lets pages connect to this origin only.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chatserver.app import create_app
from chatserver.cli import main
from chatserver.settings import DEFAULT_SECRET, Settings, SettingsError
from chatserver.web.headers import content_security_policy

DEV_PATHS = ("/dev/sign-in", "/dev/mailbox", "/dev/sign-in/staff/x", "/dev/sign-in/application/x")


async def dev_statuses(settings: Settings) -> list[int]:
    app = create_app(settings, run_notifier=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return [(await c.get(path)).status_code for path in DEV_PATHS[:2]]


async def test_dev_routes_exist_only_under_chatserver_demo(
    settings: Settings, backend: str
) -> None:
    """Plain `serve` on the embedded default (the reported case) and any
    production deployment answer 404; only the demo mounts them, and the
    demo refuses a production database outright."""
    assert await dev_statuses(settings) == [404, 404]
    demo = settings.with_(demo_mode=True)
    if backend == "embedded":
        assert await dev_statuses(demo) == [200, 200]
    else:
        with pytest.raises(SettingsError, match="unset DATABASE_URL"):
            demo.validate()
        assert not demo.dev_routes


def loopback(**changes: object) -> Settings:
    return Settings(data_dir=Path("unused")).with_(**changes)


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://127.0.0.1:8000"),
        ("192.0.2.10", "http://127.0.0.1:8000"),
        ("chat.example", "http://127.0.0.1:8000"),
        ("127.0.0.1", "https://chat.example"),
        ("127.0.0.1", "http://203.0.113.5:8000"),
        ("localhost", "http://chat.local:8000"),
    ],
)
def test_the_development_secret_is_refused_beyond_loopback(host: str, base_url: str) -> None:
    with pytest.raises(SettingsError, match="CHAT_SECRET_KEYS"):
        loopback(host=host, base_url=base_url).validate()
    # With a real secret the same deployment starts (SQLite or not).
    loopback(host=host, base_url=base_url, secret_keys=("a-real-secret-0123456789",)).validate()


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("localhost", "http://localhost:8000"),
        ("::1", "http://[::1]:8000"),
        ("127.0.0.2", "http://127.0.0.1:9000"),
    ],
)
def test_the_development_secret_is_fine_on_loopback(host: str, base_url: str) -> None:
    settings = loopback(host=host, base_url=base_url)
    assert settings.secret_keys == (DEFAULT_SECRET,)
    settings.validate()


def test_serve_refuses_a_public_bind_with_the_development_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("DATABASE_URL", "CHAT_SECRET_KEYS", "CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "CHAT_SECRET_KEYS" in capsys.readouterr().err
    monkeypatch.setenv("CHAT_BASE_URL", "https://chat.example")
    assert main(["serve"]) == 2
    assert main(["demo"]) == 2


def test_pages_may_connect_to_this_origin_only() -> None:
    csp = content_security_policy(Settings(base_url="https://chat.example"))
    [connect] = [d for d in csp.split("; ") if d.startswith("connect-src")]
    assert connect == "connect-src 'self' wss://chat.example"
    local = content_security_policy(Settings(base_url="http://127.0.0.1:8000"))
    assert "connect-src 'self' ws://127.0.0.1:8000;" in local
    for directive in (csp, local):
        assert " ws: " not in f"{directive} "
        assert " wss: " not in f"{directive} "


async def test_every_response_carries_that_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    csp = response.headers["content-security-policy"]
    assert "connect-src 'self' ws://testserver;" in csp
