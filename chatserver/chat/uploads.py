"""Attachments: checked by their bytes, stored by content, served only to
those who may read the conversation they were sent in."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import filetype

from chatserver.chat import access, views
from chatserver.chat.identity import Viewer
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid, not_found
from chatserver.store import attachments

# The allowed types (SPEC section 2), by the MIME type sniffed from the bytes.
PDF = "application/pdf"
DOC = "application/msword"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
PNG = "image/png"
JPEG = "image/jpeg"
TEXT = "text/plain"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Bytes a plain-text file may not contain: NUL and most C0 controls.
BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
SAFE_NAME = re.compile(r"[^\w.\- ()]+")
NAME_MAX = 200
# The extensions a download may carry for each type; a name that does not
# end in one gets the first appended, so what the user's computer opens the
# file with matches what was checked (an HTML page uploaded as text is saved
# as "page.html.txt", never rendered as a page).
EXTENSIONS = {
    PDF: (".pdf",),
    DOC: (".doc",),
    DOCX: (".docx",),
    ODT: (".odt",),
    PNG: (".png",),
    JPEG: (".jpg", ".jpeg"),
    TEXT: (".txt", ".text", ".md", ".csv", ".log"),
}


def sniff(data: bytes) -> str | None:
    """The allowed content type of these bytes, or None."""
    kind = filetype.guess_mime(data)
    if kind in (PDF, PNG, JPEG):
        return str(kind)
    if data.startswith(b"PK\x03\x04"):
        return _office_zip_type(data)
    if data.startswith(OLE2_MAGIC):
        return DOC
    if kind is None and not BINARY_BYTES.search(data):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return TEXT
    return None


def _office_zip_type(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            names = set(archive.namelist())
            if "word/document.xml" in names:
                return DOCX
            if "mimetype" in names and archive.read("mimetype").strip() == ODT.encode():
                return ODT
    except (zipfile.BadZipFile, KeyError, OSError):
        return None
    return None


def clean_name(name: str, content_type: str) -> str:
    """A display and download name with no path or control characters, and
    an extension that matches the type sniffed from the bytes."""
    name = unicodedata.normalize("NFC", os.path.basename(name.replace("\\", "/")))
    name = SAFE_NAME.sub("_", name).strip(" .") or "attachment"
    extensions = EXTENSIONS[content_type]
    if not name.lower().endswith(extensions):
        name += extensions[0]
    return name[-NAME_MAX:]


def _path(chat: Chat, sha256: str) -> Path:
    return chat.settings.attachments_dir / sha256[:2] / sha256


async def store(chat: Chat, viewer: Viewer, name: str, data: bytes) -> dict[str, Any]:
    if len(data) > chat.settings.max_attachment_bytes:
        raise ChatError(ErrorCode.TOO_LARGE, "Attachments are at most 10 MiB.")
    if not data:
        raise invalid("The file is empty.")
    content_type = sniff(data)
    if content_type is None:
        raise invalid(
            "Only PDF, Word, OpenDocument text, plain text, PNG and JPEG files are allowed."
        )
    digest = hashlib.sha256(data).hexdigest()
    path = _path(chat, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
        partial.write_bytes(data)
        partial.replace(path)
    row = {
        "id": secrets.token_hex(16),
        "uploader_kind": viewer.kind.value,
        "uploader_id": viewer.id,
        "message_id": None,
        "name": clean_name(name, content_type),
        "size": len(data),
        "content_type": content_type,
        "sha256": digest,
        "created_at": chat.clock(),
    }
    async with chat.db.transaction() as conn:
        await attachments.add(conn, row)
    result = views.attachment(row)
    del result["url"]
    return result


@dataclass(frozen=True)
class Download:
    path: Path
    name: str
    content_type: str


async def open_download(chat: Chat, viewer: Viewer, attachment_id: str) -> Download:
    if not access.plausible_id(attachment_id):
        raise not_found("attachment")
    async with chat.db.transaction() as conn:
        row = await attachments.get_with_conversation(conn, attachment_id)
        if row is None:
            raise not_found("attachment")
        if row["conversation_id"] is None:
            mine = row["uploader_kind"] == viewer.kind.value and row["uploader_id"] == viewer.id
            if not mine:
                raise not_found("attachment")
        else:
            try:
                await access.conversation_for(conn, viewer, row["conversation_id"])
            except ChatError as exc:
                raise not_found("attachment") from exc
    return Download(_path(chat, row["sha256"]), row["name"], row["content_type"])
