"""The schema, declared once with SQLModel.

Host entities (organisations, staff, candidates, jobs, applications) keep the
host ATS's own ids as primary keys, so upserts are keyed by them. Store
modules query through the Core `Table` handles at the bottom of this file
(`messages.c.seq`), which keeps the hot path free of ORM overhead and gives
mypy real column types. The email tables' models are in `email_tables.py`
(for this file's size); their handles are here with the others.

Timestamps are aware UTC datetimes (SQLModel's UTCDateTime): stored with a
time zone on PostgreSQL, as UTC on SQLite, and always read back as UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Column, Index, LargeBinary, Table, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from chatserver.store.email_tables import EmailCursor, EmailDigest, OutgoingEmail, ReplyAddress

# Columns added to tables that already hold rows need a default on the
# database side too (revision 0005).
_FALSE = {"server_default": false()}
_ZERO = {"server_default": "0"}


def _folded_column() -> Column[str]:
    """A search column (chatserver/store/folding.py). No default: a write
    path that forgets to fold fails loudly instead of hiding rows from
    search."""
    return Column(Text, nullable=False)


class Organisation(SQLModel, table=True):
    __tablename__ = "organisations"
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=200)


class Staff(SQLModel, table=True):
    __tablename__ = "staff"
    id: str = Field(primary_key=True, max_length=128)
    org_id: str = Field(foreign_key="organisations.id", index=True, max_length=128)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    timezone: str = Field(default="UTC", max_length=64)
    email_notifications: str = Field(default="each", max_length=8)  # each | daily | off
    # True once the person chose in Settings: the host's value is only the
    # default until then, and a re-sync never overwrites a choice.
    timezone_chosen: bool = Field(default=False, sa_column_kwargs=_FALSE)
    notifications_chosen: bool = Field(default=False, sa_column_kwargs=_FALSE)
    # Sessions and staff links carry the generation they were issued under;
    # sign-out and removal bump it, which ends every earlier one.
    session_generation: int = Field(default=0, sa_column_kwargs=_ZERO)
    # Set by DELETE /api/v1/staff/{id}; a later PUT clears it.
    removed_at: datetime | None = None
    # Operators see the ops page (set by the host: `"ops": true`).
    ops: bool = Field(default=False, sa_column_kwargs=_FALSE)


class Candidate(SQLModel, table=True):
    __tablename__ = "candidates"
    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=200)
    # `name` folded for search (chatserver/store/folding.py), kept in step
    # by the upsert.
    search_name: str = Field(default="", sa_column=_folded_column())
    email: str = Field(max_length=320)
    timezone: str = Field(default="UTC", max_length=64)
    email_notifications: str = Field(default="each", max_length=8)
    timezone_chosen: bool = Field(default=False, sa_column_kwargs=_FALSE)
    notifications_chosen: bool = Field(default=False, sa_column_kwargs=_FALSE)
    session_generation: int = Field(default=0, sa_column_kwargs=_ZERO)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    id: str = Field(primary_key=True, max_length=128)
    org_id: str = Field(foreign_key="organisations.id", index=True, max_length=128)
    title: str = Field(max_length=300)
    # `title` folded for search, kept in step by the upsert.
    search_title: str = Field(default="", sa_column=_folded_column())


class Application(SQLModel, table=True):
    __tablename__ = "applications"
    id: str = Field(primary_key=True, max_length=128)
    org_id: str = Field(foreign_key="organisations.id", index=True, max_length=128)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=128)
    candidate_id: str = Field(foreign_key="candidates.id", index=True, max_length=128)
    status: str = Field(max_length=32)
    applied_at: datetime
    # When the current candidate was given the application: candidate links
    # signed before it are refused (they were someone else's, or revoked).
    candidate_since: datetime | None = None


class Conversation(SQLModel, table=True):
    """One per application. `last_seq` is the per-conversation counter that
    the send transaction bumps, which serialises seq assignment by row lock."""

    __tablename__ = "conversations"
    id: str = Field(primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="applications.id", unique=True, max_length=128)
    org_id: str = Field(foreign_key="organisations.id", index=True, max_length=128)
    state: str = Field(default="open", max_length=8)  # open | ended
    last_seq: int = Field(default=0)
    # Denormalised for the inbox: sorting and "messaged" filtering without
    # scanning messages.
    last_message_at: datetime | None = None
    has_staff_message: bool = Field(default=False)
    created_at: datetime


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        UniqueConstraint("sender_kind", "sender_id", "client_id", name="uq_messages_client_id"),
    )
    id: str = Field(primary_key=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    seq: int
    sender_kind: str = Field(max_length=16)  # staff | candidate | system
    sender_id: str = Field(max_length=128)
    # The sender's name when the message was sent: history reads need no join.
    sender_name: str = Field(max_length=200)
    client_id: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    html: str = Field(sa_column=Column(Text, nullable=False))
    # `body` folded for search, written with the message and emptied with
    # it by a delete for everyone.
    search_body: str = Field(default="", sa_column=_folded_column())
    created_at: datetime
    deleted: bool = Field(default=False)
    # How the message arrived when not through the app: "email" for a reply
    # to a notification email (shown as "by email"); None for the app.
    via: str | None = Field(default=None, max_length=16)
    # A system line's event (chatserver/chat/timeline.py): {"type": "ended" |
    # "reopened" | "status_changed", "by": PERSON | None, "from"?, "to"?};
    # None for people's messages.
    event: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )


class Attachment(SQLModel, table=True):
    __tablename__ = "attachments"
    # A person's recent uploads, for the bound on those not sent yet; and
    # whether any file or thumbnail is still these bytes, before a blob is
    # deleted (`store/blobs.py`).
    __table_args__ = (
        Index("ix_attachments_uploader", "uploader_kind", "uploader_id", "created_at"),
        Index("ix_attachments_sha256", "sha256"),
        Index("ix_attachments_thumbnail_sha256", "thumbnail_sha256"),
    )
    id: str = Field(primary_key=True, max_length=32)
    uploader_kind: str = Field(max_length=16)
    uploader_id: str = Field(max_length=128)
    message_id: str | None = Field(default=None, foreign_key="messages.id", index=True)
    # Its place among its message's files (0, 1, …), in the order the sender
    # named them in the send; set with message_id when a send claims it.
    position: int | None = Field(default=None)
    name: str = Field(max_length=255)
    size: int
    content_type: str = Field(max_length=128)
    sha256: str = Field(max_length=64)
    created_at: datetime
    # The server-made thumbnail of a PNG or JPEG (its bytes are a blob too);
    # None for other types and for images too large to decode safely.
    thumbnail_sha256: str | None = Field(default=None, max_length=64)


class AttachmentBlob(SQLModel, table=True):
    """Attachment (and thumbnail) bytes by content hash, in parts of at most
    `store.blobs.PART_BYTES`, so that a download streams part by part and
    every machine sharing the PostgreSQL database serves the same files.
    The embedded default keeps the bytes in CHAT_ATTACHMENTS_DIR instead."""

    __tablename__ = "attachment_blobs"
    sha256: str = Field(primary_key=True, max_length=64)
    part: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ReadPosition(SQLModel, table=True):
    __tablename__ = "read_positions"
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    reader_kind: str = Field(primary_key=True, max_length=16)
    reader_id: str = Field(primary_key=True, max_length=128)
    seq: int = Field(default=0)
    updated_at: datetime


class Archive(SQLModel, table=True):
    """A staff member's archive of a conversation. It is in force only while
    the candidate has written nothing after `seq` (store/archiving.py)."""

    __tablename__ = "archives"
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    staff_id: str = Field(foreign_key="staff.id", primary_key=True, max_length=128)
    # The conversation's `last_seq` when it was (last) archived.
    seq: int = Field(default=0)


class HiddenMessage(SQLModel, table=True):
    """A message deleted "for me" by one viewer."""

    __tablename__ = "hidden_messages"
    message_id: str = Field(foreign_key="messages.id", primary_key=True, max_length=32)
    viewer_kind: str = Field(primary_key=True, max_length=16)
    viewer_id: str = Field(primary_key=True, max_length=128)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_application_id", "application_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(max_length=128)
    at: datetime
    actor_kind: str | None = Field(default=None, max_length=16)
    actor_id: str | None = Field(default=None, max_length=128)
    actor_name: str | None = Field(default=None, max_length=200)
    action: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class UsedLoginToken(SQLModel, table=True):
    """Makes staff login links single-use: redeeming inserts the token id."""

    __tablename__ = "used_login_tokens"
    token_id: str = Field(primary_key=True, max_length=64)
    used_at: datetime
    # The first instant at which the token no longer verifies: the row is
    # kept until then, so a used link can never be replayed.
    expires_at: datetime | None = None


class BellMark(SQLModel, table=True):
    """How far one person has dismissed a conversation's bell entry ("mark
    as read" in the bell) without reading it. The bell itself is derived
    from messages, read positions and these marks (store/notifications.py),
    so a send writes nothing per recipient."""

    __tablename__ = "bell_marks"
    person_kind: str = Field(primary_key=True, max_length=16)
    person_id: str = Field(primary_key=True, max_length=128)
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    seq: int = Field(default=0)


class Notification(SQLModel, table=True):
    """Bell rows of versions before 0011, one per recipient: no longer
    written or read (the bell is derived, see `BellMark`), kept so that a
    downgrade finds its data."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_recipient", "recipient_kind", "recipient_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    recipient_kind: str = Field(max_length=16)
    recipient_id: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    conversation_id: str | None = Field(default=None, max_length=32)
    message_id: str | None = Field(default=None, max_length=32)
    text: str = Field(max_length=500)
    created_at: datetime
    read_at: datetime | None = None


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


organisations = _table(Organisation)
staff = _table(Staff)
candidates = _table(Candidate)
jobs = _table(Job)
applications = _table(Application)
conversations = _table(Conversation)
messages = _table(Message)
attachments = _table(Attachment)
attachment_blobs = _table(AttachmentBlob)
read_positions = _table(ReadPosition)
archives = _table(Archive)
hidden_messages = _table(HiddenMessage)
audit_events = _table(AuditEvent)
used_login_tokens = _table(UsedLoginToken)
notifications = _table(Notification)
bell_marks = _table(BellMark)
outgoing_emails = _table(OutgoingEmail)
email_cursors = _table(EmailCursor)
email_digests = _table(EmailDigest)
reply_addresses = _table(ReplyAddress)

metadata = SQLModel.metadata
