"""Organisations, staff, candidates and jobs: host-keyed upserts and reads."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, case, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store import dialect
from chatserver.store.folding import fold
from chatserver.store.tables import (
    applications,
    candidates,
    conversations,
    jobs,
    messages,
    organisations,
    staff,
)

# What a person starts with when the host sends no default of its own.
DEFAULT_TIMEZONE = "UTC"
DEFAULT_NOTIFICATIONS = "each"


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    update_keys: list[str],
    *,
    defaults: Mapping[str, tuple[str, Any]] | None = None,
) -> None:
    """INSERT … ON CONFLICT (pk) DO UPDATE: idempotent host upserts.

    `defaults` maps a column to (flag column, value): the host's value is
    written only while the flag is false, i.e. until the person chose for
    themselves. The choice is decided by the row as the update finds it
    (under its lock), so a re-sync racing a Settings change cannot undo it.
    """
    insert = dialect.insert(conn)
    stmt = insert(table).values(**values)
    pk = [c.name for c in table.primary_key.columns]
    set_: dict[str, Any] = {k: stmt.excluded[k] for k in update_keys}
    for column, (flag, _) in (defaults or {}).items():
        kept: ColumnElement[Any] = case(
            (table.c[flag], table.c[column]), else_=stmt.excluded[column]
        )
        set_[column] = kept
    if set_:
        stmt = stmt.on_conflict_do_update(index_elements=pk, set_=set_)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=pk)
    await conn.execute(stmt)


def _person_defaults(
    timezone: str | None, notifications: str | None
) -> tuple[dict[str, Any], dict[str, tuple[str, Any]]]:
    """Insert values and person-owned defaults of a host upsert: a field the
    host leaves out (None) keeps its stored value, or the product default
    for a new person."""
    values = {
        "timezone": timezone or DEFAULT_TIMEZONE,
        "email_notifications": notifications or DEFAULT_NOTIFICATIONS,
    }
    defaults: dict[str, tuple[str, Any]] = {}
    if timezone is not None:
        defaults["timezone"] = ("timezone_chosen", timezone)
    if notifications is not None:
        defaults["email_notifications"] = ("notifications_chosen", notifications)
    return values, defaults


async def upsert_org(conn: AsyncConnection, org_id: str, name: str) -> None:
    """Create the organisation, or rename it when the name differs.

    Every host call names its organisation, so hundreds of them a second
    arrive for one organisation. ON CONFLICT DO UPDATE would lock the row
    even when nothing changes and hold that lock to the end of the call's
    transaction, serialising every call into the organisation; the update
    here touches (and locks) the row only for a real rename.
    """
    await upsert(conn, organisations, {"id": org_id, "name": name}, [])
    await conn.execute(
        update(organisations)
        .where(organisations.c.id == org_id, organisations.c.name != name)
        .values(name=name)
    )


async def upsert_staff(
    conn: AsyncConnection,
    staff_id: str,
    org_id: str,
    name: str,
    email: str,
    *,
    timezone: str | None = None,
    notifications: str | None = None,
    ops: bool | None = None,
) -> None:
    """Create or update a staff user; an upsert also restores one who was
    removed (their old sessions stay ended: the generation is kept). Never
    moves one to another organisation: `org_id` is written on creation only,
    and the caller compares the stored one with what it asked."""
    person, defaults = _person_defaults(timezone, notifications)
    values = {
        "id": staff_id,
        "org_id": org_id,
        "name": name,
        "email": email,
        "ops": bool(ops),
        "removed_at": None,
        **person,
    }
    keys = ["name", "email", "removed_at"] + (["ops"] if ops is not None else [])
    await upsert(conn, staff, values, keys, defaults=defaults)


async def upsert_candidate(
    conn: AsyncConnection,
    candidate_id: str,
    name: str,
    email: str,
    *,
    timezone: str | None = None,
    notifications: str | None = None,
) -> None:
    person, defaults = _person_defaults(timezone, notifications)
    values = {"id": candidate_id, "name": name, "email": email, "search_name": fold(name), **person}
    await upsert(conn, candidates, values, ["name", "email", "search_name"], defaults=defaults)


async def remove_staff(conn: AsyncConnection, staff_id: str, at: datetime) -> bool:
    """Mark a staff user as gone and end their sessions. False if they were
    already removed (removal is idempotent)."""
    result = await conn.execute(
        update(staff)
        .where(staff.c.id == staff_id, staff.c.removed_at.is_(None))
        .values(removed_at=at, session_generation=staff.c.session_generation + 1)
    )
    return bool(result.rowcount)


async def end_sessions(conn: AsyncConnection, kind: str, person_id: str) -> None:
    """Sign-out: every session issued before now stops verifying."""
    table = staff if kind == Role.STAFF else candidates
    await conn.execute(
        update(table)
        .where(table.c.id == person_id)
        .values(session_generation=table.c.session_generation + 1)
    )


async def applications_written_in(conn: AsyncConnection, staff_id: str, org_id: str) -> list[str]:
    """The applications of `org_id` whose conversations hold a message of
    this staff user, in id order."""
    query = (
        select(conversations.c.application_id)
        .distinct()
        .join(messages, messages.c.conversation_id == conversations.c.id)
        .where(
            conversations.c.org_id == org_id,
            messages.c.sender_kind == Role.STAFF,
            messages.c.sender_id == staff_id,
        )
        .order_by(conversations.c.application_id)
    )
    return [str(a) for a in (await conn.execute(query)).scalars()]


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


# Every handshake's session check runs these: built once, with the ids as
# an expanding parameter. An IN over a list built afresh for each call
# leaves SQLAlchemy's bind parameters in reference cycles, which only the
# cycle collector frees (a pause, docs/performance.md).
_STAFF_BY_IDS = (
    select(staff, organisations.c.name.label("org_name"))
    .join(organisations, organisations.c.id == staff.c.org_id)
    .where(staff.c.id.in_(bindparam("ids", expanding=True)))
)
_CANDIDATES_BY_IDS = select(candidates).where(candidates.c.id.in_(bindparam("ids", expanding=True)))


async def staff_by_ids(conn: AsyncConnection, staff_ids: Collection[str]) -> dict[str, RowMapping]:
    """`get_staff` for many ids in one statement (the batched session
    check, `chat/viewers.py`): each found row by its id; an unknown id is
    simply absent."""
    if not staff_ids:
        return {}
    rows = await conn.execute(_STAFF_BY_IDS, {"ids": list(staff_ids)})
    return {row["id"]: row for row in rows.mappings()}


async def candidates_by_ids(
    conn: AsyncConnection, candidate_ids: Collection[str]
) -> dict[str, RowMapping]:
    """`get_candidate` for many ids in one statement, by id."""
    if not candidate_ids:
        return {}
    rows = await conn.execute(_CANDIDATES_BY_IDS, {"ids": list(candidate_ids)})
    return {row["id"]: row for row in rows.mappings()}


async def org_staff(conn: AsyncConnection, org_id: str) -> list[RowMapping]:
    """The organisation's current staff (not those the host removed)."""
    query = (
        select(staff)
        .where(staff.c.org_id == org_id, staff.c.removed_at.is_(None))
        .order_by(staff.c.id)
    )
    return list((await conn.execute(query)).mappings())


