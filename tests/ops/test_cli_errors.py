"""Every configuration mistake is one line on stderr that names the setting
and the fix, and a non-zero exit: tried as an operator would, by running
`chatserver` with the wrong environment."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SECRET, create_database, drop_database, pg_url
from tests.e2e.servers import free_port, unique
from tests.notify.mailin import self_signed
from tests.ops.cli import CLI_TIMEOUT, clean_env, run_cli

pytestmark = pytest.mark.slow

GOOD = {"CHAT_SECRET_KEYS": SECRET}
# The commands that start on a database (`check` reports it among others).
COMMANDS_ON_A_DATABASE = ("migrate", "serve", "notifier", "mail-in")


def _dead_port() -> int:
    """A loopback port where nothing listens (and nothing will soon)."""
    return free_port()


def _one_line_naming(result: object, setting: str) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert result.returncode != 0, stderr  # type: ignore[attr-defined]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("chatserver: ")
    assert setting in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("command", "env", "setting", "fix"),
    [
        (["serve"], {"PORT": "eighty"}, "PORT", "PORT=8000"),
        (["notifier"], {"CHAT_DIGEST_HOUR": "seven"}, "CHAT_DIGEST_HOUR", "CHAT_DIGEST_HOUR=7"),
        (["serve"], {"CHAT_DIGEST_HOUR": "25"}, "CHAT_DIGEST_HOUR", "0 to 23"),
        (["notifier"], {"CHAT_UNSENT_UPLOAD_DAYS": "0"}, "CHAT_UNSENT_UPLOAD_DAYS", "from 1 to"),
        (["notifier"], {"CHAT_UNSENT_UPLOAD_DAYS": "nan"}, "CHAT_UNSENT_UPLOAD_DAYS", "not nan"),
        (["serve"], {"CHAT_UNSENT_UPLOAD_DAYS": "inf"}, "CHAT_UNSENT_UPLOAD_DAYS", "not inf"),
        (["notifier"], {"CHAT_UNSENT_UPLOAD_DAYS": "1e9"}, "CHAT_UNSENT_UPLOAD_DAYS", "36500"),
        (["serve"], {"WEB_CONCURRENCY": "2"}, "REDIS_URL", "--workers 1"),
        (["serve"], {"CHAT_API_KEYS": "key-one;key-two"}, "CHAT_API_KEYS", "commas"),
        (
            ["check"],
            {"CHAT_SECRET_KEYS": "a-long-secret-1;b-long-secret-2"},
            "CHAT_SECRET_KEYS",
            "commas",
        ),
        (
            ["migrate"],
            {"DATABASE_URL": "mysql://chat:pw@db/chat", **GOOD},
            "DATABASE_URL",
            "postgresql://",
        ),
        (["serve"], {"DATABASE_URL": "postgresql://db/chat"}, "CHAT_SECRET_KEYS", "random secret"),
        (
            ["demo"],
            {"DATABASE_URL": "postgresql://chat:pw@db/chat", **GOOD},
            "DATABASE_URL",
            "embedded default only",
        ),
        (
            ["migrate"],
            {"DATABASE_URL": "postgresql://chat:pw@db:five/chat", **GOOD},
            "DATABASE_URL",
            "postgresql://user:password@host:5432/name",
        ),
        (["serve"], {"CHAT_LOG_FORMAT": "xml"}, "CHAT_LOG_FORMAT", "text, json"),
        (["serve"], {"CHAT_BASE_URL": "chat.example"}, "CHAT_BASE_URL", "https://"),
        (["serve", "--port", "0"], {}, "PORT", "1 to 65535"),
        (["mail-in", "--port", "0"], {}, "CHAT_MAIL_IN_PORT", "1 to 65535"),
        (["mail-in"], {"CHAT_MAIL_IN_PORT": "smtp"}, "CHAT_MAIL_IN_PORT", "CHAT_MAIL_IN_PORT=2525"),
        (
            ["mail-in"],
            {"CHAT_MAIL_MAX_BYTES": "25MB"},
            "CHAT_MAIL_MAX_BYTES",
            "CHAT_MAIL_MAX_BYTES=26214400",
        ),
        (["mail-in", "--host", "0.0.0.0"], {}, "CHAT_SECRET_KEYS", "loopback --host"),
        (
            ["mail-in"],
            {"CHAT_MAIL_IN_TLS_KEY": "/etc/mail/key.pem"},
            "CHAT_MAIL_IN_TLS_CERT",
            "set the certificate chain's PEM file too",
        ),
        (["mail-in"], {}, "CHAT_REPLY_DOMAIN", "exist only with CHAT_REPLY_DOMAIN"),
        (
            ["serve"],
            {"CHAT_REPLY_DOMAIN": "https://reply.example.com"},
            "CHAT_REPLY_DOMAIN",
            "no @, scheme or port",
        ),
    ],
)
def test_a_wrong_setting_is_one_line_that_names_it(
    tmp_path: Path, command: list[str], env: dict[str, str], setting: str, fix: str
) -> None:
    result = run_cli(command, tmp_path, env)
    line = _one_line_naming(result, setting)
    assert fix in line
    assert result.returncode == 2
    assert "pw@" not in line  # a password never reaches the terminal


@pytest.mark.parametrize("command", [["migrate"], ["serve"], ["notifier"]])
def test_a_dead_database_is_named_with_its_variable(tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql://chat:db-pass@127.0.0.1:{_dead_port()}/chat"
    result = run_cli(command, tmp_path, {"DATABASE_URL": url, **GOOD})
    line = _one_line_naming(result, "DATABASE_URL")
    assert result.returncode == 1
    assert "db-pass" not in line
    assert "refused" in line.lower() or "connect" in line.lower()
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["serve"], ["notifier"]])
def test_an_unmigrated_database_says_to_migrate(tmp_path: Path, command: list[str]) -> None:
    name = unique("chat_unmigrated")
    create_database(name)
    try:
        result = run_cli(command, tmp_path, {"DATABASE_URL": pg_url(name), **GOOD})
    finally:
        drop_database(name)
    line = _one_line_naming(result, "chatserver migrate")
    assert "revision none" in line
    assert result.returncode == 1


def test_a_database_migrated_by_a_newer_version_is_named_as_such(tmp_path: Path) -> None:
    """Rolling back to this version after a newer one migrated: every
    command says what happened, and `migrate` too (alembic alone says only
    that it cannot locate the revision)."""
    name = unique("chat_newer")
    create_database(name)
    env = {"DATABASE_URL": pg_url(name), "CHAT_REPLY_DOMAIN": "reply.localhost", **GOOD}
    try:
        assert run_cli(["migrate"], tmp_path, env).returncode == 0
        with psycopg.connect(pg_url(name), autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        results = {command: run_cli([command], tmp_path, env) for command in COMMANDS_ON_A_DATABASE}
        checked = run_cli(["check"], tmp_path, env)
    finally:
        drop_database(name)
    for command, result in results.items():
        line = _one_line_naming(result, "9999_from_the_future")
        assert "a newer chatserver migrated it" in line, command
        assert result.returncode == 1, command
        assert "Traceback" not in result.stderr, command
    assert checked.returncode == 1
    assert "FAIL  database: " in checked.stdout
    assert "a newer chatserver migrated it" in checked.stdout


def test_migrations_run_at_once_take_turns(tmp_path: Path) -> None:
    """A release step on every pod: three `chatserver migrate` started
    together on a new database all succeed, one after the other."""
    name = unique("chat_racing")
    create_database(name)
    env = clean_env({"DATABASE_URL": pg_url(name), **GOOD})
    try:
        racing = [
            subprocess.Popen(
                [sys.executable, "-m", "chatserver", "migrate"],
                cwd=tmp_path,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outcomes = [(p.wait(timeout=CLI_TIMEOUT), p.communicate()[1]) for p in racing]
    finally:
        drop_database(name)
    for status, stderr in outcomes:
        assert status == 0, stderr
        assert "database is up to date (revision" in stderr


@pytest.mark.parametrize(("command", "workers"), [("serve", "1"), ("serve", "2"), ("demo", "1")])
def test_a_port_in_use_is_one_line_with_status_1(
    tmp_path: Path, command: str, workers: str
) -> None:
    """Before anything else: the demo seeds nothing and prints no links."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"WEB_CONCURRENCY": workers, "REDIS_URL": "redis://127.0.0.1:6379/0"}
        if command == "demo":
            env = {}
        result = run_cli([command, "--port", str(port)], tmp_path, env)
    assert result.stdout == ""
    line = _one_line_naming(result, "PORT")
    assert result.returncode == 1
    assert line.startswith(
        f"chatserver: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
    assert "Traceback" not in result.stderr


def test_mail_in_on_a_port_in_use_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            ["mail-in", "--port", str(port)], tmp_path, {"CHAT_REPLY_DOMAIN": "reply.localhost"}
        )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"chatserver: mail-in cannot listen on 127.0.0.1:{port} "), last
    assert "CHAT_MAIL_IN_PORT" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"CHAT_MAIL_IN_TLS_CERT": "missing.pem"}, "No such file or directory"),
        ({"CHAT_MAIL_IN_TLS_CERT": "not-pem.txt"}, "not a PEM certificate chain"),
        (
            {"CHAT_MAIL_IN_TLS_CERT": "cert.pem", "CHAT_MAIL_IN_TLS_KEY": "other-key.pem"},
            "the key does not match the certificate",
        ),
    ],
    ids=["missing", "not-pem", "wrong-key"],
)
def test_mail_in_with_an_unusable_certificate_fails_with_one_line(
    tmp_path: Path, files: dict[str, str], reason: str
) -> None:
    self_signed(tmp_path, "cert.pem", "key.pem")
    self_signed(tmp_path, "other-cert.pem", "other-key.pem")
    (tmp_path / "not-pem.txt").write_text("a certificate, honestly\n")
    env = {name: str(tmp_path / file) for name, file in files.items()}
    command = ["mail-in", "--port", str(free_port())]
    result = run_cli(command, tmp_path, {"CHAT_REPLY_DOMAIN": "reply.localhost", **env})
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("chatserver: mail-in cannot use its TLS certificate ("), last
    assert reason in last
    assert "CHAT_MAIL_IN_TLS_CERT" in last
    assert "Traceback" not in result.stderr


def test_migrations_are_quiet_unless_asked(tmp_path: Path) -> None:
    quiet = run_cli(["migrate"], tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "database is up to date (revision" in lines[0]
    verbose = run_cli(["migrate", "--verbose"], tmp_path / "verbose")
    assert verbose.returncode == 0
    assert "Running upgrade" in verbose.stderr
    by_level = run_cli(["migrate"], tmp_path / "debug", {"CHAT_LOG_LEVEL": "debug"})
    assert "Running upgrade" in by_level.stderr
