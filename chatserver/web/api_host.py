"""`/api/v1`: the host ATS's integration API (SPEC section 4), bearer keys."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatserver.chat import actions, queries
from chatserver.chat.policy import Status
from chatserver.errors import ChatError, ErrorCode, invalid, not_found
from chatserver.web.deps import services
from chatserver.web.responses import field, json, read_json


def _authorise(request: Request) -> None:
    settings = services(request).settings
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise ChatError(ErrorCode.UNAUTHORIZED, "Send Authorization: Bearer <API key>.")
    if not any(hmac.compare_digest(key.strip(), allowed) for allowed in settings.api_keys):
        raise ChatError(ErrorCode.UNAUTHORIZED, "Unknown API key.")


async def _body(request: Request) -> dict[str, Any]:
    _authorise(request)
    return await read_json(request, services(request).settings.max_json_body_bytes)


def _text(body: dict[str, Any], name: str, max_len: int) -> str:
    value: str = field(body, name, str)
    if not value.strip() or len(value) > max_len:
        raise invalid(f"{name} must be 1-{max_len} characters.")
    if "\x00" in value:
        raise invalid(f"{name} must not contain NUL characters.")
    return value.strip()


def _ref(body: dict[str, Any], name: str, label: str) -> tuple[str, str]:
    """A nested `{"id", "<label>"}` object such as org or job."""
    obj = field(body, name, dict)
    return actions.check_host_id(obj.get("id"), f"{name}.id"), _text(obj, label, 300)


async def put_staff(request: Request) -> Response:
    body = await _body(request)
    staff_id = actions.check_host_id(request.path_params["staff_id"], "staff_id")
    org = _ref(body, "org", "name")
    name = _text(body, "name", 200)
    email = _text(body, "email", 320)
    timezone = actions.check_timezone(body.get("timezone", "UTC"))
    await actions.upsert_staff(services(request).chat, staff_id, org, name, email, timezone)
    return json(
        {
            "id": staff_id,
            "org": {"id": org[0], "name": org[1]},
            "name": name,
            "email": email,
            "timezone": timezone,
        }
    )


async def put_application(request: Request) -> Response:
    body = await _body(request)
    application_id = actions.check_host_id(request.path_params["application_id"], "application_id")
    org = _ref(body, "org", "name")
    job = _ref(body, "job", "title")
    cand = field(body, "candidate", dict)
    candidate = (
        actions.check_host_id(cand.get("id"), "candidate.id"),
        _text(cand, "name", 200),
        _text(cand, "email", 320),
    )
    try:
        status = Status(field(body, "status", str))
    except ValueError as exc:
        raise invalid(f"status must be one of {', '.join(s.value for s in Status)}.") from exc
    applied_at = actions.parse_time(body.get("applied_at"), "applied_at")
    result = await actions.upsert_application(
        services(request).chat, application_id, org, job, candidate, status, applied_at
    )
    return json(result)


async def staff_login_link(request: Request) -> Response:
    _authorise(request)
    svc = services(request)
    staff_id = actions.check_host_id(request.path_params["staff_id"], "staff_id")
    viewer = await queries.viewer_for(svc.chat, "staff", staff_id)
    if viewer is None:
        raise not_found("staff user")
    token, _ = svc.signer.staff_link_token(staff_id)
    return json({"url": f"{svc.settings.base_url}/auth/staff?token={token}"})


async def candidate_link(request: Request) -> Response:
    _authorise(request)
    svc = services(request)
    application_id = actions.check_host_id(request.path_params["application_id"], "application_id")
    await actions.record_link_issued(svc.chat, application_id)
    token = svc.signer.candidate_link_token(application_id)
    return json({"url": f"{svc.settings.base_url}/auth/candidate?token={token}"})


async def audit(request: Request) -> Response:
    _authorise(request)
    application_id = actions.check_host_id(request.path_params["application_id"], "application_id")
    events = await queries.audit_trail(services(request).chat, application_id)
    return json({"events": events})


routes = [
    Route("/api/v1/staff/{staff_id}", put_staff, methods=["PUT"]),
    Route("/api/v1/applications/{application_id}", put_application, methods=["PUT"]),
    Route("/api/v1/staff/{staff_id}/login-link", staff_login_link, methods=["POST"]),
    Route("/api/v1/applications/{application_id}/candidate-link", candidate_link, methods=["POST"]),
    Route("/api/v1/applications/{application_id}/audit", audit, methods=["GET"]),
]