# The flag that marks each person-owned setting as the person's own choice.
CHOSEN_FLAGS = {"timezone": "timezone_chosen", "email_notifications": "notifications_chosen"}


async def update_settings(
    conn: AsyncConnection, kind: str, person_id: str, changes: Mapping[str, str]
) -> None:
    """The person's own choice: it wins over the host's default from now on."""
    if not changes:
        return
    table = staff if kind == Role.STAFF else candidates
    values: dict[str, Any] = dict(changes)
    values.update({CHOSEN_FLAGS[name]: True for name in changes if name in CHOSEN_FLAGS})
    await conn.execute(update(table).where(table.c.id == person_id).values(**values))


async def adopt_timezone(conn: AsyncConnection, candidate_id: str, timezone: str) -> bool:
    """A candidate's browser zone, stored while they have not chosen one in
    Settings (it stays a default: `timezone_chosen` is left false). The
    flag is checked by the update itself, under the row's lock, so a choice
    made at the same moment is never overwritten. True if it changed."""
    result = await conn.execute(
        update(candidates)
        .where(
            candidates.c.id == candidate_id,
            candidates.c.timezone_chosen.is_(False),
            candidates.c.timezone != timezone,
        )
        .values(timezone=timezone)
    )
    return bool(result.rowcount)


async def everyone(conn: AsyncConnection) -> tuple[list[RowMapping], list[RowMapping]]:
    """Every staff user by name, and every application with its candidate's
    name and job title, by candidate: the demo's sign-in page lists them."""
    staff_rows = list((await conn.execute(select(staff).order_by(staff.c.name))).mappings())
    application_rows = list(
        (
            await conn.execute(
                select(applications.c.id, applications.c.status, candidates.c.name, jobs.c.title)
                .join(candidates, candidates.c.id == applications.c.candidate_id)
                .join(jobs, jobs.c.id == applications.c.job_id)
                .order_by(candidates.c.name)
            )
        ).mappings()
    )
    return staff_rows, application_rows
