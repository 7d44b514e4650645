"""The fast writer's statements reach the big tables by index probes only
(`store/send_batch.py`), whatever the planner estimates: PostgreSQL keeps a
prepared statement's generic plan, which cannot know a batch's size, so
statements that matched a whole batch at once (`id = ANY(...)`) or joined
it by equality got sequential scans at the peer benchmark's size, in every
write. Checked on the generic plans, over an organisation of the
benchmark's size whose conversations carry dead rows, as after a minute of
sends. PostgreSQL only: SQLite has no fast writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from chatserver.store import send_batch

CONVERSATIONS = 2_500
MESSAGES = 30_000
# Indexed tables a send batch reads or writes, as the benchmark fills them.
BIG_TABLES = {"conversations", "applications", "jobs", "messages"}


@pytest.fixture
def organisation(postgres_db: str) -> Iterator[psycopg.Connection[Any]]:
    """One organisation of 2,500 conversations and 30,000 messages, every
    conversation updated once since (dead rows), statistics fresh."""
    url = postgres_db.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        n = CONVERSATIONS
        conn.execute("INSERT INTO organisations VALUES ('acme', 'Acme')")
        conn.execute(
            "INSERT INTO jobs SELECT 'j' || i, 'acme', 'Engineer', 'engineer'"
            " FROM generate_series(1, %s) i",
            (n,),
        )
        conn.execute(
            "INSERT INTO candidates (id, name, search_name, email, timezone, email_notifications)"
            " SELECT 'c' || i, 'Cara', 'cara', 'cara@example.com', 'UTC', 'each'"
            " FROM generate_series(1, %s) i",
            (n,),
        )
        conn.execute(
            "INSERT INTO applications (id, org_id, job_id, candidate_id, status, applied_at)"
            " SELECT 'a' || i, 'acme', 'j' || i, 'c' || i, 'interviewing', now()"
            " FROM generate_series(1, %s) i",
            (n,),
        )
        conn.execute(
            "INSERT INTO conversations (id, application_id, org_id, state, last_seq,"
            " has_staff_message, created_at) SELECT 'v' || i, 'a' || i, 'acme', 'open', 0,"
            " false, now() FROM generate_series(1, %s) i",
            (n,),
        )
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, sender_kind, sender_id,"
            " sender_name, client_id, body, html, search_body, created_at, deleted)"
            " SELECT 'm' || i, 'v' || (1 + i %% %s), i, 'staff', 's1', 'Sam', 'k' || i,"
            " 'hi', '<p>hi</p>', 'hi', now(), false FROM generate_series(1, %s) i",
            (n, MESSAGES),
        )
        conn.execute("UPDATE conversations SET last_seq = last_seq + 1")
        conn.execute("ANALYZE")
        yield conn


def generic_plan(conn: psycopg.Connection[Any], sql: str, args: dict[str, Any]) -> list[str]:
    """The sequential scans of the statement's generic plan, as
    "Seq Scan on <table>"."""
    names = list(args)
    text = sql
    for i, name in enumerate(names, start=1):
        text = text.replace(f"%({name})s", f"${i}")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE probe AS {text}")
    try:
        literal = ", ".join(_literal(conn, args[name]) for name in names)
        row = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE probe({literal})").fetchone()
    finally:
        conn.execute("DEALLOCATE probe")
    assert row is not None
    scans: list[str] = []
    _seq_scans(row[0][0]["Plan"], scans)
    return scans


def _literal(conn: psycopg.Connection[Any], value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    quoted = conn.execute("SELECT quote_literal(%s::text)", (text,)).fetchone()
    assert quoted is not None
    return str(quoted[0])


def _seq_scans(node: dict[str, Any], found: list[str]) -> None:
    if node["Node Type"] == "Seq Scan":
        found.append(f"Seq Scan on {node['Relation Name']}")
    for child in node.get("Plans", []):
        _seq_scans(child, found)


def _big(scans: list[str]) -> list[str]:
    return [s for s in scans if s.rsplit(" ", 1)[1] in BIG_TABLES]


def test_the_snapshot_reads_conversations_and_client_ids_by_index(
    organisation: psycopg.Connection[Any],
) -> None:
    args = {
        "conversations": ["v1", "v2", "v3"],
        "keys": [["staff", "s1", "k1"], ["staff", "s1", "new"]],
    }
    scans = generic_plan(organisation, send_batch.SNAPSHOT_SQL, args)
    assert _big(scans) == []


def test_the_write_locks_bumps_and_inserts_by_index(
    organisation: psycopg.Connection[Any],
) -> None:
    conversations = [
        {"id": f"v{i}", "n": 1, "staff": True, "status": "interviewing", "candidate_id": f"c{i}"}
        for i in (7, 8, 9)
    ]
    messages = [
        {
            "id": f"new{i}",
            "conversation_id": f"v{i}",
            "pos": 1,
            "sender_kind": "staff",
            "sender_id": "s1",
            "sender_name": "Sam",
            "client_id": f"n{i}",
            "body": "hi",
            "html": "<p>hi</p>",
            "search_body": "hi",
            "via": None,
        }
        for i in (7, 8, 9)
    ]
    args = {"conversations": conversations, "messages": messages, "now": "2026-12-02T00:00:00Z"}
    scans = generic_plan(organisation, send_batch.WRITE_SQL, args)
    assert _big(scans) == []
