"""Search folding (issue 11 item 9): the one fold function, and migration
0009 that folds the rows written before the search columns existed, on both
backends (PostgreSQL from a database of its own, SQLite from a file)."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st

from chatserver.settings import Settings
from chatserver.store.folding import contains_pattern, fold
from chatserver.store.migrate import sync_url, upgrade
from chatserver.store.tables import metadata
from tests.conftest import insert_rows


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Chloé", "chloe"),
        ("CHLOÉ", "chloe"),
        ("Chloe\u0301", "chloe"),  # decomposed accent
        ("Straße", "strasse"),
        ("GROẞ", "gross"),
        ("İstanbul", "istanbul"),
        ("Łódź", "lodz"),
        ("Øster Ærø", "oster aero"),
        ("Œuvre", "oeuvre"),
        ("ﬁle", "file"),
        ("\uff26\uff55\uff4c\uff4c", "full"),  # fullwidth letters
        ("Siobhán Ní Bhriain", "siobhan ni bhriain"),
        ("100% remote_IT", "100% remote_it"),
        ("Ελληνικά", "ελληνικα"),
        ("", ""),
    ],
)
def test_fold_drops_case_and_accents(text: str, folded: str) -> None:
    assert fold(text) == folded


@given(st.text(max_size=40))
def test_fold_is_stable_and_leaves_no_accents(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert not any(unicodedata.combining(c) for c in folded)
    if text.isascii():
        assert folded == text.lower()


def test_the_contains_pattern_keeps_wildcards_literal() -> None:
    assert contains_pattern("100%") == "%100\\%%"
    assert contains_pattern("a_b\\c") == "%a\\_b\\\\c%"


# -- migration 0009 ----------------------------------------------------------------------

ROWS: dict[str, list[dict[str, Any]]] = {
    "organisations": [{"id": "acme", "name": "Acme"}],
    "candidates": [
        {"id": "c1", "name": "Chloé Dubois", "email": "c@x.example"},
        {"id": "c2", "name": "Tom Smith", "email": "t@x.example"},
    ],
    "jobs": [{"id": "j1", "org_id": "acme", "title": "Professeur de Français"}],
    "applications": [
        {"id": "a1", "org_id": "acme", "job_id": "j1", "candidate_id": "c1", "status": "hired"}
    ],
    "conversations": [{"id": "v1", "application_id": "a1", "org_id": "acme"}],
    "messages": [
        {"id": "m1", "seq": 1, "body": "Le CAFÉ à Straße"},
        {"id": "m2", "seq": 2, "body": "Plain ASCII Text"},
        {"id": "m3", "seq": 3, "body": ""},  # deleted for everyone
    ],
}


def _seed_0003(url: str) -> None:
    """Rows as a version without the search columns wrote them."""
    engine = sa.create_engine(url)
    defaults: dict[str, dict[str, Any]] = {
        "candidates": {"timezone": "UTC", "email_notifications": "each"},
        "applications": {"applied_at": "2026-11-02 09:30:00+00:00"},
        "conversations": {
            "state": "open",
            "last_seq": 3,
            "has_staff_message": True,
            "created_at": "2026-11-02 09:30:00+00:00",
        },
        "messages": {
            "conversation_id": "v1",
            "sender_kind": "staff",
            "sender_id": "s1",
            "sender_name": "Sam",
            "html": "",
            "created_at": "2026-11-02 09:31:00+00:00",
            "deleted": False,
        },
    }
    with engine.begin() as conn:
        for table, rows in ROWS.items():
            for row in rows:
                values = {**defaults.get(table, {}), **row}
                if table == "messages":
                    values["client_id"] = str(uuid.uuid4())
                columns = ", ".join(values)
                params = ", ".join(f":{k}" for k in values)
                conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)
    engine.dispose()


def _pairs(conn: sa.Connection, query: str) -> dict[str, str]:
    return {str(key): str(value) for key, value in conn.execute(sa.text(query)).all()}


def test_migration_0009_folds_existing_rows_and_matches_the_tables(migrating: Settings) -> None:
    upgrade(migrating, "0003")
    url = sync_url(migrating)
    _seed_0003(url)
    upgrade(migrating)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        folded = _pairs(conn, "SELECT id, search_name FROM candidates")
        titles = _pairs(conn, "SELECT id, search_title FROM jobs")
        bodies = _pairs(conn, "SELECT id, search_body FROM messages")
        # The tables module and the migrations describe the same schema.
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert folded == {"c1": "chloe dubois", "c2": "tom smith"}
    assert titles == {"j1": "professeur de francais"}
    assert bodies == {"m1": "le cafe a strasse", "m2": "plain ascii text", "m3": ""}
    assert differences == []


# -- migration 0017 ----------------------------------------------------------------------

SHOWN = {
    "m1": ("is there a **uniform** policy?", "is there a uniform policy?"),
    "m2": ("[Book a slot](https://cal.example/x)", "book a slot"),
    "m3": ("Plain words, as shown", "plain words, as shown"),
}


def test_migration_0017_searches_the_words_as_shown(migrating: Settings) -> None:
    """Messages written before it were searched as written, Markdown marks
    and all: refolded, they are found by the words people see, and still by
    what they wrote."""
    upgrade(migrating, "0016")
    url = sync_url(migrating)
    at = "2026-11-02 09:30:00+00:00"
    rows: list[tuple[str, dict[str, Any]]] = [
        ("organisations", {"id": "acme", "name": "Acme"}),
        (
            "candidates",
            {"id": "c1", "name": "Cara", "email": "c@x.example", "search_name": "cara"}
            | {"timezone": "UTC", "email_notifications": "each"},
        ),
        ("jobs", {"id": "j1", "org_id": "acme", "title": "Engineer", "search_title": "engineer"}),
        (
            "applications",
            {"id": "a1", "org_id": "acme", "job_id": "j1", "candidate_id": "c1"}
            | {"status": "interviewing", "applied_at": at},
        ),
        (
            "conversations",
            {"id": "v1", "application_id": "a1", "org_id": "acme", "state": "open"}
            | {"last_seq": 3, "has_staff_message": True, "created_at": at},
        ),
    ]
    for seq, (message_id, (body, _)) in enumerate(SHOWN.items(), start=1):
        rows.append(
            (
                "messages",
                {"id": message_id, "conversation_id": "v1", "seq": seq, "body": body}
                | {"sender_kind": "staff", "sender_id": "s1", "sender_name": "Sam"}
                | {"client_id": str(uuid.uuid4()), "html": "", "created_at": at}
                | {"deleted": False, "search_body": fold(body)},
            )
        )
    insert_rows(url, rows)

    upgrade(migrating)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        searched = _pairs(conn, "SELECT id, search_body FROM messages")
    engine.dispose()
    for message_id, (body, shown) in SHOWN.items():
        assert shown in searched[message_id], message_id
        assert fold(body) in searched[message_id], message_id
    assert searched["m3"] == "plain words, as shown"
