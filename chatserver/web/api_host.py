"""`/api/v1`: the host ATS's integration API (SPEC section 4), bearer keys."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatserver.chat import applications, email_replies, fields, ids, queries, staff_users
from chatserver.chat.email_replies import Outcome
from chatserver.chat.policy import Status
from chatserver.errors import ChatError, ErrorCode, invalid, not_found
from chatserver.web.auth import check_bearer
from chatserver.web.deps import json_body, services
from chatserver.web.responses import field, json, read_body

NAME_MAX = 200
TITLE_MAX = 300
# Without CHAT_REPLY_DOMAIN no email has a reply address: every mail would
# be "not addressed to a reply address", which hides the setting left out.
REPLY_BY_EMAIL_OFF = "Reply by email is not configured (CHAT_REPLY_DOMAIN is not set)."


def _authorise(request: Request) -> None:
    check_bearer(request, services(request).settings.api_keys, "API key")


async def _body(request: Request) -> dict[str, Any]:
    _authorise(request)
    return await json_body(request)


def _ref(body: dict[str, Any], name: str, label: str) -> tuple[str, str]:
    """A nested `{"id", "<label>"}` object such as org or job."""
    obj = field(body, name, dict)
    return (
        ids.host_id(obj.get("id"), f"{name}.id"),
        fields.check_text(obj.get(label), f"{name}.{label}", TITLE_MAX),
    )


def _defaults(body: dict[str, Any]) -> fields.PersonDefaults:
    """The host's defaults for the person's own settings (timezone, email
    notifications): written until the person chooses in Settings. A field
    left out keeps the stored value; null is not a value (`invalid`)."""
    return fields.PersonDefaults(
        timezone=fields.check_timezone(body["timezone"]) if "timezone" in body else None,
        notifications=(
            fields.check_notifications(body["email_notifications"])
            if "email_notifications" in body
            else None
        ),
    )


def _ops(body: dict[str, Any]) -> bool | None:
    """The operator flag; left out keeps the stored one."""
    if "ops" not in body:
        return None
    if not isinstance(body["ops"], bool):
        raise invalid("ops must be true or false.")
    return bool(body["ops"])


async def put_staff(request: Request) -> Response:
    body = await _body(request)
    staff_id = ids.host_id(request.path_params["staff_id"], "staff_id")
    org = _ref(body, "org", "name")
    name = fields.check_text(body.get("name"), "name", NAME_MAX)
    email = fields.check_email(body.get("email"))
    defaults = _defaults(body)
    ops = _ops(body)
    person = await staff_users.upsert_staff(
        services(request).chat,
        staff_id,
        org,
        name,
        email,
        defaults.timezone,
        notifications=defaults.notifications,
        ops=ops,
    )
    return json(person)


async def delete_staff(request: Request) -> Response:
    _authorise(request)
    staff_id = ids.host_id(request.path_params["staff_id"], "staff_id")
    await staff_users.remove_staff(services(request).chat, staff_id)
    return Response(status_code=204)


async def put_application(request: Request) -> Response:
    body = await _body(request)
    application_id = ids.host_id(request.path_params["application_id"], "application_id")
    org = _ref(body, "org", "name")
    job = _ref(body, "job", "title")
    cand = field(body, "candidate", dict)
    candidate = (
        ids.host_id(cand.get("id"), "candidate.id"),
        fields.check_text(cand.get("name"), "candidate.name", NAME_MAX),
        fields.check_email(cand.get("email"), "candidate.email"),
    )
    try:
        status = Status(field(body, "status", str))
    except ValueError as exc:
        raise invalid(f"status must be one of {', '.join(s.value for s in Status)}.") from exc
    applied_at = fields.parse_time(body.get("applied_at"), "applied_at")
    result = await applications.upsert_application(
        services(request).chat,
        application_id,
        org,
        job,
        candidate,
        status,
        applied_at,
        _defaults(cand),
    )
    return json(result)


async def staff_login_link(request: Request) -> Response:
    _authorise(request)
    svc = services(request)
    staff_id = ids.host_id(request.path_params["staff_id"], "staff_id")
    generation = await queries.staff_link_generation(svc.chat, staff_id)
    if generation is None:
        raise not_found("staff user")
    token, _ = svc.signer.staff_link_token(staff_id, generation)
    return json({"url": f"{svc.settings.base_url}/auth/staff?token={token}"})


async def candidate_link(request: Request) -> Response:
    _authorise(request)
    svc = services(request)
    application_id = ids.host_id(request.path_params["application_id"], "application_id")
    candidate_id = await applications.record_link_issued(svc.chat, application_id)
    token = svc.signer.candidate_link_token(application_id, candidate_id)
    return json({"url": f"{svc.settings.base_url}/auth/candidate?token={token}"})


async def audit(request: Request) -> Response:
    _authorise(request)
    application_id = ids.host_id(request.path_params["application_id"], "application_id")
    events = await queries.audit_trail(services(request).chat, application_id)
    return json({"events": events})


async def inbound_email(request: Request) -> Response:
    """One raw RFC 822 reply, from a mail provider's inbound webhook: the
    same function as `chatserver mail-in` (SPEC sections 4 and 7).

    202 `{"result": "taken"|"duplicate", "message": MESSAGE}`, or
    `{"result": "dropped", "reason": ...}` for automatic mail (taken in and
    dropped on purpose, so the provider neither retries nor bounces it).
    A reply the person was emailed about (the policy refused it, an
    attachment is not allowed, …) answers that refusal's error object; so
    do a bad reply address (404), a From that is not its person (403) and a
    mail over CHAT_MAIL_MAX_BYTES (413). Without CHAT_REPLY_DOMAIN the
    feature is off: 404 saying so, before the mail is read.
    """
    _authorise(request)
    svc = services(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "message/rfc822":
        raise invalid("Send one raw email with Content-Type: message/rfc822.")
    if not svc.settings.reply_domain:
        raise ChatError(ErrorCode.NOT_FOUND, REPLY_BY_EMAIL_OFF)
    raw = await read_body(request, svc.settings.mail_max_bytes)
    result = await email_replies.take_mail(svc.chat, raw)
    if result.outcome is Outcome.EXPLAINED:
        assert result.error is not None
        raise result.error
    body: dict[str, Any] = {"result": result.outcome.value}
    if result.message is not None:
        body["message"] = result.message
    if result.outcome is Outcome.DROPPED:
        body["reason"] = result.reason
    return json(body, status_code=202)


routes = [
    Route("/api/v1/staff/{staff_id}", put_staff, methods=["PUT"]),
    Route("/api/v1/staff/{staff_id}", delete_staff, methods=["DELETE"]),
    Route("/api/v1/applications/{application_id}", put_application, methods=["PUT"]),
    Route("/api/v1/staff/{staff_id}/login-link", staff_login_link, methods=["POST"]),
    Route("/api/v1/applications/{application_id}/candidate-link", candidate_link, methods=["POST"]),
    Route("/api/v1/applications/{application_id}/audit", audit, methods=["GET"]),
    Route("/api/v1/inbound-email", inbound_email, methods=["POST"]),
]
