"""Signing in from links in a real browser: a candidate's link opened
where a recruiter is signed in asks whom to continue as."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Ats, Browsers

pytestmark = pytest.mark.browser


def test_a_recruiter_opening_a_candidates_link_chooses_whom_to_continue_as(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    page = browsers.open(ats.staff_link(alice))
    expect(page.get_by_test_id("filter-all")).to_be_visible()

    page.goto(ats.candidate_link(cara.id))
    expect(page.get_by_role("heading", name="This is a candidate's link")).to_be_visible()
    expect(page.locator("body")).to_contain_text("This browser is signed in as Alice Recruiter")
    page.get_by_role("button", name="Stay signed in as Alice Recruiter").click()
    expect(page).to_have_url(f"{ats.server.url}/inbox")
    expect(page.get_by_test_id("filter-all")).to_be_visible()

    page.goto(ats.candidate_link(cara.id))
    page.get_by_role("button", name="Continue as Cara Candidate").click()
    expect(page).to_have_url(f"{ats.server.url}/c/{cara.conversation}")
    expect(page.get_by_test_id("composer")).to_be_visible()
    assert page.evaluate("document.body.dataset.kind") == "candidate"


def test_of_two_pages_asking_the_later_one_holds_the_choice(browsers: Browsers, ats: Ats) -> None:
    """The link opened in two tabs: the earlier page's choice says it
    expired (and changes nothing); the later one's works."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    first = browsers.open(ats.staff_link(alice))
    first.goto(ats.candidate_link(cara.id))
    second = first.context.new_page()
    second.goto(ats.candidate_link(cara.id))

    first.get_by_role("button", name="Continue as Cara Candidate").click()
    expect(first.get_by_role("heading", name="This choice has expired")).to_be_visible()
    second.get_by_role("button", name="Continue as Cara Candidate").click()
    expect(second).to_have_url(f"{ats.server.url}/c/{cara.conversation}")
    assert second.evaluate("document.body.dataset.kind") == "candidate"
