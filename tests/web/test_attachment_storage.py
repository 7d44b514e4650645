"""Where attachment bytes live (issue 15 item 4): in PostgreSQL in
production, so that every machine sharing the database serves every file;
in the attachments folder in the embedded default. Same tests, both backends.
A message deleted for everyone takes its files' bytes with it, unless
another upload of the same content still refers to them."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import delete, update

from chatserver.chat import uploads
from chatserver.settings import Settings
from chatserver.store import attachments as attachment_store
from chatserver.store.blobs import PART_BYTES
from chatserver.store.tables import attachment_blobs, attachments
from tests.chat.sends import chat_of
from tests.conftest import Scene
from tests.helpers import Person, count_rows, delete_message, error_of, other_app, upload

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


def photo(seed: int) -> bytes:
    """A PNG large enough to get a thumbnail of other bytes than its own."""
    pixels = random.Random(seed).randbytes(320 * 240 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (320, 240), pixels).save(out, format="PNG")
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Bytes:
    """Whether the app's blob store holds a hash, whichever backend it is."""

    app: Any
    settings: Settings
    backend: str

    async def kept(self, digest: str) -> bool:
        if self.backend == "production":
            return await count_rows(self.app, attachment_blobs, sha256=digest) > 0
        return (self.settings.attachments_dir / digest[:2] / digest).exists()


async def refer_to_nothing(_: Any) -> None:
    """Stores bytes that no attachment refers to."""


