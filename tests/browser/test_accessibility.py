"""An automated accessibility check (issue 11 item 10): axe-core, from the
npm lock (`npm ci`, run by scripts/bootstrap), is put into each page and run
against WCAG 2 A and AA, contrast included, on every page and state people
see: the inbox with a conversation selected (the selected row's time and
preview, the status pills), a conversation with both sides and a grouped
run, the composer's preview and a file waiting in it, an ended conversation
(its "Ended" pill in the header and the row), the dialogs, settings, and the candidate chat
(with one application and with two), at desktop and phone sizes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.browser.conftest import ROOT, Ats, Browsers

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}
MESSAGE = '[data-testid="message"][data-seq]'


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` (scripts/bootstrap does)", pytrace=False)
    return AXE.read_text()


def violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations on the page as it is now.

    Evaluated through the DevTools protocol, so the page's CSP (no inline
    script) does not stop it, and nothing is added to the server."""
    page.evaluate(axe_source)
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
                resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                id: v.id, help: v.help,
                nodes: v.nodes.map((n) => ({
                    target: n.target.join(" "), summary: n.failureSummary })),
            }));
        }"""
    )
    return list(found)


def staff_beside_a_message(browsers: Browsers, ats: Ats) -> tuple[Page, Locator]:
    """Alice in a conversation where she wrote "Interview at 10:00": her
    page and that message, shown."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Interview at 10:00")
    page = browsers.staff_at(ats, alice, cara)
    message = page.locator(MESSAGE, has_text="Interview at 10:00")
    expect(message).to_be_visible()
    return page, message


def check(page: Page, axe_source: str, where: str) -> None:
    found = violations(page, axe_source)
    assert found == [], f"{where}: {json.dumps(found, indent=1)}"


@pytest.mark.parametrize("size", SIZES)
def test_the_pages_pass_axe(browsers: Browsers, ats: Ats, axe_source: str, size: str) -> None:
    alice = ats.staff("Alice Recruiter")
    bob = ats.staff("Bob Head")
    cara = ats.application("cara", "Cara Candidate", status="hired")
    dan = ats.application("dan", "Dan Jones", status="not_progressing", job="Science Technician")
    ats.application("eve", "Eve Walker", status="offered", job="Head of English")
    ats.staff_says(bob, cara.conversation, "Welcome aboard! See https://example.org/start")
    ats.staff_says(alice, cara.conversation, "**Start date**: 1 September\n- ID\n- Bank details")
    ats.staff_says(alice, dan.conversation, "Thank you for your time.")
    candidate = browsers.open(ats.candidate_link(cara.id), **SIZES[size])  # type: ignore[arg-type]
    candidate.get_by_test_id("composer").fill("Thank you! One question.")
    candidate.get_by_test_id("send").click()
    candidate.get_by_test_id("composer").fill("And *another* one.")
    candidate.get_by_test_id("send").click()
    expect(candidate.locator(MESSAGE)).to_have_count(4)
    check(candidate, axe_source, "candidate chat")

    inbox = browsers.open(ats.staff_link(alice), **SIZES[size])  # type: ignore[arg-type]
    expect(inbox.get_by_test_id("inbox-item")).to_have_count(3)
    check(inbox, axe_source, "inbox")
    inbox.get_by_test_id("search").fill("cara")
    expect(inbox.get_by_test_id("inbox-item")).to_have_count(1)
    expect(inbox.locator(".item-name mark")).to_have_text("Cara")
    check(inbox, axe_source, "inbox search")
    inbox.get_by_test_id("search").fill("")
    expect(inbox.get_by_test_id("inbox-item")).to_have_count(3)
    inbox.locator(f'[data-conversation="{cara.conversation}"]').click()
    expect(inbox.locator(MESSAGE)).to_have_count(4)
    inbox.get_by_test_id("composer").fill("Bring **photo ID**")
    expect(inbox.get_by_test_id("composer-preview")).to_be_visible()
    check(inbox, axe_source, "conversation with a selected row and a preview")

    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("end-conversation").click()
    expect(inbox.get_by_role("dialog")).to_be_visible()
    check(inbox, axe_source, "confirmation dialog")
    inbox.keyboard.press("Escape")
    expect(inbox.get_by_role("dialog")).to_have_count(0)

    # A file waiting in the composer: its chip's name and size.
    notes: FilePayload = {
        "name": "notes.txt",
        "mimeType": "text/plain",
        "buffer": b"Bring photo ID.\n",
    }
    inbox.locator('[data-role="file-input"]').set_input_files(files=[notes])
    chip = inbox.locator('[data-role="files"] li', has_text="notes.txt")
    expect(chip.locator(".muted")).to_have_text("16 B")
    expect(chip).not_to_have_class("uploading")
    check(inbox, axe_source, "composer with an attachment chip")

    # An ended conversation: the "Ended" pill in its header and its row.
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("end-conversation").click()
    inbox.get_by_test_id("confirm").click()
    expect(inbox.locator('.conv-head .pill[data-state="ended"]')).to_have_text("Ended")
    check(inbox, axe_source, "an ended conversation")
    inbox.goto(f"{ats.server.url}/inbox")
    ended = inbox.locator(f'[data-conversation="{cara.conversation}"] .pill[data-state="ended"]')
    expect(ended).to_have_text("Ended")
    check(inbox, axe_source, "inbox with an ended conversation")

    inbox.goto(f"{ats.server.url}/settings")
    check(inbox, axe_source, "settings")

    # The same candidate's second application, opened in the same browser.
    again = ats.application("cara-again", "Cara Candidate", job="Head of Science")
    candidate.goto(ats.candidate_link(again.id))
    switcher = candidate.get_by_test_id("conversation-switcher")
    expect(switcher.get_by_role("link")).to_have_count(2)
    expect(switcher.locator('[aria-current="page"]')).to_contain_text("Head of Science")
    check(candidate, axe_source, "candidate chat with two applications")


