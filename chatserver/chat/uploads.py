"""Attachments: checked by their bytes, stored by content, served only to
those who may read the conversation they were sent in.

The check (type from the bytes, hash, and a thumbnail for images) runs in
a small pool of worker threads with a time bound, never on the event loop:
anyone signed in, a candidate too, chooses the bytes, and every step of the
check reads a bounded amount (see `sniffing.py` and `thumbnails.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import access, ids, sniffing, thumbnails, views
from chatserver.chat.identity import Viewer
from chatserver.chat.service import Chat
from chatserver.clock import as_utc
from chatserver.errors import ChatError, ErrorCode, invalid, not_found, too_large
from chatserver.store import attachments

# Re-exported for callers that name the types.
PDF, DOC, DOCX, ODT = sniffing.PDF, sniffing.DOC, sniffing.DOCX, sniffing.ODT
PNG, JPEG, TEXT = sniffing.PNG, sniffing.JPEG, sniffing.TEXT

# What a name keeps is the person's own (quotes, apostrophes, commas, "&",
# "%", "#", emoji, any script); what goes is what could hurt where the
# name is used: control characters (C0, DEL, C1), the bidi overrides and
# isolates that can show "cv\u202efdp.exe" as "cvexe.pdf", and lone
# surrogates (no encoding can carry them). Directories, leading dots and
# the length are dealt with apart.
UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# A browser escapes exactly these three in a multipart file name (the HTML
# standard's form encoding); nothing else is percent-decoded, so "100%"
# and a literal "%41" stay as written.
BROWSER_ESCAPES = re.compile("%(22|0a|0d)", re.IGNORECASE)
NAME_MAX = 200
# The extensions a download may carry for each type; a name that does not
# end in one gets the first appended, so what the user's computer opens the
# file with matches what was checked ("scan.txt" holding a PDF is saved as
# "scan.txt.pdf").
EXTENSIONS = {
    PDF: (".pdf",),
    DOC: (".doc",),
    DOCX: (".docx",),
    ODT: (".odt",),
    PNG: (".png",),
    JPEG: (".jpg", ".jpeg"),
    TEXT: (".txt", ".text", ".md", ".csv", ".log"),
}
# Two checks at a time per process: each holds at most one decoded
# thumbnail (32 MB) and a few pieces of the file, and the 2-core machines
# this runs on have no spare cores for more. Others queue for a thread.
CHECK_WORKERS = 2
_checkers = ThreadPoolExecutor(max_workers=CHECK_WORKERS, thread_name_prefix="upload-check")
# A check reads at most 10 MiB and decodes at most one reduced image: well
# under a second. One that takes longer than this is refused rather than
# left to hold the upload open.
CHECK_SECONDS = 20.0
HASH_PIECE = 256 * 1024
# Files a person may have uploaded within a day and not sent: enough for
# any message (5 files each) being drafted in a few tabs, few enough that
# uploading without sending cannot fill the server's storage (200 MiB a
# day per person at most). A file counts until it is sent or a day old.
MAX_UNSENT_UPLOADS = 20
UNSENT_WINDOW = timedelta(days=1)
# Files never sent that `expire_unsent` deletes per transaction.
EXPIRE_BATCH = 200
ALLOWED_TYPES_SENTENCE = (
    "Only PDF, Word, OpenDocument text, plain text, PNG and JPEG files are allowed."
)


@dataclass(frozen=True)
class Checked:
    """What the worker thread found out about an upload."""

    content_type: str
    sha256: str
    size: int
    thumbnail: thumbnails.Thumbnail | None


def file_too_large(limit_bytes: int) -> ChatError:
    """The one refusal of an oversized file, whether the web layer stops the
    body while it streams or the domain sees its final size."""
    return too_large(f"Attachments are at most {limit_bytes / 2**20:g} MiB.")


def check(source: BinaryIO) -> Checked:
    """Type, hash and thumbnail of a file (synchronous: a worker thread's job).
    Raises ChatError `invalid` for a type that is not allowed."""
    content_type = sniffing.sniff(source)
    if content_type is None:
        raise invalid(ALLOWED_TYPES_SENTENCE)
    thumbnail = None
    if content_type in sniffing.IMAGES:
        try:
            thumbnail = thumbnails.make(source, content_type)
        except thumbnails.ImageTooLarge as exc:
            raise invalid(
                f"Images are at most {thumbnails.MAX_IMAGE_PIXELS // 1_000_000} megapixels."
            ) from exc
    digest = hashlib.sha256()
    source.seek(0)
    size = 0
    while piece := source.read(HASH_PIECE):
        digest.update(piece)
        size += len(piece)
    return Checked(content_type, digest.hexdigest(), size, thumbnail)


async def check_off_loop(source: BinaryIO) -> Checked:
    """`check` in the worker pool, answered within CHECK_SECONDS (waiting for
    a thread included). A thread cannot be stopped, so one whose answer
    comes too late still finishes its bounded work in its pool slot: a
    stream of slow files queues up rather than piling up threads."""
    future = asyncio.get_running_loop().run_in_executor(_checkers, check, source)
    # A late answer's outcome is read here so that asyncio does not report
    # it as never retrieved.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await asyncio.shield(future)
    except TimeoutError as exc:
        raise invalid("The file could not be checked in time.") from exc


def form_file_name(sent: str) -> str:
    """The file name as the person's computer had it, from a browser's
    multipart form: `%22`, `%0A` and `%0D` back to `"`, LF and CR."""
    return BROWSER_ESCAPES.sub(lambda escape: chr(int(escape[1], 16)), sent)


def clean_name(name: str, content_type: str) -> str:
    """A display and download name: the last part of the path the name may
    carry, without control or bidi override characters, leading dots or
    surrounding spaces, at most NAME_MAX characters, and ending in an
    extension that matches the type judged from the bytes."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", UNSAFE_CHARACTERS.sub("", name))
    name = name.strip().lstrip(".").rstrip(" .").strip() or "attachment"
    extensions = EXTENSIONS[content_type]
    extension = next((e for e in extensions if name[-len(e) :].lower() == e), None)
    if extension is None:
        extension = extensions[0]
    else:
        name, extension = name[: -len(extension)], name[-len(extension) :]
    if len(name) > NAME_MAX - len(extension):
        name = name[: NAME_MAX - len(extension)].rstrip(" .") or "attachment"
    return name + extension


