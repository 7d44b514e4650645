"""`chatserver demo`: the demo organisation, seeded through the domain."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import Table, func, select

from chatserver import demo
from chatserver.app import create_app
from chatserver.chat.policy import Status
from chatserver.settings import Settings
from chatserver.store.db import Database
from chatserver.store.migrate import upgrade
from chatserver.store.tables import applications, jobs, messages, staff
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
