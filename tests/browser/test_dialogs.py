"""Destructive actions are safe (issue 11 item 3): Delete for everyone and
End conversation ask first in an accessible dialog (labelled and described,
focus on the safe choice and kept inside, Escape cancels, focus returns);
Archive acts at once and is undone from a toast. At desktop and phone sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Ats, Browsers

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
ITEM = '[data-testid="inbox-item"]'
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}


def open_pair(browsers: Browsers, ats: Ats, size: str) -> tuple[Page, Page, str]:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app, **SIZES[size])
    candidate = browsers.open(ats.candidate_link(app.id))
    return staff, candidate, app.conversation


def focus_is_inside(page: Page, selector: str) -> bool:
    return bool(
        page.evaluate(
            f"() => document.querySelector({selector!r}).contains(document.activeElement)"
        )
    )


@pytest.mark.parametrize("size", SIZES)
def test_delete_for_everyone_asks_first(
    browsers: Browsers, ats: Ats, size: str, screenshots: Path
) -> None:
    staff, candidate, _ = open_pair(browsers, ats, size)
    staff.get_by_test_id("composer").fill("Offer: 41,000")
    staff.get_by_test_id("send").click()
    expect(candidate.locator(MESSAGE, has_text="41,000")).to_be_visible()

    mine = staff.locator(MESSAGE, has_text="41,000")
    menu_button = mine.get_by_test_id("message-menu")
    menu_button.click()
    mine.get_by_test_id("delete-for-everyone").click()
    dialog = staff.get_by_role("dialog", name="Delete for everyone?")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute(
        "aria-describedby", dialog.locator("p").get_attribute("id") or ""
    )
    expect(dialog).to_contain_text("can't be undone")
    cancel = dialog.get_by_role("button", name="Cancel")
    expect(cancel).to_be_focused()
    staff.screenshot(path=str(screenshots / f"confirm-dialog-{size}.png"))
    # Tab and Shift+Tab stay inside the dialog.
    for key in ["Tab", "Tab", "Tab", "Shift+Tab", "Shift+Tab", "Shift+Tab", "Shift+Tab"]:
        staff.keyboard.press(key)
        assert focus_is_inside(staff, "dialog"), key
    # The page behind is inert while it is open.
    assert staff.evaluate("document.querySelector('main').matches(':modal')") is False
    assert staff.evaluate("document.querySelector('dialog').matches(':modal')") is True

    staff.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(menu_button).to_be_focused()
    expect(candidate.locator(MESSAGE, has_text="41,000")).to_be_visible()

    menu_button.click()
    mine.get_by_test_id("delete-for-everyone").click()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(staff.locator(MESSAGE, has_text="41,000")).to_be_visible()

    menu_button.click()
    mine.get_by_test_id("delete-for-everyone").click()
    dialog.get_by_role("button", name="Delete for everyone").click()
    expect(candidate.locator(MESSAGE, has_text="41,000")).to_have_count(0)
    expect(candidate.locator(MESSAGE).last).to_contain_text("This message was deleted")


@pytest.mark.parametrize("size", SIZES)
def test_end_conversation_asks_first(browsers: Browsers, ats: Ats, size: str) -> None:
    staff, candidate, _ = open_pair(browsers, ats, size)
    staff.get_by_test_id("composer").fill("Thanks for today.")
    staff.get_by_test_id("send").click()
    expect(candidate.locator(MESSAGE, has_text="Thanks for today")).to_be_visible()

    staff.get_by_test_id("conversation-menu").click()
    staff.get_by_test_id("end-conversation").click()
    dialog = staff.get_by_role("dialog", name="End this conversation?")
    expect(dialog).to_contain_text("Cara Candidate will no longer be able to reply")
    staff.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(staff.get_by_test_id("conversation-menu")).to_be_focused()
    expect(candidate.get_by_test_id("composer")).to_be_enabled()

    staff.get_by_test_id("conversation-menu").click()
    staff.get_by_test_id("end-conversation").click()
    # Enter on the focused safe choice cancels: a stray key destroys nothing.
    staff.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    expect(candidate.get_by_test_id("composer")).to_be_enabled()

    staff.get_by_test_id("conversation-menu").click()
    staff.get_by_test_id("end-conversation").click()
    dialog.get_by_role("button", name="End conversation").click()
    expect(candidate.get_by_test_id("send-disabled-reason")).to_have_text(
        "This conversation has ended."
    )
    expect(staff.get_by_text("Sending a message reopens it")).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_archive_acts_at_once_and_undoes_from_a_toast(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.application("dan", "Dan Jones")
    inbox = browsers.open(ats.staff_link(alice), **SIZES[size])  # type: ignore[arg-type]
    expect(inbox.locator(ITEM)).to_have_count(2)
    inbox.locator(f'[data-conversation="{cara.conversation}"]').click()
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_role("menuitem", name="Archive").click()
    expect(inbox.get_by_role("dialog")).to_have_count(0)
    toast = inbox.get_by_test_id("toast")
    expect(toast).to_contain_text("Conversation archived.")
    if size == "desktop":
        expect(inbox.locator(ITEM)).to_have_count(1)
    toast.get_by_role("button", name="Undo").click()
    expect(toast).to_have_count(0)
    if size == "phone":
        inbox.get_by_role("link", name="Back to inbox").click()
    expect(inbox.locator(ITEM)).to_have_count(2)
    inbox.get_by_test_id("filter-archived").click()
    expect(inbox.locator(ITEM)).to_have_count(0)
    inbox.reload()
    expect(inbox.get_by_test_id("filter-archived")).to_have_attribute("aria-pressed", "true")
    expect(inbox.get_by_text("Nothing archived")).to_be_visible()


def test_an_archived_conversation_opened_by_its_link_offers_unarchive(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.staff_at(ats, alice, cara)
    menu = inbox.get_by_test_id("conversation-menu")
    menu.click()
    inbox.get_by_role("menuitem", name="Archive").click()
    expect(inbox.get_by_test_id("toast")).to_contain_text("Conversation archived.")

    inbox.reload()
    menu.click()
    expect(inbox.get_by_role("menuitem", name="Unarchive")).to_be_visible()
    inbox.get_by_role("menuitem", name="Unarchive").click()
    expect(inbox.get_by_test_id("toast")).to_contain_text("Conversation moved back to the inbox.")
    expect(inbox.locator(f'{ITEM}[data-conversation="{cara.conversation}"]')).to_be_visible()


def test_a_reply_brings_an_archived_conversation_back_live(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "We will be in touch")
    inbox = browsers.open(ats.staff_link(alice))
    row = inbox.locator(f'{ITEM}[data-conversation="{cara.conversation}"]')
    row.click()
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_role("menuitem", name="Archive").click()
    inbox.get_by_test_id("filter-archived").click()
    expect(row).to_be_visible()
    # The Messages tab of the candidate's page in the host: the conversation alone.
    watching = inbox.context.new_page()
    watching.goto(f"{ats.server.url}/applications/{cara.id}/messages")
    watching.get_by_test_id("conversation-menu").click()
    expect(watching.get_by_role("menuitem", name="Unarchive")).to_be_visible()
    watching.keyboard.press("Escape")

    candidate = browsers.open(ats.candidate_link(cara.id))
    candidate.get_by_test_id("composer").fill("One more question")
    candidate.get_by_test_id("composer").press("Enter")
    expect(row).to_have_count(0)
    inbox.get_by_test_id("filter-all").click()
    expect(row).to_contain_text("One more question")
    watching.get_by_test_id("conversation-menu").click()
    expect(watching.get_by_role("menuitem", name="Archive", exact=True)).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_archive_from_the_keyboard_puts_focus_on_undo_and_undo_gives_it_back(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    """Archive chosen with Enter closes its menu: focus goes to the toast's
    Undo (the toast stays while it has focus), and Undo, like Escape on the
    toast, gives focus back to the conversation's options button."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.application("dan", "Dan Jones")
    inbox = browsers.staff_at(ats, alice, cara, **SIZES[size])
    options = inbox.get_by_test_id("conversation-menu")
    options.focus()
    inbox.keyboard.press("Enter")
    archive = inbox.get_by_test_id("archive")
    archive.focus()
    inbox.keyboard.press("Enter")
    toast = inbox.get_by_test_id("toast")
    expect(toast).to_contain_text("Conversation archived.")
    undo = toast.get_by_role("button", name="Undo")
    expect(undo).to_be_focused()
    inbox.keyboard.press("Enter")
    expect(toast).to_have_count(0)
    expect(options).to_be_focused()
    if size == "desktop":
        expect(inbox.locator(f'{ITEM}[data-conversation="{cara.conversation}"]')).to_be_visible()
    options.click()
    expect(archive).to_have_text("Archive")

    # Escape on the toast dismisses it, and focus goes back the same way.
    inbox.keyboard.press("Escape")
    options.focus()
    inbox.keyboard.press("Enter")
    archive.focus()
    inbox.keyboard.press("Enter")
    expect(undo).to_be_focused()
    inbox.keyboard.press("Escape")
    expect(toast).to_have_count(0)
    expect(options).to_be_focused()
    options.click()
    expect(archive).to_have_text("Unarchive")
