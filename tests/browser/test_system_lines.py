"""System lines in the timeline (issue 11 item 4): a status change from the
host, ending the conversation and the staff message that reopens it show as
centred, muted lines with their time, live on both sides and again after a
reload, in seq order with the messages. At desktop and phone sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Ats, Browsers

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
LINE = '[data-testid="system-line"]'
TIMELINE = '[data-role="messages"] > li.msg'
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}
STATUS = "Application status changed from Interviewing to Offered."
ENDED = "Alice Recruiter ended the conversation."
REOPENED = "Alice Recruiter reopened the conversation."


def timeline(page: Page) -> list[tuple[str, str]]:
    """(kind, text) of every entry of the timeline, in order."""
    entries = page.locator(TIMELINE)
    result = []
    for i in range(entries.count()):
        entry = entries.nth(i)
        kind = "line" if entry.get_attribute("data-testid") == "system-line" else "message"
        text = entry.locator(".system-text" if kind == "line" else ".msg-body").inner_text()
        result.append((kind, " ".join(text.split())))
    return result


def expect_line(page: Page, text: str) -> None:
    line = page.locator(LINE, has_text=text)
    expect(line).to_be_visible()
    # With its time (in the viewer's zone), and without a sender or a menu.
    expect(line.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    expect(line.get_by_test_id("message-menu")).to_have_count(0)


def is_centred(page: Page, text: str) -> bool:
    box = page.locator(LINE, has_text=text).locator(".system-text").bounding_box()
    area = page.locator('[data-role="messages"]').bounding_box()
    assert box is not None
    assert area is not None
    middle = box["x"] + box["width"] / 2
    return abs(middle - (area["x"] + area["width"] / 2)) < 4


@pytest.mark.parametrize("size", SIZES)
def test_lines_show_live_and_after_a_reload(
    browsers: Browsers, ats: Ats, size: str, screenshots: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app, **SIZES[size])
    candidate = browsers.open(ats.candidate_link(app.id), **SIZES[size])  # type: ignore[arg-type]
    staff.get_by_test_id("composer").fill("Thanks for today.")
    staff.get_by_test_id("send").click()
    expect(candidate.locator(MESSAGE, has_text="Thanks for today")).to_be_visible()

    ats.set_status(app, "Cara Candidate", "offered")
    for page in (staff, candidate):
        expect_line(page, STATUS)

    staff.get_by_test_id("conversation-menu").click()
    staff.get_by_test_id("end-conversation").click()
    staff.get_by_role("dialog", name="End this conversation?").get_by_role(
        "button", name="End conversation"
    ).click()
    for page in (staff, candidate):
        expect_line(page, ENDED)
        assert is_centred(page, ENDED)
    expect(candidate.get_by_test_id("send-disabled-reason")).to_have_text(
        "This conversation has ended."
    )
    staff.screenshot(path=str(screenshots / f"system-lines-{size}.png"))

    staff.get_by_test_id("composer").fill("One more thing: the start date.")
    staff.get_by_test_id("send").click()
    expect(candidate.locator(MESSAGE, has_text="One more thing")).to_be_visible()
    expect_line(candidate, REOPENED)
    expected = [
        ("message", "Thanks for today."),
        ("line", STATUS),
        ("line", ENDED),
        ("line", REOPENED),
        ("message", "One more thing: the start date."),
    ]
    for page in (staff, candidate):
        expect(page.locator(TIMELINE)).to_have_count(len(expected))
        assert [(k, t.split(" · ")[0]) for k, t in timeline(page)] == expected
        page.reload()
        expect(page.locator(TIMELINE)).to_have_count(len(expected))
        assert [(k, t.split(" · ")[0]) for k, t in timeline(page)] == expected
        expect_line(page, ENDED)
    # A line is nobody's message: the staff inbox row previews the last one.
    if size == "desktop":
        row = staff.locator('[data-testid="inbox-item"]', has_text="Cara Candidate")
        expect(row).to_contain_text("One more thing")
        expect(row).not_to_contain_text("reopened")
