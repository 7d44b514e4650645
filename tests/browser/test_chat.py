"""SPEC 6 in a real browser: staff and a candidate chat live in two browser
contexts — messages, typing, "Seen", deletes, ending, hostile bodies,
timezones, attachments."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from tests.browser.conftest import Ats, Browsers, handled, said, seqs

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'


def send(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")


def message(page: Page, text: str) -> Locator:
    return page.locator(MESSAGE, has_text=text)


def open_pair(browsers: Browsers, ats: Ats, timezone: str = "UTC") -> tuple[Page, Page, str]:
    alice = ats.staff("Alice Recruiter", timezone=timezone)
    app = ats.application("app", "Cara Candidate")
    staff = browsers.open(ats.staff_link(alice))
    staff.goto(staff.url.replace("/inbox", f"/c/{app.conversation}"))
    candidate = browsers.open(ats.candidate_link(app.id))
    return staff, candidate, app.conversation


def test_staff_and_candidate_chat_live_both_ways(
    browsers: Browsers, ats: Ats, screenshots: Path
) -> None:
    staff, candidate, conversation = open_pair(browsers, ats)
    expect(candidate).to_have_url(f"{ats.server.url}/c/{conversation}")
    expect(staff).to_have_url(f"{ats.server.url}/c/{conversation}")

    send(staff, "Hello **Cara**, thanks for applying.\n- Tuesday\n- Thursday")
    got = message(candidate, "thanks for applying")
    expect(got).to_be_visible()
    expect(got.locator("strong")).to_have_text("Cara")
    expect(got.locator("li")).to_have_count(2)
    expect(got).to_contain_text("Alice Recruiter")

    candidate.get_by_test_id("composer").press_sequentially("Tues", delay=30)
    expect(staff.get_by_test_id("typing")).to_contain_text("Cara Candidate is typing")
    candidate.get_by_test_id("composer").press("Shift+Enter")
    candidate.get_by_test_id("composer").press_sequentially("day works", delay=10)
    candidate.get_by_test_id("composer").press("Enter")
    reply = message(staff, "day works")
    expect(reply).to_be_visible()
    expect(reply.locator(".msg-body")).to_contain_text("Tues\nday works")
    expect(staff.get_by_test_id("typing")).to_be_hidden()

    # Both pages are visible and focused, so each marks the other's message read.
    expect(staff.locator(MESSAGE).first.get_by_test_id("read-receipt")).to_have_text("Seen")
    expect(candidate.locator(MESSAGE).last.get_by_test_id("read-receipt")).to_have_text("Seen")
    assert seqs(staff) == seqs(candidate) == [1, 2]

    staff.screenshot(path=str(screenshots / "conversation.png"))
    candidate.screenshot(path=str(screenshots / "candidate-chat.png"))


def announced(page: Page) -> Locator:
    """The conversation's polite region of arriving messages."""
    return page.locator('[data-role="announce"]')


def accessible_names(page: Page) -> list[str]:
    """Every name and value in the page's accessibility tree, as Chromium
    gives it to assistive technology."""
    cdp = page.context.new_cdp_session(page)
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    cdp.detach()
    return [
        str(node.get(key, {}).get("value", ""))
        for node in nodes
        for key in ("name", "value")
        if node.get(key)
    ]


