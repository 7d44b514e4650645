"""SPEC 6, the staff inbox in a real browser: live updates, filters,
search, sort, archive, and the layouts (screenshots for the README)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import Ats, Browsers, handled, said

pytestmark = pytest.mark.browser

ITEM = '[data-testid="inbox-item"]'


def names(page: Page) -> list[str]:
    return page.locator(f"{ITEM} .item-name").all_inner_texts()


def item(page: Page, conversation: str) -> Locator:
    return page.locator(f'{ITEM}[data-conversation="{conversation}"]')


def candidate_says(ats: Ats, browsers: Browsers, application_id: str, text: str) -> Page:
    page = browsers.open(ats.candidate_link(application_id))
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")
    expect(page.locator('[data-testid="message"][data-seq]', has_text=text)).to_be_visible()
    return page


def test_inbox_updates_live(browsers: Browsers, ats: Ats, screenshots: Path) -> None:
    alice = ats.staff("Alice Recruiter")
    bob = ats.staff("Bob Head")
    cara = ats.application("cara", "Cara Candidate", job="Teacher of Mathematics")
    dan = ats.application("dan", "Dan Jones", job="Science Technician", status="offered")
    eve = ats.application("eve", "Eve Walker", job="Head of English", status="shortlisted")
    ats.staff_says(bob, eve.conversation, "We'd love to invite you to interview.")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(3)
    assert names(inbox)[0] == "Eve Walker"
    expect(item(inbox, cara.conversation).locator(".history-bubble")).not_to_have_class(
        "history-bubble filled"
    )
    expect(item(inbox, eve.conversation).locator(".history-bubble")).to_have_class(
        "history-bubble filled"
    )
    expect(inbox.get_by_test_id("unread-badge")).to_have_count(0)

    candidate_says(ats, browsers, dan.id, "Hello, is the start date flexible?")
    row = item(inbox, dan.conversation)
    expect(row.get_by_test_id("unread-badge")).to_have_text("1")
    expect(row).to_contain_text("Hello, is the start date flexible?")
    expect(row.locator(".history-bubble")).to_have_class("history-bubble filled")
    assert names(inbox)[0] == "Dan Jones"

    candidate_says(ats, browsers, cara.id, "Thanks for the update!")
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_text("1")
    expect(inbox.locator(ITEM).first).to_have_attribute("data-conversation", cara.conversation)
    inbox.screenshot(path=str(screenshots / "inbox.png"))

    # Opening the conversation reads it: the badge goes, without a reload.
    item(inbox, cara.conversation).click()
    expect(inbox).to_have_url(f"{ats.server.url}/c/{cara.conversation}")
    expect(inbox.locator('[data-testid="message"][data-seq="1"]')).to_be_visible()
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_count(0)
    expect(item(inbox, dan.conversation).get_by_test_id("unread-badge")).to_have_text("1")
    inbox.screenshot(path=str(screenshots / "inbox-conversation.png"))


def test_filters_search_and_sort(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate", job="Teacher of Mathematics")
    dan = ats.application("dan", "Dan Jones", job="Science Technician")
    eve = ats.application("eve", "Eve Walker", job="Head of English")
    ats.staff_says(alice, cara.conversation, "Could you bring your portfolio?")
    candidate_says(ats, browsers, dan.id, "My referee is Mrs Pemberton.")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(3)

    def shows(*expected: str) -> None:
        expect(inbox.locator(f"{ITEM} .item-name")).to_have_text(list(expected))

    shows("Dan Jones", "Cara Candidate", "Eve Walker")
    # What each choice found is said (a screen reader hears nothing of a
    # list replaced under it); loading the page says nothing.
    status = inbox.locator("#inbox-status")
    said(status)
    inbox.get_by_test_id("filter-unread").click()
    shows("Dan Jones")
    said(status, "1 conversation.")
    inbox.get_by_test_id("filter-messaged").click()
    shows("Dan Jones", "Cara Candidate")
    said(status, "2 conversations.")
    inbox.get_by_test_id("filter-all").click()
    shows("Dan Jones", "Cara Candidate", "Eve Walker")

    inbox.get_by_test_id("sort").select_option("oldest")
    shows("Eve Walker", "Cara Candidate", "Dan Jones")
    inbox.get_by_test_id("sort").select_option("unread")
    shows("Dan Jones", "Cara Candidate", "Eve Walker")
    inbox.get_by_test_id("sort").select_option("newest")

    search = inbox.get_by_test_id("search")
    search.fill("pemberton")  # message text
    shows("Dan Jones")
    said(status, "1 conversation matches “pemberton”.")
    search.fill("english")  # job title
    shows("Eve Walker")
    search.fill("cara")  # candidate name
    shows("Cara Candidate")
    search.fill("nobody at all")
    expect(inbox.locator(ITEM)).to_have_count(0)
    expect(inbox.get_by_text("No matches")).to_be_visible()
    said(status, "Nothing matches “nobody at all”.")
    search.fill("")
    shows("Dan Jones", "Cara Candidate", "Eve Walker")

    # Archive from the conversation menu; it moves to the Archived filter.
    item(inbox, eve.conversation).click()
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_role("menuitem", name="Archive").click()
    shows("Dan Jones", "Cara Candidate")
    inbox.get_by_test_id("filter-archived").click()
    shows("Eve Walker")
    item(inbox, eve.conversation).click()
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_role("menuitem", name="Unarchive").click()
    expect(inbox.locator(ITEM)).to_have_count(0)
    inbox.get_by_test_id("filter-all").click()
    shows("Dan Jones", "Cara Candidate", "Eve Walker")

    # The filter and search survive a reload (they live in the URL).
    inbox.get_by_test_id("filter-messaged").click()
    shows("Dan Jones", "Cara Candidate")
    inbox.reload()
    expect(inbox.get_by_test_id("filter-messaged")).to_have_attribute("aria-pressed", "true")
    shows("Dan Jones", "Cara Candidate")


def test_a_search_typed_before_the_inbox_script_runs_is_kept(browsers: Browsers, ats: Ats) -> None:
    """The inbox's script arrives after the page shows: what was typed in
    the search box meanwhile stays there and is what the list shows."""
    alice = ats.staff("Alice Recruiter")
    ats.application("cara", "Cara Candidate")
    ats.application("dan", "Dan Jones", job="Science Technician")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(2)
    held: list[Route] = []
    inbox.route("**/static/js/inbox.js*", lambda route: held.append(route))
    inbox.reload(wait_until="commit")
    search = inbox.get_by_test_id("search")
    search.fill("dan")
    while not held:
        inbox.wait_for_timeout(50)
    held[0].continue_()
    expect(inbox.locator(f"{ITEM} .item-name")).to_have_text(["Dan Jones"])
    expect(search).to_have_value("dan")


def test_inbox_pages_by_infinite_scroll(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    total = 60
    for n in range(total):
        ats.application(f"bulk{n}", f"Candidate {n:02d}")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(50)
    inbox.locator(ITEM).last.scroll_into_view_if_needed()
    expect(inbox.locator(ITEM)).to_have_count(total)
    ids = inbox.locator(ITEM).evaluate_all("els => els.map(e => e.dataset.conversation)")
    assert len(set(ids)) == total


def test_mobile_layout_shows_one_pane_at_a_time(
    browsers: Browsers, ats: Ats, screenshots: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.application("dan", "Dan Jones", job="Science Technician")
    candidate = candidate_says(ats, browsers, cara.id, "Hi! Is there parking on site?")
    inbox = browsers.open(ats.staff_link(alice), width=390, height=844, mobile=True)
    expect(inbox.locator(ITEM)).to_have_count(2)
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_text("1")
    expect(inbox.locator("#conversation-pane")).to_be_hidden()
    inbox.screenshot(path=str(screenshots / "mobile-inbox.png"))

    item(inbox, cara.conversation).click()
    expect(inbox.locator(".inbox-pane")).to_be_hidden()
    expect(inbox.get_by_test_id("composer")).to_be_visible()
    inbox.get_by_test_id("composer").fill("Yes, behind the sports hall.")
    inbox.get_by_test_id("send").click()
    expect(candidate.locator('[data-testid="message"]', has_text="sports hall")).to_be_visible()
    inbox.screenshot(path=str(screenshots / "mobile-conversation.png"))
    inbox.get_by_role("link", name="Back to inbox").click()
    expect(inbox.locator(ITEM)).to_have_count(2)
    expect(inbox).to_have_url(f"{ats.server.url}/inbox")

    mobile_candidate = browsers.open(
        ats.candidate_link(cara.id), width=390, height=844, mobile=True
    )
    expect(mobile_candidate.locator('[data-testid="message"][data-seq]')).to_have_count(2)
    mobile_candidate.screenshot(path=str(screenshots / "mobile-candidate-chat.png"))


# A small phone (iPhone SE, 375 px wide): narrower than a message's menu
# anchored to its bubble, or the bell's panel anchored to the bell.
SMALL_PHONE = {"width": 375, "height": 667, "mobile": True}


def overflow(page: Page, selector: str) -> list[str]:
    """How the visible element `selector` goes past the window, or past an
    ancestor that clips it (the timeline, which ends at the composer)."""
    found = page.locator(selector).evaluate(
        """(el) => {
            const box = el.getBoundingClientRect();
            const out = [];
            const check = (name, area) => {
                const past = box.left < area.left - 0.5 || box.right > area.right + 0.5
                    || box.top < area.top - 0.5 || box.bottom > area.bottom + 0.5;
                if (past) out.push(`${name}: ${JSON.stringify(box)} past ${JSON.stringify(area)}`);
            };
            check("window", { left: 0, top: 0, right: innerWidth, bottom: innerHeight });
            for (let up = el.parentElement; up; up = up.parentElement) {
                if (getComputedStyle(up).overflow !== "visible") {
                    check(up.className || up.tagName, up.getBoundingClientRect());
                }
            }
            return out;
        }"""
    )
    return list(found)


def test_menus_the_bell_and_the_ops_page_fit_a_small_phone(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter", ops=True)
    cara = ats.application("cara", "Cara Candidate")
    long = "Thank you for coming in today. " * 4
    # Enough to fill the screen, so the newest sits right on the composer.
    notes = [f"Note {n}: bring your certificates." for n in range(12)]
    ats.staff_says(alice, cara.conversation, long, *notes)
    candidate_says(ats, browsers, cara.id, "Thanks!")
    page = browsers.open(ats.staff_link(alice), **SMALL_PHONE)  # type: ignore[arg-type]
    page.goto(f"{ats.server.url}/c/{cara.conversation}")
    messages = page.locator('[data-testid="message"][data-seq]')
    expect(messages).to_have_count(14)
    # Alice's own long message (its menu opens leftwards from the bubble's
    # edge) and the newest message, just above the composer.
    for message in (messages.first, messages.last):
        message.get_by_test_id("message-menu").click()
        menu = ".msg-actions .menu:not([hidden])"
        expect(page.locator(menu)).to_be_visible()
        assert overflow(page, menu) == []
        page.keyboard.press("Escape")
    page.get_by_test_id("notifications-bell").click()
    expect(page.locator("#notif-panel")).to_be_visible()
    assert overflow(page, "#notif-panel") == []

    page.goto(f"{ats.server.url}/ops")
    expect(page.locator("#workers tr").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= SMALL_PHONE["width"]


# The narrowest phone layout WCAG's reflow asks for (1.4.10): 320 CSS px.
NARROWEST = {"width": 320, "height": 640, "mobile": True}


def test_a_conversation_fits_320_px_without_scrolling_sideways(
    browsers: Browsers, ats: Ats
) -> None:
    """At 320 px the composer's bar (the toolbar and Send) fits, and
    nothing else makes the page scroll sideways: the candidate chat and the
    staff conversation, with a message each way."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate", job="Teacher of Design and Technology")
    ats.staff_says(alice, cara.conversation, "Could you come in on Tuesday at 10:00?")
    candidate = browsers.open(ats.candidate_link(cara.id), **NARROWEST)  # type: ignore[arg-type]
    candidate.get_by_test_id("composer").fill("Yes, Tuesday suits me.")
    candidate.get_by_test_id("send").click()
    staff = browsers.open(ats.staff_link(alice), **NARROWEST)  # type: ignore[arg-type]
    staff.goto(f"{ats.server.url}/c/{cara.conversation}")
    for page in (candidate, staff):
        expect(page.locator('[data-testid="message"][data-seq]')).to_have_count(2)
        send = page.get_by_test_id("send")
        expect(send).to_be_visible()
        expect(send).to_have_accessible_name("Send")
        assert overflow(page, '[data-testid="send"]') == []
        assert page.evaluate("document.documentElement.scrollWidth") <= NARROWEST["width"]