async def store(
    chat: Chat, viewer: Viewer, name: str, source: BinaryIO, size: int
) -> dict[str, Any]:
    """Check and keep an uploaded file (`size` bytes readable from `source`)."""
    if size > chat.settings.max_attachment_bytes:
        raise file_too_large(chat.settings.max_attachment_bytes)
    if size == 0:
        raise invalid("The file is empty.")
    # Refused before any work on the file, and checked again as it is added.
    async with chat.db.transaction() as conn:
        await _within_unsent_bound(conn, viewer, chat.clock())
    checked = await check_off_loop(source)
    uploaded_at = chat.clock()
    files: list[tuple[str, BinaryIO]] = [(checked.sha256, source)]
    thumbnail_sha256 = None
    if checked.thumbnail is not None:
        thumbnail_sha256 = hashlib.sha256(checked.thumbnail.data).hexdigest()
        files.append((thumbnail_sha256, BytesIO(checked.thumbnail.data)))
    row = {
        "id": secrets.token_hex(16),
        "uploader_kind": viewer.kind.value,
        "uploader_id": viewer.id,
        "message_id": None,
        "name": clean_name(name, checked.content_type),
        "size": checked.size,
        "content_type": checked.content_type,
        "sha256": checked.sha256,
        "created_at": uploaded_at,
        "thumbnail_sha256": thumbnail_sha256,
    }

    async def refer(conn: AsyncConnection) -> None:
        await attachments.uploads_take_turns(conn, viewer.kind.value, viewer.id)
        await _within_unsent_bound(conn, viewer, uploaded_at)
        await attachments.add(conn, row)

    await chat.blobs.store(files, refer)
    result = views.attachment(row)
    # The upload's answer is the attachment before it is sent (SPEC 5a):
    # its download and thumbnail addresses come with the message.
    del result["url"]
    result.pop("thumbnail_url", None)
    return result


@dataclass(frozen=True)
class Tidied:
    expired: int  # files never sent, deleted
    swept: int  # blobs no file referred to, deleted


