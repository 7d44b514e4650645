"""Issue 11 item 6 in a real browser: the bell groups a conversation's
messages into one entry with a count, stays quiet about the conversation
the person has open and visible, and clears an entry when it is read or
marked read (one, or all). At desktop and phone sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Request, Route, expect

from tests.browser.conftest import Ats, Browsers, handled
from tests.browser.test_inbox import candidate_says, item

pytestmark = pytest.mark.browser

# The bell's listing (not the mark-read posts below it).
LISTING = "**/api/notifications"
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}


def say(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("send").click()
    expect(page.locator('[data-testid="message"][data-seq]', has_text=text)).to_be_visible()


def read_in_another_tab(page: Page, ats: Ats, conversation: str, text: str) -> None:
    """The same person opens `conversation` in a second tab and sees `text`
    there (so it is read)."""
    other = page.context.new_page()
    other.goto(f"{ats.server.url}/c/{conversation}")
    expect(other.locator('[data-testid="message"][data-seq]', has_text=text)).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_the_bell_groups_per_conversation_and_is_quiet_about_the_open_one(
    browsers: Browsers, ats: Ats, size: str, screenshots: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones", job="Science Technician")
    inbox = browsers.open(ats.staff_link(alice), **SIZES[size])  # type: ignore[arg-type]
    count = inbox.locator("#bell-count")
    expect(count).to_be_hidden()

    candidate = candidate_says(ats, browsers, cara.id, "Is there parking?")
    say(candidate, "And is lunch provided?")
    expect(count).to_have_text("1")
    inbox.get_by_test_id("notifications-bell").click()
    panel = inbox.get_by_role("dialog", name="Notifications")
    entries = panel.locator("li")
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text("2 new messages from Cara Candidate")
    # Opening the panel only shows it; the entry is read when marked so.
    expect(count).to_have_text("1")
    entries.first.get_by_role("button", name="Mark read").click()
    expect(count).to_be_hidden()
    expect(entries.first.get_by_role("button", name="Mark read")).to_have_count(0)
    inbox.keyboard.press("Escape")

    # Alice opens Cara's conversation: Cara's next message does not ring.
    item(inbox, cara.conversation).click()
    say(candidate, "See you on Tuesday")
    expect(
        inbox.locator('[data-testid="message"][data-seq]', has_text="See you on Tuesday")
    ).to_be_visible()
    # Dan's message, published after Cara's on the same feed, does.
    candidate_says(ats, browsers, dan.id, "Hello from Dan")
    expect(count).to_have_text("1")
    inbox.get_by_test_id("notifications-bell").click()
    expect(entries).to_have_count(2)
    expect(entries.first).to_contain_text("New message from Dan Jones")
    expect(entries.first.locator("a")).to_have_attribute("href", f"/c/{dan.conversation}")
    inbox.screenshot(path=str(screenshots / f"bell-{size}.png"))
    panel.get_by_role("button", name="Mark all read").click()
    expect(count).to_be_hidden()
    inbox.reload()
    expect(inbox.locator("#bell-count")).to_be_hidden()


def test_a_listing_that_answers_after_an_entry_was_marked_read_does_not_bring_it_back(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    count = inbox.locator("#bell-count")
    candidate_says(ats, browsers, cara.id, "Is there parking?")
    expect(count).to_have_text("1")
    # The listing the panel asks for on opening is read by the server now
    # and reaches the page only after the entry was marked read.
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    inbox.route(LISTING, hold_the_first)
    inbox.get_by_test_id("notifications-bell").click()
    route = handled(inbox, lambda: held[0] if held else None, what="the panel's listing")
    stale = route.fetch()
    mark = inbox.get_by_role("dialog", name="Notifications").get_by_role("button", name="Mark read")
    mark.click()
    expect(count).to_be_hidden()
    # Its answer may predate the change: the page asks again.
    with inbox.expect_request(LISTING):
        route.fulfill(response=stale)
    expect(mark).to_have_count(0)
    expect(count).to_be_hidden()


def test_the_bell_follows_mark_as_unread_and_reading_in_another_tab(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones")
    candidate_says(ats, browsers, cara.id, "Is there parking?")
    candidate_says(ats, browsers, dan.id, "Hello from Dan")
    inbox = browsers.open(ats.staff_link(alice))
    count = inbox.locator("#bell-count")
    expect(count).to_have_text("2")

    item(inbox, cara.conversation).click()
    expect(count).to_have_text("1")
    # Read on the server (the row's badge goes by the feed's count).
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_count(0)
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("mark-unread").click()
    expect(count).to_have_text("2")

    read_in_another_tab(inbox, ats, dan.conversation, "Hello from Dan")
    expect(count).to_have_text("1")
    inbox.get_by_test_id("notifications-bell").click()
    entries = inbox.get_by_role("dialog", name="Notifications").locator("li.unread")
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text("Cara Candidate")


def test_a_conversation_opened_by_its_address_and_marked_unread_rings_again(
    browsers: Browsers, ats: Ats
) -> None:
    """The page came with the conversation open (/c/…): once it is closed,
    the bell no longer takes it for the one on screen."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    candidate = candidate_says(ats, browsers, cara.id, "Is there parking?")
    inbox = browsers.staff_at(ats, alice, cara)
    count = inbox.locator("#bell-count")
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_count(0)
    expect(count).to_be_hidden()
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("mark-unread").click()
    expect(count).to_have_text("1")

    inbox.get_by_test_id("notifications-bell").click()
    inbox.get_by_role("button", name="Mark all read").click()
    expect(count).to_be_hidden()
    say(candidate, "And is lunch provided?")
    expect(count).to_have_text("1")


