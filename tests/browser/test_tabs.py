"""One person in several tabs of one browser: what a tab does for its person
alone (delete for me, archive, unarchive), which the socket does not tell,
shows in that person's other tabs at once, and in nobody else's."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Application, Ats, Browsers

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
ITEM = '[data-testid="inbox-item"]'


def message(page: Page, text: str) -> Locator:
    return page.locator(MESSAGE, has_text=text)


def second_tab(page: Page) -> Page:
    """Another tab of the same browser (same person), on the same address."""
    tab = page.context.new_page()
    tab.goto(page.url)
    return tab


def delete_for_me(page: Page, text: str) -> None:
    mine = message(page, text)
    mine.hover()
    mine.get_by_test_id("message-menu").click()
    mine.get_by_test_id("delete-for-me").click()
    expect(mine).to_have_count(0)


def menu_offers(page: Page, name: str) -> None:
    page.get_by_test_id("conversation-menu").click()
    expect(page.get_by_role("menuitem", name=name, exact=True)).to_be_visible()
    page.keyboard.press("Escape")


def row(page: Page, app: Application) -> Locator:
    return page.locator(f'{ITEM}[data-conversation="{app.conversation}"]')


def test_a_message_deleted_for_me_leaves_my_other_tabs_and_their_inbox_row(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Interview at 10:00", "Sorry, wrong candidate!")
    first = browsers.staff_at(ats, alice, cara)
    other = second_tab(first)
    expect(message(other, "wrong candidate")).to_be_visible()
    expect(row(other, cara)).to_contain_text("wrong candidate")

    delete_for_me(first, "wrong candidate")

    expect(message(other, "wrong candidate")).to_have_count(0)
    expect(message(other, "Interview at 10:00")).to_be_visible()
    expect(row(other, cara)).to_contain_text("Interview at 10:00")
    expect(row(other, cara)).not_to_contain_text("wrong candidate")


def test_a_candidates_delete_for_me_reaches_their_other_tabs(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Welcome", "Please bring your ID")
    first = browsers.open(ats.candidate_link(cara.id))
    other = second_tab(first)
    expect(message(other, "bring your ID")).to_be_visible()

    delete_for_me(first, "bring your ID")

    expect(message(other, "bring your ID")).to_have_count(0)
    expect(message(other, "Welcome")).to_be_visible()


def test_archive_and_unarchive_move_the_row_and_the_menu_in_my_other_tabs(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones")
    first = browsers.staff_at(ats, alice, cara)
    other = second_tab(first)
    expect(row(other, dan)).to_be_visible()
    expect(row(other, cara)).to_be_visible()

    first.get_by_test_id("conversation-menu").click()
    first.get_by_role("menuitem", name="Archive", exact=True).click()

    expect(row(other, cara)).to_have_count(0)
    expect(row(other, dan)).to_be_visible()
    menu_offers(other, "Unarchive")

    first.get_by_test_id("toast").get_by_role("button", name="Undo").click()

    expect(row(other, cara)).to_be_visible()
    menu_offers(other, "Archive")


def test_a_note_for_another_person_changes_nothing(browsers: Browsers, ats: Ats) -> None:
    """Two people may take turns in one browser: a tab follows only the
    notes of the person it is signed in as."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Keep me", "Hide me")
    page = browsers.staff_at(ats, alice, cara)
    keep, hide = (
        int(message(page, text).get_attribute("data-seq") or 0) for text in ("Keep me", "Hide me")
    )
    # Posted in this order on one channel, so they arrive in this order.
    second_tab(page).evaluate(
        """([conversation, me, keep, hide]) => {
            const channel = new BroadcastChannel("chatserver.tabs");
            const note = (person, seq) => (
                { person, kind: "hidden", detail: { conversation, seq } }
            );
            channel.postMessage(note("staff:someone-else", keep));
            channel.postMessage(note(me, hide));
        }""",
        [cara.conversation, f"staff:{alice}", keep, hide],
    )
    expect(message(page, "Hide me")).to_have_count(0)
    expect(message(page, "Keep me")).to_be_visible()
