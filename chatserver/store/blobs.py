"""Where attachment bytes live: PostgreSQL in production, a folder in the
embedded default.

Bytes are addressed by their SHA-256, so the same file uploaded twice is
stored once and a stored blob never changes. Both stores write a blob
completely before anyone can refer to it (a folder writes a temporary file
and renames it; the database inserts every part in one transaction), and
both read it back in parts, so a download never holds a whole file in
memory. Bytes that no attachment refers to any more (its message deleted
for everyone) are deleted by `release`, unless another upload of the same
content refers to them.

Why the database in production: several web machines share one PostgreSQL
database and nothing else; a local folder would serve a file only on the
machine that took the upload. Attachments are small (at most 10 MiB, a few
per message), so PostgreSQL holds them comfortably, they are backed up and
restored with everything else, and no shared file system or object store
has to be run beside it (docs/attachments.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import attachments, dialect
from chatserver.store.db import Database
from chatserver.store.tables import attachment_blobs

# One row per 512 KiB: a 10 MiB file is 20 rows, each fetched by its own
# short query while the download streams, so neither the server nor the
# database connection holds more than one part of a file at a time.
PART_BYTES = 512 * 1024
# Blobs a sweep releases per transaction.
SWEEP_BATCH = 200
# A folder's partial file older than this is of a write that died: a live
# one takes seconds.
PARTIAL_KEPT_SECONDS = 24 * 3600
HASH = re.compile(r"[0-9a-f]{64}")


# The rows that refer to blobs just stored, added in the same step.
Refer = Callable[[AsyncConnection], Awaitable[None]]


class Blobs(Protocol):
    async def store(self, files: Sequence[tuple[str, BinaryIO]], refer: Refer) -> None:
        """Store each `(sha256, source)` (read from its start; a hash that
        is there already is kept as it is) and, in the same step, the rows
        that `refer` adds: `release` never deletes bytes between the two."""
        ...

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The stored bytes, part by part (nothing if the hash is unknown)."""
        ...

    async def release(self, sha256s: Collection[str]) -> int:
        """Delete the bytes of those of these hashes that no attachment
        refers to any more (as its file or its thumbnail): called once the
        rows that referred to them are deleted. How many were deleted."""
        ...

    async def sweep(self) -> int:
        """Release every blob that no attachment refers to: what a release
        that failed, or a process stopped before it, left behind. How many
        were deleted."""
        ...


class FolderBlobs:
    """`CHAT_ATTACHMENTS_DIR/ab/abcdef…`: the embedded default.

    SQLite's write lock keeps `store` and `release` apart, in every process
    using the database: an upload takes the lock, adds its row and puts its
    bytes in place before it commits; a release takes the lock before it
    looks for rows that still refer to the bytes, and deletes them before
    it lets go. So an upload never finds bytes that a release then deletes.
    The lock is every writer's (sends too), so an upload writes its bytes
    to a partial file first and holds the lock only to rename it."""

    def __init__(self, folder: Path, db: Database) -> None:
        self.folder = folder
        self.db = db

    def path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / sha256

    async def store(self, files: Sequence[tuple[str, BinaryIO]], refer: Refer) -> None:
        written = [
            (sha256, source, await asyncio.to_thread(self._write, sha256, source))
            for sha256, source in files
        ]
        try:
            async with self.db.transaction() as conn:
                await dialect.write_lock(conn)
                await refer(conn)
                for sha256, source, partial in written:
                    await asyncio.to_thread(self._put, sha256, source, partial)
        finally:
            for _, _, partial in written:
                if partial is not None:
                    partial.unlink(missing_ok=True)

    def _write(self, sha256: str, source: BinaryIO) -> Path | None:
        """The bytes in a partial file beside their place, unless they are
        stored already."""
        path = self.path(sha256)
        if path.exists():
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{sha256}.{secrets.token_hex(4)}.part")
        source.seek(0)
        with partial.open("wb") as out:
            shutil.copyfileobj(source, out, PART_BYTES)
        return partial

    def _put(self, sha256: str, source: BinaryIO, partial: Path | None) -> None:
        """Under the write lock: the bytes in place. Stored bytes may have
        been released since `_write` found them, then they are written again."""
        path = self.path(sha256)
        if path.exists():
            return
        if partial is None:
            partial = self._write(sha256, source)
        if partial is not None:
            os.replace(partial, path)

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(self.path(sha256).open, "rb")
        except FileNotFoundError:
            return
        try:
            while chunk := await asyncio.to_thread(handle.read, PART_BYTES):
                yield chunk
        finally:
            handle.close()

    async def release(self, sha256s: Collection[str]) -> int:
        async with self.db.transaction() as conn:
            await dialect.write_lock(conn)
            unused = await attachments.unreferenced(conn, sha256s)
            for sha256 in unused:
                await asyncio.to_thread(self.path(sha256).unlink, missing_ok=True)
        return len(unused)

    async def sweep(self) -> int:
        stored = await asyncio.to_thread(self._stored)
        deleted = 0
        for start in range(0, len(stored), SWEEP_BATCH):
            deleted += await self.release(stored[start : start + SWEEP_BATCH])
        return deleted

    def _stored(self) -> list[str]:
        """The hashes in the folder; partial files of writes that died
        long ago are deleted on the way."""
        stored = []
        stale = time.time() - PARTIAL_KEPT_SECONDS
        for path in self.folder.glob("??/*"):
            if HASH.fullmatch(path.name):
                stored.append(path.name)
            elif path.name.endswith(".part") and _modified(path) < stale:
                path.unlink(missing_ok=True)
        return stored


