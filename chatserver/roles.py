"""Who a person is in a conversation: staff of the job's organisation or its
candidate (SPEC section 1).

A foundation like `errors.py`: the store keys rows by it, the policy decides
by it and the transports carry it, so it lives below all of them.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STAFF = "staff"
    CANDIDATE = "candidate"

    @property
    def other(self) -> Role:
        """The other side of a conversation."""
        return Role.CANDIDATE if self is Role.STAFF else Role.STAFF
