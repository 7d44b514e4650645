"""The composer's live preview (`POST /api/preview`): the very HTML a sent
message gets, for signed-in people only, under the limits of a send."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatserver.chat.formatting import render
from tests.conftest import Scene
from tests.helpers import error_of


async def test_the_preview_is_the_html_the_message_will_have(scene: Scene) -> None:
    body = "Parking is **free**\n- bay 3\n- see https://example.org/map"
    preview = await scene.cara.post("/api/preview", {"body": body})
    assert preview.status_code == 200, preview.text
    sent = await scene.cara.send(scene.conversation, body)
    assert preview.json() == {"html": sent.json()["html"]}
    assert "<strong>free</strong>" in preview.json()["html"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=200))
async def test_any_body_previews_as_render_does(scene: Scene, body: str) -> None:
    response = await scene.alice.post("/api/preview", {"body": body})
    if "\x00" in body:
        error_of(response, 422, "invalid")
    else:
        assert response.json() == {"html": render(body)}


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 422, "invalid"),
        ({"body": 7}, 422, "invalid"),
        ({"body": None}, 422, "invalid"),
        ({"body": ["x"]}, 422, "invalid"),
        ({"body": "a\x00b"}, 422, "invalid"),
        ({"body": "x" * 10_001}, 413, "too_large"),
        ([], 422, "invalid"),
        ("text", 422, "invalid"),
    ],
)
async def test_bad_bodies_get_the_error_object(
    scene: Scene, payload: object, status: int, code: str
) -> None:
    error_of(await scene.alice.post("/api/preview", payload), status, code)


async def test_a_body_that_is_not_json_is_a_400(scene: Scene) -> None:
    response = await scene.alice.client.post(
        "/api/preview",
        content=b"{nope",
        headers={**scene.alice.csrf, "Content-Type": "application/json"},
    )
    error_of(response, 400, "invalid")


async def test_strangers_and_forgeries_get_nothing(scene: Scene, client: httpx.AsyncClient) -> None:
    error_of(await client.post("/api/preview", json={"body": "hi"}), 401, "unauthorized")
    no_csrf = await scene.alice.client.post("/api/preview", json={"body": "hi"})
    error_of(no_csrf, 403, "forbidden")