async def tidy(chat: Chat) -> Tidied:
    """Expire the files never sent, then sweep the bytes that nothing refers
    to (left behind by a release that failed or never ran)."""
    expired = await expire_unsent(chat)
    return Tidied(expired, await chat.blobs.sweep())


async def expire_unsent(chat: Chat) -> int:
    """Delete the files uploaded more than CHAT_UNSENT_UPLOAD_DAYS ago and
    never sent, and their bytes unless another upload refers to them; how
    many files. In rounds of EXPIRE_BATCH, each a short transaction."""
    before = chat.clock() - timedelta(days=chat.settings.unsent_upload_days)
    expired = 0
    while True:
        async with chat.db.transaction() as conn:
            count, sha256s = await attachments.delete_unsent_before(conn, before, EXPIRE_BATCH)
        if sha256s:
            await chat.blobs.release(sha256s)
        expired += count
        if count < EXPIRE_BATCH:
            return expired


async def _within_unsent_bound(conn: AsyncConnection, viewer: Viewer, now: datetime) -> None:
    """Refuse the upload (`rate_limited`) while the person has
    MAX_UNSENT_UPLOADS files from the last UNSENT_WINDOW not sent; the wait
    is until the oldest of them leaves the window."""
    count, oldest = await attachments.unsent_since(
        conn, viewer.kind.value, viewer.id, now - UNSENT_WINDOW
    )
    if count < MAX_UNSENT_UPLOADS or oldest is None:
        return
    wait = as_utc(oldest) + UNSENT_WINDOW - now
    raise ChatError(
        ErrorCode.RATE_LIMITED,
        f"At most {MAX_UNSENT_UPLOADS} uploaded files may wait to be sent; "
        "send some first, or try again later.",
        retry_after_ms=max(1, int(wait.total_seconds() * 1000)),
    )


@dataclass(frozen=True)
class Download:
    """Bytes to stream, with what the response needs to say about them."""

    chunks: AsyncIterator[bytes]
    name: str
    content_type: str
    size: int | None


async def _readable(chat: Chat, viewer: Viewer, attachment_id: str) -> Any:
    """The attachment row if this viewer may read it; else `not_found`, the
    same for another tenant's file, or one on a message the viewer's
    history hides, as for no file at all."""
    ids.our_id(attachment_id, "attachment")
    async with chat.db.transaction() as conn:
        row = await attachments.get_with_conversation(
            conn, attachment_id, viewer.kind.value, viewer.id
        )
        if row is None:
            raise not_found("attachment")
        if row["conversation_id"] is None:
            mine = row["uploader_kind"] == viewer.kind.value and row["uploader_id"] == viewer.id
            if not mine:
                raise not_found("attachment")
        else:
            await access.conversation_of_item(conn, viewer, row["conversation_id"], "attachment")
            # What history shows as a hidden placeholder, without its files.
            if row["hidden"]:
                raise not_found("attachment")
    return row


async def _stored(chat: Chat, sha256: str) -> AsyncIterator[bytes]:
    """The blob's parts, after checking that its first part is there (a
    missing blob is `not_found` before any response has started)."""
    parts = chat.blobs.read(sha256)
    first = await anext(parts, None)
    if first is None:
        raise not_found("attachment")

    async def all_parts() -> AsyncIterator[bytes]:
        yield first
        async for part in parts:
            yield part

    return all_parts()


async def open_download(chat: Chat, viewer: Viewer, attachment_id: str) -> Download:
    row = await _readable(chat, viewer, attachment_id)
    chunks = await _stored(chat, row["sha256"])
    return Download(chunks, row["name"], row["content_type"], row["size"])


async def open_thumbnail(chat: Chat, viewer: Viewer, attachment_id: str) -> Download:
    """The thumbnail of an image attachment, authorised like its download."""
    row = await _readable(chat, viewer, attachment_id)
    if row["thumbnail_sha256"] is None:
        raise not_found("thumbnail")
    stem = row["name"].rsplit(".", 1)[0]
    extension = EXTENSIONS[row["content_type"]][0]
    return Download(
        await _stored(chat, row["thumbnail_sha256"]),
        f"{stem}-thumbnail{extension}",
        row["content_type"],
        None,
    )
