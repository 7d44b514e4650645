"""Can the notifier reach its SMTP server? `chatserver check` asks here.

Connects and greets exactly as the notifier's transport would (same URL
parsing, TLS mode and login), sends nothing, and answers a `Probe` like the
other dependency checks (`ops/probes.py`).
"""

from __future__ import annotations

import asyncio

import aiosmtplib

from chatserver.notify.transport import SmtpTransport
from chatserver.ops.probes import PROBE_TIMEOUT_SECONDS, Probe, probe_reason
from chatserver.settings import Settings, mask_url


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
    shown = mask_url(settings.smtp_url)
    try:
        transport = SmtpTransport(settings.smtp_url)
    except Exception as exc:
        return Probe("smtp", False, str(exc))
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
            f"cannot use CHAT_SMTP_URL={shown}: {probe_reason(exc)}. "
            "Check the host, port, TLS scheme and credentials.",
        )
    login = " and accepts the login" if transport.username else ""
    return Probe("smtp", True, f"{shown} answers{login}")
