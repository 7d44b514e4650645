"""Host calls into one organisation do not queue behind each other
(`store/people.py::upsert_org`): every call names its organisation, and
an upsert that locked the organisation's row even when nothing changed
held that lock to the end of the call's transaction, so hundreds of
recruiters' calls into one organisation ran one at a time. PostgreSQL
only: SQLite runs one writer at a time anyway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text

from chatserver.settings import Settings
from chatserver.store import people
from chatserver.store.db import Database
from chatserver.store.tables import organisations

pytestmark = pytest.mark.parametrize("backend", ["production"])


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    try:
        yield database
    finally:
        await database.dispose()


async def name_of(db: Database, org_id: str) -> str | None:
    async with db.transaction() as conn:
        return (
            await conn.execute(select(organisations.c.name).where(organisations.c.id == org_id))
        ).scalar_one_or_none()


async def test_an_unchanged_organisation_is_not_locked_by_its_upsert(db: Database) -> None:
    async with db.transaction() as conn:
        await people.upsert_org(conn, "acme", "Acme")
    async with db.transaction() as first:
        await people.upsert_org(first, "acme", "Acme")
        # A second call into the same organisation while the first is
        # still open: it must not wait for the first to commit.
        async with db.transaction() as second:
            await second.execute(text("SET LOCAL lock_timeout = '1s'"))
            await people.upsert_org(second, "acme", "Acme")
    assert await name_of(db, "acme") == "Acme"


async def test_an_upsert_creates_and_renames(db: Database) -> None:
    async with db.transaction() as conn:
        await people.upsert_org(conn, "acme", "Acme")
    assert await name_of(db, "acme") == "Acme"
    async with db.transaction() as conn:
        await people.upsert_org(conn, "acme", "Acme Ltd")
    assert await name_of(db, "acme") == "Acme Ltd"
