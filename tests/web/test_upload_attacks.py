"""Hostile uploads (issue 9 items 1 and 2, issue 8 item 7): zip and image
bombs built here, bodies that never say how long they are or lie about it,
and markup or scripts dressed up as documents. Anyone signed in can upload,
so every attack is made as the candidate.

Memory is measured with tracemalloc around the whole request (every thread,
zlib's and Pillow's buffers included) and asserted as a bound: inflating
the bombs the old way peaked at 600 MiB; the bound here is 24 MiB.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
from PIL import Image

from chatserver.chat import sniffing
from chatserver.web.attachments import MULTIPART_OVERHEAD
from tests.conftest import Scene
from tests.helpers import Person, error_of, upload
from tests.web.test_attachments import docx, odt

MiB = 1024 * 1024
LIMIT = 10 * MiB
# Far below what inflating any bomb here would take (300 MiB and more), far
# above what checking a 10 MiB file needs (a few pieces of it, one small
# decoded image, the request's own buffers).
MEMORY_BOUND = 24 * MiB
ODT_TYPE = b"application/vnd.oasis.opendocument.text"


async def peak_memory(work: Awaitable[httpx.Response]) -> tuple[httpx.Response, int]:
    """The response, and the most memory allocated at once while it was made."""
    tracemalloc.start()
    try:
        response = await work
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak


def deflated_entry(name: str, method: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 11, 2, 9, 30, 0))
    info.compress_type = method
    return info


def bomb(entries: dict[str, int], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip whose entries inflate to the given sizes in MiB (of zeros),
    written a mebibyte at a time so the test itself stays small."""
    buffer = io.BytesIO()
    zero = bytes(MiB)
    with zipfile.ZipFile(buffer, "w", compresslevel=9) as archive:
        for name, mib in entries.items():
            with archive.open(deflated_entry(name, method), "w") as out:
                for _ in range(mib):
                    out.write(zero)
    return buffer.getvalue()


def lie_about_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite the declared uncompressed size of entry `name` in its local
    header and in the central directory: the archive now claims the entry
    is `size` bytes, while its deflate stream still inflates to far more."""
    patched = bytearray(data)
    at = 0
    while (at := patched.find(b"PK\x03\x04", at)) >= 0:
        length = struct.unpack_from("<H", patched, at + 26)[0]
        if patched[at + 30 : at + 30 + length] == name:
            struct.pack_into("<I", patched, at + 22, size)
        at += 4
    at = 0
    while (at := patched.find(b"PK\x01\x02", at)) >= 0:
        length = struct.unpack_from("<H", patched, at + 28)[0]
        if patched[at + 46 : at + 46 + length] == name:
            struct.pack_into("<I", patched, at + 24, size)
        at += 4
    return bytes(patched)


def many_entries(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        archive.writestr("word/document.xml", b"<w:document/>")
        for i in range(count):
            archive.writestr(f"e/{i}", b"")
    return buffer.getvalue()


def understating(data: bytes, count: int) -> bytes:
    """The archive with its end record declaring `count` entries (on this
    disk and in all), whatever its central directory holds."""
    patched = bytearray(data)
    at = patched.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", patched, at + 8, count, count)
    return bytes(patched)


def with_zip64_truth(data: bytes, count: int) -> bytes:
    """The archive with a ZIP64 end record and locator that tell the truth
    about its directory, before a classic end record that declares `count`
    entries in 100 bytes: zipfile believes the ZIP64 record."""
    at = data.rfind(b"PK\x05\x06")
    _, _, _, _, total, size, offset, _ = struct.unpack_from("<4s4H2LH", data, at)
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, total, total, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    end = bytearray(data[at:])
    struct.pack_into("<HHL", end, 8, count, count, 100)
    return data[:at] + record + locator + bytes(end)


def progressive_jpeg(width: int, height: int) -> bytes:
    """A real progressive JPEG, every sample kept (4:4:4), of one colour:
    a 6,000-pixel square is under 300 KB."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 30, 200)).save(
        out, "JPEG", progressive=True, subsampling=0, quality=5
    )
    return out.getvalue()


