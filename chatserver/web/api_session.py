"""`/api`: the session API for the pages and socket-less clients (SPEC 5a).

Authenticated by the session cookie; every mutation also needs the
`X-CSRF-Token` header whose value `GET /api/me` returns.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatserver.chat import (
    bell,
    compose,
    conversation_archive,
    conversation_end,
    inbox,
    message_delete,
    message_send,
    queries,
    reads,
    user_settings,
)
from chatserver.web.deps import json_body, require_viewer, services
from chatserver.web.responses import field, json


async def me(request: Request) -> Response:
    who = await require_viewer(request)
    return json(await queries.me(services(request).chat, who.viewer, who.session.csrf_token))


async def update_settings(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    svc = services(request)
    body = await json_body(request)
    await user_settings.update_settings(svc.chat, who.viewer, body)
    return json(await queries.me(svc.chat, who.viewer, who.session.csrf_token))


async def adopt_browser_timezone(request: Request) -> Response:
    """`{"timezone"}`: the browser's zone, kept by a candidate who never
    chose one (`chat/user_settings.py`) → the (perhaps unchanged) `/api/me`."""
    who = await require_viewer(request, mutation=True)
    svc = services(request)
    body = await json_body(request)
    await user_settings.adopt_browser_timezone(svc.chat, who.viewer, body.get("timezone"))
    return json(await queries.me(svc.chat, who.viewer, who.session.csrf_token))


async def list_conversations(request: Request) -> Response:
    who = await require_viewer(request)
    params = request.query_params
    result = await inbox.list_conversations(
        services(request).chat,
        who.viewer,
        filter=params.get("filter", "all"),
        q=params.get("q", ""),
        sort=params.get("sort", "newest"),
        cursor=params.get("cursor") or None,
        limit=queries.parse_int(params.get("limit"), "limit", inbox.PAGE_SIZE) or 0,
    )
    return json(result)


async def get_conversation(request: Request) -> Response:
    who = await require_viewer(request)
    chat = services(request).chat
    return json(await queries.conversation(chat, who.viewer, request.path_params["id"]))


async def history(request: Request) -> Response:
    who = await require_viewer(request)
    params = request.query_params
    result = await queries.history(
        services(request).chat,
        who.viewer,
        request.path_params["id"],
        before=queries.parse_int(params.get("before"), "before"),
        after=queries.parse_int(params.get("after"), "after"),
        limit=queries.parse_int(params.get("limit"), "limit", queries.HISTORY_DEFAULT) or 0,
    )
    return json({"messages": result})


async def send(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    svc = services(request)
    body = await json_body(request)
    result = await message_send.send_message(
        svc.chat,
        who.viewer,
        request.path_params["id"],
        body.get("client_id"),
        body.get("body", ""),
        body.get("attachments") or (),
    )
    return json(result.message, status_code=201 if result.created else 200)


async def preview(request: Request) -> Response:
    """The composer's live preview: `{"body"}` → `{"html"}`, rendered like a sent message."""
    await require_viewer(request, mutation=True)
    body = await json_body(request)
    return json(compose.preview(services(request).chat, field(body, "body", str)))


async def read(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    svc = services(request)
    body = await json_body(request)
    seq = field(body, "seq", int)
    await reads.mark_read(svc.chat, who.viewer, request.path_params["id"], seq)
    return Response(status_code=204)


async def unread(request: Request) -> Response:
    """Mark as unread (staff): the newest candidate message counts again."""
    who = await require_viewer(request, mutation=True)
    await reads.mark_unread(services(request).chat, who.viewer, request.path_params["id"])
    return Response(status_code=204)


async def end(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    chat = services(request).chat
    return json(
        await conversation_end.end_conversation(chat, who.viewer, request.path_params["id"])
    )


async def archive(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    chat = services(request).chat
    await conversation_archive.set_archived(
        chat, who.viewer, request.path_params["id"], archived=True
    )
    return Response(status_code=204)


async def unarchive(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    chat = services(request).chat
    await conversation_archive.set_archived(
        chat, who.viewer, request.path_params["id"], archived=False
    )
    return Response(status_code=204)


async def delete_message(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    chat = services(request).chat
    scope = request.query_params.get("for", "me")
    await message_delete.delete_message(chat, who.viewer, request.path_params["id"], scope)
    return Response(status_code=204)


async def notifications(request: Request) -> Response:
    who = await require_viewer(request)
    return json(await bell.listing(services(request).chat, who.viewer))


async def notifications_read(request: Request) -> Response:
    who = await require_viewer(request, mutation=True)
    await reads.mark_notifications_read(services(request).chat, who.viewer)
    return Response(status_code=204)


async def notification_read(request: Request) -> Response:
    """One bell entry (a conversation's) marked read without opening it."""
    who = await require_viewer(request, mutation=True)
    conversation_id = request.path_params["conversation"]
    await reads.mark_notifications_read(services(request).chat, who.viewer, conversation_id)
    return Response(status_code=204)


routes = [
    Route("/api/me", me, methods=["GET"]),
    Route("/api/me/settings", update_settings, methods=["PUT"]),
    Route("/api/me/browser-timezone", adopt_browser_timezone, methods=["POST"]),
    Route("/api/conversations", list_conversations, methods=["GET"]),
    Route("/api/conversations/{id}", get_conversation, methods=["GET"]),
    Route("/api/conversations/{id}/messages", history, methods=["GET"]),
    Route("/api/conversations/{id}/messages", send, methods=["POST"]),
    Route("/api/conversations/{id}/read", read, methods=["POST"]),
    Route("/api/preview", preview, methods=["POST"]),
    Route("/api/conversations/{id}/unread", unread, methods=["POST"]),
    Route("/api/conversations/{id}/end", end, methods=["POST"]),
    Route("/api/conversations/{id}/archive", archive, methods=["POST"]),
    Route("/api/conversations/{id}/unarchive", unarchive, methods=["POST"]),
    Route("/api/messages/{id}", delete_message, methods=["DELETE"]),
    Route("/api/notifications", notifications, methods=["GET"]),
    Route("/api/notifications/read", notifications_read, methods=["POST"]),
    Route("/api/notifications/{conversation}/read", notification_read, methods=["POST"]),
]
