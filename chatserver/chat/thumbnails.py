"""Thumbnails of PNG and JPEG attachments, drawn by the server from the
decoded image (never the upload's bytes served as they are), so what a
browser shows inline is an image we made: no metadata, no trailing
payload, a known size.

Synchronous and bounded like `sniffing.py`, and run in the same worker
threads: an image's header may claim any size, so the size is checked
before a single pixel is decoded, and a JPEG is decoded at reduced scale.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from chatserver.chat.sniffing import JPEG, PNG

# Big enough for a sharp 240-pixel-wide preview on a high-density screen.
THUMBNAIL_BOX = (480, 480)
# Pillow's own decompression-bomb threshold (about 89 megapixels, a
# 9,459-pixel square): an image that claims more is refused outright; no
# camera photo under 10 MiB comes near it.
MAX_IMAGE_PIXELS = 89_478_485
# Pixels decoded for one thumbnail at most (32 MB as RGBA). A JPEG is
# decoded at up to 1/8 scale, so any allowed JPEG fits; a PNG larger than
# this keeps its file chip and gets no thumbnail.
MAX_DECODE_PIXELS = 8_000_000
# A JPEG of several scans (progressive, or one colour per scan) is drawn in
# passes over the whole image, so libjpeg keeps every coefficient of it (2
# bytes per sample, 3 samples a pixel at most) whatever the scale it
# outputs: a 1.5 MB progressive photo of 88 megapixels held 530 MB. Above
# this (at most 48 MB of coefficients) it keeps its file chip and gets no
# thumbnail; a JPEG of one scan is decoded a band at a time.
MAX_PROGRESSIVE_PIXELS = 8_000_000
START_OF_SCAN = b"\xff\xda"
SCAN_PIECE = 64 * 1024
FORMATS = {PNG: "PNG", JPEG: "JPEG"}
# What Pillow raises for damaged or hostile images.
BROKEN_IMAGE = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class ImageTooLarge(Exception):
    """The image claims more pixels than MAX_IMAGE_PIXELS."""


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    width: int
    height: int


def make(source: BinaryIO, content_type: str) -> Thumbnail | None:
    """A thumbnail of the image, or None when it cannot be drawn safely (too
    large to decode, damaged). Raises ImageTooLarge for a decompression bomb."""
    fmt = FORMATS[content_type]
    source.seek(0)
    try:
        with Image.open(source, formats=[fmt]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge
            if fmt == "JPEG":
                if width * height > MAX_PROGRESSIVE_PIXELS and (
                    image.info.get("progressive") or several_scans(source)
                ):
                    return None
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale, the smallest that
                # still covers the box: a 48-megapixel photo costs 0.75.
                image.draft("RGB", THUMBNAIL_BOX)
            if image.size[0] * image.size[1] > MAX_DECODE_PIXELS:
                return None
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail(THUMBNAIL_BOX)
            if fmt == "JPEG":
                upright = upright.convert("RGB")
            elif upright.mode not in ("RGB", "RGBA", "L", "LA"):
                upright = upright.convert("RGBA")
            out = BytesIO()
            upright.save(out, format=fmt, optimize=True)
            return Thumbnail(out.getvalue(), upright.width, upright.height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge from exc
    except BROKEN_IMAGE:
        return None


def several_scans(source: BinaryIO) -> bool:
    """Whether a JPEG has more than one scan, which Pillow says only of a
    progressive one: the header's segments are skipped by their lengths (an
    EXIF thumbnail holds scans of its own) up to the first scan, then the
    rest is searched for another start of scan (in entropy-coded data a
    0xFF byte is followed by 0x00 or a restart marker, never 0xDA). Leaves
    `source` where it was."""
    kept = source.tell()
    try:
        source.seek(2)  # past the start-of-image marker
        while True:
            marker = source.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                return False
            if marker[1] == 0xFF:  # a fill byte before a marker
                source.seek(-1, 1)
                continue
            length = int.from_bytes(source.read(2), "big")
            if length < 2:
                return False
            source.seek(length - 2, 1)
            if marker == START_OF_SCAN:
                break
        last = b""
        while piece := source.read(SCAN_PIECE):
            if START_OF_SCAN in last + piece:
                return True
            last = piece[-1:]
        return False
    finally:
        source.seek(kept)
