"""SPEC section 8: settings come from the environment, and unsafe or
unworkable configurations are refused before the service starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


NUMBERS = [
    "PORT",
    "WEB_CONCURRENCY",
    "CHAT_DIGEST_HOUR",
    "CHAT_NOTIFY_DELAY_SECONDS",
    "CHAT_NOTIFY_POLL_SECONDS",
    "CHAT_SEND_RATE",
    "CHAT_SEND_BURST",
    "CHAT_MAX_CONNECTIONS_PER_USER",
    "CHAT_FRAME_RATE",
    "CHAT_FRAME_BURST",
    "CHAT_DB_POOL_SIZE",
    "CHAT_DB_POOL_OVERFLOW",
    "CHAT_GC_YOUNG_THRESHOLD",
]


@pytest.mark.parametrize("name", NUMBERS)
@given(raw=st.text(min_size=1, max_size=20))
@settings(max_examples=40, deadline=None)
def test_a_setting_that_is_not_a_number_is_named_in_one_line(name: str, raw: str) -> None:
    try:
        float(raw) if name in {
            "CHAT_NOTIFY_DELAY_SECONDS",
            "CHAT_NOTIFY_POLL_SECONDS",
            "CHAT_SEND_RATE",
            "CHAT_FRAME_RATE",
        } else int(raw)
    except ValueError:
        pass
    else:
        return  # a number after all: read as one
    if not raw.strip():
        return  # empty means "use the default"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: raw})
    message = str(refused.value)
    assert name in message
    assert "\n" not in message
    assert "leave it unset" in message


@pytest.mark.parametrize("name", ["CHAT_API_KEYS", "CHAT_SECRET_KEYS"])
def test_keys_joined_by_a_semicolon_are_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}.*commas"):
        Settings.from_env({name: "first-key-0123456789;second-key-0123456789"})


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:secret@db/chat",
        "localhost:5432/chat",
        "postgres//db/chat",
        "postgresql+asyncpg://u:secret@db/chat",
        "postgresql://u:secret@db:port/chat",
    ],
)
def test_a_database_url_that_is_not_postgres_names_database_url(url: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": url, "CHAT_SECRET_KEYS": GOOD_SECRET})
    with pytest.raises(SettingsError, match="DATABASE_URL") as refused:
        settings.validate()
    assert "secret" not in str(refused.value)  # the password is masked


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"CHAT_LOG_LEVEL": "loud"}, "CHAT_LOG_LEVEL"),
        ({"CHAT_LOG_FORMAT": "xml"}, "CHAT_LOG_FORMAT"),
    ],
)
def test_log_settings_take_only_their_choices(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PORT": "0"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
        ({"CHAT_BASE_URL": "chat.example"}, "CHAT_BASE_URL"),
        ({"CHAT_SEND_RATE": "0"}, "CHAT_SEND_RATE"),
        ({"CHAT_SEND_BURST": "0"}, "CHAT_SEND_BURST"),
        ({"CHAT_FRAME_RATE": "0"}, "CHAT_FRAME_RATE"),
        ({"CHAT_FRAME_BURST": "0"}, "CHAT_FRAME_BURST"),
    ],
)
def test_out_of_range_values_name_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env).validate()


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8752, "http://127.0.0.1:8752"),
        ("0.0.0.0", 8753, "http://127.0.0.1:8753"),
        ("localhost", 8754, "http://localhost:8754"),
        ("::1", 8755, "http://[::1]:8755"),
    ],
)
def test_host_and_port_give_the_links_and_the_origin(host: str, port: int, expected: str) -> None:
    by_flag = Settings.from_env({}).listening_on(host, port)
    assert (by_flag.base_url, by_flag.origins) == (expected, (expected,))
    assert (by_flag.host, by_flag.port) == (host, port)
    by_env = Settings.from_env({"PORT": str(port)}).listening_on(host, None)
    assert by_env.base_url == by_flag.base_url


def test_a_configured_base_url_wins_over_the_listen_address() -> None:
    settings = Settings.from_env({"CHAT_BASE_URL": "https://chat.example"})
    moved = settings.listening_on("0.0.0.0", 9999)
    assert moved.base_url == "https://chat.example"
    assert moved.port == 9999


def test_the_database_pool_is_a_setting() -> None:
    settings = Settings.from_env({"CHAT_DB_POOL_SIZE": "4", "CHAT_DB_POOL_OVERFLOW": "0"})
    settings.validate()
    assert (settings.db_pool_size, settings.db_pool_overflow) == (4, 0)
    with pytest.raises(SettingsError, match="CHAT_DB_POOL_SIZE"):
        Settings.from_env({"CHAT_DB_POOL_SIZE": "0"}).validate()


def test_the_cycle_collectors_young_threshold_is_a_setting() -> None:
    assert Settings.from_env({}).gc_young_threshold == 50_000
    assert Settings.from_env({"CHAT_GC_YOUNG_THRESHOLD": "700"}).gc_young_threshold == 700
    with pytest.raises(SettingsError, match="CHAT_GC_YOUNG_THRESHOLD must be 1 or more"):
        Settings.from_env({"CHAT_GC_YOUNG_THRESHOLD": "0"}).validate()


def test_production_warns_about_what_it_can_run_without() -> None:
    bare = Settings.from_env({"DATABASE_URL": PG, "CHAT_SECRET_KEYS": GOOD_SECRET})
    warned = " ".join(bare.warnings())
    for name in ("CHAT_API_KEYS", "CHAT_SMTP_URL", "CHAT_BASE_URL"):
        assert name in warned
    # The notifier and mail-in serve no host API: its keys are not theirs.
    without_api = " ".join(bare.warnings(host_api=False))
    assert "CHAT_API_KEYS" not in without_api
    assert "CHAT_SMTP_URL" in without_api
    complete = Settings.from_env(
        {
            "DATABASE_URL": PG,
            "CHAT_SECRET_KEYS": GOOD_SECRET,
            "CHAT_API_KEYS": "host-key",
            "CHAT_SMTP_URL": "smtp://mail:25",
            "CHAT_BASE_URL": "https://chat.example",
        }
    )
    assert complete.warnings() == []
    assert Settings.from_env({}).warnings() == []  # the embedded default needs none


def test_the_described_configuration_masks_every_secret() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://chat:db-password-1@db:5432/chat",
            "REDIS_URL": "redis://:redis-password-1@cache:6379/0",
            "CHAT_SMTP_URL": "smtp://mailer:smtp-password-1@mail:587",
            "CHAT_SECRET_KEYS": GOOD_SECRET,
            "CHAT_API_KEYS": "host-api-key-1,host-api-key-2",
        }
    )
    shown = dict(settings.described())
    text = repr(shown)
    for secret in ("db-password-1", "redis-password-1", "smtp-password-1", GOOD_SECRET):
        assert secret not in text
    assert "host-api-key" not in text
    assert shown["CHAT_API_KEYS"] == "2 set (masked)"
    assert shown["DATABASE_URL"] == "postgresql://chat:***@db:5432/chat"
    assert shown["PORT"] == "8000"