def png_header_bomb(width: int, height: int) -> bytes:
    """A real PNG of `width` x `height` black grey pixels, compressed a row
    band at a time (a 9,000-pixel square is 81 MB of pixels in 80 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    rows = bytes(width + 1) * 64
    pixels = bytearray()
    for _ in range(height // 64):
        pixels += squeeze.compress(rows)
    pixels += squeeze.compress(bytes(width + 1) * (height % 64))
    pixels += squeeze.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", bytes(pixels))
        + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim a size."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


# -- zip bombs ------------------------------------------------------------------


async def test_zip_bombs_are_refused_without_being_inflated(scene: Scene) -> None:
    odt_bomb = bomb({"mimetype": 300, "content.xml": 1})
    assert len(odt_bomb) < 400 * 1024  # 300 KB claiming 301 MiB
    bombs = {
        "cv.odt": odt_bomb,
        # The directory is honest about a small entry whose stream inflates to 300 MiB.
        "liar.odt": lie_about_sizes(bomb({"mimetype": 300}), b"mimetype", len(ODT_TYPE)),
        "cv.docx": bomb({"[Content_Types].xml": 200, "word/document.xml": 200}),
        # bzip2 has no output bound in zipfile: never opened at all.
        "bz.odt": bomb({"mimetype": 64}, zipfile.ZIP_BZIP2),
        "wide.docx": many_entries(sniffing.MAX_ZIP_ENTRIES + 1),
        # Its end record says 3 entries; zipfile would list all 40,000.
        "liar.docx": understating(many_entries(40_000), 3),
        # Its ZIP64 record says 20,002 entries, which zipfile believes over
        # the classic record's 3.
        "liar64.docx": with_zip64_truth(many_entries(20_000), 3),
    }
    for name, data in bombs.items():
        response, peak = await peak_memory(upload(scene.cara, name, data))
        error_of(response, 422, "invalid")
        assert peak < MEMORY_BOUND, (name, peak)


def test_a_lying_archive_is_refused_before_its_directory_is_listed() -> None:
    """What zipfile would list is judged from the file's tail first: a
    classic end record that understates the entries, or a ZIP64 record
    (believed over the classic one) is refused before zipfile parses the
    directory, which cost 10 MB for these 20,000 entries."""
    for name, data in (
        ("understated", understating(many_entries(20_000), 3)),
        ("zip64", with_zip64_truth(many_entries(20_000), 3)),
    ):
        source = io.BytesIO(data)
        tracemalloc.start()
        try:
            kind = sniffing.sniff(source)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert kind is None, name
        assert peak < MiB, (name, peak)


async def test_a_real_document_with_a_bomb_beside_it_is_judged_by_a_few_bytes(
    scene: Scene,
) -> None:
    """An honest-looking ODT whose `mimetype` is right but whose other entry
    is a bomb: judged from the directory and the first bytes of `mimetype`
    only, within the memory bound; a DOCX by its directory alone."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", ODT_TYPE, compress_type=zipfile.ZIP_STORED)
        with archive.open(deflated_entry("content.xml"), "w") as out:
            for _ in range(100):
                out.write(bytes(MiB))
    response, peak = await peak_memory(upload(scene.cara, "cv.odt", buffer.getvalue()))
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == ODT_TYPE.decode()
    assert peak < MEMORY_BOUND, peak
    for name, data in (("letter.docx", docx()), ("letter.odt", odt())):
        assert (await upload(scene.cara, name, data)).status_code == 201


# -- image bombs ------------------------------------------------------------------


async def test_images_claiming_huge_sizes_are_refused_before_decoding(scene: Scene) -> None:
    for name, data in (
        ("huge.png", png_header_bomb(20_000, 20_000)),
        ("huge.jpg", jpeg_claiming(60_000, 60_000)),
    ):
        response, peak = await peak_memory(upload(scene.cara, name, data))
        assert error_of(response, 422, "invalid")["message"].startswith("Images are at most")
        assert peak < MEMORY_BOUND, (name, peak)


async def test_a_large_png_is_accepted_without_a_thumbnail_and_without_decoding(
    scene: Scene,
) -> None:
    data = png_header_bomb(9_000, 9_000)  # 81 megapixels, under the refusal line
    response, peak = await peak_memory(upload(scene.cara, "scan.png", data))
    assert response.status_code == 201, response.text
    assert peak < MEMORY_BOUND, peak
    sent = await scene.cara.send(scene.conversation, "", attachments=[response.json()["id"]])
    [attachment] = sent.json()["attachments"]
    assert "thumbnail_url" not in attachment


async def test_a_large_progressive_jpeg_gets_no_thumbnail(scene: Scene) -> None:
    """Its decode would hold every coefficient of the image whatever the
    scale (libjpeg's memory, which tracemalloc does not see: the real
    server's RSS is bounded in tests/e2e/test_upload_bombs.py); a small one
    has its thumbnail."""
    for name, side, thumbnail in (("poster.jpg", 3_000, False), ("photo.jpg", 2_000, True)):
        response = await upload(scene.cara, name, progressive_jpeg(side, side))
        assert response.status_code == 201, response.text
        sent = await scene.cara.send(scene.conversation, "", attachments=[response.json()["id"]])
        [attachment] = sent.json()["attachments"]
        assert ("thumbnail_url" in attachment) is thumbnail, name


# -- bodies without a length, and lying lengths ----------------------------------------


class Body:
    """A multipart body of one file of `size` bytes, produced lazily, that
    counts how much of it the server asked for."""

    def __init__(self, size: int, boundary: str = "bounded-7f3a") -> None:
        self.size = size
        self.boundary = boundary
        self.sent = 0

    async def stream(self) -> AsyncIterator[bytes]:
        head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        yield self._count(head)
        piece = b"a" * (64 * 1024)
        left = self.size
        while left > 0:
            chunk = piece[:left]
            left -= len(chunk)
            yield self._count(chunk)
        yield self._count(f"\r\n--{self.boundary}--\r\n".encode())

    def _count(self, chunk: bytes) -> bytes:
        self.sent += len(chunk)
        return chunk

    def headers(self, person: Person, **extra: str) -> dict[str, str]:
        return {
            **person.csrf,
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            **extra,
        }


