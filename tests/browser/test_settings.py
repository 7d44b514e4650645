"""SPEC 6 settings in a real browser: a choice is saved as soon as it is
made, even one made before the page's script has loaded."""

from __future__ import annotations

import pytest
from playwright.sync_api import Route, expect

from tests.browser.conftest import Ats, Browsers

pytestmark = pytest.mark.browser


def test_a_choice_made_before_the_script_loaded_is_saved(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter", timezone="Asia/Tokyo")
    page = browsers.open(ats.staff_link(alice))
    held: list[Route] = []
    # The settings module is held back until the choice is made.
    page.route("**/static/js/settings.js*", lambda route: held.append(route))
    with page.expect_request("**/static/js/settings.js*"):
        page.goto(f"{ats.server.url}/settings", wait_until="domcontentloaded")
    zone = page.get_by_test_id("timezone")
    expect(zone).to_have_value("Asia/Tokyo")
    zone.select_option("America/New_York")
    expect(page.locator("#save-status")).to_have_text("")
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#save-status")).to_have_text("Timezone saved.")
    page.reload()
    expect(page.get_by_test_id("timezone")).to_have_value("America/New_York")
