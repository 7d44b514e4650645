"""`/api/attachments`: upload, download and thumbnails (SPEC 2 and 5a).

An upload is counted while it streams in and refused with `too_large` the
moment it passes the limit, with or without a Content-Length (and whatever
a Content-Length claims): nothing past the limit is read, so nothing past
it is written to a temporary file.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive

from chatserver.chat import uploads
from chatserver.errors import invalid
from chatserver.web.deps import require_viewer, services
from chatserver.web.responses import json

# Room for the multipart boundary and the part's headers around a file of
# the largest allowed size (a browser's are a few hundred bytes).
MULTIPART_OVERHEAD = 64 * 1024
MULTIPART_ONLY = "Send the file as multipart/form-data in the field 'file'."
# Written as "_" in a download's ASCII file name: what some browsers would
# misread in the quoted value (quote, backslash, percent), what makes it a
# path or a drive (slash, colon), and what naive header parsers split on.
FALLBACK_REPLACED = frozenset('"\\%/:;')
LEADING_DOTS = re.compile(r"^\.+")


def counted(receive: Receive, file_limit: int) -> Receive:
    """`receive` that fails with `too_large` once the body cannot hold a file
    of at most `file_limit` bytes (plus the multipart framing around it)."""
    total = 0
    limit = file_limit + MULTIPART_OVERHEAD

    async def receive_counted() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise uploads.file_too_large(file_limit)
        return message

    return receive_counted


async def upload(request: Request) -> Response:
    """Multipart field `file` → 201 the attachment (SPEC 5a)."""
    who = await require_viewer(request, mutation=True)
    svc = services(request)
    limit = svc.settings.max_attachment_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise uploads.file_too_large(limit)
    body = Request(request.scope, counted(request.receive, limit))
    try:
        form = await body.form(max_files=1, max_fields=5)
    except (MultiPartException, HTTPException, ValueError) as exc:
        raise invalid(MULTIPART_ONLY) from exc
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile) or file.size is None:
            raise invalid(MULTIPART_ONLY)
        name = uploads.form_file_name(file.filename or "attachment")
        result = await uploads.store(svc.chat, who.viewer, name, file.file, file.size)
    finally:
        await form.close()
    return json(result, status_code=201)


def content_disposition(disposition: str, name: str) -> str:
    """`disposition` naming the file `name` (RFC 6266): `filename` is an
    ASCII stand-in (accents dropped, anything else that is not plain
    printable ASCII, and the quote, backslash and percent sign that some
    browsers would misread, as "_"), and `filename*` the exact name as
    UTF-8, percent-encoded (RFC 8187), for every browser that reads it.
    Neither can hold a quote or a line break, so no name can end the value
    or the header. Full-width dots, slashes and colons decompose to ASCII
    ones, so the stand-in also loses path separators, colons, semicolons
    and leading dots: `curl -OJ`, or a client that joins it to a folder,
    must not get `../../.bashrc`."""
    ascii_name = "".join(
        c if " " <= c <= "~" and c not in FALLBACK_REPLACED else "_"
        for c in unicodedata.normalize("NFKD", name)
        if not unicodedata.combining(c)
    )
    ascii_name = LEADING_DOTS.sub(lambda dots: "_" * len(dots[0]), ascii_name)
    if ascii_name == name:
        return f'{disposition}; filename="{name}"'
    exact = quote(name, safe="", errors="replace")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{exact}"


def _stream(found: uploads.Download, disposition: str) -> Response:
    """The bytes streamed part by part, with the file's name (for a
    download) and type."""
    disposition = content_disposition(disposition, found.name)
    headers = {
        "Content-Disposition": disposition,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    if found.size is not None:
        headers["Content-Length"] = str(found.size)
    return StreamingResponse(found.chunks, media_type=found.content_type, headers=headers)


async def download(request: Request) -> Response:
    """Always a download (never rendered inline), and never content-sniffed."""
    who = await require_viewer(request)
    found = await uploads.open_download(
        services(request).chat, who.viewer, request.path_params["id"]
    )
    return _stream(found, "attachment")


async def thumbnail(request: Request) -> Response:
    """The server-drawn thumbnail of an image attachment, for `<img>`."""
    who = await require_viewer(request)
    found = await uploads.open_thumbnail(
        services(request).chat, who.viewer, request.path_params["id"]
    )
    return _stream(found, "inline")


routes = [
    Route("/api/attachments", upload, methods=["POST"]),
    Route("/api/attachments/{id}", download, methods=["GET"]),
    Route("/api/attachments/{id}/thumbnail", thumbnail, methods=["GET"]),
]
