"""Where attachment bytes live: PostgreSQL in production, a folder in the
embedded default.

Bytes are addressed by their SHA-256, so the same file uploaded twice is
stored once and a stored blob never changes. Both stores write a blob
completely before anyone can refer to it (a folder writes a temporary file
and renames it; the database inserts every part in one transaction), and
both read it back in parts, so a download never holds a whole file in
memory.

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
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import func, select

from chatserver.store import dialect
from chatserver.store.db import Database
from chatserver.store.tables import attachment_blobs

# One row per 512 KiB: a 10 MiB file is 20 rows, each fetched by its own
# short query while the download streams, so neither the server nor the
# database connection holds more than one part of a file at a time.
PART_BYTES = 512 * 1024


class Blobs(Protocol):
    async def put(self, sha256: str, source: BinaryIO) -> None:
        """Store the bytes of `source` (from its start) under their hash;
        storing a hash that is already there does nothing."""
        ...

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The stored bytes, part by part (nothing if the hash is unknown)."""
        ...


class FolderBlobs:
    """`CHAT_ATTACHMENTS_DIR/ab/abcdef…`: the embedded default."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / sha256

    async def put(self, sha256: str, source: BinaryIO) -> None:
        await asyncio.to_thread(self._write, sha256, source)

    def _write(self, sha256: str, source: BinaryIO) -> None:
        path = self.path(sha256)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{sha256}.{secrets.token_hex(4)}.part")
        source.seek(0)
        with partial.open("wb") as out:
            shutil.copyfileobj(source, out, PART_BYTES)
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


class DatabaseBlobs:
    """Table `attachment_blobs` (sha256, part, data): production."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, sha256: str, source: BinaryIO) -> None:
        async with self.db.transaction() as conn:
            present = select(func.count()).where(attachment_blobs.c.sha256 == sha256)
            if (await conn.execute(present)).scalar_one():
                return
            source.seek(0)
            part = 0
            while chunk := await asyncio.to_thread(source.read, PART_BYTES):
                # Two uploads of the same new file may race: the second
                # insert of a part is simply skipped.
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


def blobs_for(db: Database, attachments_dir: Path) -> Blobs:
    """The database when it is PostgreSQL (shared by every machine), else the folder."""
    if dialect.is_sqlite(db.engine):
        return FolderBlobs(attachments_dir)
    return DatabaseBlobs(db)
