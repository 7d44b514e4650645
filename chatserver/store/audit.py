"""The audit trail: every state change of an application and its conversation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store.tables import audit_events


async def record(
    conn: AsyncConnection,
    application_id: str,
    action: str,
    at: datetime,
    actor: dict[str, str] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(audit_events).values(
            application_id=application_id,
            at=at,
            actor_kind=actor["kind"] if actor else None,
            actor_id=actor["id"] if actor else None,
            actor_name=actor["name"] if actor else None,
            action=action,
            detail=detail or {},
        )
    )


async def events_for(conn: AsyncConnection, application_id: str) -> list[RowMapping]:
    query = (
        select(audit_events)
        .where(audit_events.c.application_id == application_id)
        .order_by(audit_events.c.id)
    )
    return list((await conn.execute(query)).mappings())