def test_a_screen_reader_hears_each_arriving_message_once(browsers: Browsers, ats: Ats) -> None:
    """The message list is a silent log: a polite region says each message
    that arrives from someone else, once, and nothing for history pages,
    one's own sends, or day separators and "Seen" laid out again. A typing
    person's repeated frames leave the typing line as it was."""
    staff, candidate, _ = open_pair(browsers, ats)
    expect(candidate.get_by_role("log", name="Messages")).to_have_attribute("aria-live", "off")
    send(staff, "Hello **Cara**, thanks for applying.")
    expect(message(staff, "thanks for applying")).to_be_visible()
    said(announced(candidate), "Alice Recruiter: Hello Cara, thanks for applying.")
    # Said to assistive technology, yet not a second copy of the words for
    # a script looking for the message by its text.
    assert "Alice Recruiter: Hello Cara, thanks for applying." in accessible_names(candidate)
    expect(candidate.get_by_text("thanks for applying")).to_have_count(1)

    candidate.evaluate(
        """() => {
            window.typingChanges = 0;
            const text = document.querySelector('[data-field="typing-text"]');
            new MutationObserver((found) => { window.typingChanges += found.length; })
                .observe(text, { childList: true, characterData: true, subtree: true });
        }"""
    )
    # Over two typing intervals: her client sends three typing frames.
    staff.get_by_test_id("composer").press_sequentially("Could you do Tuesday at ten?", delay=170)
    expect(candidate.get_by_test_id("typing")).to_have_text("Alice Recruiter is typing…")
    assert candidate.evaluate("window.typingChanges") == 1
    staff.get_by_test_id("composer").press("Enter")
    said(
        announced(candidate),
        "Alice Recruiter: Hello Cara, thanks for applying.",
        "Alice Recruiter: Could you do Tuesday at ten?",
    )

    send(candidate, "Tuesday works")
    said(announced(staff), "Cara Candidate: Tuesday works")
    # The candidate's own message, sent and stored, said nothing to them;
    # "Seen" moving under it neither.
    expect(candidate.locator(MESSAGE).last.get_by_test_id("read-receipt")).to_have_text("Seen")
    said(
        announced(candidate),
        "Alice Recruiter: Hello Cara, thanks for applying.",
        "Alice Recruiter: Could you do Tuesday at ten?",
    )
    assert staff.evaluate("document.querySelectorAll('.day-sep').length") == 1

    # History says nothing: after a reload only what comes next is said.
    candidate.reload()
    expect(candidate.locator(MESSAGE)).to_have_count(3)
    send(staff, "See you then.")
    said(announced(candidate), "Alice Recruiter: See you then.")