class GatedSource(io.BytesIO):
    """A source whose bytes come only once `go` is set: an upload being
    written to the store, held there."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reading, self.go = threading.Event(), threading.Event()

    def read(self, size: int | None = -1, /) -> bytes:
        self.reading.set()
        assert self.go.wait(10), "the test never let the bytes through"
        return super().read(size)


async def sent_with(person: Person, conversation: str, name: str, data: bytes) -> dict[str, Any]:
    """Upload `data` and send it; the message."""
    file = await upload(person, name, data)
    assert file.status_code == 201, file.text
    sent = await person.send(conversation, name, attachments=[file.json()["id"]])
    assert sent.status_code == 201, sent.text
    return dict(sent.json())


async def deleted(person: Person, message: dict[str, Any]) -> None:
    assert (await delete_message(person, message["id"], "everyone")).status_code == 204


async def test_a_message_deleted_for_everyone_takes_its_bytes_and_thumbnail_along(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    stored = Bytes(app, settings, backend)
    image = photo(seed=1)
    message = await sent_with(scene.alice, scene.conversation, "photo.png", image)
    [attachment] = message["attachments"]
    thumbnail = await scene.cara.client.get(attachment["thumbnail_url"])
    assert thumbnail.status_code == 200
    digests = {sha(image), sha(thumbnail.content)}
    assert len(digests) == 2
    assert [await stored.kept(d) for d in digests] == [True, True]

    await deleted(scene.alice, message)
    assert [await stored.kept(d) for d in digests] == [False, False]
    error_of(await scene.cara.client.get(attachment["url"]), 404, "not_found")


async def test_bytes_another_upload_refers_to_stay_until_it_goes_too(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    stored = Bytes(app, settings, backend)
    data = big_pdf(2 * PART_BYTES + 10, seed=12)
    first = await sent_with(scene.alice, scene.conversation, "offer.pdf", data)
    copy = await upload(scene.cara, "my copy.pdf", data)
    assert copy.status_code == 201, copy.text

    await deleted(scene.alice, first)
    assert await stored.kept(sha(data))
    assert (await scene.cara.client.get(f"/api/attachments/{copy.json()['id']}")).content == data

    second = await scene.cara.send(scene.conversation, "Mine", attachments=[copy.json()["id"]])
    await deleted(scene.cara, second.json())
    assert not await stored.kept(sha(data))


async def test_an_upload_racing_the_deletion_of_the_same_bytes_keeps_them(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    """The upload finds the bytes stored, the deletion finds no other
    upload referring to them: whichever comes first, the new upload's
    bytes are there afterwards, whole."""
    stored = Bytes(app, settings, backend)
    data = big_pdf(PART_BYTES + 100, seed=5)
    for _ in range(8):
        message = await sent_with(scene.alice, scene.conversation, "cv.pdf", data)
        _, again = await asyncio.gather(
            deleted(scene.alice, message), upload(scene.cara, "cv.pdf", data)
        )
        assert again.status_code == 201, again.text
        download = await scene.cara.client.get(f"/api/attachments/{again.json()['id']}")
        assert download.status_code == 200
        assert download.content == data
        # Sent and deleted, it leaves nothing for the next round.
        mine = await scene.cara.send(scene.conversation, "cv", attachments=[again.json()["id"]])
        await deleted(scene.cara, mine.json())
        assert not await stored.kept(sha(data))


async def test_the_stored_bytes_follow_a_model_of_uploads_sends_and_deletions(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    """A seeded run of uploads of a few contents by two people, sends and
    deletions for everyone; after every step each live file downloads
    whole, and a content's bytes (and its thumbnail's) are stored exactly
    while some live file is that content."""
    stored = Bytes(app, settings, backend)
    contents = [big_pdf(PART_BYTES + 7, seed=21), big_pdf(900, seed=22), photo(seed=23)]
    thumbnail_of: dict[int, str] = {}
    unsent: list[tuple[Person, str, int]] = []  # uploader, attachment id, content
    sent: list[
        tuple[Person, dict[str, Any], str, int]
    ] = []  # sender, message, attachment id, content
    rng = random.Random(2026)
    people = [scene.alice, scene.cara]
    await scene.alice.send(scene.conversation, "Hello")  # the candidate may answer now

    for _ in range(36):
        roll = rng.random()
        if roll < 0.4 and len(unsent) < 6:
            person, content = rng.choice(people), rng.randrange(len(contents))
            file = await upload(person, "file", contents[content])
            assert file.status_code == 201, file.text
            unsent.append((person, file.json()["id"], content))
        elif roll < 0.7 and unsent:
            person, file_id, content = unsent.pop(rng.randrange(len(unsent)))
            message = await person.send(scene.conversation, "file", attachments=[file_id])
            assert message.status_code == 201, message.text
            [attachment] = message.json()["attachments"]
            if "thumbnail_url" in attachment:
                thumbnail = await scene.cara.client.get(attachment["thumbnail_url"])
                thumbnail_of[content] = sha(thumbnail.content)
            sent.append((person, message.json(), file_id, content))
        elif sent:
            sender, gone, _, _ = sent.pop(rng.randrange(len(sent)))
            await deleted(sender, gone)

        for person, file_id, content in unsent:
            got = await person.client.get(f"/api/attachments/{file_id}")
            assert got.content == contents[content]
        for _, _, file_id, content in sent:
            got = await scene.cara.client.get(f"/api/attachments/{file_id}")
            assert got.content == contents[content]
        live = {content for *_, content in unsent} | {content for *_, content in sent}
        for content, data in enumerate(contents):
            assert await stored.kept(sha(data)) == (content in live), content
            if content in thumbnail_of:
                assert await stored.kept(thumbnail_of[content]) == (content in live), content
    assert thumbnail_of, "the run never sent the photo"


async def test_uploads_never_sent_expire_with_their_bytes(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    stored = Bytes(app, settings, backend)
    chat = chat_of(app)
    alone, shared, fresh = (big_pdf(1000 + n, seed=30 + n) for n in range(3))
    draft = (await upload(scene.cara, "draft.pdf", alone)).json()
    copy = (await upload(scene.cara, "copy.pdf", shared)).json()
    offer = await sent_with(scene.alice, scene.conversation, "offer.pdf", shared)
    start = chat.clock
    chat.clock = lambda: start() + timedelta(days=settings.unsent_upload_days, minutes=1)
    newer = (await upload(scene.cara, "new.pdf", fresh)).json()

    assert await uploads.expire_unsent(chat) == 2
    for expired in (draft, copy):
        error_of(await scene.cara.client.get(f"/api/attachments/{expired['id']}"), 404, "not_found")
    late = await scene.cara.send(scene.conversation, "Late", attachments=[draft["id"]])
    assert "expired" in error_of(late, 404, "not_found")["message"]
    assert not await stored.kept(sha(alone))
    # The sent copy of the same bytes, and the newer upload, stay.
    assert (await scene.cara.client.get(offer["attachments"][0]["url"])).content == shared
    assert (await scene.cara.client.get(f"/api/attachments/{newer['id']}")).content == fresh
    assert await uploads.expire_unsent(chat) == 0


async def test_a_send_racing_the_expiry_of_its_file_either_sends_it_or_finds_it_gone(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    stored = Bytes(app, settings, backend)
    chat = chat_of(app)
    start, later = chat.clock, timedelta()
    chat.clock = lambda: start() + later
    data = big_pdf(PART_BYTES + 50, seed=40)
    await scene.alice.send(scene.conversation, "Hello")  # the candidate may answer now
    outcomes = set()
    for _ in range(8):
        file = (await upload(scene.cara, "cv.pdf", data)).json()
        later += timedelta(days=settings.unsent_upload_days, minutes=1)
        sent, expired = await asyncio.gather(
            scene.cara.send(scene.conversation, "cv", attachments=[file["id"]]),
            uploads.expire_unsent(chat),
        )
        outcomes.add(sent.status_code)
        if sent.status_code == 201:
            assert expired == 0
            [attachment] = sent.json()["attachments"]
            assert (await scene.alice.client.get(attachment["url"])).content == data
            await deleted(scene.cara, sent.json())
        else:
            error_of(sent, 404, "not_found")
            assert expired == 1
        assert not await stored.kept(sha(data))
    assert outcomes <= {201, 404}


async def test_a_file_claimed_by_a_send_outlives_an_expiry_that_runs_meanwhile(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    """The send-first order of the race above, forced: a send has claimed
    the file (its row locked, `unsent_of`) and attached it when the expiry
    starts. The expiry waits for the send's commit, then finds the file
    sent and leaves it and its bytes alone."""
    stored = Bytes(app, settings, backend)
    chat = chat_of(app)
    start = chat.clock
    data = big_pdf(2000, seed=45)
    hello = (await scene.alice.send(scene.conversation, "Hello")).json()
    file = (await upload(scene.alice, "contract.pdf", data)).json()
    chat.clock = lambda: start() + timedelta(days=settings.unsent_upload_days, minutes=1)
    async with chat.db.transaction() as conn:
        [claimed] = await attachment_store.unsent_of(conn, [file["id"]], "staff", scene.alice.id)
        await conn.execute(
            update(attachments)
            .where(attachments.c.id == claimed["id"])
            .values(message_id=hello["id"])
        )
        expiry = asyncio.create_task(uploads.expire_unsent(chat))
        await asyncio.sleep(0.3)
        assert not expiry.done(), "the expiry did not wait for the send's claim"
    assert await asyncio.wait_for(expiry, 10) == 0
    assert await count_rows(app, attachments, id=file["id"]) == 1
    assert await stored.kept(sha(data))


async def test_a_sweep_deletes_the_bytes_no_file_refers_to_and_nothing_else(
    scene: Scene, app: Any, settings: Settings, backend: str
) -> None:
    """What a release that failed, or a process stopped before it, leaves
    behind: stored bytes that no attachment names."""
    stored = Bytes(app, settings, backend)
    chat = chat_of(app)
    kept, orphan = big_pdf(PART_BYTES + 1, seed=50), big_pdf(2000, seed=51)
    message = await sent_with(scene.alice, scene.conversation, "kept.pdf", kept)

    await chat.blobs.store([(sha(orphan), io.BytesIO(orphan))], refer_to_nothing)
    assert await stored.kept(sha(orphan))
    if backend == "embedded":
        partial = settings.attachments_dir / "ab" / f"{'ab' * 32}.dead.part"
        partial.parent.mkdir(exist_ok=True)
        partial.write_bytes(b"half a file")
        os.utime(partial, (1, 1))
        writing = partial.with_name(f"{'ab' * 32}.live.part")
        writing.write_bytes(b"a file being written")

    assert await chat.blobs.sweep() == 1
    assert not await stored.kept(sha(orphan))
    assert (await scene.cara.client.get(message["attachments"][0]["url"])).content == kept
    if backend == "embedded":
        assert not partial.exists()
        assert writing.exists()
    assert await chat.blobs.sweep() == 0


async def test_bytes_being_written_do_not_hold_up_sends(scene: Scene, app: Any) -> None:
    """Embedded, every writer shares SQLite's one write lock: an upload
    writes its bytes before it takes it, so a send meanwhile is stored at
    once rather than after the file (or refused as the database busy)."""
    chat = chat_of(app)
    data = big_pdf(PART_BYTES + 10, seed=60)
    source = GatedSource(data)
    storing = asyncio.create_task(chat.blobs.store([(sha(data), source)], refer_to_nothing))
    try:
        assert await asyncio.to_thread(source.reading.wait, 10)
        sent = await asyncio.wait_for(scene.alice.send(scene.conversation, "Meanwhile"), 5)
        assert sent.status_code == 201, sent.text
    finally:
        source.go.set()
        await storing
    assert b"".join([part async for part in chat.blobs.read(sha(data))]) == data
