"""Drafts: what a person wrote and did not send stays with its conversation
while they look at another one, reload the page or come back later, with
the files already uploaded for it; sending clears it, signing out forgets
every draft, and a file the server will have expired is not restored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import Application, Ats, Browsers, handled

pytestmark = pytest.mark.browser

ITEM = '[data-testid="inbox-item"]'
FILES = ".pending-files li"
DRAFT_KEYS = "Object.keys(localStorage).filter(k => k.startsWith('chatserver.draft/'))"


def open_from_inbox(page: Page, app: Application, name: str) -> None:
    page.locator(f'{ITEM}[data-conversation="{app.conversation}"]').click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def another_tab(page: Page, ats: Ats, app: Application) -> Page:
    """A second tab of the same browser (and person) at `app`'s conversation."""
    tab = page.context.new_page()
    tab.goto(f"{ats.server.url}/c/{app.conversation}")
    return tab


def preview(page: Page, app: Application) -> Locator:
    return page.locator(f'{ITEM}[data-conversation="{app.conversation}"] .item-preview')


def write(page: Page, text: str) -> None:
    box = page.get_by_test_id("composer")
    box.fill(text)
    expect(box).to_have_value(text)


def write_with_notes(page: Page, notes: Path) -> None:
    """Write "The notes" and attach `notes` (28 bytes), uploaded."""
    notes.write_text("Bring your DBS certificate.\n")
    write(page, "The notes")
    page.locator('[data-role="file-input"]').set_input_files(str(notes))
    expect(page.locator(FILES, has_text=notes.name)).to_contain_text("28 B")


