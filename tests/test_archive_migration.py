"""Migration 0016 (archives until a reply): archives made before it take
the conversation's current last seq, on both backends (PostgreSQL from a
database of its own, SQLite from a file), and the tables module and the
migrations still agree."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from chatserver.settings import Settings
from chatserver.store.migrate import sync_url, upgrade
from chatserver.store.tables import metadata
from tests.conftest import insert_rows


def test_migration_0016_archives_existing_rows_up_to_the_last_seq(migrating: Settings) -> None:
    upgrade(migrating, "0015")
    url = sync_url(migrating)
    at = "2026-11-02 09:30:00+00:00"
    rows: list[tuple[str, dict[str, Any]]] = [
        ("organisations", {"id": "acme", "name": "Acme"}),
        ("staff", {"id": "s1", "org_id": "acme", "name": "Sam", "email": "s@x.example"}),
        ("staff", {"id": "s2", "org_id": "acme", "name": "Sue", "email": "u@x.example"}),
        (
            "candidates",
            {"id": "c1", "name": "Cara", "email": "c@x.example"}
            | {"timezone": "UTC", "email_notifications": "each", "search_name": "cara"},
        ),
        ("jobs", {"id": "j1", "org_id": "acme", "title": "Engineer", "search_title": "engineer"}),
    ]
    for n, last_seq in ((1, 7), (2, 0)):
        rows += [
            (
                "applications",
                {"id": f"a{n}", "org_id": "acme", "job_id": "j1", "candidate_id": "c1"}
                | {"status": "interviewing", "applied_at": at},
            ),
            (
                "conversations",
                {"id": f"v{n}", "application_id": f"a{n}", "org_id": "acme", "state": "open"}
                | {"last_seq": last_seq, "has_staff_message": False, "created_at": at},
            ),
        ]
    rows += [
        ("archives", {"conversation_id": "v1", "staff_id": "s1"}),
        ("archives", {"conversation_id": "v1", "staff_id": "s2"}),
        ("archives", {"conversation_id": "v2", "staff_id": "s1"}),
    ]
    staff = {"timezone": "UTC", "email_notifications": "each", "ops": False}
    insert_rows(url, [(t, v | staff if t == "staff" else v) for t, v in rows])

    upgrade(migrating)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        query = "SELECT conversation_id, staff_id, seq FROM archives"
        marks = {(str(c), str(s)): int(q) for c, s, q in conn.execute(sa.text(query)).all()}
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert marks == {("v1", "s1"): 7, ("v1", "s2"): 7, ("v2", "s1"): 0}
    assert differences == []