def test_the_selected_row_and_the_hired_pill_have_enough_contrast(
    browsers: Browsers, ats: Ats, axe_source: str
) -> None:
    """The two places the issue names, checked by axe's contrast rule alone."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate", status="hired")
    ats.staff_says(alice, cara.conversation, "See you on Monday.")
    inbox = browsers.open(ats.staff_link(alice))
    row = inbox.locator(f'[data-conversation="{cara.conversation}"]')
    row.click()
    expect(row).to_have_attribute("aria-current", "page")
    expect(row.locator('.pill[data-status="hired"]')).to_have_text("Hired")
    inbox.evaluate(axe_source)
    found = inbox.evaluate(
        """async () => (await axe.run(".inbox-item[aria-current='page'], .conv-head .pill",
                  { runOnly: ["color-contrast"] })).violations.length"""
    )
    assert found == 0


def test_axe_finds_a_contrast_fault_when_there_is_one(
    browsers: Browsers, ats: Ats, axe_source: str
) -> None:
    """The check can fail: text as pale as the old selected row's is caught."""
    alice = ats.staff("Alice Recruiter")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.get_by_role("heading", name="Inbox")).to_be_visible()
    inbox.evaluate(
        """() => {
            const p = document.createElement("p");
            p.textContent = "Pale words";
            p.style.color = "#8a8f98";
            p.style.background = "#eef0ff";
            document.getElementById("main").append(p);
        }"""
    )
    found = violations(inbox, axe_source)
    assert [v["id"] for v in found] == ["color-contrast"]


def tab_out_of(page: Page, panel_selector: str, key: str = "Tab") -> None:
    """Press `key` until focus leaves the open menu (its items and button)."""
    for _ in range(8):
        page.keyboard.press(key)
        inside = page.evaluate(
            """(selector) => {
                const panel = document.querySelector(selector);
                const at = document.activeElement;
                return panel.contains(at) || panel.previousElementSibling === at;
            }""",
            panel_selector,
        )
        if not inside:
            return
    raise AssertionError(f"focus never left {panel_selector}")


