"""A staff message in a candidate's conversation, as it is published, for
the tests of the person rooms that ring the candidate's bell from it."""

from __future__ import annotations

from chatserver.chat import bell, events
from chatserver.chat.events import Topic
from chatserver.json_types import JSON
from chatserver.roles import Role
from chatserver.store.contexts import SendContext

JOB = "Teacher of Mathematics"


def conversation(application_id: str = "app-1", org_id: str = "org-1") -> SendContext:
    """The conversation of this application (the feeds' tests' candidate
    opened app-1's link)."""
    return SendContext(
        id="c1",
        application_id=application_id,
        org_id=org_id,
        candidate_id="cand-1",
        state="open",
        status="applied",
        has_staff_message=True,
        job_title=JOB,
    )


def message(ctx: SendContext, kind: Role = Role.STAFF, seq: int = 1) -> JSON:
    """A `message` event in `ctx`'s conversation, sent by someone of `kind`."""
    return events.message_event(
        {
            "id": f"m{seq}",
            "conversation": ctx.id,
            "seq": seq,
            "sender": {"kind": kind.value, "id": "alice", "name": "Alice Recruiter"},
            "body": "Hello",
            "created_at": "2026-12-02T00:00:00.000Z",
        }
    )


def heard(ctx: SendContext, event: JSON) -> tuple[Topic, bytes]:
    """What a tap of the organisation's stream is handed for `event`."""
    return events.open_envelope(ctx.org_id, events.envelope_of(ctx, event)[1])


def candidate_note(ctx: SendContext, event: JSON) -> JSON:
    """The `notification` frame the candidate's bell gets for a staff `event`."""
    return bell.frame(event["message"], Role.CANDIDATE, ctx.job_title, ctx.application_id)
