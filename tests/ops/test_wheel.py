"""`pip install` of the wheel gives a server that starts: the pages'
templates and static files travel in the wheel and are found through the
installed package, from any folder."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import REPO, ServerProcess, free_port
from tests.ops.wheel import Installed

pytestmark = pytest.mark.slow


def test_the_wheel_carries_templates_static_files_and_migrations(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for folder in ("static", "templates"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file():
                assert f"chatserver/{path.relative_to(REPO)}" in names, path
    assert any(n.startswith("chatserver/migrations/versions/") for n in names)
    assert "chatserver/notify/templates/digest.txt" in names


def test_the_installed_server_migrates_serves_pages_static_files_and_health(
    installed: Installed, tmp_path: Path
) -> None:
    here = tmp_path / "site"  # an operator's folder, nowhere near the checkout
    here.mkdir()
    env = installed.env()
    located = subprocess.run(
        [str(installed.bin / "python"), "-c", "import chatserver; print(chatserver.__file__)"],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert located.startswith(str(installed.venv)), located
    migrated = subprocess.run(
        [str(installed.bin / "chatserver"), "migrate"],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "database is up to date" in migrated.stderr
    port = free_port()
    server = ServerProcess(here, database_url="", redis_url="", prefix="", port=port)
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(
            [str(installed.bin / "chatserver"), "serve", "--port", str(port)],
            cwd=here,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            page = client.get("/")
            assert page.status_code == 200, page.text
            assert "<html" in page.text.lower()
            css = client.get("/static/app.css")
            assert css.status_code == 200
            assert css.text == (REPO / "static" / "app.css").read_text()
            assert client.get("/static/js/socket.js").status_code == 200
            health = client.get("/healthz")
            assert (health.status_code, health.text) == (200, "ok")
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text()