class HeldMessages:
    """The page's WebSocket, relayed, except that `message` frames are held
    while `holding`, and go to the page together on `release`."""

    def __init__(self, page: Page) -> None:
        self.holding = True
        self.held: list[str | bytes] = []
        self.socket: WebSocketRoute | None = None
        page.route_web_socket("**/ws", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        self.socket = ws
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def relay(frame: str | bytes) -> None:
            if self.holding and json.loads(frame)["type"] == "message":
                self.held.append(frame)
            else:
                ws.send(frame)

        server.on_message(relay)

    def release(self) -> None:
        assert self.socket is not None
        self.holding = False
        for frame in self.held:
            self.socket.send(frame)


def test_messages_that_arrive_together_are_said_as_one_line(browsers: Browsers, ats: Ats) -> None:
    """A burst (what a reconnect replays) is one line: how many, and the
    last one, not a queue of lines for a screen reader to read out."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(candidate.get_by_test_id("composer")).to_be_editable()
    relay = HeldMessages(candidate)
    candidate.reload()
    expect(candidate.get_by_test_id("composer")).to_be_editable()
    ats.staff_says(alice, app.conversation, "First", "Second", "Third")
    handled(candidate, lambda: len(relay.held) == 3 or None, what="three held frames")
    relay.release()
    expect(candidate.locator(MESSAGE)).to_have_count(3)
    said(announced(candidate), "3 new messages. The last, Alice Recruiter: Third")


def test_everyone_typing_at_once_is_named_each_on_their_own_timer(
    browsers: Browsers, ats: Ats
) -> None:
    """Two recruiters and the candidate type in one conversation: a fourth
    person sees all of them ("A and B are typing…", "A, B and 1 other are
    typing…"), and each name goes away on its own timer once that person's
    frames stop."""
    alice = ats.staff("Alice Recruiter")
    bob = ats.staff("Bob Head")
    dan = ats.staff("Dan Deputy")
    app = ats.application("app", "Cara Candidate")
    url = f"{ats.server.url}/c/{app.conversation}"
    pages = {}
    for name, staff_id in (("alice", alice), ("bob", bob), ("dan", dan)):
        pages[name] = browsers.open(ats.staff_link(staff_id))
        pages[name].goto(url)
    pages["cara"] = browsers.open(ats.candidate_link(app.id))
    for page in pages.values():
        expect(page.get_by_test_id("composer")).to_be_editable()
    typing = pages["alice"].get_by_test_id("typing")

    pages["bob"].get_by_test_id("composer").press_sequentially("Hi", delay=30)
    expect(typing).to_have_text("Bob Head is typing…")
    pages["cara"].get_by_test_id("composer").press_sequentially("Hel", delay=30)
    expect(typing).to_have_text("Bob Head and Cara Candidate are typing…")
    pages["dan"].get_by_test_id("composer").press_sequentially("Ok", delay=30)
    expect(typing).to_have_text("Bob Head, Cara Candidate and 1 other are typing…")
    # Dan's message ends his typing, not the others'.
    pages["dan"].get_by_test_id("composer").press("Enter")
    expect(typing).to_have_text("Bob Head and Cara Candidate are typing…")

    # Only Cara goes on typing: Bob's name expires by itself.
    for _ in range(4):
        pages["cara"].wait_for_timeout(1500)
        pages["cara"].get_by_test_id("composer").press_sequentially("lo", delay=30)
    expect(typing).to_have_text("Cara Candidate is typing…")
    expect(typing).to_be_hidden(timeout=15000)


def test_composer_formats_and_attaches(browsers: Browsers, ats: Ats, tmp_path: Path) -> None:
    staff, candidate, _ = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    box.fill("important")
    box.press("Control+a")
    box.press("Control+b")
    expect(box).to_have_value("**important**")
    box.press("End")
    box.press("Shift+Enter")
    box.press_sequentially("one")
    staff.get_by_role("button", name="Bulleted list").click()
    expect(box).to_have_value("**important**\n- one")

    notes = tmp_path / "interview-notes.txt"
    notes.write_text("Bring your DBS certificate.\n")
    staff.locator('[data-role="file-input"]').set_input_files(str(notes))
    expect(staff.locator(".pending-files li", has_text="interview-notes.txt")).to_contain_text("B")
    staff.get_by_test_id("send").click()

    got = message(candidate, "important")
    expect(got.locator("strong")).to_have_text("important")
    expect(got.locator(".msg-body li")).to_have_text("one")
    link = got.get_by_role("link", name="interview-notes.txt")
    expect(link).to_have_attribute("href", re.compile(r"^/api/attachments/"))
    with candidate.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == "Bring your DBS certificate.\n"


def test_delete_for_everyone_disappears_on_the_other_side(browsers: Browsers, ats: Ats) -> None:
    staff, candidate, _ = open_pair(browsers, ats)
    send(staff, "Interview at 10:00")
    send(staff, "Sorry, wrong candidate!")
    expect(message(candidate, "wrong candidate")).to_be_visible()

    mine = message(staff, "wrong candidate")
    mine.hover()
    mine.get_by_test_id("message-menu").click()
    mine.get_by_test_id("delete-for-everyone").click()
    dialog = staff.get_by_role("dialog", name="Delete for everyone?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete for everyone").click()

    expect(message(candidate, "wrong candidate")).to_have_count(0)
    expect(candidate.locator(MESSAGE).last).to_contain_text("This message was deleted")
    expect(mine).to_have_count(0)

    # The candidate hides the remaining one for themselves only.
    theirs = message(candidate, "Interview at 10:00")
    theirs.hover()
    theirs.get_by_test_id("message-menu").click()
    expect(theirs.get_by_test_id("delete-for-everyone")).to_be_hidden()
    theirs.get_by_test_id("delete-for-me").click()
    expect(theirs).to_have_count(0)
    candidate.reload()
    expect(candidate.locator(MESSAGE)).to_have_count(1)
    expect(message(staff, "Interview at 10:00")).to_be_visible()


def test_a_delete_that_did_not_happen_says_so_by_name(browsers: Browsers, ats: Ats) -> None:
    """Deleting the message sent to the wrong candidate while the network
    is gone: the alert names the delete, and the message stays."""
    staff, _, _ = open_pair(browsers, ats)
    send(staff, "Sorry, wrong candidate!")
    mine = message(staff, "wrong candidate")
    expect(mine).to_be_visible()
    staff.route("**/api/messages/**", lambda route: route.abort("internetdisconnected"))
    mine.hover()
    mine.get_by_test_id("message-menu").click()
    mine.get_by_test_id("delete-for-me").click()
    alert = staff.locator('[data-field="error"]')
    expect(alert).to_contain_text("Couldn't delete the message: ")
    expect(mine).to_be_visible()


def test_end_conversation_disables_the_candidates_composer(browsers: Browsers, ats: Ats) -> None:
    staff, candidate, _ = open_pair(browsers, ats)
    send(staff, "Thanks for coming in today.")
    expect(message(candidate, "coming in today")).to_be_visible()
    expect(candidate.get_by_test_id("send-disabled-reason")).to_be_hidden()

    staff.get_by_test_id("conversation-menu").click()
    staff.get_by_test_id("end-conversation").click()
    staff.get_by_role("dialog", name="End this conversation?").get_by_role(
        "button", name="End conversation"
    ).click()

    reason = candidate.get_by_test_id("send-disabled-reason")
    expect(reason).to_have_text("This conversation has ended.")
    expect(candidate.get_by_test_id("composer")).to_be_disabled()
    expect(candidate.get_by_test_id("send")).to_be_disabled()
    expect(staff.get_by_text("Sending a message reopens it")).to_be_visible()

    # Staff reopen it by sending.
    send(staff, "One more thing.")
    expect(candidate.get_by_test_id("composer")).to_be_enabled()
    expect(reason).to_be_hidden()


def test_candidate_waits_for_the_employer_before_a_first_message(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("early", "Eve Early", status="submitted")
    candidate = browsers.open(ats.candidate_link(app.id))
    reason = candidate.get_by_test_id("send-disabled-reason")
    expect(reason).to_contain_text("once the employer has messaged you")
    expect(candidate.get_by_test_id("composer")).to_be_disabled()

    # The employer's first message lets her reply at once, without a reload.
    staff = browsers.staff_at(ats, alice, app)
    send(staff, "Thanks for applying, Eve.")
    expect(message(candidate, "Thanks for applying")).to_be_visible()
    expect(candidate.get_by_test_id("composer")).to_be_enabled()
    expect(reason).to_be_hidden()
    send(candidate, "Thank you!")
    expect(message(staff, "Thank you!")).to_be_visible()

    ats.set_status(app, "Eve Early", "not_progressing")
    expect(reason).to_contain_text("no longer progressing")


class LosingConversationFrames:
    """The page's sockets, relayed, with every `conversation` frame lost;
    the types of the frames that reached the page, in order."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.passed: list[str] = []
        page.route_web_socket("**/ws", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def relay(frame: str | bytes) -> None:
            kind = json.loads(frame)["type"]
            if kind != "conversation":
                self.passed.append(kind)
                ws.send(frame)

        server.on_message(relay)

    def wait_for(self, kind: str) -> None:
        """Until a frame of `kind` has reached the page (each round trip to
        the browser lets Playwright deliver the relay's events)."""
        for _ in range(1000):
            if kind in self.passed:
                return
            self.page.evaluate("0")
        raise AssertionError(f"no {kind} frame reached the page: {self.passed}")


def test_a_waiting_candidate_can_reply_even_if_the_frame_saying_so_is_lost(
    browsers: Browsers, ats: Ats
) -> None:
    """The employer's message itself makes a waiting candidate's page ask
    whether they may reply now (the `conversation` frame before it may
    have been lost with a publish)."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("early", "Eve Early", status="submitted")
    candidate = browsers.open(ats.candidate_link(app.id))
    relay = LosingConversationFrames(candidate)
    candidate.reload()
    relay.wait_for("subscribed")
    expect(candidate.get_by_test_id("composer")).to_be_disabled()
    ats.staff_says(alice, app.conversation, "Thanks for applying, Eve.")
    expect(message(candidate, "Thanks for applying")).to_be_visible()
    expect(candidate.get_by_test_id("composer")).to_be_enabled()


def test_hostile_bodies_execute_no_script(browsers: Browsers, ats: Ats) -> None:
    staff, candidate, _ = open_pair(browsers, ats)
    hostile = [
        "<script>window.pwned = 1</script>",
        '<img src="x" onerror="window.pwned = 2">',
        "[click me](javascript:window.pwned=3)",
        '<a href="#" onclick="window.pwned=4">link</a>',
        '<svg onload="window.pwned=5"></svg>',
    ]
    for body in hostile:
        send(candidate, body)
    expect(staff.locator(MESSAGE)).to_have_count(len(hostile))
    expect(message(staff, "<script>window.pwned = 1</script>")).to_be_visible()
    for page in (staff, candidate):
        assert page.evaluate("window.pwned") is None
        assert page.locator(".msg-body script, .msg-body img, .msg-body svg").count() == 0
        assert page.locator(".msg-body [onclick], .msg-body [onerror]").count() == 0
        assert page.locator('.msg-body a[href^="javascript"]').count() == 0


def test_times_are_written_as_the_browsers_locale_writes_them(browsers: Browsers, ats: Ats) -> None:
    """A 12-hour locale gets "9:05 PM", not "09:05 PM"; a 24-hour one "21:05"."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.open(ats.staff_link(alice))
    candidate = browsers.open(ats.candidate_link(app.id), locale="en-US")
    send(candidate, "What time is it?")
    item = staff.locator(f'[data-conversation="{app.conversation}"]')
    item.click()
    wire = message(staff, "What time").locator("time").get_attribute("datetime")
    assert wire is not None
    sent = datetime.fromisoformat(wire.replace("Z", "+00:00"))
    us = candidate
    twelve_hour = f"{(sent.hour - 1) % 12 + 1}:{sent:%M} {sent:%p}"
    expect(message(us, "What time").locator("time")).to_have_text(twelve_hour)
    expect(message(staff, "What time").locator("time")).to_have_text(f"{sent:%H:%M}")


def test_timestamps_follow_the_timezone_setting(
    browsers: Browsers, ats: Ats, screenshots: Path
) -> None:
    staff, candidate, conversation = open_pair(browsers, ats, timezone="Asia/Tokyo")
    send(candidate, "What time is it there?")
    time_el = message(staff, "What time").locator("time")
    expect(time_el).to_have_attribute("datetime", re.compile(r"Z$"))
    wire = time_el.get_attribute("datetime")
    assert wire is not None
    sent = datetime.fromisoformat(wire.replace("Z", "+00:00"))

    def shown_in(zone: str) -> str:
        return sent.astimezone(ZoneInfo(zone)).strftime("%H:%M")

    # The browser runs in UTC; the page follows the person's setting.
    expect(time_el).to_have_text(shown_in("Asia/Tokyo"))
    expect(message(candidate, "What time").locator("time")).to_have_text(shown_in("UTC"))

    staff.goto(f"{ats.server.url}/settings")
    zone = staff.get_by_test_id("timezone")
    expect(zone).to_have_value("Asia/Tokyo")
    staff.get_by_test_id("timezone-search").fill("new york")
    zone.select_option("America/New_York")
    expect(staff.locator("#save-status")).to_have_text("Timezone saved.")
    staff.get_by_test_id("notifications").select_option("daily")
    expect(staff.locator("#save-status")).to_have_text("Email notifications saved.")
    staff.screenshot(path=str(screenshots / "settings.png"))

    staff.goto(f"{ats.server.url}/c/{conversation}")
    expect(message(staff, "What time").locator("time")).to_have_text(shown_in("America/New_York"))
    staff.goto(f"{ats.server.url}/settings")
    expect(staff.get_by_test_id("timezone")).to_have_value("America/New_York")
    expect(staff.get_by_test_id("notifications")).to_have_value("daily")


def test_history_scrolls_up_in_pages_without_gaps(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("long", "Cara Candidate")
    total = 120
    ats.staff_says(alice, app.conversation, *(f"Note {n}" for n in range(1, total + 1)))
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(candidate.locator(MESSAGE)).to_have_count(50)
    expect(candidate.locator(MESSAGE).last).to_contain_text(f"Note {total}")
    for shown in (100, total):
        candidate.locator(MESSAGE).first.scroll_into_view_if_needed()
        expect(candidate.locator(MESSAGE)).to_have_count(shown)
    assert seqs(candidate) == list(range(1, total + 1))
    expect(candidate.locator(MESSAGE).first).to_contain_text("Note 1")


def test_the_applications_messages_tab_is_the_conversation_alone(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("tab", "Cara Candidate")
    staff = browsers.open(ats.staff_link(alice))
    staff.goto(f"{ats.server.url}/applications/{app.id}/messages")
    expect(staff.locator(".inbox-pane")).to_have_count(0)
    expect(staff.get_by_role("heading", name="Cara Candidate")).to_be_visible()
    send(staff, "Hello from the candidate manager")
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(message(candidate, "Hello from the candidate manager")).to_be_visible()
