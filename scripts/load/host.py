"""The host ATS's side of the host API (/api/v1): upserts staff and
applications and asks for sign-in links, as the in-process tests, the
multi-process tests and the load test all need.

One class for all of them: they differ only in the httpx client it wraps
(the app's ASGI transport in process, real HTTP to a server process). Every
call is expected to succeed; anything but 200 fails with the response.
"""

from __future__ import annotations

import re
import ssl
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx

# The host API key the harness's server processes accept (CHAT_API_KEYS).
API_KEY = "e2e-api-key"
SESSION_COOKIE = "chat_session"
# How long a call to a server process may take.
HTTP_TIMEOUT = 10.0


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every browser client. httpx builds one per
    client by default, loading the CA bundle each time: about 150 ms of CPU
    on the loaded test machine, twice per conversation provisioned, which
    held the load test's provisioning to 3 conversations/s."""
    return ssl.create_default_context()


def mail_domain(org: str) -> str:
    """A mail domain for an organisation id: ids may hold `_ : @ .`, which
    no domain label does, and the host API validates every address."""
    return re.sub(r"[^a-z0-9-]+", "-", org.lower()).strip("-") + ".example"


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


class HostApi:
    """The host ATS. `client` is an httpx client on the app (its requests
    carry the key one by one, so the same client can also be a test's
    anonymous caller) or a server's base URL (a client of its own, with the
    key on every request, closed by `aclose`)."""

    def __init__(
        self,
        client: httpx.AsyncClient | str,
        *,
        api_key: str = API_KEY,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self.auth = bearer(api_key)
        if isinstance(client, str):
            client = httpx.AsyncClient(
                base_url=client, headers=self.auth, timeout=timeout, verify=_tls()
            )
        self.client = client

    async def aclose(self) -> None:
        await self.client.aclose()

    async def staff(
        self, staff_id: str, *, org: str = "acme", name: str | None = None, timezone: str = "UTC"
    ) -> dict[str, Any]:
        body = {
            "org": {"id": org, "name": org.title()},
            "name": name or staff_id.title(),
            "email": f"{staff_id}@{mail_domain(org)}",
            "timezone": timezone,
        }
        return _ok(await self.client.put(f"/api/v1/staff/{staff_id}", json=body, headers=self.auth))

    async def application(
        self,
        application_id: str,
        *,
        org: str = "acme",
        candidate: str = "cara",
        candidate_name: str | None = None,
        job: str | None = None,
        job_title: str = "Teacher of Mathematics",
        status: str = "submitted",
        applied_at: str = "2026-11-02T09:30:00Z",
    ) -> dict[str, Any]:
        """Upsert an application; the API's answer (its `conversation_id`…)."""
        body = {
            "org": {"id": org, "name": org.title()},
            "job": {"id": job or f"{org}-job-1", "title": job_title},
            "candidate": {
                "id": candidate,
                "name": candidate_name or candidate.title(),
                "email": f"{candidate}@mail.example",
            },
            "status": status,
            "applied_at": applied_at,
        }
        path = f"/api/v1/applications/{application_id}"
        return _ok(await self.client.put(path, json=body, headers=self.auth))

    async def staff_link(self, staff_id: str) -> str:
        path = f"/api/v1/staff/{staff_id}/login-link"
        return str(_ok(await self.client.post(path, headers=self.auth))["url"])

    async def candidate_link(self, application_id: str) -> str:
        path = f"/api/v1/applications/{application_id}/candidate-link"
        return str(_ok(await self.client.post(path, headers=self.auth))["url"])

    async def staff_cookie(self, staff_id: str) -> str:
        return await self._open(await self.staff_link(staff_id))

    async def candidate_cookie(self, application_id: str) -> str:
        return await self._open(await self.candidate_link(application_id))

    async def _open(self, link: str) -> str:
        """Follow a sign-in link as a new browser would (a server process at
        the client's base URL); the session cookie header."""
        path = httpx.URL(link).raw_path.decode()
        base_url = str(self.client.base_url)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=HTTP_TIMEOUT, verify=_tls()
        ) as browser:
            response = await browser.get(path, follow_redirects=False)
        if response.status_code != 303 or SESSION_COOKIE not in response.cookies:
            raise RuntimeError(f"sign-in link refused: {response.status_code} {response.text}")
        return f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"


@dataclass(frozen=True)
class Room:
    """One application's conversation and the session cookies of its staff
    member and candidate (each usable by any number of sockets)."""

    conversation: str
    staff_cookie: str
    candidate_cookie: str


async def new_room(host: HostApi, tag: str | None = None, org: str | None = None) -> Room:
    """An interviewing application, so the candidate may write first, with a
    staff member of its own: in an organisation of its own (nothing else
    shares its channels), or in `org` (a shared inbox, as customers have)."""
    tag = tag or uuid.uuid4().hex[:10]
    org = org or f"org-{tag}"
    await host.staff(f"staff-{tag}", org=org)
    created = await host.application(
        f"app-{tag}", org=org, candidate=f"cand-{tag}", status="interviewing"
    )
    return Room(
        str(created["conversation_id"]),
        await host.staff_cookie(f"staff-{tag}"),
        await host.candidate_cookie(f"app-{tag}"),
    )
