"""The email tables: the outbox of every email, how far emails have covered
each conversation, the digests' days and the reply addresses.

Out of `tables.py` only for its size: store modules still import their
`Table` handles from there (`from chatserver.store.tables import
outgoing_emails`), which is also what registers them in the metadata.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class OutgoingEmail(SQLModel, table=True):
    """Every email is recorded under a unique key before it is sent, which is
    what makes delivery exactly-once across notifier processes.

    Planning records what an email is about (`topic`, and the conversation
    and seq range, or the digest's local date); the sender composes the text
    from what is still there when it sends, and stores what it sent in
    `to_address`, `subject`, `text_body` and `html_body` (empty until then).
    So a message deleted for everyone in between never reaches an inbox, and
    a bad name or address fails that one email, never the planning."""

    __tablename__ = "outgoing_emails"
    __table_args__ = (Index("ix_outgoing_emails_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    recipient_kind: str = Field(max_length=16)
    recipient_id: str = Field(max_length=128)
    to_address: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    text_body: str = Field(sa_column=Column(Text, nullable=False))
    html_body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | sent | failed | cancelled
    topic: str = Field(default="messages", max_length=16)  # messages | digest
    conversation_id: str | None = Field(default=None, max_length=32)
    # A messages email mentions the other side's messages with after_seq < seq <= last_seq.
    after_seq: int = Field(default=0)
    last_seq: int = Field(default=0)
    local_date: str | None = Field(default=None, max_length=10)  # a digest's day
    # Why a reply by email was not posted (topic `reply_refused`): the
    # sentence the person gets, fixed when the reply came in.
    reason: str | None = Field(default=None, max_length=500)
    attempts: int = Field(default=0)
    next_attempt_at: datetime
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime
    sent_at: datetime | None = None


class EmailCursor(SQLModel, table=True):
    """How far emails to one recipient about one conversation have reached:
    the last seq an email covered. The planner advances it in the same
    transaction that records the email, so no message is emailed twice."""

    __tablename__ = "email_cursors"
    recipient_kind: str = Field(primary_key=True, max_length=16)
    recipient_id: str = Field(primary_key=True, max_length=128)
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    seq: int = Field(default=0)
    updated_at: datetime


class EmailDigest(SQLModel, table=True):
    """The local date of each daily-digest reader's last digest (staff and
    candidates alike), so each gets at most one per day."""

    __tablename__ = "email_digests"
    recipient_kind: str = Field(primary_key=True, max_length=16)
    recipient_id: str = Field(primary_key=True, max_length=128)
    last_on: str = Field(max_length=10)  # local date, ISO


class ReplyAddress(SQLModel, table=True):
    """Who a reply address speaks for: one person in one conversation.

    Reply tokens (`chat/reply_tokens.py`) are too short to hold host ids, so
    they carry this row's id; the row is made the first time a notification
    email to that person about that conversation is composed, and reused."""

    __tablename__ = "reply_addresses"
    __table_args__ = (
        UniqueConstraint(
            "person_kind", "person_id", "conversation_id", name="uq_reply_addresses_person"
        ),
    )
    id: str = Field(primary_key=True, max_length=16)
    person_kind: str = Field(max_length=16)
    person_id: str = Field(max_length=128)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    created_at: datetime
