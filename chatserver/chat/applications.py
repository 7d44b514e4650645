"""Applications as the host declares them: their organisation, job,
candidate and status, each change audited and pushed to open
conversations, and the candidate links issued for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chatserver.chat import events, sessions, timeline
from chatserver.chat.fields import PersonDefaults
from chatserver.chat.policy import Role, Status
from chatserver.chat.service import Chat
from chatserver.errors import invalid, not_found
from chatserver.store import audit, contexts, conversations, people
from chatserver.store.contexts import SendContext


async def upsert_application(
    chat: Chat,
    application_id: str,
    org: tuple[str, str],
    job: tuple[str, str],
    candidate: tuple[str, str, str],
    status: Status,
    applied_at: datetime,
    candidate_defaults: PersonDefaults | None = None,
) -> dict[str, Any]:
    """Create or update an application; a status change is audited and
    pushed to open conversations (it can change who may send), and so is
    a new candidate (the staff pages re-read the summary, so the header
    and inbox row name who they now write to).

    Giving the application to another candidate revokes the links and
    sessions of the one before: links are bound to the candidate and signed
    after `candidate_since`, sessions are checked against the application's
    candidate, and the old candidate's open sockets are closed so that
    they reconnect without this conversation.
    """
    candidate_defaults = candidate_defaults or PersonDefaults()
    now = chat.clock()
    # The organisations are checked on the stored rows, after the upserts
    # (which never move a job or an application): of two calls at once,
    # the second sees what the first stored, and a refusal rolls back.
    async with chat.db.transaction() as conn:
        await people.upsert_org(conn, org[0], org[1])
        await people.upsert_job(conn, job[0], org[0], job[1])
        job_row = await people.get_job(conn, job[0])
        if job_row is None or job_row["org_id"] != org[0]:
            raise invalid("This job belongs to another organisation.")
        await people.upsert_candidate(
            conn,
            candidate[0],
            candidate[1],
            candidate[2],
            timezone=candidate_defaults.timezone,
            notifications=candidate_defaults.notifications,
        )
        previous, previous_candidate, conversation_id = await conversations.upsert_application(
            conn, application_id, org[0], job[0], candidate[0], status.value, applied_at, now
        )
        if await conversations.application_org(conn, application_id) != org[0]:
            raise invalid("This application belongs to another organisation.")
        line: dict[str, Any] | None = None
        if previous is None:
            await audit.record(
                conn, application_id, "application.created", now, None, {"status": status.value}
            )
        elif previous != status.value:
            await audit.record(
                conn,
                application_id,
                "application.status_changed",
                now,
                None,
                {"from": previous, "to": status.value},
            )
            happened = timeline.Happened(
                timeline.LineEvent.STATUS_CHANGED, before=previous, after=status.value
            )
            line = await timeline.append(conn, conversation_id, happened, now)
        ctx = await contexts.load(conn, conversation_id)
    assert ctx is not None
    reassigned = previous_candidate is not None and previous_candidate != candidate[0]
    published: list[tuple[SendContext, dict[str, Any]]] = []
    if line is not None:
        published.append((ctx, events.message_event(line)))
    if previous is None:
        # A new row for the staff inboxes that are open (a new status is
        # a conversation event, which their feeds read too).
        published.append((ctx, events.inbox_changed(conversation_id)))
    elif previous != status.value or reassigned:
        published.append((ctx, events.conversation_changed(ctx)))
    await chat.events.publish(published)
    if reassigned and previous_candidate is not None:
        await sessions.disconnect(
            chat, Role.CANDIDATE.value, previous_candidate, events.DisconnectReason.ACCESS_CHANGED
        )
    return {"id": application_id, "conversation_id": conversation_id, "status": status.value}


async def record_link_issued(chat: Chat, application_id: str) -> str:
    """Audit a candidate link about to be issued; the candidate it is for."""
    async with chat.db.transaction() as conn:
        binding = await conversations.application_link_binding(conn, application_id)
        if binding is None:
            raise not_found("application")
        await audit.record(
            conn,
            application_id,
            "link.issued",
            chat.clock(),
            None,
            {"kind": Role.CANDIDATE.value, "candidate_id": binding.candidate_id},
        )
    return binding.candidate_id
