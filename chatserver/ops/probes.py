"""Can this process reach what its settings name? `chatserver check` asks
about the database, Redis and SMTP (the SMTP probe is the notifier's:
`notify/smtp_probe.py`); `chatserver serve` asks about the
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


def probe_reason(exc: BaseException) -> str:
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

    from chatserver.store.migrate import head_revision, is_known, newer_schema

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
            f"cannot reach DATABASE_URL={shown}: {probe_reason(exc)}. "
            "Start the database or correct DATABASE_URL.",
        )
    finally:
        await engine.dispose()
    head = head_revision()
    if revision is not None and not is_known(revision):
        return Probe("database", False, f"{shown} answers but {newer_schema(revision)}")
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
        return Probe("redis", False, f"REDIS_URL={shown} is not usable: {probe_reason(exc)}.")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await client.ping()
    except Exception as exc:
        return Probe(
            "redis",
            False,
            f"cannot reach REDIS_URL={shown}: {probe_reason(exc)}. "
            "Start Redis or correct REDIS_URL.",
        )
    finally:
        await client.aclose()
    return Probe("redis", True, f"{shown} answers")
