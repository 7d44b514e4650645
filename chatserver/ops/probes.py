"""Can this process reach what its settings name? `chatserver check` asks
about the database, Redis and SMTP; `chatserver serve` asks about the
database (and Redis) before it starts workers, so a dead dependency is one
line that says so instead of a server that starts and fails every request.

Each probe answers a `Probe`: whether it worked and one line that says what
was found or what to do. None raises; each is bounded in time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chatserver.settings import Settings, SettingsError, mask_url

# Long enough for a database across a region on a loaded machine, short
# enough that an operator is not left staring at a silent terminal.
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str
    # Not configured, so nothing was tried (the embedded default's Redis).
    skipped: bool = False


def _reason(exc: BaseException) -> str:
    """The first line of a driver's error, which names the actual problem
    (connection refused, password authentication failed, unknown host…)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_SECONDS:.0f} s"
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return text[0].rstrip(".") if text else type(cause).__name__


async def probe_database(settings: Settings) -> Probe:
    """Connect, and compare the schema's revision with this version's."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from chatserver.store.migrate import head_revision

    shown = mask_url(settings.database_url) if settings.database_url else settings.sqlalchemy_url
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    connect_args = {} if settings.embedded else {"connect_timeout": int(PROBE_TIMEOUT_SECONDS)}
    engine = create_async_engine(settings.sqlalchemy_url, connect_args=connect_args)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            try:
                revision = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            except Exception:
                revision = None
    except Exception as exc:
        return Probe(
            "database",
            False,
            f"cannot reach DATABASE_URL={shown}: {_reason(exc)}. "
            "Start the database or correct DATABASE_URL.",
        )
    finally:
        await engine.dispose()
    head = head_revision()
    if revision != head:
        return Probe(
            "database",
            False,
            f"{shown} answers but its schema is at revision {revision or 'none'}, "
            f"this version needs {head}: run `chatserver migrate`.",
        )
    return Probe("database", True, f"{shown} answers, schema at revision {head}")


async def probe_redis(settings: Settings) -> Probe:
    if not settings.redis_url:
        return Probe("redis", True, "not configured: in-process broker (one worker)", True)
    from chatserver.broker.clients import key_client

    shown = mask_url(settings.redis_url)
    try:
        client = key_client(settings.redis_url, timeout=PROBE_TIMEOUT_SECONDS)
    except (ValueError, SettingsError) as exc:
        return Probe("redis", False, f"REDIS_URL={shown} is not usable: {_reason(exc)}.")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await client.ping()
    except Exception as exc:
        return Probe(
            "redis",
            False,
            f"cannot reach REDIS_URL={shown}: {_reason(exc)}. Start Redis or correct REDIS_URL.",
        )
    finally:
        await client.aclose()
    return Probe("redis", True, f"{shown} answers")


async def probe_smtp(settings: Settings) -> Probe:
    """Connect and greet (EHLO, and log in when the URL has a user); send
    nothing."""
    if not settings.smtp_url:
        return Probe(
            "smtp",
            not settings.production,
            f"not configured: emails are written to {settings.outbox_dir}"
            + (" (set CHAT_SMTP_URL in production)" if settings.production else ""),
            True,
        )
    from chatserver.notify.transport import SmtpTransport

    shown = mask_url(settings.smtp_url)
    try:
        transport = SmtpTransport(settings.smtp_url)
    except Exception as exc:
        return Probe("smtp", False, str(exc))
    import aiosmtplib

    client = aiosmtplib.SMTP(
        hostname=transport.hostname,
        port=transport.port,
        use_tls=transport.use_tls,
        start_tls=transport.start_tls,
        timeout=PROBE_TIMEOUT_SECONDS,
    )
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await client.connect()
            if transport.username:
                await client.login(transport.username, transport.password or "")
            await client.quit()
    except Exception as exc:
        return Probe(
            "smtp",
            False,
            f"cannot use CHAT_SMTP_URL={shown}: {_reason(exc)}. "
            "Check the host, port, TLS scheme and credentials.",
        )
    login = " and accepts the login" if transport.username else ""
    return Probe("smtp", True, f"{shown} answers{login}")
