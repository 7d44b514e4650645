"""The type of an uploaded file, judged from its bytes alone (SPEC section 2).

Everything here is synchronous and bounded, because anyone signed in (a
candidate too) chooses the bytes: it runs in a worker thread (see
`uploads.py`), and no check reads more than a fixed amount of any one
thing. In particular an archive entry is never inflated beyond a few
kilobytes: a 300 KB upload may claim an entry of 300 MiB (a zip bomb), and
only its first bytes are ever looked at.
"""

from __future__ import annotations

import codecs
import re
import struct
import zipfile
import zlib
from typing import BinaryIO

import filetype

# The allowed types (SPEC section 2), by the MIME type judged from the bytes.
PDF = "application/pdf"
DOC = "application/msword"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
PNG = "image/png"
JPEG = "image/jpeg"
TEXT = "text/plain"
ALLOWED = (PDF, DOC, DOCX, ODT, PNG, JPEG, TEXT)
IMAGES = (PNG, JPEG)

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
# filetype's signatures all sit in the first 8 KiB.
HEAD_BYTES = 8192
# Text is scanned in pieces of this size, with an overlap long enough to
# catch a markup signature split across two pieces.
TEXT_PIECE = 64 * 1024
SIGNATURE_OVERLAP = 64

# A Word or OpenDocument file has tens of entries, a few hundred with many
# embedded pictures. More than this is a trick (a zip of millions of empty
# entries costs memory just to list), and an archive that needs ZIP64 (over
# 65,535 entries or 4 GiB) is never a 10 MiB document.
MAX_ZIP_ENTRIES = 5_000
# The most the archive's central directory may take, which zipfile reads
# and parses whole, whatever count the end record declares (a 10 MiB file
# declaring 3 entries held 195,000 and cost 90 MB to list): room for
# MAX_ZIP_ENTRIES entries with names of 80 characters on average (a Word
# file's are about 25: `word/media/image12.png`).
MAX_ZIP_DIRECTORY_BYTES = MAX_ZIP_ENTRIES * 128
# What the archive's directory may declare its entries inflate to, in all:
# a 10 MiB document of text XML inflates to well under this. Above it, the
# file is a zip bomb aimed at whoever opens it, even though we never inflate
# it ourselves (declared sizes can lie, which is why every read is bounded too).
MAX_DECLARED_BYTES = 256 * 1024 * 1024
# An OpenDocument file's `mimetype` entry holds its type and nothing else;
# at most this many bytes of it are ever inflated.
MIMETYPE_READ = len(ODT) + 16
# zipfile inflates these two methods a bounded amount per read; bzip2 and
# LZMA it decompresses without an output bound, and office files never use them.
SAFE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# What zipfile raises for a damaged or hostile archive.
BROKEN_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    struct.error,
    zlib.error,
)
EOCD = struct.Struct("<4s4H2LH")  # the end of central directory record
EOCD_MAGIC = b"PK\x05\x06"
# The ZIP64 end-of-directory locator, 20 bytes, right before the end record:
# zipfile then takes the entry count and directory size from the ZIP64
# record, whatever the classic one declares.
ZIP64_LOCATOR_MAGIC = b"PK\x06\x07"
ZIP64_LOCATOR_SIZE = 20
ZIP_COMMENT_MAX = 65_535

