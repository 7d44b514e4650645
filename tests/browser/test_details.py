"""The smaller things of issue 11 item 10: image thumbnails that open the
full image, attachment error chips that are not cut off, Settings' "Back to
messages" that keeps the open conversation, and grouped messages that still
show their send times. At desktop and phone sizes where layout matters."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Ats, Browsers, handled

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}


def png(width: int, height: int) -> bytes:
    """A real PNG (a colour gradient), written with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def with_thumbnails(page: Page) -> None:
    """Until the files branch adds `thumbnail_url` to image attachments (and
    serves it), the page is shown what the agreement says it will get."""

    def history(route: Route) -> None:
        response = route.fetch()
        data = response.json()
        for message in data.get("messages", []):
            for a in message.get("attachments", []):
                if a["content_type"].startswith("image/"):
                    a.setdefault("thumbnail_url", f"/api/attachments/{a['id']}/thumbnail")
        route.fulfill(response=response, body=json.dumps(data))

    def thumbnail(route: Route) -> None:
        response = route.fetch()
        if response.status == 404:
            response = route.fetch(url=route.request.url.removesuffix("/thumbnail"))
        route.fulfill(response=response)

    page.route(re.compile(r".*/api/conversations/[^/]+/messages(\?.*)?$"), history)
    page.route(re.compile(r".*/api/attachments/[^/]+/thumbnail$"), thumbnail)


@pytest.mark.parametrize("size", SIZES)
def test_images_show_a_thumbnail_that_opens_the_full_image(
    browsers: Browsers, ats: Ats, tmp_path: Path, size: str
) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app)
    picture = tmp_path / "site-map.png"
    picture.write_bytes(png(64, 40))
    staff.locator('[data-role="file-input"]').set_input_files(str(picture))
    expect(staff.locator(".pending-files li", has_text="site-map.png")).to_contain_text("B")
    staff.get_by_test_id("composer").fill("Here is the map")
    staff.get_by_test_id("send").click()
    expect(staff.locator(MESSAGE, has_text="Here is the map")).to_be_visible()

    candidate = browsers.open("about:blank", **SIZES[size])  # type: ignore[arg-type]
    with_thumbnails(candidate)
    candidate.goto(ats.candidate_link(app.id))
    thumb = candidate.get_by_role("button", name="Open image site-map.png")
    expect(thumb).to_be_visible()
    image = thumb.locator("img")
    expect(image).to_have_attribute("src", re.compile(r"^/api/attachments/[^/]+/thumbnail$"))
    candidate.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    thumb.click()
    dialog = candidate.get_by_role("dialog", name="site-map.png")
    expect(dialog).to_be_visible()
    full = dialog.locator("img")
    expect(full).to_have_attribute("src", re.compile(r"^/api/attachments/[^/]+$"))
    candidate.wait_for_function("img => img.naturalWidth === 64", arg=full.element_handle())
    expect(dialog.get_by_role("link", name=re.compile("Download"))).to_have_attribute(
        "download", "site-map.png"
    )
    candidate.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(thumb).to_be_focused()


@pytest.mark.parametrize("size", SIZES)
def test_an_attachment_error_chip_shows_the_whole_reason(
    browsers: Browsers, ats: Ats, tmp_path: Path, size: str
) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app, **SIZES[size])
    bad = tmp_path / "a-very-long-file-name-for-the-interview-programme-final-v2.exe"
    bad.write_bytes(b"MZ\x90\x00" + bytes(range(256)) * 4)
    staff.locator('[data-role="file-input"]').set_input_files(str(bad))
    chip = staff.locator(".pending-files li.error")
    expect(chip).to_be_visible()
    reason = chip.locator(".file-error")
    expect(reason).not_to_be_empty()
    # Not clipped: the reason's text fits in its box, and the box in the composer.
    fits = reason.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    assert fits
    box = chip.bounding_box()
    composer = staff.locator(".composer-box").bounding_box()
    assert box is not None
    assert composer is not None
    assert box["x"] >= composer["x"]
    assert box["x"] + box["width"] <= composer["x"] + composer["width"] + 1
    chip.get_by_role("button", name=re.compile("^Remove")).click()
    expect(chip).to_have_count(0)


