"""Organisations, staff, candidates and jobs: host-keyed upserts and reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store.folding import fold
from chatserver.store.tables import candidates, jobs, organisations, staff


async def upsert(
    conn: AsyncConnection, table: Table, values: Mapping[str, Any], update_keys: list[str]
) -> None:
    """INSERT … ON CONFLICT (pk) DO UPDATE: idempotent host upserts."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).values(**values)
    pk = [c.name for c in table.primary_key.columns]
    if update_keys:
        stmt = stmt.on_conflict_do_update(
            index_elements=pk, set_={k: stmt.excluded[k] for k in update_keys}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=pk)
    await conn.execute(stmt)


async def upsert_org(conn: AsyncConnection, org_id: str, name: str) -> None:
    await upsert(conn, organisations, {"id": org_id, "name": name}, ["name"])


async def upsert_staff(
    conn: AsyncConnection, staff_id: str, org_id: str, name: str, email: str, timezone: str
) -> None:
    values = {"id": staff_id, "org_id": org_id, "name": name, "email": email, "timezone": timezone}
    await upsert(conn, staff, values, ["org_id", "name", "email", "timezone"])


async def upsert_candidate(conn: AsyncConnection, candidate_id: str, name: str, email: str) -> None:
    values = {"id": candidate_id, "name": name, "email": email, "search_name": fold(name)}
    await upsert(conn, candidates, values, ["name", "email", "search_name"])


async def upsert_job(conn: AsyncConnection, job_id: str, org_id: str, title: str) -> None:
    values = {"id": job_id, "org_id": org_id, "title": title, "search_title": fold(title)}
    await upsert(conn, jobs, values, ["title", "search_title"])


async def get_job(conn: AsyncConnection, job_id: str) -> RowMapping | None:
    row = await conn.execute(select(jobs).where(jobs.c.id == job_id))
    return row.mappings().first()


async def get_staff(conn: AsyncConnection, staff_id: str) -> RowMapping | None:
    query = (
        select(staff, organisations.c.name.label("org_name"))
        .join(organisations, organisations.c.id == staff.c.org_id)
        .where(staff.c.id == staff_id)
    )
    return (await conn.execute(query)).mappings().first()


async def get_candidate(conn: AsyncConnection, candidate_id: str) -> RowMapping | None:
    query = select(candidates).where(candidates.c.id == candidate_id)
    return (await conn.execute(query)).mappings().first()


async def org_staff(conn: AsyncConnection, org_id: str) -> list[RowMapping]:
    query = select(staff).where(staff.c.org_id == org_id).order_by(staff.c.id)
    return list((await conn.execute(query)).mappings())


async def update_settings(
    conn: AsyncConnection, kind: str, person_id: str, changes: Mapping[str, str]
) -> None:
    if not changes:
        return
    table = staff if kind == "staff" else candidates
    await conn.execute(update(table).where(table.c.id == person_id).values(**changes))


async def count_staff(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(staff))).scalar_one())
