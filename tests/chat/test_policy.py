"""SPEC section 1's table, row by row.

The expected outcomes below are written out by hand from the spec, one line
per combination, so a mistake in the policy cannot hide behind the same
mistake in a test helper.
"""

from __future__ import annotations

import pytest

from chatserver.chat.policy import (
    ConversationFacts,
    Role,
    State,
    Status,
    can_archive,
    can_delete_for_everyone,
    can_delete_for_me,
    can_end,
    can_mark_unread,
    can_read,
    can_send,
    send_refusal,
    sending_reopens,
)
from chatserver.errors import ChatError, ErrorCode

# staff_msg: does the conversation already hold a message from staff?
# expected: "ok", or the error code of the refusal.
SEND_TABLE = """
role       status           state  staff_msg  expected
staff      submitted        open   no         ok
staff      submitted        open   yes        ok
staff      submitted        ended  no         ok
staff      submitted        ended  yes        ok
staff      shortlisted      open   no         ok
staff      shortlisted      open   yes        ok
staff      shortlisted      ended  no         ok
staff      shortlisted      ended  yes        ok
staff      interviewing     open   no         ok
staff      interviewing     open   yes        ok
staff      interviewing     ended  no         ok
staff      interviewing     ended  yes        ok
staff      offered          open   no         ok
staff      offered          open   yes        ok
staff      offered          ended  no         ok
staff      offered          ended  yes        ok
staff      hired            open   no         ok
staff      hired            open   yes        ok
staff      hired            ended  no         ok
staff      hired            ended  yes        ok
staff      not_progressing  open   no         ok
staff      not_progressing  open   yes        ok
staff      not_progressing  ended  no         ok
staff      not_progressing  ended  yes        ok
staff      withdrawn        open   no         not_allowed
staff      withdrawn        open   yes        not_allowed
staff      withdrawn        ended  no         not_allowed
staff      withdrawn        ended  yes        not_allowed
candidate  submitted        open   no         not_allowed
candidate  submitted        open   yes        ok
candidate  submitted        ended  no         conversation_ended
candidate  submitted        ended  yes        conversation_ended
candidate  shortlisted      open   no         not_allowed
candidate  shortlisted      open   yes        ok
candidate  shortlisted      ended  no         conversation_ended
candidate  shortlisted      ended  yes        conversation_ended
candidate  interviewing     open   no         ok
candidate  interviewing     open   yes        ok
candidate  interviewing     ended  no         conversation_ended
candidate  interviewing     ended  yes        conversation_ended
candidate  offered          open   no         ok
candidate  offered          open   yes        ok
candidate  offered          ended  no         conversation_ended
candidate  offered          ended  yes        conversation_ended
candidate  hired            open   no         ok
candidate  hired            open   yes        ok
candidate  hired            ended  no         conversation_ended
candidate  hired            ended  yes        conversation_ended
candidate  not_progressing  open   no         not_allowed
candidate  not_progressing  open   yes        not_allowed
candidate  not_progressing  ended  no         not_allowed
candidate  not_progressing  ended  yes        not_allowed
candidate  withdrawn        open   no         not_allowed
candidate  withdrawn        open   yes        not_allowed
candidate  withdrawn        ended  no         not_allowed
candidate  withdrawn        ended  yes        not_allowed
"""

Row = tuple[Role, ConversationFacts, ErrorCode | None]


def _rows() -> list[Row]:
    lines = SEND_TABLE.strip().splitlines()[1:]
    rows: list[Row] = []
    for line in lines:
        role, status, state, staff_msg, expected = line.split()
        facts = ConversationFacts(
            Status(status), State(state), {"yes": True, "no": False}[staff_msg]
        )
        rows.append((Role(role), facts, None if expected == "ok" else ErrorCode(expected)))
    return rows


ROWS = _rows()


def _id(row: Row) -> str:
    role, facts, _ = row
    msg = "staff-msg" if facts.has_staff_message else "no-staff-msg"
    return f"{role}-{facts.status}-{facts.state}-{msg}"


def test_the_table_covers_every_combination_once() -> None:
    seen = {(role, facts) for role, facts, _ in ROWS}
    assert len(ROWS) == len(seen) == len(Role) * len(Status) * len(State) * 2


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_send(row: Row) -> None:
    role, facts, expected = row
    refusal = send_refusal(role, facts)
    assert can_send(role, facts) is (expected is None)
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.code is expected
        assert refusal.reason.strip().endswith(".")
        assert len(refusal.reason) > 10


@pytest.mark.parametrize("row", [r for r in ROWS if r[2] is not None], ids=_id)
def test_refusal_becomes_the_chat_error_with_the_same_code_and_sentence(row: Row) -> None:
    role, facts, _ = row
    refusal = send_refusal(role, facts)
    assert refusal is not None
    error = refusal.error()
    assert isinstance(error, ChatError)
    assert error.code is refusal.code
    assert error.message == refusal.reason