class HeldUploads:
    """The page's uploads reach the server only when let through."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.routes: list[Route] = []
        page.route("**/api/attachments", lambda route: self.routes.append(route))

    def let_through(self) -> None:
        self.held().continue_()
        self.page.unroute("**/api/attachments")

    def refuse(self, message: str) -> None:
        error = {"error": {"code": "too_large", "message": message}}
        self.held().fulfill(status=413, json=error)
        self.page.unroute("**/api/attachments")

    def held(self) -> Route:
        return handled(self.page, lambda: self.routes[0] if self.routes else None, what="an upload")


def attach_held(page: Page, notes: Path) -> HeldUploads:
    """Write "The notes" and attach `notes`, whose upload is held."""
    uploads = HeldUploads(page)
    notes.write_text("Bring your DBS certificate.\n")
    write(page, "The notes")
    page.locator('[data-role="file-input"]').set_input_files(str(notes))
    expect(page.locator(FILES, has_text=notes.name)).to_contain_text("Uploading")
    return uploads


def saved(page: Page, app: Application) -> None:
    """Wait until the draft has reached storage (it is saved after a pause
    in typing)."""
    kept = f"id => {DRAFT_KEYS}.some(k => k.endsWith('/' + id))"
    page.wait_for_function(kept, arg=app.conversation)


def test_a_draft_stays_with_its_conversation_across_switches_and_reloads(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    dan = ats.application("dan", "Dan")
    inbox = browsers.open(ats.staff_link(alice))
    box = inbox.get_by_test_id("composer")

    open_from_inbox(inbox, cara, "Cara")
    write(inbox, "Dear Cara,\n- the interview is on **Monday**")
    open_from_inbox(inbox, dan, "Dan")
    expect(box).to_have_value("")
    # The row of a conversation left with a draft says so, as a mail client does.
    expect(preview(inbox, cara)).to_have_text("Draft: Dear Cara, - the interview is on Monday")
    expect(preview(inbox, cara).locator(".draft-label")).to_have_text("Draft:")
    write(inbox, "Hi Dan")
    open_from_inbox(inbox, cara, "Cara")
    expect(box).to_have_value("Dear Cara,\n- the interview is on **Monday**")
    expect(preview(inbox, dan)).to_have_text("Draft: Hi Dan")
    expect(preview(inbox, cara)).to_have_text("No messages yet")

    saved(inbox, cara)
    inbox.reload()
    expect(box).to_have_value("Dear Cara,\n- the interview is on **Monday**")
    open_from_inbox(inbox, dan, "Dan")
    expect(box).to_have_value("Hi Dan")

    # Sent, it is no draft any more: not after a switch, not after a reload.
    box.press("Enter")
    expect(inbox.locator('[data-testid="message"][data-seq]', has_text="Hi Dan")).to_be_visible()
    expect(box).to_have_value("")
    inbox.reload()
    expect(box).to_have_value("")
    open_from_inbox(inbox, cara, "Cara")
    expect(preview(inbox, dan)).to_have_text("You: Hi Dan")
    expect(box).to_have_value("Dear Cara,\n- the interview is on **Monday**")


def test_a_drafts_uploaded_files_come_back_and_are_sent(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    staff = browsers.staff_at(ats, alice, cara)
    write_with_notes(staff, tmp_path / "interview-notes.txt")

    staff.reload()
    expect(staff.get_by_test_id("composer")).to_have_value("The notes")
    expect(staff.locator(FILES, has_text="interview-notes.txt")).to_contain_text("28 B")
    staff.get_by_test_id("send").click()

    candidate = browsers.open(ats.candidate_link(cara.id))
    got = candidate.locator('[data-testid="message"][data-seq]', has_text="The notes")
    link = got.get_by_role("link", name="interview-notes.txt")
    with candidate.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == "Bring your DBS certificate.\n"


def test_a_file_the_server_will_have_expired_is_not_restored(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    staff = browsers.staff_at(ats, alice, cara)
    old = tmp_path / "old.txt"
    old.write_text("uploaded weeks ago")
    write(staff, "Still relevant")
    staff.locator('[data-role="file-input"]').set_input_files(str(old))
    expect(staff.locator(FILES, has_text="old.txt")).to_contain_text("18 B")
    saved(staff, cara)
    # Away from the conversation (leaving saves the draft once more), the
    # upload is made to look as old as just short of the server's 14 days.
    staff.goto(f"{ats.server.url}/healthz")
    staff.evaluate(
        """id => {
            const key = Object.keys(localStorage).find(k => k.endsWith('/' + id));
            const draft = JSON.parse(localStorage.getItem(key));
            draft.files[0].uploadedAt = Date.now() - 14 * 24 * 3600 * 1000 + 30 * 60 * 1000;
            localStorage.setItem(key, JSON.stringify(draft));
        }""",
        cara.conversation,
    )
    staff.goto(f"{ats.server.url}/c/{cara.conversation}")
    expect(staff.get_by_test_id("composer")).to_have_value("Still relevant")
    expect(staff.locator(FILES)).to_have_count(0)


def test_signing_out_forgets_the_drafts(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    staff = browsers.staff_at(ats, alice, cara)
    write(staff, "Not for the next person at this desk")
    saved(staff, cara)

    staff.locator("#user-button").click()
    staff.get_by_role("menuitem", name="Sign out").click()
    expect(staff).to_have_url(f"{ats.server.url}/")
    assert staff.evaluate(DRAFT_KEYS) == []
    staff.goto(ats.staff_link(alice))
    staff.goto(f"{ats.server.url}/c/{cara.conversation}")
    expect(staff.get_by_test_id("composer")).to_be_enabled()
    expect(staff.get_by_test_id("composer")).to_have_value("")


def test_a_tab_that_only_showed_a_draft_does_not_bring_it_back_once_sent(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    dan = ats.application("dan", "Dan")
    writing = browsers.staff_at(ats, alice, cara)
    write(writing, "Hi Cara")
    saved(writing, cara)
    showing = another_tab(writing, ats, cara)
    expect(showing.get_by_test_id("composer")).to_have_value("Hi Cara")

    writing.get_by_test_id("composer").press("Enter")
    expect(showing.locator('[data-testid="message"][data-seq]', has_text="Hi Cara")).to_be_visible()
    open_from_inbox(showing, dan, "Dan")
    expect(preview(showing, cara)).to_have_text("You: Hi Cara")
    assert showing.evaluate(DRAFT_KEYS) == []


def test_signing_out_in_one_tab_stops_the_others_saving(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    first = browsers.open(ats.staff_link(alice))
    other = another_tab(first, ats, cara)
    write(other, "Written in the other tab")
    saved(other, cara)

    first.locator("#user-button").click()
    first.get_by_role("menuitem", name="Sign out").click()
    expect(first).to_have_url(f"{ats.server.url}/")
    other.get_by_test_id("composer").press_sequentially(" and more")
    other.goto(f"{ats.server.url}/healthz")
    assert other.evaluate(DRAFT_KEYS) == []


def test_a_send_whose_file_went_with_another_comes_back_to_edit(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    """Two tabs restored the same draft and its file; the file goes with the
    first send. The second is refused, says so, and Edit puts its text back
    in the composer to attach the file again."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    first = browsers.staff_at(ats, alice, cara)
    write_with_notes(first, tmp_path / "notes.txt")
    first.wait_for_function(f"() => {DRAFT_KEYS}.some(k => localStorage[k].includes('notes.txt'))")
    second = another_tab(first, ats, cara)
    expect(second.locator(FILES, has_text="notes.txt")).to_contain_text("28 B")

    sent = second.locator('[data-testid="message"][data-seq]', has_text="The notes")
    first.get_by_test_id("send").click()
    expect(sent).to_be_visible()
    second.get_by_test_id("send").click()
    refused = second.locator(".msg.failed", has_text="The notes")
    expect(refused).to_contain_text("This file is no longer available")
    refused.get_by_role("button", name="Edit").click()
    expect(second.locator(".msg.failed")).to_have_count(0)
    expect(second.get_by_test_id("composer")).to_have_value("The notes")
    expect(second.locator(FILES)).to_have_count(0)
    second.get_by_test_id("send").click()
    expect(sent).to_have_count(2)