def test_marking_the_bell_read_reaches_my_other_tabs(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones")
    candidate_says(ats, browsers, cara.id, "Is there parking?")
    candidate_says(ats, browsers, dan.id, "Hello from Dan")
    first = browsers.open(ats.staff_link(alice))
    other = first.context.new_page()
    other.goto(first.url)
    expect(other.locator("#bell-count")).to_have_text("2")

    first.get_by_test_id("notifications-bell").click()
    panel = first.get_by_role("dialog", name="Notifications")
    panel.locator("li", has_text="Dan Jones").get_by_role("button", name="Mark read").click()
    expect(other.locator("#bell-count")).to_have_text("1")
    first.get_by_role("button", name="Mark all read").click()
    expect(other.locator("#bell-count")).to_be_hidden()


def test_archiving_asks_the_server_what_the_bell_counts_now(browsers: Browsers, ats: Ats) -> None:
    """An archive quiets its conversation's entry (unarchiving brings the
    count back), which the page cannot know from a frame: it asks again."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    candidate_says(ats, browsers, cara.id, "Is there parking?")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).click()
    expect(inbox.locator("#bell-count")).to_be_hidden()
    inbox.get_by_test_id("conversation-menu").click()
    with inbox.expect_request(LISTING):
        inbox.get_by_role("menuitem", name="Archive", exact=True).click()
    expect(item(inbox, cara.conversation)).to_have_count(0)


def test_unread_conversations_beyond_the_listing_are_counted_and_said(
    browsers: Browsers, ats: Ats
) -> None:
    """The listing holds the newest 50 entries; the server's count of unread
    ones covers them all, and the panel says how many it does not list."""
    alice = ats.staff("Alice Recruiter")
    inbox = browsers.open(ats.staff_link(alice))
    listing = unlisted_listing(["c0", "c1"], 5)
    inbox.route(LISTING, lambda route: route.fulfill(json=listing))
    inbox.reload()
    expect(inbox.locator("#bell-count")).to_have_text("5")
    inbox.get_by_test_id("notifications-bell").click()
    more = inbox.locator("#notif-more")
    expect(more).to_have_text("3 more unread conversations are not listed here. See them in Unread")
    expect(more.get_by_role("link", name="See them in Unread")).to_have_attribute(
        "href", "/inbox?filter=unread"
    )


def unlisted_listing(conversations: list[str], unread: int) -> dict[str, object]:
    """A listing of unread entries for `conversations`, with the server's
    count of unread ones at `unread` (more than it lists)."""
    entry = {
        "kind": "message",
        "text": "New message from Cara Candidate (Teacher)",
        "created_at": "2026-12-04T09:00:00.000Z",
        "count": 1,
        "read": False,
    }
    notes = [{**entry, "id": c, "conversation": c, "message": f"m-{c}"} for c in conversations]
    return {"notifications": notes, "unread": unread}


def bell_answering(page: Page, listing: dict[str, dict[str, object]]) -> Locator:
    """The page reloaded with its bell's listing answered by `listing["now"]`
    (which a test may change); the bell's count."""
    page.route(LISTING, lambda route: route.fulfill(json=listing["now"]))
    page.reload()
    return page.locator("#bell-count")


def is_listing(request: Request) -> bool:
    return request.method == "GET" and request.url.endswith("/api/notifications")


def test_a_message_in_an_unlisted_conversation_asks_the_server_for_the_count(
    browsers: Browsers, ats: Ats
) -> None:
    """Beyond the listing, a new message may be in a conversation already
    counted unread: the bell asks the server rather than add one."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    listing = {"now": unlisted_listing(["c0", "c1"], 5)}
    count = bell_answering(inbox, listing)
    expect(count).to_have_text("5")
    # Cara's conversation was one of the three not listed; now it is listed.
    listing["now"] = unlisted_listing([cara.conversation, "c0", "c1"], 5)
    with inbox.expect_request(is_listing):
        candidate_says(ats, browsers, cara.id, "Writing again")
    expect(count).to_have_text("5")
    inbox.get_by_test_id("notifications-bell").click()
    expect(inbox.locator("#notif-more")).to_contain_text(
        "2 more unread conversations are not listed here."
    )


def test_reading_an_unlisted_conversation_elsewhere_asks_the_server_for_the_count(
    browsers: Browsers, ats: Ats
) -> None:
    """Read in another tab, a conversation the listing left out is no longer
    counted: the badge and the line below the list follow the server."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    candidate_says(ats, browsers, cara.id, "Is there parking?")
    inbox = browsers.open(ats.staff_link(alice))
    listing = {"now": unlisted_listing(["c0", "c1"], 5)}
    count = bell_answering(inbox, listing)
    expect(count).to_have_text("5")
    listing["now"] = unlisted_listing(["c0", "c1"], 4)
    with inbox.expect_request(is_listing):
        read_in_another_tab(inbox, ats, cara.conversation, "Is there parking?")
    expect(count).to_have_text("4")
    inbox.get_by_test_id("notifications-bell").click()
    expect(inbox.locator("#notif-more")).to_contain_text(
        "2 more unread conversations are not listed here."
    )
