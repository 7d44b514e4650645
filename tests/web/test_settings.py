"""SPEC section 8: settings come from the environment, and unsafe or
unworkable configurations are refused before the service starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatserver.settings import DEFAULT_SECRET, Settings, SettingsError, normalise_database_url

PG = "postgres://u:p@db.example:5432/chat"
GOOD_SECRET = "a-long-random-production-secret"


def test_no_configuration_is_the_embedded_default() -> None:
    settings = Settings.from_env({})
    settings.validate()
    assert settings.embedded
    assert not settings.production
    assert settings.sqlalchemy_url == "sqlite+aiosqlite:///data/chatserver.db"
    assert settings.redis_url == ""
    assert settings.port == 8000
    assert settings.workers == 1
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.secret_keys == (DEFAULT_SECRET,)
    assert settings.api_keys == ()
    assert settings.origins == ("http://127.0.0.1:8000",)
    assert settings.notify_delay_seconds == 120
    assert settings.digest_hour == 7
    assert (settings.send_rate, settings.send_burst) == (2, 20)
    assert settings.max_connections_per_user == 20
    assert settings.attachments_dir == Path("data/attachments")
    assert settings.outbox_dir == Path("data/outbox")
    assert not settings.secure_cookies


def test_lists_are_comma_separated_and_trimmed() -> None:
    settings = Settings.from_env(
        {
            "CHAT_API_KEYS": " key-one, key-two ,,",
            "CHAT_SECRET_KEYS": "new-secret,old-secret",
            "CHAT_ALLOWED_ORIGINS": "https://ats.example, https://chat.example",
        }
    )
    assert settings.api_keys == ("key-one", "key-two")
    assert settings.secret_keys == ("new-secret", "old-secret")
    assert settings.origins == ("https://ats.example", "https://chat.example")


def test_every_documented_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": PG,
            "REDIS_URL": "redis://cache:6379/1",
            "PORT": "9000",
            "WEB_CONCURRENCY": "4",
            "CHAT_BASE_URL": "https://chat.example/",
            "CHAT_SECRET_KEYS": GOOD_SECRET,
            "CHAT_SMTP_URL": "smtp://mail:25",
            "CHAT_MAIL_FROM": "Chat <chat@example.org>",
            "CHAT_NOTIFY_DELAY_SECONDS": "30",
            "CHAT_DIGEST_HOUR": "18",
            "CHAT_ATTACHMENTS_DIR": "/srv/files",
            "CHAT_OUTBOX_DIR": "/srv/outbox",
            "CHAT_SEND_RATE": "5",
            "CHAT_SEND_BURST": "50",
            "CHAT_MAX_CONNECTIONS_PER_USER": "3",
        }
    )
    settings.validate()
    assert settings.production
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db.example:5432/chat"
    assert settings.redis_url == "redis://cache:6379/1"
    assert (settings.port, settings.workers) == (9000, 4)
    assert settings.base_url == "https://chat.example"
    assert settings.origins == ("https://chat.example",)
    assert settings.secure_cookies
    assert (settings.smtp_url, settings.mail_from) == ("smtp://mail:25", "Chat <chat@example.org>")
    assert (settings.notify_delay_seconds, settings.digest_hour) == (30, 18)
    assert settings.attachments_dir == Path("/srv/files")
    assert settings.outbox_dir == Path("/srv/outbox")
    assert (settings.send_rate, settings.send_burst) == (5, 50)
    assert settings.max_connections_per_user == 3


def test_the_base_url_port_follows_port() -> None:
    assert Settings.from_env({"PORT": "5001"}).base_url == "http://127.0.0.1:5001"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://h/db", "postgresql+psycopg://h/db"),
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg2://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite:///tmp/chat.db", "sqlite+aiosqlite:///tmp/chat.db"),
    ],
)
def test_database_urls_get_an_async_driver(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_production_refuses_a_missing_or_default_secret() -> None:
    for secrets in ({}, {"CHAT_SECRET_KEYS": DEFAULT_SECRET}, {"CHAT_SECRET_KEYS": " , "}):
        settings = Settings.from_env({"DATABASE_URL": PG, **secrets})
        with pytest.raises(SettingsError, match="CHAT_SECRET_KEYS"):
            settings.validate()
    rotated_to_default = Settings.from_env(
        {"DATABASE_URL": PG, "CHAT_SECRET_KEYS": f"{GOOD_SECRET},{DEFAULT_SECRET}"}
    )
    with pytest.raises(SettingsError, match="CHAT_SECRET_KEYS"):
        rotated_to_default.validate()
    short = Settings.from_env({"DATABASE_URL": PG, "CHAT_SECRET_KEYS": "short"})
    with pytest.raises(SettingsError, match="16 characters"):
        short.validate()


def test_an_sqlite_database_url_is_still_embedded() -> None:
    settings = Settings.from_env({"DATABASE_URL": "sqlite:///tmp/chat.db"})
    settings.validate()
    assert settings.embedded
    assert not settings.production


def test_several_workers_need_redis() -> None:
    settings = Settings.from_env({"WEB_CONCURRENCY": "2"})
    with pytest.raises(SettingsError, match="REDIS_URL"):
        settings.validate()
    Settings.from_env({"WEB_CONCURRENCY": "2", "REDIS_URL": "redis://r"}).validate()


@pytest.mark.parametrize("hour", ["-1", "24"])
def test_the_digest_hour_is_an_hour_of_the_day(hour: str) -> None:
    with pytest.raises(SettingsError, match="CHAT_DIGEST_HOUR"):
        Settings.from_env({"CHAT_DIGEST_HOUR": hour}).validate()
