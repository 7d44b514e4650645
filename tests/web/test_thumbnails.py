"""Thumbnails of image attachments (issue 11 item 10, server side): drawn
by the server from the decoded image, never the upload's bytes; authorised
exactly like the download."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from chatserver.chat import thumbnails
from chatserver.chat.thumbnails import THUMBNAIL_BOX
from tests.conftest import Scene
from tests.helpers import Person, delete_message, error_of, upload
from tests.web.test_attachments import jpeg, pdf

PAYLOAD = b"<script>alert(1)</script>"


def photo() -> bytes:
    """An 800x600 JPEG that its EXIF says to rotate a quarter turn (as phones
    write them), with a camera note and something appended after its end."""
    image = Image.new("RGB", (800, 600))
    for x in range(0, 800, 50):
        image.paste((x % 256, 80, 200), (x, 0, x + 50, 600))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    exif[0x010F] = "Secret Camera Co"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue() + PAYLOAD


def screenshot() -> bytes:
    image = Image.new("RGBA", (1200, 300), (10, 20, 30, 128))
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=None)
    return out.getvalue() + b"IEND-trailer" + PAYLOAD


async def sent_with(person: Person, conversation: str, files: dict[str, bytes]) -> list[Any]:
    ids = []
    for name, data in files.items():
        response = await upload(person, name, data)
        assert response.status_code == 201, response.text
        assert "thumbnail_url" not in response.json()
        ids.append(response.json()["id"])
    sent = await person.send(conversation, "Files", attachments=ids)
    assert sent.status_code == 201, sent.text
    return list(sent.json()["attachments"])


def opened(response: httpx.Response, fmt: str) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["content-disposition"].startswith("inline;")
    assert PAYLOAD not in response.content
    image = Image.open(io.BytesIO(response.content), formats=[fmt])
    assert image.width <= THUMBNAIL_BOX[0]
    assert image.height <= THUMBNAIL_BOX[1]
    return image


async def test_images_get_a_thumbnail_drawn_by_the_server(scene: Scene) -> None:
    files = {"photo.jpg": photo(), "screen.png": screenshot(), "cv.pdf": pdf(), "bad.jpg": jpeg()}
    attachments = await sent_with(scene.cara, scene.conversation, files)
    by_name = {a["name"]: a for a in attachments}
    for name in ("photo.jpg", "screen.png"):
        assert by_name[name]["thumbnail_url"] == f"/api/attachments/{by_name[name]['id']}/thumbnail"
    # Not an image, or an image with no pixels to draw: the file chip only.
    assert "thumbnail_url" not in by_name["cv.pdf"]
    assert "thumbnail_url" not in by_name["bad.jpg"]
    # History carries the same objects.
    [message] = await scene.alice.history(scene.conversation)
    assert message["attachments"] == attachments

    for reader in (scene.alice, scene.bob, scene.cara):
        thumb = await reader.client.get(by_name["photo.jpg"]["thumbnail_url"])
        assert thumb.headers["content-type"] == "image/jpeg"
        image = opened(thumb, "JPEG")
        # Turned upright as the EXIF said, then the EXIF itself left behind.
        assert (image.width, image.height) == (360, 480)
        assert dict(image.getexif()) == {}
        assert b"Secret Camera" not in thumb.content

        png = await reader.client.get(by_name["screen.png"]["thumbnail_url"])
        assert png.headers["content-type"] == "image/png"
        image = opened(png, "PNG")
        assert (image.width, image.height) == (480, 120)
        assert image.mode == "RGBA"
        assert png.content != screenshot()


async def test_thumbnails_are_authorised_like_downloads(
    scene: Scene, client: httpx.AsyncClient
) -> None:
    response = await upload(scene.alice, "photo.jpg", photo())
    file_id = response.json()["id"]
    path = f"/api/attachments/{file_id}/thumbnail"
    # Unsent: the uploader only.
    assert (await scene.alice.client.get(path)).status_code == 200
    for other in (scene.bob, scene.cara, scene.mallory):
        error_of(await other.client.get(path), 404, "not_found")
    error_of(await client.get(path), 401, "unauthorized")

    sent = await scene.alice.send(scene.conversation, "Photo", attachments=[file_id])
    assert sent.status_code == 201, sent.text
    for reader in (scene.bob, scene.cara):
        assert (await reader.client.get(path)).status_code == 200
    foreign = await scene.mallory.client.get(path)
    missing = await scene.mallory.client.get("/api/attachments/0123456789abcdef/thumbnail")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    # A PDF has no thumbnail.
    document = await upload(scene.alice, "cv.pdf", pdf())
    error_of(
        await scene.alice.client.get(f"/api/attachments/{document.json()['id']}/thumbnail"),
        404,
        "not_found",
    )

    # Deleted for everyone: gone with the attachment.
    assert (await delete_message(scene.alice, sent.json()["id"], "everyone")).status_code == 204
    for reader in (scene.alice, scene.cara):
        error_of(await reader.client.get(path), 404, "not_found")


def jpeg_bytes(side: int, **options: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (40, 90, 160)).save(out, "JPEG", **options)
    return out.getvalue()


def with_exif_thumbnail(data: bytes) -> bytes:
    """A JPEG whose APP1 segment holds a small JPEG of its own (scans and
    all), as a camera's EXIF thumbnail does."""
    payload = b"Exif\x00\x00" + jpeg_bytes(16)
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return data[:2] + app1 + data[2:]


def test_jpegs_of_several_scans_are_told_from_those_of_one() -> None:
    """Progressive (or one colour per scan) costs libjpeg every coefficient
    of the image; an EXIF thumbnail's own scans do not count."""
    for data, several in (
        (jpeg_bytes(64), False),
        (with_exif_thumbnail(jpeg_bytes(64)), False),
        (jpeg_bytes(64, progressive=True), True),
        (with_exif_thumbnail(jpeg_bytes(64, progressive=True)), True),
    ):
        source = io.BytesIO(data)
        source.seek(5)
        assert thumbnails.several_scans(source) is several
        assert source.tell() == 5
