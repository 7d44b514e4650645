"""A candidate's browser zone: adopted while they have not chosen a zone in
Settings (`POST /api/me/browser-timezone`), never over a choice, never for
staff, whose zone comes from the host."""

from __future__ import annotations

from typing import Any

from tests.conftest import Scene
from tests.helpers import Person, error_of

ADOPT = "/api/me/browser-timezone"


async def me(person: Person) -> dict[str, Any]:
    response = await person.client.get("/api/me")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def adopt(person: Person, timezone: Any) -> dict[str, Any]:
    response = await person.post(ADOPT, {"timezone": timezone})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_me_says_whether_the_zone_was_chosen(scene: Scene) -> None:
    before = await me(scene.cara)
    assert (before["timezone"], before["timezone_chosen"]) == ("UTC", False)
    response = await scene.cara.client.put(
        "/api/me/settings", json={"timezone": "UTC"}, headers=scene.cara.csrf
    )
    assert response.json()["timezone_chosen"] is True
    assert (await me(scene.cara))["timezone_chosen"] is True
    assert (await me(scene.alice))["timezone_chosen"] is False


async def test_a_candidate_who_never_chose_gets_the_browsers_zone(scene: Scene) -> None:
    adopted = await adopt(scene.cara, "America/New_York")
    assert (adopted["timezone"], adopted["timezone_chosen"]) == ("America/New_York", False)
    assert (await me(scene.cara))["timezone"] == "America/New_York"
    # Still not a choice: another browser's zone is adopted in its turn.
    assert (await adopt(scene.cara, "Europe/Berlin"))["timezone"] == "Europe/Berlin"


async def test_a_chosen_zone_is_never_overwritten(scene: Scene) -> None:
    for chosen in ("Asia/Tokyo", "UTC"):
        response = await scene.cara.client.put(
            "/api/me/settings", json={"timezone": chosen}, headers=scene.cara.csrf
        )
        assert response.status_code == 200, response.text
        after = await adopt(scene.cara, "America/New_York")
        assert (after["timezone"], after["timezone_chosen"]) == (chosen, True)


async def test_staff_zones_are_never_changed_from_the_browser(scene: Scene) -> None:
    after = await adopt(scene.alice, "America/New_York")
    assert after["timezone"] == "UTC"
    assert (await me(scene.alice))["timezone"] == "UTC"


async def test_the_same_clock_under_another_name_changes_nothing(scene: Scene) -> None:
    for name in ("Etc/UTC", "Etc/GMT", "Zulu"):
        assert (await adopt(scene.cara, name))["timezone"] == "UTC"


async def test_an_invalid_zone_is_refused_and_changes_nothing(
    scene: Scene, new_client: Any
) -> None:
    for value in ("Mars/Base", "Etc/Unknown", "", None, 5):
        response = await scene.cara.post(ADOPT, {"timezone": value})
        error_of(response, 422, "invalid")
    assert (await me(scene.cara))["timezone"] == "UTC"
    # A session and its CSRF token are needed, as for every change.
    no_token = await scene.cara.client.post(ADOPT, json={"timezone": "Europe/Paris"})
    assert no_token.status_code == 403, no_token.text
    nobody = await new_client().post(
        ADOPT, json={"timezone": "Europe/Paris"}, headers={"X-CSRF-Token": "x"}
    )
    error_of(nobody, 401, "unauthorized")
    assert (await me(scene.cara))["timezone"] == "UTC"