def test_the_inbox_row_of_another_tab_follows_the_draft(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    dan = ats.application("dan", "Dan")
    writing = browsers.staff_at(ats, alice, cara)
    watching = another_tab(writing, ats, dan)
    expect(preview(watching, cara)).to_have_text("No messages yet")

    write(writing, "Hi Cara")
    expect(preview(watching, cara)).to_have_text("Draft: Hi Cara")
    writing.get_by_test_id("composer").press("Enter")
    expect(preview(watching, cara)).to_have_text("You: Hi Cara")


def test_enter_again_while_the_files_upload_sends_once(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    staff = browsers.staff_at(ats, alice, cara)
    uploads = attach_held(staff, tmp_path / "notes.txt")
    box = staff.get_by_test_id("composer")

    box.press("Enter")
    status = staff.get_by_test_id("composer-status")
    expect(status).to_have_text("Sending once the files are uploaded…")
    expect(staff.get_by_test_id("send")).to_be_disabled()
    box.press("Enter")
    uploads.let_through()
    sent = staff.locator('[data-testid="message"][data-seq]', has_text="The notes")
    expect(sent.get_by_role("link", name="notes.txt")).to_be_visible()
    expect(box).to_have_value("")
    expect(status).to_be_hidden()
    write(staff, "And the address")
    box.press("Enter")
    candidate = browsers.open(ats.candidate_link(cara.id))
    expect(candidate.locator('[data-testid="message"][data-seq]')).to_have_text(
        [re.compile("The notes"), re.compile("And the address")]
    )
    expect(sent).to_have_count(1)


def test_a_send_whose_file_fails_to_upload_is_not_sent_without_it(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    staff = browsers.staff_at(ats, alice, cara)
    uploads = attach_held(staff, tmp_path / "notes.txt")
    staff.get_by_test_id("composer").press("Enter")
    uploads.refuse("The file is over 10 MiB.")

    expect(staff.locator(FILES, has_text="notes.txt")).to_contain_text("The file is over 10 MiB.")
    expect(staff.get_by_test_id("composer")).to_have_value("The notes")
    expect(staff.get_by_test_id("send")).to_be_enabled()
    staff.reload()
    expect(staff.get_by_test_id("composer")).to_have_value("The notes")
    expect(staff.locator('[data-testid="message"]')).to_have_count(0)


def test_a_file_refused_before_the_send_holds_it_until_removed(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    """Pressing Send after a file was refused (too large, of a refused
    kind) sends nothing: the chip says why, the line what to do; removing
    the file lets the text go."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    staff = browsers.staff_at(ats, alice, cara)
    uploads = attach_held(staff, tmp_path / "contract.txt")
    uploads.refuse("Attachments are at most 10 MiB.")
    chip = staff.locator(FILES, has_text="contract.txt")
    expect(chip).to_contain_text("Attachments are at most 10 MiB.")
    staff.get_by_test_id("composer").press("Enter")
    status = staff.get_by_test_id("composer-status")
    expect(status).to_contain_text("Not sent: a file could not be attached")
    expect(staff.get_by_test_id("composer")).to_have_value("The notes")
    expect(chip).to_be_visible()

    chip.get_by_role("button", name="Remove contract.txt").click()
    expect(status).to_be_hidden()
    staff.get_by_test_id("send").click()
    expect(staff.locator('[data-testid="message"][data-seq]', has_text="The notes")).to_be_visible()
    candidate = browsers.open(ats.candidate_link(cara.id))
    expect(candidate.locator('[data-testid="message"][data-seq]')).to_have_count(1)


def test_a_send_still_uploading_when_its_view_closes_leaves_no_draft(
    browsers: Browsers, ats: Ats, tmp_path: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    dan = ats.application("dan", "Dan")
    staff = browsers.open(ats.staff_link(alice))
    open_from_inbox(staff, cara, "Cara")
    uploads = attach_held(staff, tmp_path / "notes.txt")
    staff.get_by_test_id("composer").press("Enter")
    open_from_inbox(staff, dan, "Dan")
    uploads.let_through()

    expect(preview(staff, cara)).to_have_text("You: The notes")
    assert staff.evaluate(DRAFT_KEYS) == []
    open_from_inbox(staff, cara, "Cara")
    sent = staff.locator('[data-testid="message"][data-seq]', has_text="The notes")
    expect(sent).to_have_count(1)
    expect(staff.get_by_test_id("composer")).to_have_value("")


def test_sending_from_one_tab_keeps_the_draft_another_tab_left(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara")
    dan = ats.application("dan", "Dan")
    open_before = browsers.staff_at(ats, alice, cara)
    writing = another_tab(open_before, ats, cara)
    draft = "Dear Cara, about the offer: the salary is"
    write(writing, draft)
    open_from_inbox(writing, dan, "Dan")
    expect(preview(writing, cara)).to_have_text(f"Draft: {draft}")

    write(open_before, "See you at 10")
    open_before.get_by_test_id("composer").press("Enter")
    expect(preview(writing, cara)).to_have_text(f"Draft: {draft}")
    open_from_inbox(writing, cara, "Cara")
    expect(writing.locator('[data-testid="message"][data-seq]')).to_have_text(
        [re.compile("See you at 10")]
    )
    expect(writing.get_by_test_id("composer")).to_have_value(draft)
