"""Operations endpoints (SPEC section 6): `/metrics` for Prometheus,
`/healthz` (the process answers), `/readyz` (the database and the broker
answer), and the staff-only ops page with its JSON feed.

`/metrics` is this worker's own view; the ops page sums the snapshots every
worker shares (`ops/stats.py`), so it shows the whole deployment.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chatserver.broker.clients import KEY_ERRORS
from chatserver.chat import queries
from chatserver.errors import forbidden
from chatserver.ops import instruments, stats
from chatserver.web.auth import check_bearer
from chatserver.web.deps import Services, services, signed_in
from chatserver.web.responses import error_response, json
from chatserver.web.templating import render_page

# A readiness probe must answer before the orchestrator's own timeout
# (commonly 1-5 s) even when a dependency hangs instead of refusing.
READY_TIMEOUT_SECONDS = 2.0
# How long a scrape waits for the other processes' snapshots.
DEPLOYMENT_SECONDS = 1.0


async def metrics(request: Request) -> Response:
    """Prometheus text for scrapers holding a key from `CHAT_OPS_KEYS`."""
    svc = services(request)
    check_bearer(request, svc.settings.ops_keys, "ops key from CHAT_OPS_KEYS")
    instruments.PUBLISH_FAILURES.set(svc.broker.publish_failures)
    instruments.SEND_BACKLOG.set(svc.chat.sends.backlog)
    return Response(generate_latest() + await _deployment(svc), media_type=CONTENT_TYPE_LATEST)


async def _deployment(svc: Services) -> bytes:
    """The `chat_deployment_*` lines, from every process's snapshot; none
    while the snapshots' store (Redis) does not answer within
    DEPLOYMENT_SECONDS: this worker's own numbers are not the deployment's,
    and a scrape must not wait out Redis's timeouts."""
    try:
        async with asyncio.timeout(DEPLOYMENT_SECONDS):
            snapshots = await svc.hub.reporter.gather_all()
    except (TimeoutError, *KEY_ERRORS):
        return b""
    return stats.deployment_metrics(snapshots)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    svc = services(request)
    database, broker = await asyncio.gather(
        _answers(svc.chat.db.ping()), _answers(svc.broker.ping())
    )
    body = {
        "database": "ok" if database else "unreachable",
        "broker": "ok" if broker else "unreachable",
    }
    return json(body, status_code=200 if database and broker else 503)


async def _answers(check: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(check, READY_TIMEOUT_SECONDS))
    except (TimeoutError, OSError):
        return False


async def _operator(request: Request) -> tuple[bool, bool]:
    """(signed in, operator): the ops page and its data are for staff whom
    the host marked as operators (`"ops": true` in the staff upsert)."""
    who = await signed_in(request)
    if who is None:
        return False, False
    return True, await queries.is_operator(services(request).chat, who.viewer)


async def ops_page(request: Request) -> Response:
    """The page, or like the other pages a friendly HTML refusal: 401 for a
    visitor who is not signed in, 403 for anyone else who is not an operator."""
    is_signed_in, is_operator = await _operator(request)
    if is_operator:
        response = render_page(request, "ops.html")
    else:
        response = render_page(
            request,
            "ops_refused.html",
            {"signed_in": is_signed_in},
            status_code=403 if is_signed_in else 401,
        )
    response.headers["Cache-Control"] = "no-store"
    return response


async def ops_data(request: Request) -> Response:
    """The page's JSON feed: refusals stay JSON (`forbidden`)."""
    if not (await _operator(request))[1]:
        return error_response(forbidden("The ops page is for operators."))
    svc = services(request)
    snapshots = await svc.hub.reporter.gather()
    workers = sorted(snapshots, key=lambda s: (str(s.get("role", "")), str(s.get("worker", ""))))
    return json(
        {
            "workers": workers,
            "totals": stats.summed(workers),
            "latency_buckets": list(instruments.LATENCY_BUCKETS),
        }
    )


routes = [
    Route("/metrics", metrics),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/ops", ops_page),
    Route("/ops/data", ops_data),
]
