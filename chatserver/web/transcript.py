"""The transcript (SPEC 5a and 6): `GET /api/conversations/{id}/transcript`
is a printable HTML page, `…/transcript.pdf` the same document as a PDF
download.

Both are rendered on the server from one template, in the viewer's
timezone, so they print the same from any browser and need no script. The
PDF is drawn by WeasyPrint (with Debian's Pango) in a worker thread, one at
a time per process, and fetches nothing: every URL it meets is refused, so
a link in a message can never make the server request anything.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatserver.chat import transcripts
from chatserver.chat.transcripts import Transcript
from chatserver.errors import ChatError, ErrorCode
from chatserver.web.deps import require_viewer, services
from chatserver.web.templating import ROOT

log = logging.getLogger(__name__)

STYLESHEET = ROOT / "static" / "transcript.css"
# One PDF at a time per process: WeasyPrint is CPU-bound for a second or
# so per few hundred messages, and the web workers have other work.
_pdf_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcript-pdf")
# A transcript of more entries than this is refused as a PDF (the HTML page
# still prints it). Layout takes about 6 s per 1,000 messages on this
# machine's cores, so 2,000 hold the PDF worker for some 12 s; no hiring
# conversation comes near it, and a flood of messages cannot hold it longer.
PDF_MAX_ENTRIES = 2_000
# The most messages of an HTML transcript: read and rendered (in a thread,
# not on the event loop) in one go, about a second for 20,000 on this
# machine. Far beyond any hiring conversation; a flood of messages cannot
# make a request that holds a worker longer.
HTML_MAX_MESSAGES = 20_000
# PDFs waiting for or in the PDF worker, per process: past this a request is
# answered `rate_limited` at once rather than queued behind minutes of work.
PDF_MAX_WAITING = 4
PDF_RETRY_MS = 10_000
_pdfs_waiting = asyncio.Semaphore(PDF_MAX_WAITING)
# Extra rules for paper: page size, margins and page numbers.
PDF_PAGE_CSS = """
@page { size: A4; margin: 18mm 16mm 20mm;
  @bottom-right { content: "Page " counter(page) " of " counter(pages);
                  font-size: 9px; color: #6b7280; } }
body { background: #fff; }
.transcript { border: 0; margin: 0; padding: 0; max-width: none; }
"""

_env = Environment(
    loader=FileSystemLoader(str(ROOT / "templates")),
    autoescape=select_autoescape(enabled_extensions=("html",)),
)


def clock(at: datetime) -> str:
    """The local time and what zone it is in, such as 09:30 JST."""
    return f"{at:%H:%M} {transcripts.time_zone_name(at)}"


def day(at: datetime) -> str:
    return f"{at:%A} {at.day} {at:%B %Y}"


_env.filters["clock"] = clock
_env.filters["day"] = day


def render_html(transcript: Transcript, *, pdf: bool) -> str:
    return _env.get_template("transcript.html").render(transcript=transcript, pdf=pdf)


def file_stem(transcript: Transcript) -> str:
    """A file name such as transcript-cara-jones-teacher-of-mathematics:
    ASCII, from the candidate's name and the job title, no ids."""
    words = f"{transcript.candidate_name} {transcript.job_title}"
    ascii_words = unicodedata.normalize("NFKD", words).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_words.lower()).strip("-")[:80].strip("-")
    return f"transcript-{slug}" if slug else "transcript"


class PdfUnavailable(Exception):
    """WeasyPrint cannot load its system libraries (scripts/bootstrap installs them)."""


def render_pdf(html: str) -> bytes:
    """The PDF of a transcript page (synchronous: the PDF worker's job).
    WeasyPrint is imported here, on first use, so that processes that never
    draw a PDF do not pay for loading it."""
    try:
        from weasyprint import CSS, HTML
        from weasyprint.urls import URLFetcher
    except OSError as exc:  # Pango or its friends are not installed
        raise PdfUnavailable(str(exc)) from exc

    # No protocol is allowed: every stylesheet, image or font URL is refused.
    fetcher = URLFetcher(allowed_protocols=())
    document = HTML(string=html, base_url=None, url_fetcher=fetcher)
    stylesheets = [
        CSS(filename=str(STYLESHEET), url_fetcher=fetcher),
        CSS(string=PDF_PAGE_CSS, url_fetcher=fetcher),
    ]
    pdf = document.write_pdf(stylesheets=stylesheets)
    assert isinstance(pdf, bytes)
    return pdf


async def _transcript(request: Request, max_messages: int) -> Transcript:
    who = await require_viewer(request)
    chat = services(request).chat
    return await transcripts.build(chat, who.viewer, request.path_params["id"], max_messages)


async def transcript(request: Request) -> Response:
    found = await _transcript(request, HTML_MAX_MESSAGES)
    html = await asyncio.to_thread(render_html, found, pdf=False)
    response = Response(html, media_type="text/html; charset=utf-8")
    disposition = "attachment" if request.query_params.get("download") else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{file_stem(found)}.html"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


async def transcript_pdf(request: Request) -> Response:
    found = await _transcript(request, PDF_MAX_ENTRIES)
    if len(found.entries) > PDF_MAX_ENTRIES:
        raise ChatError(
            ErrorCode.TOO_LARGE,
            f"A PDF holds at most {PDF_MAX_ENTRIES} entries; print the HTML transcript instead.",
        )
    if _pdfs_waiting.locked():
        raise ChatError(
            ErrorCode.RATE_LIMITED,
            "Other PDF transcripts are being made; try again in a moment.",
            retry_after_ms=PDF_RETRY_MS,
        )
    try:
        async with _pdfs_waiting:
            html = await asyncio.to_thread(render_html, found, pdf=True)
            loop = asyncio.get_running_loop()
            pdf = await loop.run_in_executor(_pdf_worker, render_pdf, html)
    except PdfUnavailable as exc:
        log.error("transcript PDF unavailable: %s", exc)
        raise ChatError(
            ErrorCode.UNAVAILABLE,
            "PDF transcripts are not available on this server; print the HTML transcript.",
        ) from exc
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{file_stem(found)}.pdf"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


routes = [
    Route("/api/conversations/{id}/transcript", transcript, methods=["GET"]),
    Route("/api/conversations/{id}/transcript.pdf", transcript_pdf, methods=["GET"]),
]