@pytest.mark.parametrize("declared", [None, "2048"], ids=["chunked", "lying-length"])
async def test_an_endless_upload_is_cut_off_at_the_limit(
    scene: Scene, declared: str | None
) -> None:
    body = Body(200 * MiB)
    extra = {} if declared is None else {"Content-Length": declared}
    response = await scene.cara.client.post(
        "/api/attachments", content=body.stream(), headers=body.headers(scene.cara, **extra)
    )
    error_of(response, 413, "too_large")
    # The server read no more than the limit (and one piece of the stream
    # that crossed it): nothing beyond it can have been written anywhere.
    assert body.sent <= LIMIT + MULTIPART_OVERHEAD + 64 * 1024, body.sent


async def test_a_file_just_over_the_limit_without_a_length_is_too_large(scene: Scene) -> None:
    body = Body(LIMIT + 1)
    response = await scene.cara.client.post(
        "/api/attachments", content=body.stream(), headers=body.headers(scene.cara)
    )
    error_of(response, 413, "too_large")
    fits = Body(LIMIT)
    response = await scene.cara.client.post(
        "/api/attachments", content=fits.stream(), headers=fits.headers(scene.cara)
    )
    assert response.status_code == 201, response.text
    assert response.json()["size"] == LIMIT


# -- markup and scripts are not text ------------------------------------------------

DISGUISED = {
    "html as pdf": ("cv.pdf", b"<!DOCTYPE html><html><body>CV</body></html>"),
    "html as text": ("notes.txt", b"<html><script>alert(1)</script></html>"),
    "html after a BOM and blank lines": ("notes.txt", b"\xef\xbb\xbf\n\n  <HTML>\n<p>hi"),
    "a script tag further on": ("notes.txt", b"Interview notes\n\n<script>fetch('/x')</script>\n"),
    "an iframe": ("notes.txt", b"See <iframe src=https://evil.example></iframe>"),
    "svg": ("logo.txt", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    "svg after an xml declaration": ("cv.pdf", b'<?xml version="1.0"?>\n<svg></svg>'),
    "xml": ("data.txt", b'<?xml version="1.0"?><note>hello</note>'),
    "xsl stylesheet": ("a.txt", b"Note\n<?xml-stylesheet href='x.xsl'?>"),
    "an html comment first": ("a.txt", b"<!-- hi -->\nhello"),
    "a shell script": ("notes.txt", b"#!/bin/sh\nrm -rf ~\n"),
    "a python script": ("cv.pdf", b"#!/usr/bin/env python3\nimport os\n"),
    "postscript": ("cv.txt", b"%!PS-Adobe-3.0\n/Helvetica findfont\n"),
    "rtf": ("cv.txt", b"{\\rtf1\\ansi Hello}"),
    "mhtml": ("page.txt", b"MIME-Version: 1.0\r\nContent-Type: multipart/related\r\n"),
    "a tag split across pieces": (
        "long.txt",
        b"x" * (sniffing.TEXT_PIECE - 3) + b"<script>alert(1)</script>",
    ),
    "UTF-16 text": ("notes.txt", "notes".encode("utf-16")),
    "a truncated UTF-8 sequence at the end": ("notes.txt", b"caf\xc3"),
    "DEL control bytes": ("notes.txt", b"abc\x7fdef"),
}


async def test_markup_and_scripts_are_refused_whatever_their_name(scene: Scene) -> None:
    for case, (name, data) in DISGUISED.items():
        response = await upload(scene.cara, name, data)
        assert response.status_code == 422, (case, response.text)
        error_of(response, 422, "invalid")


async def test_plain_text_that_mentions_markup_is_still_text(scene: Scene) -> None:
    texts = {
        "maths.txt": b"If a<b and b>c then nothing follows.\n",
        "notes.md": b"# Notes\n\nUse the <p> element for paragraphs; *emphasis* too.\n",
        "list.csv": "name,city\nChlo\u00e9,Montr\u00e9al\n".encode(),
        "bom.txt": b"\xef\xbb\xbfHello with a byte order mark\r\n",
        "tabs.txt": b"a\tb\x0cc\x1b[0m\n",
        # A two-byte character split across two of the pieces text is read in.
        "boundary.txt": b"a" + "\u00e9".encode() * (sniffing.TEXT_PIECE // 2 + 1),
    }
    for name, data in texts.items():
        response = await upload(scene.cara, name, data)
        assert response.status_code == 201, (name, response.text)
        assert response.json()["content_type"] == "text/plain", name


def test_sniffing_reads_a_bounded_amount_of_a_lying_archive() -> None:
    """The sniffer on its own: the liar's stream would inflate to 300 MiB;
    at most a few kilobytes of it are inflated."""
    data = lie_about_sizes(bomb({"mimetype": 300}), b"mimetype", len(ODT_TYPE))
    tracemalloc.start()
    try:
        kind = sniffing.sniff(io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kind is None
    assert peak < 4 * MiB, peak
