"""SPEC 6 settings in a real browser: a choice is saved as soon as it is
made, even one made before the page's script has loaded, and one stepped
to by keyboard once it rests."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Ats, Browsers, handled

pytestmark = pytest.mark.browser
MESSAGE = '[data-testid="message"][data-seq]'


def settings_before_its_script(browsers: Browsers, ats: Ats) -> tuple[Page, Route]:
    """Alice (Tokyo) on the settings page, its module held back: the page
    as a person sees it before the script runs, and the held request."""
    alice = ats.staff("Alice Recruiter", timezone="Asia/Tokyo")
    page = browsers.open(ats.staff_link(alice))
    held: list[Route] = []
    page.route("**/static/js/settings.js*", lambda route: held.append(route))
    with page.expect_request("**/static/js/settings.js*"):
        page.goto(f"{ats.server.url}/settings", wait_until="domcontentloaded")
    return page, handled(page, lambda: held[0] if held else None, what="the held module")


def test_a_choice_made_before_the_script_loaded_is_saved(browsers: Browsers, ats: Ats) -> None:
    page, script = settings_before_its_script(browsers, ats)
    zone = page.get_by_test_id("timezone")
    expect(zone).to_have_value("Asia/Tokyo")
    zone.select_option("America/New_York")
    expect(page.locator("#save-status")).to_have_text("")
    script.continue_()
    expect(page.locator("#save-status")).to_have_text("Timezone saved.")
    page.reload()
    expect(page.get_by_test_id("timezone")).to_have_value("America/New_York")


def test_a_search_typed_before_the_script_loaded_is_searched(browsers: Browsers, ats: Ats) -> None:
    page, script = settings_before_its_script(browsers, ats)
    page.get_by_test_id("timezone-search").fill("Germany")
    script.continue_()
    expect(page.locator("#save-status")).to_have_text(
        "Press Enter to choose Europe/Berlin (Central European Time)."
    )
    expect(page.get_by_test_id("timezone")).to_have_value("Europe/Berlin")


def me_of(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("fetch('/api/me').then((r) => r.json())"))


def test_a_candidate_who_never_chose_gets_the_browsers_zone_once(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter", timezone="Asia/Tokyo")
    app = ats.application("app", "Cara Candidate")
    ats.staff_says(alice, app.conversation, "Are you free on Tuesday?")
    adoptions: list[str] = []
    cara = browsers.open("about:blank", timezone="America/New_York")
    cara.on("request", lambda r: adoptions.append(r.url) if "browser-timezone" in r.url else None)
    cara.goto(ats.candidate_link(app.id))
    time_el = cara.locator(MESSAGE, has_text="Tuesday").locator("time").first
    expect(time_el).to_have_attribute("datetime", re.compile(r"Z$"))
    wire = time_el.get_attribute("datetime")
    assert wire is not None
    sent = datetime.fromisoformat(wire.replace("Z", "+00:00"))
    local = sent.astimezone(ZoneInfo("America/New_York"))
    # The times are on the browser's clock at once, and the zone is saved.
    expect(time_el).to_have_text(f"{local:%H:%M}")  # en-GB: a 24-hour clock
    handled(
        cara,
        lambda: me_of(cara)["timezone"] == "America/New_York" or None,
        what="the browser's zone saved",
    )
    assert me_of(cara)["timezone_chosen"] is False
    assert len(adoptions) == 1
    # Stored now: the next page load asks nothing.
    cara.reload()
    expect(time_el).to_have_attribute("datetime", wire)
    cara.goto(f"{ats.server.url}/settings")
    expect(cara.get_by_test_id("timezone")).to_have_value("America/New_York")
    assert len(adoptions) == 1


def test_a_chosen_zone_and_staff_zones_are_kept(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter", timezone="Asia/Tokyo")
    app = ats.application("app", "Cara Candidate")
    # Cara, in a UTC browser, chooses Tokyo; later her browser is in Berlin.
    cara = browsers.open(ats.candidate_link(app.id))
    cara.goto(f"{ats.server.url}/settings")
    cara.get_by_test_id("timezone").select_option("Asia/Tokyo")
    expect(cara.locator("#save-status")).to_have_text("Timezone saved.")
    berlin = browsers.open(ats.candidate_link(app.id), timezone="Europe/Berlin")
    expect(berlin.get_by_test_id("composer")).to_be_visible()
    berlin.goto(f"{ats.server.url}/settings")
    expect(berlin.get_by_test_id("timezone")).to_have_value("Asia/Tokyo")
    assert (me_of(berlin)["timezone"], me_of(berlin)["timezone_chosen"]) == ("Asia/Tokyo", True)
    # Staff zones come from the host.
    staff = browsers.open(ats.staff_link(alice), timezone="America/New_York")
    staff.goto(f"{ats.server.url}/settings")
    expect(staff.get_by_test_id("timezone")).to_have_value("Asia/Tokyo")
    assert (me_of(staff)["timezone"], me_of(staff)["timezone_chosen"]) == ("Asia/Tokyo", False)


def test_the_search_finds_zones_by_country_and_common_name(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter", timezone="Asia/Tokyo")
    page = browsers.open(ats.staff_link(alice))
    page.goto(f"{ats.server.url}/settings")
    search, zone = page.get_by_test_id("timezone-search"), page.get_by_test_id("timezone")
    status = page.locator("#save-status")
    for typed, found in (
        ("Pacific time", "America/Los_Angeles"),
        ("Germany", "Europe/Berlin"),
        ("UK", "Europe/London"),
        ("London", "Europe/London"),
        ("India", "Asia/Kolkata"),
    ):
        search.fill(typed)
        # The best match is highlighted, first in the list, and named.
        expect(zone).to_have_value(found)
        expect(zone.locator("option:not([hidden])").first).to_have_attribute("value", found)
        expect(status).to_contain_text(f"Press Enter to choose {found.replace('_', ' ')}")
    expect(status).to_have_text("Press Enter to choose Asia/Kolkata (India Standard Time).")
    search.press("Enter")
    expect(status).to_have_text("Timezone saved.")
    page.reload()
    expect(page.get_by_test_id("timezone")).to_have_value("Asia/Kolkata")


def test_enter_saves_nothing_when_nothing_matches(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter", timezone="Asia/Tokyo")
    page = browsers.open(ats.staff_link(alice))
    page.goto(f"{ats.server.url}/settings")
    search, zone = page.get_by_test_id("timezone-search"), page.get_by_test_id("timezone")
    status = page.locator("#save-status")
    zone.select_option("Europe/Paris")
    expect(status).to_have_text("Timezone saved.")
    search.fill("Atlantis")
    # The old "saved" is gone; nothing is highlighted but the saved zone.
    expect(status).to_have_text("No time zone matches “Atlantis”.")
    expect(zone.locator("option:not([hidden])")).to_have_count(0)
    search.press("Enter")
    expect(status).to_have_text("No time zone matches “Atlantis”.")
    search.fill("")
    expect(status).to_have_text("")
    expect(zone).to_have_value("Europe/Paris")
    # A highlight left without Enter is not a choice.
    search.fill("Germany")
    expect(zone).to_have_value("Europe/Berlin")
    page.get_by_test_id("notifications").focus()
    expect(zone).to_have_value("Europe/Paris")
    page.reload()
    expect(page.get_by_test_id("timezone")).to_have_value("Europe/Paris")


def test_stepping_through_the_lists_by_keyboard_saves_where_it_rests(
    browsers: Browsers, ats: Ats
) -> None:
    """Arrow keys pass options one at a time, each a change: the choice is
    saved once, where the person stops (or on Enter), not every zone passed
    on the way. The page's clock is held, so "stops" is exact."""
    alice = ats.staff("Alice Recruiter", timezone="Europe/Paris")
    page = browsers.open(ats.staff_link(alice))
    page.clock.install()
    page.goto(f"{ats.server.url}/settings")
    page.clock.pause_at(datetime.now() + timedelta(seconds=5))
    saved: list[str] = []
    page.on(
        "request",
        lambda r: saved.append(r.post_data or "") if r.url.endswith("/api/me/settings") else None,
    )
    zone, status = page.get_by_test_id("timezone"), page.locator("#save-status")
    zone.focus()
    for _ in range(5):
        zone.press("ArrowDown")
    passed_to = zone.input_value()
    assert passed_to != "Europe/Paris"
    page.clock.run_for(600)
    assert saved == []
    page.clock.run_for(200)
    expect(status).to_have_text("Timezone saved.")
    assert [json.loads(body) for body in saved] == [{"timezone": passed_to}]

    notifications = page.get_by_test_id("notifications")
    notifications.focus()
    notifications.press("ArrowDown")
    notifications.press("ArrowDown")
    assert len(saved) == 1
    notifications.press("Enter")
    expect(status).to_have_text("Email notifications saved.")
    chosen = notifications.input_value()
    assert [json.loads(body) for body in saved[1:]] == [{"email_notifications": chosen}]
    page.reload()
    expect(page.get_by_test_id("timezone")).to_have_value(passed_to)
    expect(page.get_by_test_id("notifications")).to_have_value(chosen)


def test_a_choice_stepped_to_is_saved_as_the_page_goes(browsers: Browsers, ats: Ats) -> None:
    """Leaving the page before the choice rests still saves it: the save as
    the page goes is a request that outlives the page."""
    alice = ats.staff("Alice Recruiter", timezone="Europe/Paris")
    page = browsers.open(ats.staff_link(alice))
    page.goto(f"{ats.server.url}/settings")
    zone = page.get_by_test_id("timezone")
    zone.focus()
    zone.press("ArrowDown")
    stepped_to = zone.input_value()
    page.goto(f"{ats.server.url}/inbox")
    expect(page.get_by_test_id("search")).to_be_visible()
    page.goto(f"{ats.server.url}/settings")
    expect(page.get_by_test_id("timezone")).to_have_value(stepped_to)
