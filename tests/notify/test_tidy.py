"""The notifier's housekeeping: uploads never sent expire after
CHAT_UNSENT_UPLOAD_DAYS, and bytes no file refers to are swept, at most
once an hour (`Notifier.tidy`, `uploads.tidy`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from chatserver.chat.uploads import Tidied
from chatserver.notify.worker import TIDY_EVERY, Notifier
from chatserver.settings import Settings
from tests.chat.sends import chat_of
from tests.conftest import Scene
from tests.helpers import error_of, upload
from tests.notify.conftest import MovableClock
from tests.waits import eventually_async


async def uploaded(scene: Scene, name: str) -> str:
    response = await upload(scene.cara, name, b"A note never sent")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def gone(scene: Scene, file_id: str) -> bool:
    response = await scene.cara.client.get(f"/api/attachments/{file_id}")
    if response.status_code == 200:
        return False
    error_of(response, 404, "not_found")
    return True


async def test_the_notifier_deletes_expired_uploads_at_most_once_an_hour(
    scene: Scene, app: Any, settings: Settings, notifier: Notifier, clock: MovableClock
) -> None:
    chat_of(app).clock = clock
    half_an_hour = TIDY_EVERY.total_seconds() / 2
    first = await uploaded(scene, "first.txt")
    clock.advance(half_an_hour)
    second = await uploaded(scene, "second.txt")
    clock.advance(timedelta(days=settings.unsent_upload_days).total_seconds() - half_an_hour + 60)
    # Its bytes stay: the second upload is the same text.
    assert await notifier.tidy() == Tidied(expired=1, swept=0)
    assert await gone(scene, first)
    assert not await gone(scene, second)

    clock.advance(half_an_hour)  # the second has expired too
    assert await notifier.tidy() is None  # the last was half an hour ago
    assert not await gone(scene, second)
    clock.advance(half_an_hour)
    assert await notifier.tidy() == Tidied(expired=1, swept=0)
    assert await gone(scene, second)


async def expired_upload(scene: Scene, app: Any, settings: Settings, clock: MovableClock) -> str:
    """An upload never sent, past CHAT_UNSENT_UPLOAD_DAYS by the clock."""
    chat_of(app).clock = clock
    file_id = await uploaded(scene, "note.txt")
    clock.advance(timedelta(days=settings.unsent_upload_days, minutes=1).total_seconds())
    return file_id


async def tidied_by_loop(scene: Scene, notifier: Notifier, file_id: str) -> None:
    """`run_forever` deletes the expired upload."""
    loop = asyncio.create_task(notifier.run_forever())
    try:
        await eventually_async(lambda: gone(scene, file_id), within=10, what="the upload expired")
    finally:
        notifier.stop()
        await loop


async def test_the_notifier_loop_tidies(
    scene: Scene, app: Any, settings: Settings, notifier: Notifier, clock: MovableClock
) -> None:
    file_id = await expired_upload(scene, app, settings, clock)
    await tidied_by_loop(scene, notifier, file_id)


async def test_the_loop_tidies_even_while_its_email_passes_fail(
    scene: Scene, app: Any, settings: Settings, notifier: Notifier, clock: MovableClock
) -> None:
    file_id = await expired_upload(scene, app, settings, clock)
    passes = 0

    async def failing_pass() -> Any:
        nonlocal passes
        passes += 1
        raise ConnectionError("the email outbox is unreachable")

    notifier.run_once = failing_pass  # type: ignore[method-assign]
    await tidied_by_loop(scene, notifier, file_id)
    assert passes >= 1
