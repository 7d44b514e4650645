"""Where attachment bytes live (issue 15 item 4): in PostgreSQL in
production, so that every machine sharing the database serves every file;
in the attachments folder in the embedded default. Same tests, both backends."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from chatserver.settings import Settings
from chatserver.store.blobs import PART_BYTES
from chatserver.store.tables import attachment_blobs
from tests.conftest import Scene
from tests.helpers import count_rows, error_of, other_app, upload

MiB = 1024 * 1024


def big_pdf(size: int, seed: int = 7) -> bytes:
    """A PDF header and incompressible bytes, so it spans several parts."""
    return b"%PDF-1.4\n" + random.Random(seed).randbytes(size - 9)


async def test_attachment_bytes_are_kept_where_every_machine_reads_them(
    scene: Scene, app: Any, settings: Settings, backend: str, tmp_path: Path
) -> None:
    data = big_pdf(3 * PART_BYTES + 1000)
    uploaded = await upload(scene.alice, "report.pdf", data)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    sent = await scene.alice.send(scene.conversation, "The report", attachments=[file_id])
    [attachment] = sent.json()["attachments"]
    digest = hashlib.sha256(data).hexdigest()

    response = await scene.cara.client.get(attachment["url"])
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "application/pdf"

    stored_rows = await count_rows(app, attachment_blobs, sha256=digest)
    stored_file = settings.attachments_dir / digest[:2] / digest
    if backend == "production":
        assert stored_rows == 4  # three full parts and the rest
        assert not stored_file.exists()
        # Another machine: the same database, a folder of its own that is empty.
        elsewhere = settings.with_(attachments_dir=tmp_path / "another-machine")
        async with other_app(elsewhere) as browser:
            other = browser()
            other.cookies = scene.cara.client.cookies
            again = await other.get(attachment["url"])
            assert again.status_code == 200
            assert again.content == data
        assert not (tmp_path / "another-machine").exists()
    else:
        assert stored_rows == 0
        assert stored_file.read_bytes() == data

    # The same bytes uploaded again are stored once.
    twice = await upload(scene.cara, "copy.pdf", data)
    assert twice.status_code == 201, twice.text
    assert await count_rows(app, attachment_blobs, sha256=digest) == stored_rows
    assert twice.json()["id"] != uploaded.json()["id"]


async def test_an_attachment_whose_bytes_are_gone_is_not_found(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    data = big_pdf(2000, seed=3)
    uploaded = await upload(scene.alice, "gone.pdf", data)
    file_id = uploaded.json()["id"]
    digest = hashlib.sha256(data).hexdigest()
    if backend == "production":
        async with app.state.services.chat.db.transaction() as conn:
            await conn.execute(delete(attachment_blobs).where(attachment_blobs.c.sha256 == digest))
    else:
        (settings.attachments_dir / digest[:2] / digest).unlink()
    error_of(await scene.alice.client.get(f"/api/attachments/{file_id}"), 404, "not_found")


async def test_a_ten_mebibyte_file_streams_back_whole(scene: Scene) -> None:
    data = big_pdf(10 * MiB, seed=11)
    uploaded = await upload(scene.cara, "max.pdf", data)
    assert uploaded.status_code == 201, uploaded.text
    async with scene.cara.client.stream("GET", f"/api/attachments/{uploaded.json()['id']}") as r:
        assert r.status_code == 200
        pieces = [piece async for piece in r.aiter_raw()]
    assert b"".join(pieces) == data