# Bytes a plain-text file may not contain: NUL and most C0 controls (tab,
# line feed, form feed, carriage return and escape are fine).
BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
# What a browser, a mail client or a shell would treat as something other
# than text when it starts a file: HTML (the WHATWG sniffing signatures),
# XML and SVG, scripts (#!), PostScript (%!), RTF and MIME documents (MHTML).
LEADING_SIGNATURE = re.compile(
    rb"^(?:\xef\xbb\xbf)?[\t\n\x0c\r ]*(?:"
    rb"<(?:!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body"
    rb"|br|p|!--|\?xml|svg|xsl)[\s>/]"
    rb"|#!|%!|\{\\rtf|mime-version\s*:)",
    re.IGNORECASE,
)
# Markup that makes a document active wherever it appears in the file: a
# text file holding any of these is a web page or an image with script in
# disguise, not notes. Plain prose with a stray "<" or "a<b" is still text.
ACTIVE_MARKUP = re.compile(
    rb"<\s*(?:script|iframe|frame|frameset|object|embed|applet|svg|html|body|meta|link|base"
    rb"|style|form|!doctype|\?xml(?:-stylesheet)?)[\s>/]",
    re.IGNORECASE,
)


def sniff(source: BinaryIO) -> str | None:
    """The allowed content type of the file, or None when it is not one."""
    source.seek(0)
    head = source.read(HEAD_BYTES)
    kind = filetype.guess_mime(head)
    if kind in (PDF, PNG, JPEG):
        return str(kind)
    if head.startswith(ZIP_MAGIC):
        return office_zip_type(source)
    if head.startswith(OLE2_MAGIC):
        return DOC
    if kind is None and is_plain_text(source):
        return TEXT
    return None


def zip_entry_count(source: BinaryIO) -> int | None:
    """The number of entries the archive's end record declares, read from
    the file's tail without parsing the central directory; None for no end
    record, one that needs ZIP64 (or carries a ZIP64 record, which zipfile
    would believe instead), or a directory larger than its entries could
    need (MAX_ZIP_DIRECTORY_BYTES)."""
    size = source.seek(0, 2)
    tail_length = min(size, ZIP64_LOCATOR_SIZE + EOCD.size + ZIP_COMMENT_MAX)
    source.seek(size - tail_length)
    tail = source.read(tail_length)
    at = tail.rfind(EOCD_MAGIC)
    if at < 0 or len(tail) - at < EOCD.size:
        return None
    locator = at - ZIP64_LOCATOR_SIZE
    if locator >= 0 and tail[locator : locator + 4] == ZIP64_LOCATOR_MAGIC:
        return None
    _, _, _, _, total, directory_bytes, offset, _ = EOCD.unpack_from(tail, at)
    if total == 0xFFFF or offset == 0xFFFFFFFF or directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        return None
    return int(total)


def office_zip_type(source: BinaryIO) -> str | None:
    """DOCX or ODT, judged from the archive's directory and at most a few
    kilobytes of one entry; anything else in a zip is refused."""
    count = zip_entry_count(source)
    if count is None or count > MAX_ZIP_ENTRIES:
        return None
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                return None
            if sum(info.file_size for info in infos) > MAX_DECLARED_BYTES:
                return None
            entries = {info.filename: info for info in infos}
            if "[Content_Types].xml" in entries and "word/document.xml" in entries:
                return DOCX
            mimetype = entries.get("mimetype")
            if mimetype is not None and _prefix(archive, mimetype, MIMETYPE_READ) == ODT.encode():
                return ODT
    except BROKEN_ZIP:
        return None
    return None


def _prefix(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """At most `limit` bytes from the start of an entry (stripped), inflating
    no more than that; b"" for an encrypted entry or an unsafe method."""
    if info.flag_bits & 0x1 or info.compress_type not in SAFE_METHODS:
        return b""
    with archive.open(info) as entry:
        return entry.read(limit).strip()


def is_plain_text(source: BinaryIO) -> bool:
    """UTF-8 throughout, no control bytes, and no markup or script signature."""
    source.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry = b""
    first = True
    while piece := source.read(TEXT_PIECE):
        if BINARY_BYTES.search(piece):
            return False
        try:
            decoder.decode(piece)
        except UnicodeDecodeError:
            return False
        window = carry + piece
        if first and LEADING_SIGNATURE.search(window):
            return False
        if ACTIVE_MARKUP.search(window):
            return False
        carry = window[-SIGNATURE_OVERLAP:]
        first = False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True
