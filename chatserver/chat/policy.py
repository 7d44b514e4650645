"""Who may do what in a conversation: SPEC section 1's table, and nothing else.

Pure functions of the role and a few facts about the conversation, so the
whole table is unit-tested exhaustively and every transport (HTTP, WebSocket,
page rendering of the disabled composer) asks the same question the same way.
Tenancy is not decided here: by the time a caller asks, it has already proved
that the actor is staff of the job's organisation or the application's
candidate; everybody else gets `not_found` long before this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chatserver.errors import ChatError, ErrorCode
from chatserver.roles import Role as Role  # re-exported: the policy speaks of roles


class Status(StrEnum):
    SUBMITTED = "submitted"
    SHORTLISTED = "shortlisted"
    INTERVIEWING = "interviewing"
    OFFERED = "offered"
    HIRED = "hired"
    NOT_PROGRESSING = "not_progressing"
    WITHDRAWN = "withdrawn"


class State(StrEnum):
    OPEN = "open"
    ENDED = "ended"


# A candidate may start a conversation only once the employer has shown real
# interest; before that, staff must write first (SPEC 1).
CANDIDATE_MAY_OPEN = frozenset({Status.INTERVIEWING, Status.OFFERED, Status.HIRED})


@dataclass(frozen=True)
class ConversationFacts:
    """What the send rule depends on; gathered by the caller in one read."""

    status: Status
    state: State
    has_staff_message: bool


@dataclass(frozen=True)
class Refusal:
    """Why a role may not send: an error code for the API and a sentence for the UI."""

    code: ErrorCode
    reason: str

    def error(self) -> ChatError:
        return ChatError(self.code, self.reason)


STAFF_WITHDRAWN = Refusal(ErrorCode.NOT_ALLOWED, "The candidate has withdrawn their application.")
CANDIDATE_WITHDRAWN = Refusal(
    ErrorCode.NOT_ALLOWED,
    "You have withdrawn your application, so this conversation is read-only.",
)
CANDIDATE_NOT_PROGRESSING = Refusal(
    ErrorCode.NOT_ALLOWED,
    "This application is no longer progressing, so this conversation is read-only.",
)
CANDIDATE_ENDED = Refusal(ErrorCode.CONVERSATION_ENDED, "This conversation has ended.")
CANDIDATE_NOT_YET = Refusal(
    ErrorCode.NOT_ALLOWED,
    "You can reply once the employer has messaged you or invited you to interview.",
)


def send_refusal(role: Role, facts: ConversationFacts) -> Refusal | None:
    """The reason `role` may not send now, or None when it may.

    When several rules refuse a candidate, the one reported is the one that
    tells them what (if anything) could change it, checked in this order:

    1. `withdrawn`, then `not_progressing`: the application itself is closed.
       These come first because they outlast everything else; saying "ended"
       to a withdrawn candidate would suggest a reopened conversation helps,
       and it does not.
    2. `ended` (`conversation_ended`): only staff can reopen it, by sending,
       which also gives the conversation a staff message, so the first-message
       rule below would then be satisfied anyway.
    3. No staff message yet and the status is not interviewing, offered or
       hired: the candidate waits for the employer.

    Staff are refused only for `withdrawn`; an ended conversation is fine
    because their message reopens it (`sending_reopens`).
    """
    if role == Role.STAFF:
        return STAFF_WITHDRAWN if facts.status == Status.WITHDRAWN else None
    if facts.status == Status.WITHDRAWN:
        return CANDIDATE_WITHDRAWN
    if facts.status == Status.NOT_PROGRESSING:
        return CANDIDATE_NOT_PROGRESSING
    if facts.state == State.ENDED:
        return CANDIDATE_ENDED
    if not facts.has_staff_message and facts.status not in CANDIDATE_MAY_OPEN:
        return CANDIDATE_NOT_YET
    return None


def can_send(role: Role, facts: ConversationFacts) -> bool:
    return send_refusal(role, facts) is None


def sending_reopens(role: Role, facts: ConversationFacts) -> bool:
    """True when an allowed send by `role` also reopens an ended conversation."""
    return role == Role.STAFF and facts.state == State.ENDED and can_send(role, facts)


def can_read(role: Role) -> bool:
    """Both parties always read, a withdrawn candidate included (read-only)."""
    return role in (Role.STAFF, Role.CANDIDATE)


def can_end(role: Role) -> bool:
    return role == Role.STAFF


def can_archive(role: Role) -> bool:
    """Archiving is a per-user inbox view, and only staff have an inbox."""
    return role == Role.STAFF


def can_mark_unread(role: Role) -> bool:
    """Marking as unread moves a position in the staff inbox, which only staff have."""
    return role == Role.STAFF


def can_delete_for_me(role: Role) -> bool:
    """Hiding a message from one's own view harms nobody, so any message qualifies."""
    return role in (Role.STAFF, Role.CANDIDATE)


def can_delete_for_everyone(role: Role, actor_id: str, sender_kind: str, sender_id: str) -> bool:
    """Only the message's own sender: same kind of party *and* same id.

    Both must match because staff and candidate ids come from different host
    namespaces and may collide.
    """
    return sender_kind == role.value and sender_id == actor_id
