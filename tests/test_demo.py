"""`chatserver demo`: the demo organisation, seeded through the domain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Table, func, select

from chatserver import demo
from chatserver.app import create_app
from chatserver.chat.policy import Status
from chatserver.settings import Settings
from chatserver.store.db import Database
from chatserver.store.migrate import upgrade
from chatserver.store.tables import (
    applications,
    conversations,
    jobs,
    messages,
    read_positions,
    staff,
)
from tests.helpers import path_of


async def count(app_settings: Settings, table: Table, **where: str) -> int:
    db = Database.from_settings(app_settings)
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    try:
        async with db.transaction() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()


async def test_the_demo_has_two_staff_three_jobs_a_dozen_candidates_and_history(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, base_url="http://127.0.0.1:8000", demo_mode=True)
    upgrade(settings)
    await demo.seed_and_print_links(settings)
    scripted = sum(len(c.script) for c in demo.CANDIDATES)
    # A conversation written while interviewing then moves on to its final
    # status: that change is a system line.
    moved_on = len([c for c in demo.CANDIDATES if c.script and c.status is not Status.INTERVIEWING])
    assert await count(settings, staff) == 2
    assert await count(settings, jobs) == 3
    assert await count(settings, applications) == 12
    assert await count(settings, messages, sender_kind="system") == moved_on > 0
    assert await count(settings, messages) == scripted + moved_on
    assert scripted > 0

    await demo.seed_and_print_links(settings)  # running the demo again adds nothing
    assert await count(settings, messages) == scripted + moved_on


async def test_the_printed_links_sign_people_in(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, base_url="http://127.0.0.1:8000", demo_mode=True)
    upgrade(settings)
    await demo.seed_and_print_links(settings)
    app = create_app(settings, run_notifier=False)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        for who, url in demo.links(settings):
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                landed = await c.get(path_of(url))
                assert landed.status_code == 303, who
                me = await c.get("/api/me")
                assert me.status_code == 200, who
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            sign_in_page = await c.get("/dev/sign-in")
        assert sign_in_page.status_code == 200
        assert "Sam Taylor" in sign_in_page.text


async def seeded(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path, base_url="http://127.0.0.1:8000", demo_mode=True)
    upgrade(settings)
    await demo.seed_and_print_links(settings)
    return settings


async def people_messages(settings: Settings) -> list[dict[str, Any]]:
    """The seeded messages people wrote (no system lines), with the
    application, in the order of each conversation."""
    db = Database.from_settings(settings)
    query = (
        select(messages, conversations.c.application_id)
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .where(messages.c.sender_kind != "system")
        .order_by(messages.c.conversation_id, messages.c.seq)
    )
    try:
        async with db.transaction() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]
    finally:
        await db.dispose()


async def test_the_seeded_writers_have_read_their_own_messages(tmp_path: Path) -> None:
    """A send from the pages is followed by its writer reading up to it: in
    no seeded conversation is something unread for a staff member whose own
    message is the newest (Tom's row showed "You: Wonderful…" in bold,
    with 1 unread), nor for a candidate."""
    settings = await seeded(tmp_path)
    db = Database.from_settings(settings)
    try:
        async with db.transaction() as conn:
            positions = {
                (row.conversation_id, row.reader_kind, row.reader_id): row.seq
                for row in await conn.execute(select(read_positions))
            }
    finally:
        await db.dispose()
    written = await people_messages(settings)
    assert {m["sender_kind"] for m in written} == {"staff", "candidate"}
    for m in written:
        reader = (m["conversation_id"], m["sender_kind"], m["sender_id"])
        assert positions.get(reader, 0) >= m["seq"], (m["body"], reader)

    # As each staff member sees it in the inbox.
    app = create_app(settings, run_notifier=False)
    transport = httpx.ASGITransport(app=app)
    own_newest = 0
    async with app.router.lifespan_context(app):
        for who, url in demo.links(settings):
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                assert (await c.get(path_of(url))).status_code == 303, who
                me = (await c.get("/api/me")).json()
                inbox = await c.get("/api/conversations", params={"limit": 100})
                assert inbox.status_code == 200, inbox.text
            for row in inbox.json()["conversations"]:
                newest = row["last_message"]
                if newest and newest["sender"]["id"] == me["id"]:
                    own_newest += 1
                    assert row["unread"] == 0, (who, row["candidate"]["name"], newest["body"])
    assert own_newest >= 2  # Tom's for Alex, Sam's for Sam


async def test_every_seeded_message_addresses_someone_in_its_conversation(
    tmp_path: Path,
) -> None:
    """A reply names the staff member who wrote the staff message before it
    (Noah thanked Priya for a message Alex sent), and a staff message names
    the conversation's candidate: no name of another demo person."""
    settings = await seeded(tmp_path)
    first_name = {f"demo-app-{c.key}": c.name.split()[0] for c in demo.CANDIDATES}
    staff_names = [name.split()[0] for _, name, _, _ in demo.STAFF]
    candidate_names = list(first_name.values())

    def named(body: str, names: list[str]) -> set[str]:
        return {name for name in names if re.search(rf"\b{re.escape(name)}\b", body)}

    addressed = 0
    last_staff: dict[str, str] = {}
    for m in await people_messages(settings):
        conversation, body = m["conversation_id"], m["body"]
        if m["sender_kind"] == "staff":
            last_staff[conversation] = m["sender_name"].split()[0]
            assert named(body, candidate_names) <= {first_name[m["application_id"]]}, body
            assert named(body, staff_names) <= {last_staff[conversation]}, body
        else:
            names = named(body, staff_names)
            assert names <= {last_staff.get(conversation)}, (body, last_staff.get(conversation))
            assert not named(body, candidate_names) - {first_name[m["application_id"]]}, body
            addressed += bool(names)
    assert addressed >= 2  # Sam's "Hello Alex", Noah's "Thanks Priya"