def test_a_menu_closes_when_focus_leaves_it(browsers: Browsers, ats: Ats) -> None:
    """A menu opened from the keyboard stays open while focus moves among its
    items and its button, and closes once Tab (or Shift+Tab) takes focus out,
    so it never lies over the composer: the per-message menu, the
    conversation menu and the bell all use the same menu helper."""
    page, mine = staff_beside_a_message(browsers, ats)

    button = mine.get_by_test_id("message-menu")
    menu = mine.locator('[role="menu"]')
    button.focus()
    page.keyboard.press("Enter")
    expect(mine.get_by_test_id("delete-for-me")).to_be_focused()
    page.keyboard.press("Shift+Tab")  # back to its own button: still open
    expect(button).to_be_focused()
    expect(menu).to_be_visible()
    page.keyboard.press("Tab")
    expect(mine.get_by_test_id("delete-for-me")).to_be_focused()
    mine.evaluate("el => el.querySelector('[role=\"menu\"]').id = 'open-message-menu'")
    tab_out_of(page, "#open-message-menu")
    expect(menu).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")

    # Shift+Tab out backwards from the button closes it too.
    button.focus()
    page.keyboard.press("Enter")
    expect(menu).to_be_visible()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(menu).to_be_hidden()

    conversation_menu = page.get_by_test_id("conversation-menu")
    conversation_menu.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("end-conversation")).to_be_focused()
    page.evaluate(
        "() => document.querySelector('[data-testid=\"conversation-menu\"]')"
        ".nextElementSibling.id = 'open-conversation-menu'"
    )
    tab_out_of(page, "#open-conversation-menu")
    expect(page.locator("#open-conversation-menu")).to_be_hidden()
    expect(conversation_menu).to_have_attribute("aria-expanded", "false")

    # Escape and an outside click still close it.
    conversation_menu.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#open-conversation-menu")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#open-conversation-menu")).to_be_hidden()
    expect(conversation_menu).to_be_focused()
    conversation_menu.click()
    expect(page.locator("#open-conversation-menu")).to_be_visible()
    page.get_by_test_id("composer").click()
    expect(page.locator("#open-conversation-menu")).to_be_hidden()


def contrast(a: str, b: str) -> float:
    """WCAG contrast of two computed colours, "rgb(r, g, b)" (opaque)."""

    def luminance(colour: str) -> float:
        parts = colour[colour.index("(") + 1 : colour.index(")")].split(",")
        channels = [int(float(p)) / 255 for p in parts[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted([luminance(a), luminance(b)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_a_focused_menu_item_has_a_visible_focus_ring(browsers: Browsers, ats: Ats) -> None:
    """A menu item focused from the keyboard is ringed (WCAG 2.4.7, with
    the 3:1 of 1.4.11 against the item and the menu), not just shaded
    (1.1:1): the conversation's menu and a message's menu."""
    page, message = staff_beside_a_message(browsers, ats)
    for button, item in [
        (page.get_by_test_id("conversation-menu"), page.get_by_test_id("end-conversation")),
        (message.get_by_test_id("message-menu"), message.get_by_test_id("delete-for-me")),
    ]:
        button.focus()
        page.keyboard.press("Enter")
        expect(item).to_be_focused()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowUp")
        expect(item).to_be_focused()
        ring = item.evaluate(
            """(el) => {
                const s = getComputedStyle(el);
                return { style: s.outlineStyle, width: parseFloat(s.outlineWidth),
                    colour: s.outlineColor, item: s.backgroundColor,
                    menu: getComputedStyle(el.closest('[role="menu"]')).backgroundColor };
            }"""
        )
        assert ring["style"] == "solid", ring
        assert ring["width"] >= 2, ring
        assert contrast(ring["colour"], ring["item"]) >= 3, ring
        assert contrast(ring["colour"], ring["menu"]) >= 3, ring
        page.keyboard.press("Escape")
        expect(button).to_be_focused()


def test_the_keyboards_focus_ring_stands_out_from_the_page(browsers: Browsers, ats: Ats) -> None:
    """Every control Tab reaches on the inbox (after the skip link, a box
    of its own) is ringed in a colour of at least 3:1 against the page
    (WCAG 1.4.11); the ring used to be the accent at 35 % opacity, about
    1.7:1 on white."""
    alice = ats.staff("Alice Recruiter")
    ats.application("cara", "Cara Candidate")
    page = browsers.open(ats.staff_link(alice))
    expect(page.get_by_test_id("inbox-item")).to_have_count(1)
    page.locator("body").focus()
    rings = []
    for _ in range(8):
        page.keyboard.press("Tab")
        rings.append(
            page.evaluate(
                """() => {
                    const el = document.activeElement;
                    const shadow = getComputedStyle(el).boxShadow;
                    const colours = shadow.match(/rgba?\\([^)]*\\)/g) || [];
                    return { el: el.outerHTML.slice(0, 80), colours };
                }"""
            )
        )
    page_colour = "rgb(255, 255, 255)"
    # The skip link is a box of its own when focused, not a ring.
    for ring in rings[1:]:
        opaque = [c for c in ring["colours"] if c.startswith("rgb(")]
        assert any(contrast(c, page_colour) >= 3 for c in opaque), ring