def _facts(status: Status, state: State = State.OPEN, staff_msg: bool = True) -> ConversationFacts:
    return ConversationFacts(status, state, staff_msg)


def _reason(role: Role, facts: ConversationFacts) -> str:
    refusal = send_refusal(role, facts)
    assert refusal is not None
    return refusal.reason


def test_a_withdrawn_candidate_is_told_about_the_withdrawal_not_the_ending() -> None:
    ended = _reason(Role.CANDIDATE, _facts(Status.WITHDRAWN, State.ENDED, staff_msg=False))
    assert ended == _reason(Role.CANDIDATE, _facts(Status.WITHDRAWN))
    assert "withdrawn" in ended


def test_a_not_progressing_candidate_is_told_so_even_when_ended() -> None:
    reason = _reason(Role.CANDIDATE, _facts(Status.NOT_PROGRESSING, State.ENDED))
    assert "no longer progressing" in reason


def test_an_ended_conversation_is_reported_before_the_first_message_rule() -> None:
    refusal = send_refusal(Role.CANDIDATE, _facts(Status.SUBMITTED, State.ENDED, staff_msg=False))
    assert refusal is not None
    assert refusal.code is ErrorCode.CONVERSATION_ENDED
    assert refusal.reason == "This conversation has ended."


def test_a_candidate_waiting_for_the_employer_is_told_what_unlocks_replies() -> None:
    reason = _reason(Role.CANDIDATE, _facts(Status.SHORTLISTED, staff_msg=False))
    assert "once the employer has messaged you" in reason


def test_staff_are_told_the_candidate_withdrew() -> None:
    assert _reason(Role.STAFF, _facts(Status.WITHDRAWN)) == (
        "The candidate has withdrawn their application."
    )


def test_different_refusals_give_different_reasons() -> None:
    reasons = {
        _reason(Role.STAFF, _facts(Status.WITHDRAWN)),
        _reason(Role.CANDIDATE, _facts(Status.WITHDRAWN)),
        _reason(Role.CANDIDATE, _facts(Status.NOT_PROGRESSING)),
        _reason(Role.CANDIDATE, _facts(Status.HIRED, State.ENDED)),
        _reason(Role.CANDIDATE, _facts(Status.SUBMITTED, staff_msg=False)),
    }
    assert len(reasons) == 5


@pytest.mark.parametrize(
    ("role", "status", "state", "reopens"),
    [
        (Role.STAFF, Status.SUBMITTED, State.ENDED, True),
        (Role.STAFF, Status.NOT_PROGRESSING, State.ENDED, True),
        (Role.STAFF, Status.HIRED, State.ENDED, True),
        (Role.STAFF, Status.WITHDRAWN, State.ENDED, False),
        (Role.STAFF, Status.SUBMITTED, State.OPEN, False),
        (Role.CANDIDATE, Status.INTERVIEWING, State.ENDED, False),
        (Role.CANDIDATE, Status.INTERVIEWING, State.OPEN, False),
    ],
)
def test_only_staff_sending_into_an_ended_conversation_reopens_it(
    role: Role, status: Status, state: State, reopens: bool
) -> None:
    for staff_msg in (False, True):
        assert sending_reopens(role, _facts(status, state, staff_msg)) is reopens


@pytest.mark.parametrize(
    ("role", "read", "end", "archive", "delete_for_me"),
    [
        (Role.STAFF, True, True, True, True),
        (Role.CANDIDATE, True, False, False, True),
    ],
)
def test_role_permissions(
    role: Role, read: bool, end: bool, archive: bool, delete_for_me: bool
) -> None:
    assert can_read(role) is read
    assert can_end(role) is end
    assert can_archive(role) is archive
    assert can_mark_unread(role) is archive  # both are the staff inbox's
    assert can_delete_for_me(role) is delete_for_me


@pytest.mark.parametrize(
    ("role", "actor_id", "sender_kind", "sender_id", "allowed"),
    [
        (Role.STAFF, "s1", "staff", "s1", True),
        (Role.STAFF, "s1", "staff", "s2", False),
        (Role.STAFF, "s1", "candidate", "s1", False),
        (Role.STAFF, "s1", "candidate", "c1", False),
        (Role.CANDIDATE, "c1", "candidate", "c1", True),
        (Role.CANDIDATE, "c1", "candidate", "c2", False),
        (Role.CANDIDATE, "c1", "staff", "c1", False),
        (Role.CANDIDATE, "c1", "staff", "s1", False),
        (Role.STAFF, "s1", "system", "s1", False),
    ],
)
def test_delete_for_everyone_only_own_messages(
    role: Role, actor_id: str, sender_kind: str, sender_id: str, allowed: bool
) -> None:
    assert can_delete_for_everyone(role, actor_id, sender_kind, sender_id) is allowed
