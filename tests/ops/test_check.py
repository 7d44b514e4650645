"""`chatserver check`: the effective configuration with every secret masked,
and a probe of the database, Redis and SMTP that fails loudly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import SECRET, create_database, drop_database, pg_url
from tests.e2e.servers import free_port, unique
from tests.ops.cli import run_cli

pytestmark = pytest.mark.slow


class _Quiet:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    port = free_port()
    controller = Controller(_Quiet(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def database(pg_template: str) -> Iterator[str]:
    name = unique("chat_check")
    create_database(name, template=pg_template)
    try:
        yield pg_url(name)
    finally:
        drop_database(name)


def _probe_line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.split()[1:2] == [f"{name}:"])


def test_check_prints_the_configuration_masked_and_probes_every_service(
    tmp_path: Path, database: str, redis_available: str, smtp_port: int
) -> None:
    env = {
        "DATABASE_URL": database.replace("postgres@", "postgres:pg-password-1@"),
        "REDIS_URL": redis_available,
        "CHAT_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "CHAT_SECRET_KEYS": SECRET,
        "CHAT_API_KEYS": "host-api-key-0001",
        "CHAT_BASE_URL": "https://chat.example",
    }
    result = run_cli(["check"], tmp_path, env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for secret in (SECRET, "host-api-key-0001", "pg-password-1"):
        assert secret not in out
    assert "CHAT_SECRET_KEYS" in out
    assert "1 set (masked)" in out
    assert "https://chat.example" in out
    # Unset, the allowed origins are the base URL's, not none.
    [origins] = [line for line in out.splitlines() if "CHAT_ALLOWED_ORIGINS" in line]
    assert origins.split() == [
        "CHAT_ALLOWED_ORIGINS",
        "https://chat.example",
        "(CHAT_BASE_URL's",
        "origin)",
    ]
    for name in ("database", "redis", "smtp"):
        assert _probe_line(out, name).startswith("  ok"), out
    assert "warning" not in out


def test_check_fails_on_each_service_that_does_not_answer(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/chat",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "CHAT_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
        "CHAT_SECRET_KEYS": SECRET,
    }
    result = run_cli(["check"], tmp_path, env)
    assert result.returncode == 1
    for name, variable in (
        ("database", "DATABASE_URL"),
        ("redis", "REDIS_URL"),
        ("smtp", "CHAT_SMTP_URL"),
    ):
        line = _probe_line(result.stdout, name)
        assert line.startswith("FAIL"), line
        assert variable in line
    # Production without API keys is warned about.
    assert "warning: CHAT_API_KEYS is empty" in result.stdout


def test_check_on_the_embedded_default_needs_nothing_else(tmp_path: Path) -> None:
    result = run_cli(["check"], tmp_path)
    assert result.returncode == 1  # the SQLite file is not migrated yet
    assert "run `chatserver migrate`" in result.stdout
    assert run_cli(["migrate"], tmp_path).returncode == 0
    result = run_cli(["check"], tmp_path)
    assert result.returncode == 0, result.stdout
    assert _probe_line(result.stdout, "redis").startswith("skip  redis: not configured")
    assert _probe_line(result.stdout, "smtp").startswith("skip  smtp: not configured")