LANDSCAPE_WITH_KEYBOARD = {"width": 844, "height": 200, "mobile": True}


def test_a_phone_on_its_side_with_the_keyboard_up_keeps_the_composer_and_messages(
    browsers: Browsers, ats: Ats
) -> None:
    """A phone in landscape with its keyboard up leaves a page about 200 px
    high: the composer stays whole on screen and some history shows above
    it (the top bar and the conversation's second line give way), for the
    candidate and for staff."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Could you come in on Tuesday at 10:00?")
    candidate = browsers.open(ats.candidate_link(cara.id), **LANDSCAPE_WITH_KEYBOARD)  # type: ignore[arg-type]
    staff = browsers.open(ats.staff_link(alice), **LANDSCAPE_WITH_KEYBOARD)  # type: ignore[arg-type]
    staff.goto(f"{ats.server.url}/c/{cara.conversation}")
    for page in (candidate, staff):
        expect(page.locator('[data-testid="message"][data-seq]')).to_have_count(1)
        page.get_by_test_id("composer").focus()
        box = page.get_by_test_id("composer").bounding_box()
        send = page.get_by_test_id("send").bounding_box()
        timeline = page.locator(".timeline").bounding_box()
        assert box is not None
        assert send is not None
        assert timeline is not None
        assert box["y"] >= 0, box
        assert box["y"] + box["height"] <= 200, box
        assert send["y"] + send["height"] <= 200, send
        assert timeline["height"] >= 40, timeline


def test_the_bell_counts_service_notifications_live(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    bell = inbox.get_by_test_id("notifications-bell")
    expect(inbox.locator("#bell-count")).to_be_hidden()

    candidate_says(ats, browsers, cara.id, "Is there a dress code for the interview?")
    expect(inbox.locator("#bell-count")).to_have_text("1")
    bell.click()
    panel = inbox.get_by_role("dialog", name="Notifications")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("link").first).to_have_attribute("href", f"/c/{cara.conversation}")
    # Opening the panel shows the entry; reading its conversation clears it.
    expect(inbox.locator("#bell-count")).to_have_text("1")
    panel.get_by_role("link").first.click()
    message = inbox.locator('[data-testid="message"][data-seq]', has_text="dress code")
    expect(message).to_be_visible()
    expect(inbox.locator("#bell-count")).to_be_hidden()
    inbox.reload()
    expect(inbox.get_by_test_id("inbox-item")).to_have_count(1)
    expect(inbox.locator("#bell-count")).to_be_hidden()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_conversation_that_fails_to_open_says_so_and_opens_on_try_again(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones")
    phone = {"width": 390, "height": 844, "mobile": True} if size == "phone" else {}
    inbox = browsers.open(ats.staff_link(alice), **phone)  # type: ignore[arg-type]
    if size == "desktop":
        item(inbox, dan.conversation).click()
        expect(inbox.get_by_role("heading", name="Dan Jones")).to_be_visible()
    summary = f"**/api/conversations/{cara.conversation}"
    inbox.route(summary, lambda route: route.fulfill(status=503, json=UNAVAILABLE))

    item(inbox, cara.conversation).click()
    error = inbox.get_by_test_id("pane-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Couldn't open this conversation")
    expect(inbox).to_have_url(f"{ats.server.url}/c/{cara.conversation}")
    expect(inbox.get_by_test_id("composer")).to_have_count(0)

    inbox.unroute(summary)
    error.get_by_role("button", name="Try again").click()
    expect(inbox.get_by_role("heading", name="Cara Candidate")).to_be_visible()
    expect(error).to_be_hidden()
    expect(inbox.get_by_test_id("composer")).to_be_enabled()


UNAVAILABLE = {"error": {"code": "unavailable", "message": "The server is restarting."}}


def test_enter_on_a_row_takes_focus_to_the_composer(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones", status="withdrawn")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).focus()
    inbox.keyboard.press("Enter")
    expect(inbox.get_by_role("heading", name="Cara Candidate")).to_be_visible()
    expect(inbox.get_by_test_id("composer")).to_be_focused()
    inbox.keyboard.type("Typed straight away")
    inbox.keyboard.press("Enter")
    sent = inbox.locator('[data-testid="message"][data-seq]', has_text="Typed straight away")
    expect(sent).to_be_visible()

    # Where nothing can be sent, focus goes to the conversation's heading.
    item(inbox, dan.conversation).focus()
    inbox.keyboard.press("Enter")
    expect(inbox.get_by_role("heading", name="Dan Jones")).to_be_focused()


@pytest.mark.parametrize("width", [1280, 390])
def test_a_long_job_title_gives_way_to_the_status(browsers: Browsers, ats: Ats, width: int) -> None:
    """The status pill sits after the job title on the row: a title too
    long for the row is cut with an ellipsis, the pill stays in view."""
    alice = ats.staff("Alice Recruiter")
    title = "Maternity Cover: Teacher of Design, Technology and Food (Part Time)"
    app = ats.application("cara", "Cara Candidate", job=title, status="offered")
    inbox = browsers.open(ats.staff_link(alice), width=width, mobile=width < 500)
    row = item(inbox, app.conversation)
    pill = row.locator(".item-job .pill")
    expect(pill).to_have_text("Offered")
    row_box, pill_box = row.bounding_box(), pill.bounding_box()
    assert row_box is not None
    assert pill_box is not None
    assert pill_box["width"] > 20
    assert pill_box["x"] + pill_box["width"] <= row_box["x"] + row_box["width"]
    cut = row.locator(".item-job-title").evaluate("t => t.scrollWidth > t.clientWidth")
    assert cut, "the title fits: the test needs one too long for the row"


def test_enter_on_the_open_conversations_row_takes_focus_to_the_composer(
    browsers: Browsers, ats: Ats
) -> None:
    """The row of the conversation already open behaves like any other:
    Enter takes focus into it (the composer, or the heading when nothing
    can be sent), rather than leaving it on the row."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones", status="withdrawn")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).click()
    expect(item(inbox, cara.conversation)).to_have_attribute("aria-current", "page")
    expect(inbox.get_by_test_id("composer")).to_be_enabled()
    item(inbox, cara.conversation).focus()
    inbox.keyboard.press("Enter")
    expect(inbox.get_by_test_id("composer")).to_be_focused()

    item(inbox, dan.conversation).click()
    expect(inbox.get_by_role("heading", name="Dan Jones")).to_be_visible()
    expect(inbox.get_by_test_id("send-disabled-reason")).to_be_visible()
    item(inbox, dan.conversation).focus()
    inbox.keyboard.press("Enter")
    expect(inbox.get_by_role("heading", name="Dan Jones")).to_be_focused()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_back_to_the_inbox_puts_focus_on_the_row_that_was_open(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    """The browser's Back from a conversation to /inbox leaves focus on the
    row of the conversation that was open (the focus was in the
    conversation, which is gone), not on the page's body; the header's Back
    to inbox (phones) does the same. A conversation with no row in the list
    gives focus to the list."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.application("dan", "Dan Jones")
    phone = {"width": 390, "height": 844, "mobile": True} if size == "phone" else {}
    inbox = browsers.open(ats.staff_link(alice), **phone)  # type: ignore[arg-type]
    row = item(inbox, cara.conversation)
    row.focus()
    inbox.keyboard.press("Enter")
    expect(inbox.get_by_test_id("composer")).to_be_focused()
    inbox.go_back()
    expect(inbox).to_have_url(f"{ats.server.url}/inbox")
    expect(inbox.get_by_test_id("composer")).to_have_count(0)
    expect(row).to_be_focused()

    if size == "phone":
        row.focus()
        inbox.keyboard.press("Enter")
        expect(inbox.get_by_test_id("composer")).to_be_focused()
        back = inbox.get_by_role("link", name="Back to inbox")
        back.focus()
        inbox.keyboard.press("Enter")
        expect(inbox).to_have_url(f"{ats.server.url}/inbox")
        expect(row).to_be_focused()

    # Archived from the keyboard, its row leaves the list: Back focuses the list.
    row.focus()
    inbox.keyboard.press("Enter")
    expect(inbox.get_by_test_id("composer")).to_be_focused()
    options = inbox.get_by_test_id("conversation-menu")
    options.focus()
    inbox.keyboard.press("Enter")
    inbox.get_by_test_id("archive").focus()
    inbox.keyboard.press("Enter")
    undo = inbox.get_by_test_id("toast").get_by_role("button", name="Undo")
    expect(undo).to_be_focused()
    inbox.get_by_test_id("composer").focus()
    if size == "desktop":
        expect(row).to_have_count(0)
    inbox.go_back()
    expect(inbox).to_have_url(f"{ats.server.url}/inbox")
    expect(row).to_have_count(0)
    expect(inbox.locator("#inbox-list")).to_be_focused()
    # From the focused list, the arrow keys go into its rows.
    inbox.keyboard.press("ArrowDown")
    expect(inbox.get_by_test_id("inbox-item").first).to_be_focused()


def test_a_search_that_fails_says_so(browsers: Browsers, ats: Ats) -> None:
    """The status line that says what a search found says when it could
    not be answered too (the empty list's text is not read out)."""
    alice = ats.staff("Alice Recruiter")
    ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(1)
    inbox.route(
        "**/api/conversations?*q=*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"code": "unavailable", "message": "The server is busy."}}',
        ),
    )
    inbox.get_by_test_id("search").fill("cara")
    said(inbox.locator("#inbox-status"), "Couldn't load conversations: The server is busy.")


def test_a_conversation_opened_from_the_keyboard_leaves_focus_moved_meanwhile(
    browsers: Browsers, ats: Ats
) -> None:
    """Enter on a row moves focus into the conversation once its history is
    in, unless the person moved on meanwhile (here, to the search box)."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    held: list[Route] = []
    inbox.route(f"**/api/conversations/{cara.conversation}/messages?*", lambda r: held.append(r))
    item(inbox, cara.conversation).focus()
    inbox.keyboard.press("Enter")
    route = handled(inbox, lambda: held[0] if held else None, what="the held history")
    search = inbox.get_by_test_id("search")
    search.focus()
    route.continue_()
    expect(inbox.get_by_test_id("composer")).to_be_editable()
    expect(inbox.locator('[data-role="top"].done')).to_have_count(1)
    expect(search).to_be_focused()