class DatabaseBlobs:
    """Table `attachment_blobs` (sha256, part, data): production.

    Several workers store and release at once, so the first part's row is
    the blob's lock: `store` holds it shared until its rows are committed,
    `release` exclusively while it deletes. A release that comes first
    leaves nothing for the upload to find, which then stores the bytes
    again; one that comes second sees the upload's row and keeps them.
    Both take the locks in hash order, so they cannot deadlock."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def store(self, files: Sequence[tuple[str, BinaryIO]], refer: Refer) -> None:
        async with self.db.transaction() as conn:
            for sha256, source in sorted(files, key=lambda file: file[0]):
                await self._put(conn, sha256, source)
            await refer(conn)

    async def _put(self, conn: AsyncConnection, sha256: str, source: BinaryIO) -> None:
        if (await conn.execute(dialect.locked(conn, _first_part(sha256), read=True))).first():
            return
        source.seek(0)
        part = 0
        while chunk := await asyncio.to_thread(source.read, PART_BYTES):
            # Two uploads of the same new file may race: the second
            # insert of a part waits for the first, then is skipped.
            stmt = dialect.insert(conn)(attachment_blobs).values(
                sha256=sha256, part=part, data=chunk
            )
            await conn.execute(stmt.on_conflict_do_nothing())
            part += 1

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        part = 0
        while True:
            query = select(attachment_blobs.c.data).where(
                attachment_blobs.c.sha256 == sha256, attachment_blobs.c.part == part
            )
            async with self.db.transaction() as conn:
                chunk = (await conn.execute(query)).scalar_one_or_none()
            if chunk is None:
                return
            yield bytes(chunk)
            part += 1

    async def release(self, sha256s: Collection[str]) -> int:
        wanted = sorted(sha256s)
        first_parts = (
            select(attachment_blobs.c.sha256)
            .where(attachment_blobs.c.sha256.in_(wanted), attachment_blobs.c.part == 0)
            .order_by(attachment_blobs.c.sha256)
        )
        unused = delete(attachment_blobs).where(
            attachment_blobs.c.sha256.in_(wanted),
            ~attachments.refers_to(attachment_blobs.c.sha256),
        )
        async with self.db.transaction() as conn:
            # Locked in hash order, as `store` locks them.
            await conn.execute(dialect.locked(conn, first_parts))
            deleted = await conn.execute(unused.returning(attachment_blobs.c.sha256))
            return len(set(deleted.scalars()))

    async def sweep(self) -> int:
        unused = (
            select(attachment_blobs.c.sha256)
            .where(
                attachment_blobs.c.part == 0,
                ~attachments.refers_to(attachment_blobs.c.sha256),
            )
            .limit(SWEEP_BATCH)
        )
        deleted = 0
        while True:
            async with self.db.transaction() as conn:
                found = list((await conn.execute(unused)).scalars())
            # A blob referred to again meanwhile is kept by `release`.
            released = await self.release(found) if found else 0
            deleted += released
            if len(found) < SWEEP_BATCH or not released:
                return deleted


def _modified(path: Path) -> float:
    """When the file was last written; now, if an upload renamed it away
    since the folder was listed (it is not stale then)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _first_part(sha256: str) -> Select[Any]:
    return select(attachment_blobs.c.part).where(
        attachment_blobs.c.sha256 == sha256, attachment_blobs.c.part == 0
    )


def blobs_for(db: Database, attachments_dir: Path) -> Blobs:
    """The database when it is PostgreSQL (shared by every machine), else the folder."""
    if dialect.is_sqlite(db.engine):
        return FolderBlobs(attachments_dir, db)
    return DatabaseBlobs(db)
