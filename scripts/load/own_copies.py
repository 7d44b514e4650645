"""The sending client's side of SPEC 5's "the sending connection may get
the `message` frame as well", in one place for the load test's clients
and the end-to-end tests' `Peer`: an ack of the next seq is that message
received (the server then leaves out the socket's own copy), and a copy
that still comes (the server could not tell: a replay was running) is
dropped, as the browser drops a repeat by seq.
"""

from __future__ import annotations


class OwnCopies:
    """One socket's own messages in one conversation that it had by their
    ack, until their copy comes or can no longer come: a socket's message
    frames come in seq order, so once a later seq has come, no copy of an
    earlier one will (which keeps this to a few seqs, not every send)."""

    __slots__ = ("_had",)

    def __init__(self) -> None:
        self._had: set[int] = set()

    def by_ack(self, seq: int, last: int) -> bool:
        """Whether the ack of `seq`, on a socket that has every seq up to
        `last`, is that message received."""
        if seq != last + 1:
            return False
        self._had.add(seq)
        return True

    def is_copy(self, seq: int) -> bool:
        """Whether a `message` frame of `seq` is the copy of one had by its
        ack (to drop); any other frame ends the wait for earlier copies."""
        if seq in self._had:
            self._had.discard(seq)
            return True
        if self._had:
            self._had = {had for had in self._had if had > seq}
        return False
