"""What the PostgreSQL fast writer remembers of the conversations it
writes to, so that a batch to conversations it wrote to a moment ago skips
the snapshot's read: one round trip and query per batch fewer (issue 10,
cost per message).

Remembered facts are never trusted to refuse a send, only to let one
through, and the write's guard re-checks every fact a permission rests on
(`store/send_batch.py`: the conversation still open, the application's
status and candidate unchanged, no client id stored already). So:

- a batch whose plan on remembered facts refuses or defers any send (other
  than for its rate limit) is planned again on a snapshot it reads;
- a conversation whose guard failed is forgotten, and its sends take the
  careful path, which reads the facts under lock;
- what no guard checks cannot make a wrong permission: who the
  conversation and application belong to never change, and
  `has_staff_message` only ever goes from false to true. The job title,
  which bell events name, is at most `ttl` seconds old.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from chatserver.store.contexts import SendContext

# How long a conversation's facts are used without reading them again.
FACTS_TTL_SECONDS = 5.0
# Conversations remembered per worker; the least recently written go first.
MAX_CONVERSATIONS = 20_000


class SendFacts:
    def __init__(
        self,
        ttl: float = FACTS_TTL_SECONDS,
        max_conversations: int = MAX_CONVERSATIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_conversations
        self._clock = clock
        # Conversation id -> (its facts, when they were read), oldest first.
        self._known: OrderedDict[str, tuple[SendContext, float]] = OrderedDict()

    def fresh(self, conversation_ids: Iterable[str]) -> dict[str, SendContext] | None:
        """The facts of every one of these conversations, or None if any is
        unknown or older than the ttl (the batch then reads a snapshot)."""
        now = self._clock()
        found = {}
        for conversation_id in conversation_ids:
            known = self._known.get(conversation_id)
            if known is None or now - known[1] > self._ttl:
                return None
            found[conversation_id] = known[0]
        return found

    def remember(self, contexts: Iterable[SendContext]) -> None:
        """Facts a snapshot has just read."""
        now = self._clock()
        for ctx in contexts:
            self._known.pop(ctx.id, None)
            self._known[ctx.id] = (ctx, now)
        while len(self._known) > self._max:
            self._known.popitem(last=False)

    def update(self, contexts: Iterable[SendContext]) -> None:
        """Facts as a stored batch left them. They keep the time of the
        read they build on: a busy conversation is read again every `ttl`."""
        for ctx in contexts:
            known = self._known.get(ctx.id)
            if known is not None:
                self._known[ctx.id] = (ctx, known[1])
                self._known.move_to_end(ctx.id)

    def forget(self, conversation_ids: Iterable[str]) -> None:
        for conversation_id in conversation_ids:
            self._known.pop(conversation_id, None)

    def __len__(self) -> int:
        return len(self._known)
