"""The one statement of the send rule (`chat/send_plan.py`), tested pure:
both writers store the plan it makes, so what it decides here is what
SQLite and PostgreSQL store (tests/chat/test_sending.py runs the writers)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, State, Status
from chatserver.chat.send_plan import Plan, Snapshot, plan
from chatserver.errors import ChatError, ErrorCode
from chatserver.store.contexts import SendContext

STAFF = Viewer(Role.STAFF, "alice", "Alice", "UTC", org_id="acme")
OUTSIDER = Viewer(Role.STAFF, "mallory", "Mallory", "UTC", org_id="globex")
CARA = Viewer(Role.CANDIDATE, "cara", "Cara", "UTC", application_ids=("app-1", "app-2"))


@dataclass(frozen=True)
class Send:
    viewer: Viewer
    conversation_id: str
    client_id: str
    body: str = "Hi"
    html: str = "<p>Hi</p>"
    attachment_ids: tuple[str, ...] = ()
    via: str | None = None
    search_body: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.viewer.kind.value, self.viewer.id, self.client_id)


def context(cid: str, application: str, status: Status, state: State, staff: bool) -> Any:
    return SendContext(
        id=cid,
        application_id=application,
        org_id="acme",
        candidate_id="cara",
        status=status.value,
        state=state.value,
        has_staff_message=staff,
        job_title="Engineer",
    )


CONTEXTS = {
    "c1": context("c1", "app-1", Status.SUBMITTED, State.OPEN, False),
    "c2": context("c2", "app-2", Status.INTERVIEWING, State.ENDED, True),
}


def ids(n: int) -> list[str]:
    return [f"m{i}" for i in range(n)]


def test_a_staff_message_lets_a_later_candidate_message_through() -> None:
    batch = [Send(CARA, "c1", "a"), Send(STAFF, "c1", "b"), Send(CARA, "c1", "c")]
    planned = plan(batch, Snapshot(CONTEXTS), ids(3), fast=True)
    assert isinstance(planned.refused[0], ChatError)
    assert [(n.index, n.pos) for n in planned.new["c1"]] == [(1, 1), (2, 2)]
    assert CONTEXTS["c1"].has_staff_message is False  # the snapshot is not changed
    # The first staff message is the one that lets the candidate reply.
    assert planned.lets_candidate_reply == {1}


def test_only_the_message_a_candidate_waited_for_lets_them_reply() -> None:
    # c1's candidate waited for a staff message (submitted); c2 was ended.
    batch = [Send(STAFF, "c1", "a"), Send(STAFF, "c1", "b"), Send(STAFF, "c2", "c")]
    planned = plan(batch, Snapshot(CONTEXTS), ids(3), fast=False)
    assert planned.lets_candidate_reply == {0, 2}
    # An interviewing candidate could write first: nothing changes for them.
    interviewing = dataclasses.replace(CONTEXTS["c1"], status=Status.INTERVIEWING.value)
    planned = plan(batch[:1], Snapshot({"c1": interviewing}), ids(1), fast=False)
    assert planned.lets_candidate_reply == set()


def test_the_fast_writer_defers_a_conversation_it_cannot_store_whole() -> None:
    batch = [
        Send(STAFF, "c2", "a"),  # reopens c2
        Send(CARA, "c2", "b"),
        Send(STAFF, "c1", "c", attachment_ids=("f1",)),
        Send(STAFF, "c1", "d"),
    ]
    fast = plan(batch, Snapshot(CONTEXTS), ids(4), fast=True)
    assert (fast.deferred, fast.new, fast.refused) == ([0, 1, 2, 3], {}, {})
    files = {2: [{"id": "f1", "name": "a.txt"}]}
    careful = plan(batch, Snapshot(CONTEXTS, files=files), ids(4), fast=False)
    assert careful.deferred == []
    assert careful.reopened == {"c2"}
    assert [n.index for n in careful.new["c2"]] == [0, 1]
    assert careful.contexts["c2"].state == State.OPEN.value
    assert [n.files for n in careful.new["c1"]] == [files[2], ()]


def test_repeats_strangers_and_stored_client_ids() -> None:
    batch = [
        Send(STAFF, "c1", "a"),
        Send(STAFF, "c1", "a"),
        Send(OUTSIDER, "c1", "x"),
        Send(STAFF, "nope", "y"),
        Send(STAFF, "c1", "old"),
    ]
    planned = plan(batch, Snapshot(CONTEXTS, frozenset({STAFF_KEY_OLD})), ids(5), fast=True)
    assert planned.repeats == {1: 0}
    assert {i: e.code for i, e in planned.refused.items()} == {
        2: ErrorCode.NOT_FOUND,
        3: ErrorCode.NOT_FOUND,
    }
    assert planned.stored_before == [4]
    assert [n.index for n in planned.new["c1"]] == [0]


STAFF_KEY_OLD = ("staff", "alice", "old")


def too_fast() -> ChatError:
    return ChatError(ErrorCode.RATE_LIMITED, "Too fast.", retry_after_ms=500)


def test_a_send_over_its_rate_limit_is_refused_and_frees_its_client_id() -> None:
    batch = [Send(STAFF, "c1", "a"), Send(STAFF, "c1", "a"), Send(STAFF, "c1", "b")]
    limit = too_fast()
    planned = plan(batch, Snapshot(CONTEXTS, limited={0: limit}), ids(3), fast=True)
    assert planned.refused == {0: limit}
    # Its retry in the same batch is a send of its own, not a repeat.
    assert planned.repeats == {}
    assert [n.index for n in planned.new["c1"]] == [1, 2]


def shape(planned: Plan[SendContext]) -> Any:
    """A plan with its errors as codes (errors compare by identity)."""
    refused = {i: (e.code, e.message) for i, e in planned.refused.items()}
    return refused, dataclasses.replace(planned, refused={})


SENDERS = st.sampled_from([STAFF, CARA, OUTSIDER])
FACTS = st.builds(
    context,
    st.just("c1"),
    st.just("app-1"),
    st.sampled_from(list(Status)),
    st.just(State.OPEN),
    st.booleans(),
)


@given(
    FACTS,
    st.lists(st.tuples(SENDERS, st.sampled_from("abcdef")), max_size=12),
    st.sets(st.integers(0, 11)),
)
def test_both_writers_plan_alike_what_both_can_store(
    facts: Any, sends: Any, over_limit: set[int]
) -> None:
    """Without attachments or a reopening the fast and careful plans are
    the same: the writers differ only in how they store. A send over its
    rate limit is refused with its own error, whatever else holds."""
    batch = [Send(who, "c1", client) for who, client in sends]
    limited = {i: too_fast() for i in over_limit if i < len(batch)}
    snapshot = Snapshot({"c1": facts}, limited=limited)
    fast = plan(batch, snapshot, ids(len(batch)), fast=True)
    careful = plan(batch, snapshot, ids(len(batch)), fast=False)
    assert shape(fast) == shape(careful)
    assert all(fast.refused[i] is error for i, error in limited.items())
    assert fast.deferred == []
    decided = set(fast.refused) | set(fast.repeats) | {n.index for n in fast.new.get("c1", [])}
    assert decided == set(range(len(batch)))