def test_refused_files_are_said_and_removing_chips_keeps_the_keyboard_in_place(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    """A file that cannot be attached is said at once (an alert), not only
    found on Send; removing a chip with the keyboard hands focus to the
    next chip, and the last one back to the message being written."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app)
    files = [tmp_path / f"{name}.exe" for name in ("first", "second")]
    for path in files:
        path.write_bytes(b"MZ\x90\x00" + bytes(range(256)) * 4)
    staff.locator('[data-role="file-input"]').set_input_files([str(p) for p in files])
    chips = staff.locator(".pending-files li.error")
    expect(chips).to_have_count(2)
    expect(chips.get_by_role("alert")).to_have_count(2)
    expect(chips.get_by_role("alert").first).not_to_be_empty()

    chips.first.get_by_role("button", name="Remove first.exe").focus()
    staff.keyboard.press("Enter")
    expect(chips).to_have_count(1)
    expect(staff.get_by_role("button", name="Remove second.exe")).to_be_focused()
    staff.keyboard.press("Enter")
    expect(chips).to_have_count(0)
    expect(staff.get_by_test_id("composer")).to_be_focused()


@pytest.mark.parametrize("size", SIZES)
def test_back_to_messages_keeps_the_open_conversation(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    alice = ats.staff("Alice Recruiter")
    ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones", job="Science Technician")
    inbox = browsers.open(ats.staff_link(alice), **SIZES[size])  # type: ignore[arg-type]
    settings_page = re.compile(rf"{re.escape(ats.server.url)}/settings\?back=")
    inbox.locator(f'[data-conversation="{dan.conversation}"]').click()
    expect(inbox).to_have_url(f"{ats.server.url}/c/{dan.conversation}")
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_role("menuitem", name="Settings").click()
    expect(inbox).to_have_url(settings_page)
    inbox.get_by_role("link", name="Back to messages").click()
    expect(inbox).to_have_url(f"{ats.server.url}/c/{dan.conversation}")
    expect(inbox.get_by_role("heading", name="Dan Jones")).to_be_visible()

    # The same from the account menu, with a filter in the address.
    wanted = f"{ats.server.url}/c/{dan.conversation}"
    if size == "desktop":
        inbox.get_by_test_id("filter-messaged").click()
        wanted += "?filter=messaged"
        expect(inbox).to_have_url(wanted)
    inbox.locator("#user-button").click()
    inbox.get_by_role("menuitem", name="Settings").click()
    expect(inbox).to_have_url(settings_page)
    inbox.get_by_role("link", name="Back to messages").click()
    expect(inbox).to_have_url(wanted)


def test_a_candidates_back_to_messages_is_their_chat(browsers: Browsers, ats: Ats) -> None:
    ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    candidate = browsers.open(ats.candidate_link(app.id))
    candidate.locator("#user-button").click()
    candidate.get_by_role("menuitem", name="Settings").click()
    candidate.get_by_role("link", name="Back to messages").click()
    expect(candidate).to_have_url(f"{ats.server.url}/c/{app.conversation}")


def test_a_menu_opened_while_the_history_loads_stays_open(browsers: Browsers, ats: Ats) -> None:
    """The composer takes focus once the history is in, unless the person
    put it somewhere meanwhile: their open menu would close as it left."""
    ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(candidate.get_by_test_id("composer")).to_be_focused()
    held: list[Route] = []
    candidate.route("**/api/conversations/*/messages*", lambda route: held.append(route))
    candidate.reload()
    candidate.locator("#user-button").click()
    settings = candidate.get_by_role("menuitem", name="Settings")
    expect(settings).to_be_visible()
    handled(candidate, lambda: held[0] if held else None, what="the history").continue_()
    candidate.unroute("**/api/conversations/*/messages*")
    expect(candidate.locator('[data-role="empty"]')).to_be_visible()
    expect(settings).to_be_visible()
    expect(candidate.get_by_test_id("composer")).not_to_be_focused()


@pytest.mark.parametrize("size", SIZES)
def test_grouped_messages_still_show_their_times(browsers: Browsers, ats: Ats, size: str) -> None:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    ats.staff_says(alice, app.conversation, "One", "Two", "Three")
    candidate = browsers.open(ats.candidate_link(app.id), **SIZES[size])  # type: ignore[arg-type]
    messages = candidate.locator(MESSAGE)
    expect(messages).to_have_count(3)
    expect(candidate.locator(".msg.cont")).to_have_count(2)
    first = messages.nth(0)
    expect(first.locator(".msg-meta time")).to_be_visible()
    expect(first.get_by_test_id("message-time")).to_be_hidden()
    for index in (1, 2):
        message = messages.nth(index)
        aside = message.get_by_test_id("message-time")
        expect(aside).to_be_visible()
        expect(aside).to_have_text(message.locator("time").inner_text())
        expect(aside).to_have_text(re.compile(r"^\d\d:\d\d$"))
        # Screen readers hear the header (sender and time) instead.
        expect(aside).to_have_attribute("aria-hidden", "true")


def at_bottom(page: Page) -> bool:
    return bool(
        page.locator('[data-role="timeline"]').evaluate(
            "t => t.scrollHeight - t.scrollTop - t.clientHeight < 2"
        )
    )


@pytest.mark.parametrize("size", SIZES)
def test_the_newest_message_stays_in_view_and_a_reader_scrolled_up_hears_of_new_ones(
    browsers: Browsers, ats: Ats, tmp_path: Path, size: str
) -> None:
    """The view is at the bottom before a thumbnail has loaded: its height
    comes later, and must not push the newest message under the composer.
    Scrolled up, the reader stays where they are, and a "New messages"
    button says that something arrived below."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app)
    box = staff.get_by_test_id("composer")
    for n in range(12):
        box.fill(f"Line {n} of the interview plan")
        box.press("Enter")
    candidate = browsers.open(ats.candidate_link(app.id), **SIZES[size])  # type: ignore[arg-type]
    expect(candidate.locator(MESSAGE)).to_have_count(12)
    held: list[Route] = []
    candidate.route(re.compile(r".*/api/attachments/[^/]+/thumbnail$"), lambda r: held.append(r))

    picture = tmp_path / "site-map.png"
    picture.write_bytes(png(300, 300))
    staff.locator('[data-role="file-input"]').set_input_files(str(picture))
    expect(staff.locator(".pending-files li", has_text="site-map.png")).to_contain_text("KB")
    box.fill("Here is the map")
    box.press("Enter")
    image = candidate.get_by_role("button", name="Open image site-map.png").locator("img")
    expect(image).to_be_attached()
    handled(candidate, lambda: held[0] if held else None, what="the thumbnail").continue_()
    candidate.wait_for_function(
        "img => img.complete && img.naturalHeight > 0", arg=image.element_handle()
    )
    assert handled(candidate, lambda: at_bottom(candidate) or None, what="the view at the bottom")

    timeline = candidate.locator('[data-role="timeline"]')
    timeline.evaluate("t => { t.scrollTop = 0; }")
    new_below = candidate.get_by_test_id("new-below")
    # Far up it offers the way back; nothing new has come yet.
    expect(candidate.get_by_role("button", name="New messages")).to_have_count(0)
    box.fill("One more thing")
    box.press("Enter")
    expect(candidate.locator(MESSAGE)).to_have_count(14)
    assert timeline.evaluate("t => t.scrollTop") == 0
    # Scrolled up, the reader is told that something arrived below.
    expect(new_below).to_be_visible()
    expect(new_below).to_have_text("New messages ↓")
    new_below.click()
    expect(new_below).to_be_hidden()
    assert handled(candidate, lambda: at_bottom(candidate) or None, what="the view at the bottom")


@pytest.mark.parametrize("size", SIZES)
def test_a_reader_scrolled_far_up_can_jump_to_the_newest_message(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    """More than a screen up a long conversation, a "Jump to newest" button
    takes the reader to the bottom; it says "New messages" once something
    arrived below, and is not there a few lines up from the bottom."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    ats.staff_says(alice, app.conversation, *(f"Point {n} of the plan" for n in range(40)))
    candidate = browsers.open(ats.candidate_link(app.id), **SIZES[size])  # type: ignore[arg-type]
    expect(candidate.locator(MESSAGE)).to_have_count(40)
    assert handled(candidate, lambda: at_bottom(candidate) or None, what="the view at the bottom")
    timeline = candidate.locator('[data-role="timeline"]')
    button = candidate.get_by_test_id("new-below")
    expect(button).to_be_hidden()

    # A few lines up: still near the newest, no button.
    timeline.evaluate("t => { t.scrollTop = t.scrollHeight - t.clientHeight - 120; }")
    candidate.wait_for_timeout(200)
    expect(button).to_be_hidden()
    # More than a screen up.
    timeline.evaluate("t => { t.scrollTop = t.scrollHeight - 2.5 * t.clientHeight; }")
    expect(button).to_be_visible()
    expect(button).to_have_text("Jump to newest ↓")
    button.click()
    assert handled(candidate, lambda: at_bottom(candidate) or None, what="the view at the bottom")
    expect(button).to_be_hidden()

    timeline.evaluate("t => { t.scrollTop = t.scrollHeight - 2.5 * t.clientHeight; }")
    expect(button).to_have_text("Jump to newest ↓")
    ats.staff_says(alice, app.conversation, "One more thing")
    expect(button).to_have_text("New messages ↓")
    button.click()
    assert handled(candidate, lambda: at_bottom(candidate) or None, what="the view at the bottom")
    expect(candidate.locator(MESSAGE).last).to_contain_text("One more thing")
    expect(candidate.locator(MESSAGE).last).to_be_in_viewport()
    expect(button).to_be_hidden()


def test_the_status_shows_in_the_header_on_a_phone_too(browsers: Browsers, ats: Ats) -> None:
    """The candidate's one way to see where their application stands; a long
    job title gives way (ellipsis) rather than the status."""
    app = ats.application(
        "app",
        "Cara Candidate",
        job="Teacher of Mathematics and Further Mathematics (maternity cover)",
        status="interviewing",
    )
    phone = browsers.open(ats.candidate_link(app.id), **SIZES["phone"])  # type: ignore[arg-type]
    pill = phone.locator('.conv-head [data-field="status"]')
    expect(pill).to_be_visible()
    expect(pill).to_have_text("Interviewing")
    fits = "el => el.getBoundingClientRect().right <= document.documentElement.clientWidth"
    assert pill.evaluate(fits)
    assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
