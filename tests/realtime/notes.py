"""A candidate's bell frame, as a staff message publishes it, for the tests
of the person rooms that relay it."""

from __future__ import annotations

from chatserver.chat import bell
from chatserver.json_types import JSON
from chatserver.roles import Role


def candidate_note(application_id: str = "app-1") -> JSON:
    """A `notification` about a message in the conversation of this
    application (the scene's Cara opened app-1's link)."""
    message = {
        "id": "m1",
        "conversation": "c1",
        "sender": {"name": "Alice Recruiter"},
        "created_at": "2026-12-02T00:00:00.000Z",
    }
    return bell.frame(message, Role.CANDIDATE, "Teacher of Mathematics", application_id)
