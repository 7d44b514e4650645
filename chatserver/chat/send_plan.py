"""THE send rule, once: a pure function from a batch and a snapshot to a plan.

Both writers of the send queue (`chat/sending.py`) take a snapshot of what
the rule needs (tenancy and policy facts of each conversation, the client
ids already stored, the attachments claimed), call `plan`, and differ only
in how they store the plan:

- the careful writer (`chat/send_careful.py`: the SQLite path, and
  PostgreSQL's unusual sends) reads the snapshot under row locks, so the
  plan is final;
- PostgreSQL's fast writer (`chat/send_fast.py`) reads it without locks
  and stores the plan in one statement whose guard re-checks the facts the
  plan relied on (state open, status and candidate unchanged:
  `store/send_batch.py`); what the guard refuses, and what the fast writer
  cannot store (attachments, a reopening, a client id stored before), goes
  to the careful writer.

Nothing here does I/O or reads a clock: the same snapshot gives the same
plan, which is what lets a test compare the two writers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from chatserver.chat import access, views
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import ConversationFacts, Role, State, send_refusal, sending_reopens
from chatserver.errors import ChatError, not_found
from chatserver.json_types import JSON
from chatserver.store.contexts import SendContext
from chatserver.store.send_batch import ClientKey

# The careful writer plans on whole (locked) contexts, the fast one on the
# send facts it reads; a plan hands back the kind it was given.
C = TypeVar("C", bound=SendContext)


class Send(Protocol):
    """What the plan needs of a send request."""

    @property
    def viewer(self) -> Viewer: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def attachment_ids(self) -> tuple[str, ...]: ...
    @property
    def via(self) -> str | None: ...
    @property
    def search_body(self) -> str | None: ...
    @property
    def key(self) -> ClientKey: ...


@dataclass(frozen=True)
class Snapshot(Generic[C]):
    """The facts the rule is applied to.

    `contexts`: the conversations of the batch by id (whole contexts, or
    the fast path's `SendContext`);
    `stored`: client keys already stored before this batch; `files`: for
    sends (by batch index) whose attachments were claimed, the attachment
    rows in the order sent, or the error of the claim. A send with
    attachment ids and no entry in `files` cannot be planned here and is
    deferred (the fast path does not claim attachments). `limited`: sends
    (by batch index) over their sender's rate limit, with the refusal
    (`Limits.take_sends`, asked while the snapshot is read)."""

    contexts: Mapping[str, C]
    stored: frozenset[ClientKey] = frozenset()
    files: Mapping[int, Sequence[Mapping[str, Any]] | ChatError] = field(default_factory=dict)
    limited: Mapping[int, ChatError] = field(default_factory=dict)


@dataclass
class New:
    """A message to store: its row (without seq) and its place (1-based)
    among the batch's new messages of its conversation."""

    index: int
    row: JSON
    pos: int
    files: Sequence[Mapping[str, Any]] = ()


@dataclass
class Plan(Generic[C]):
    refused: dict[int, ChatError] = field(default_factory=dict)
    # A client_id sent twice in this batch: the later index -> the first.
    repeats: dict[int, int] = field(default_factory=dict)
    # A client_id stored before this batch: the writer returns the original.
    stored_before: list[int] = field(default_factory=list)
    # Sends this writer cannot store: the careful writer must (fast path only).
    deferred: list[int] = field(default_factory=list)
    # New messages by conversation, in batch order.
    new: dict[str, list[New]] = field(default_factory=dict)
    # Conversations a staff message reopens.
    reopened: set[str] = field(default_factory=set)
    # Sends after which the candidate may send and could not before: the
    # first staff message where the status lets a candidate reply only
    # after one (or a reopening). Published with the message, so that the
    # candidate's open page knows at once.
    lets_candidate_reply: set[int] = field(default_factory=set)
    # The conversations as the batch leaves them (state, has_staff_message).
    contexts: dict[str, C] = field(default_factory=dict)


def message_row(request: Send, message_id: str) -> JSON:
    """The columns both writers store; each adds how the seq is set."""
    return {
        "id": message_id,
        "conversation_id": request.conversation_id,
        "sender_kind": request.viewer.kind.value,
        "sender_id": request.viewer.id,
        "sender_name": request.viewer.name,
        "client_id": request.client_id,
        "body": request.body,
        "html": request.html,
        "via": request.via,
        "search_body": request.search_body,
    }


def candidate_refused(facts: ConversationFacts) -> bool:
    """Whether the conversation's candidate may not send now."""
    return send_refusal(Role.CANDIDATE, facts) is not None


def plan(
    batch: Sequence[Send], snapshot: Snapshot[C], message_ids: Sequence[str], *, fast: bool
) -> Plan[C]:
    """Apply the send rule to each send, in order, on the snapshot as the
    batch's earlier sends advance it (a staff message lets a later candidate
    message through; a reopening opens the conversation for the rest).

    `fast`: the writer cannot store attachments or a reopening; every send
    of a conversation that has one is deferred, so a conversation's sends
    always go one way and keep their order and the first-message rule."""
    result: Plan[C] = Plan(contexts=dict(snapshot.contexts))
    first: dict[ClientKey, int] = {}
    admissible: list[int] = []
    for i, request in enumerate(batch):
        # The rate limit first: a send over it is refused whatever else holds.
        if i in snapshot.limited:
            result.refused[i] = snapshot.limited[i]
            continue
        key = request.key
        if key in first:
            result.repeats[i] = first[key]
            continue
        first[key] = i
        if key in snapshot.stored:
            result.stored_before.append(i)
            continue
        ctx = result.contexts.get(request.conversation_id)
        if ctx is None or not access.may_see(request.viewer, ctx):
            result.refused[i] = not_found()
            continue
        admissible.append(i)
    unusual: set[str] = set()
    for i in admissible:
        request = batch[i]
        facts = views.facts(snapshot.contexts[request.conversation_id])
        if (request.attachment_ids and (fast or i not in snapshot.files)) or (
            fast and sending_reopens(request.viewer.kind, facts)
        ):
            unusual.add(request.conversation_id)
    for i in admissible:
        request = batch[i]
        if request.conversation_id in unusual:
            result.deferred.append(i)
            continue
        # As the batch's earlier sends left it.
        ctx = result.contexts[request.conversation_id]
        role = request.viewer.kind
        facts = views.facts(ctx)
        refusal = send_refusal(role, facts)
        if refusal is not None:
            result.refused[i] = refusal.error()
            continue
        files = snapshot.files.get(i, ())
        if isinstance(files, ChatError):
            result.refused[i] = files
            continue
        if sending_reopens(role, facts):
            result.reopened.add(ctx.id)
        after = result.contexts[ctx.id] = replace(
            ctx,
            state=State.OPEN.value,
            has_staff_message=ctx.has_staff_message or role is Role.STAFF,
        )
        # Only a staff message that changes the facts (the first, or one that
        # reopens) can change the candidate's answer: the rest skip asking.
        changes = role is Role.STAFF and (not ctx.has_staff_message or ctx.state != after.state)
        if changes and candidate_refused(facts) and not candidate_refused(views.facts(after)):
            result.lets_candidate_reply.add(i)
        items = result.new.setdefault(ctx.id, [])
        items.append(New(i, message_row(request, message_ids[i]), len(items) + 1, files))
    return result
