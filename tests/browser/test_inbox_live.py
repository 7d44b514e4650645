"""The inbox kept live (issue 11 items 5, 9, 10; issue 8 item 2): rows follow
a status change from the host, a delete for everyone and an ended
conversation without a reload, and a deleted message's text appears nowhere;
our side (every staff member) is shown apart from the candidate with names;
search matches are highlighted with case and accents folded; Mark as unread;
empty states sit where the eye starts."""

from __future__ import annotations

import unicodedata
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from chatserver.store.folding import fold
from tests.browser.conftest import Ats, Browsers

pytestmark = pytest.mark.browser

ITEM = '[data-testid="inbox-item"]'
MESSAGE = '[data-testid="message"][data-seq]'
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}


def item(page: Page, conversation: str) -> Locator:
    return page.locator(f'{ITEM}[data-conversation="{conversation}"]')


class Colleague:
    """Another staff member working from their own browser session."""

    def __init__(self, ats: Ats, staff_id: str) -> None:
        self.client = httpx.Client(base_url=ats.server.url, timeout=10)
        self.client.get(ats.staff_link(staff_id), follow_redirects=True)
        self.csrf = {"X-CSRF-Token": self.client.get("/api/me").json()["csrf_token"]}

    def say(self, conversation: str, text: str) -> dict[str, object]:
        response = self.client.post(
            f"/api/conversations/{conversation}/messages",
            json={"client_id": str(uuid.uuid4()), "body": text},
            headers=self.csrf,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def delete_for_everyone(self, message_id: object) -> None:
        response = self.client.delete(
            f"/api/messages/{message_id}", params={"for": "everyone"}, headers=self.csrf
        )
        assert response.status_code == 204, response.text

    def end(self, conversation: str) -> None:
        response = self.client.post(f"/api/conversations/{conversation}/end", headers=self.csrf)
        assert response.status_code == 200, response.text


def test_rows_follow_status_deletes_and_ends_live(
    browsers: Browsers, ats: Ats, screenshots: Path
) -> None:
    alice = ats.staff("Alice Recruiter")
    bob = Colleague(ats, ats.staff("Bob Head"))
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones", job="Science Technician", status="shortlisted")
    eve = ats.application("eve", "Eve Walker", job="Head of English")
    bob.say(eve.conversation, "Thanks for coming in.")
    bob.say(cara.conversation, "Your interview is at 10:00.")
    wrong = bob.say(cara.conversation, "Salary offer: 41,000 (wrong candidate!)")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(3)
    expect(item(inbox, cara.conversation)).to_contain_text("Bob: Salary offer")

    # The host moves Dan on: the pill follows without a reload.
    ats.set_status(dan, "Dan Jones", "offered", job="Science Technician")
    expect(item(inbox, dan.conversation).locator(".pill")).to_have_text("Offered")

    # A colleague deletes a message for everyone: its text leaves the row.
    bob.delete_for_everyone(wrong["id"])
    row = item(inbox, cara.conversation)
    expect(row.locator(".item-preview")).to_have_text("Bob: Message deleted")
    expect(inbox.locator("#inbox-list")).not_to_contain_text("41,000")

    # A colleague ends a conversation: the row looks ended.
    bob.end(eve.conversation)
    ended = item(inbox, eve.conversation)
    expect(ended.locator(".pill")).to_have_text("Ended")
    expect(ended).to_have_class("inbox-item is-ended")
    expect(inbox.locator(f"{ITEM}.is-ended")).to_have_count(1)
    inbox.screenshot(path=str(screenshots / "inbox-live.png"))


def test_deleting_in_the_open_conversation_updates_its_row(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).click()
    box = inbox.get_by_test_id("composer")
    box.fill("Parking is in bay 7")
    box.press("Enter")
    row = item(inbox, cara.conversation)
    expect(row.locator(".item-preview")).to_have_text("You: Parking is in bay 7")
    mine = inbox.locator(MESSAGE, has_text="bay 7")
    mine.hover()
    mine.get_by_test_id("message-menu").click()
    mine.get_by_test_id("delete-for-everyone").click()
    inbox.get_by_test_id("confirm").click()
    expect(row.locator(".item-preview")).to_have_text("You: Message deleted")
    expect(inbox.locator("#inbox-list")).not_to_contain_text("bay 7")
    inbox.reload()
    expect(item(inbox, cara.conversation).locator(".item-preview")).not_to_contain_text("bay 7")


@pytest.mark.parametrize("size", SIZES)
def test_our_side_is_every_staff_member_with_names(browsers: Browsers, ats: Ats, size: str) -> None:
    alice = ats.staff("Alice Recruiter")
    bob = ats.staff("Bob Head")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(bob, cara.conversation, "Hello from Bob")
    candidate = browsers.open(ats.candidate_link(cara.id))
    candidate.get_by_test_id("composer").fill("Hello from Cara")
    candidate.get_by_test_id("composer").press("Enter")
    expect(candidate.locator(MESSAGE)).to_have_count(2)
    inbox = browsers.open(ats.staff_link(alice), **SIZES[size])  # type: ignore[arg-type]
    item(inbox, cara.conversation).click()
    inbox.get_by_test_id("composer").fill("Hello from Alice")
    inbox.get_by_test_id("send").click()
    expect(inbox.locator(MESSAGE)).to_have_count(3)

    timeline = inbox.locator('[data-role="timeline"]').bounding_box()
    assert timeline is not None

    def side(text: str) -> str:
        """Which edge of the timeline the message's bubble keeps to."""
        box = inbox.locator(MESSAGE, has_text=text).locator(".bubble").bounding_box()
        assert box is not None
        left_gap = box["x"] - timeline["x"]
        right_gap = timeline["x"] + timeline["width"] - (box["x"] + box["width"])
        return "right" if right_gap < left_gap else "left"

    assert side("Hello from Bob") == "right"
    assert side("Hello from Alice") == "right"
    assert side("Hello from Cara") == "left"
    expect(inbox.locator(MESSAGE, has_text="Hello from Bob")).to_contain_text("Bob Head")
    expect(inbox.locator(MESSAGE, has_text="Hello from Alice")).to_contain_text("You")
    expect(inbox.locator(MESSAGE, has_text="Hello from Cara")).to_contain_text("Cara Candidate")
    expect(inbox.locator(".msg.ours")).to_have_count(2)
    expect(inbox.locator(".msg.ours.mine")).to_have_count(1)

    # The candidate sees the whole hiring team on the other side, by name.
    expect(candidate.locator(".msg.ours")).to_have_count(1)
    expect(candidate.locator(MESSAGE, has_text="Hello from Bob")).to_contain_text("Bob Head")


def test_search_matches_are_highlighted_folding_case_and_accents(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    ats.application("chloe", "Chloé Dupont", job="Teacher of Music")
    ats.application("zoe", "Zoë Martin", job="Science Technician")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(2)
    inbox.get_by_test_id("search").fill("DUPONT")
    expect(inbox.locator(ITEM)).to_have_count(1)
    expect(inbox.locator(f"{ITEM} .item-name mark")).to_have_text("Dupont")
    inbox.get_by_test_id("search").fill("music")
    expect(inbox.locator(f"{ITEM} .item-job mark")).to_have_text("Music")
    # The page folds like the server: "chloe" and "CHLOÉ" both mark "Chloé".
    marked = inbox.evaluate(
        """async () => {
            const { highlight } = await import("/static/js/ui.js");
            const el = document.createElement("span");
            const out = [];
            for (const q of ["chloe", "CHLOÉ", "zoe martin", "ÉÉ", "ﬁle", "x"]) {
                const text = q === "ﬁle" ? "Profile: ﬁle.pdf" : "Chloé Dupont, Zoë Martin";
                highlight(el, text, q);
                out.push([...el.querySelectorAll("mark")].map((m) => m.textContent));
                if (el.textContent !== text) out.push("text changed");
            }
            return out;
        }"""
    )
    assert marked == [["Chloé"], ["Chloé"], ["Zoë", "Martin"], [], ["file", "ﬁle"], []]


def test_avatars_show_whole_letters_of_any_script(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    ats.application("hanako", "山田 花子 🙂", job="英語教師 (Englischlehrer:in)")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(f"{ITEM} .avatar")).to_have_text("山花")
    names = ["英語教師 (Englischlehrer:in)", "𠀋子 🙂", "🙂", "", "o'brien mary"]
    shown = inbox.evaluate(
        """async (names) => {
            const { initials } = await import("/static/js/ui.js");
            return names.map(initials);
        }""",
        names,
    )
    assert shown == ["英E", "𠀋", "?", "?", "OM"]


def test_a_search_result_shows_the_message_it_was_found_in(browsers: Browsers, ats: Ats) -> None:
    """The row of a conversation found by an older message previews that
    message, from near the match, instead of the newest one."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    candidate = browsers.open(ats.candidate_link(cara.id))
    question = (
        "I have a few questions about the post: the salary scale, whether there is"
        " parking on site, and whether you sponsor visas for teachers from abroad."
    )
    for text in (question, "Thanks for your time!"):
        candidate.get_by_test_id("composer").fill(text)
        candidate.get_by_test_id("composer").press("Enter")
        expect(candidate.locator(MESSAGE, has_text=text)).to_be_visible()
    inbox = browsers.open(ats.staff_link(alice))
    preview = inbox.locator(f"{ITEM} .item-preview")
    expect(preview).to_have_text("Thanks for your time!")
    inbox.get_by_test_id("search").fill("VISAS")
    expect(preview).to_have_text("…whether you sponsor visas for teachers from abroad.")
    expect(preview.locator("mark")).to_have_text("visas")
    # Found by the candidate's name, the row shows the newest message.
    inbox.get_by_test_id("search").fill("cara")
    expect(preview).to_have_text("Thanks for your time!")


# Letters people write in names, titles and messages: Latin, IPA, Greek and
# Cyrillic, the extended Latin and Greek blocks, letterlike symbols and
# ligatures, full-width forms.
FOLD_RANGES = [
    (0x20, 0x52F),
    (0x1E00, 0x1FFF),
    (0x2100, 0x218F),
    (0xFB00, 0xFB06),
    (0xFF01, 0xFF5E),
]


def test_the_page_folds_every_letter_like_the_server(browsers: Browsers, ats: Ats) -> None:
    """What the server's search found, the page's highlight marks: its fold
    (ui.js) is the server's (chatserver/store/folding.py) for every letter
    of these blocks, the case folding ("ß" is "ss") and the stroked letters
    ("ł" is "l") included. Lone combining marks (never a whole character of
    text) and unassigned code points are left out."""
    alice = ats.staff("Alice Recruiter")
    lukasz = ats.application("lukasz", "Łukasz Weiß", job="Lehrer für Æsthetik")
    ats.application("other", "Ola Nordmann", job="Teacher of Music")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator(ITEM)).to_have_count(2)

    characters = [
        chr(cp)
        for start, end in FOLD_RANGES
        for cp in range(start, end + 1)
        if unicodedata.category(chr(cp))[0] not in ("M", "C")
    ]
    page_folds = inbox.evaluate(
        """async (characters) => {
            const { fold } = await import("/static/js/ui.js");
            return characters.map((ch) => fold(ch).folded);
        }""",
        characters,
    )
    differences = [
        (f"U+{ord(ch):04X}", ch, fold(ch), page)
        for ch, page in zip(characters, page_folds, strict=True)
        if fold(ch) != page
    ]
    assert len(characters) > 1500
    assert differences == []

    # End to end: the server finds the row, the page marks what it found.
    inbox.get_by_test_id("search").fill("lukasz WEISS")
    expect(inbox.locator(ITEM)).to_have_count(1)
    expect(item(inbox, lukasz.conversation).locator(".item-name mark")).to_have_text(
        ["Łukasz", "Weiß"]
    )
    inbox.get_by_test_id("search").fill("aesthetik")
    expect(inbox.locator(ITEM)).to_have_count(1)
    expect(item(inbox, lukasz.conversation).locator(".item-job mark")).to_have_text("Æsthetik")


def test_mark_as_unread_returns_to_the_list_with_the_row_unread(
    browsers: Browsers, ats: Ats
) -> None:
    """The button, what the page does, and what the server keeps
    (`POST /api/conversations/{id}/unread`): the row is still unread after
    a reload."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    candidate = browsers.open(ats.candidate_link(cara.id))
    ats.staff_says(alice, cara.conversation, "Hello")
    candidate.get_by_test_id("composer").fill("Is there parking?")
    candidate.get_by_test_id("composer").press("Enter")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).click()
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_count(0)

    requests: list[dict[str, str]] = []

    def unread(route: Route) -> None:
        requests.append({"method": route.request.method, **route.request.headers})
        route.continue_()

    inbox.route(f"**/api/conversations/{cara.conversation}/unread", unread)
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("mark-unread").click()
    expect(inbox).to_have_url(f"{ats.server.url}/inbox")
    expect(inbox.locator('[data-testid="composer"]')).to_have_count(0)
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_text("1")
    expect(item(inbox, cara.conversation)).to_be_focused()
    assert [(r["method"], r["x-csrf-token"]) for r in requests] == [
        ("POST", inbox.evaluate("document.body.dataset.csrf"))
    ]
    inbox.reload()
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_text("1")


def test_mark_as_unread_with_nothing_from_the_candidate_shows_no_badge(
    browsers: Browsers, ats: Ats
) -> None:
    """Only a candidate's message counts as unread: with none, marking
    changes nothing, and the row does not pretend otherwise."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Hello")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).click()
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("mark-unread").click()
    expect(item(inbox, cara.conversation)).to_be_focused()
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_count(0)
    inbox.reload()
    expect(item(inbox, cara.conversation)).to_contain_text("You: Hello")
    expect(item(inbox, cara.conversation).get_by_test_id("unread-badge")).to_have_count(0)


def test_a_refused_mark_as_unread_says_why_and_keeps_the_conversation(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    item(inbox, cara.conversation).click()
    inbox.route(
        f"**/api/conversations/{cara.conversation}/unread",
        lambda route: route.fulfill(
            status=503,
            json={"error": {"code": "unavailable", "message": "Try again in a moment."}},
        ),
    )
    inbox.get_by_test_id("conversation-menu").click()
    inbox.get_by_test_id("mark-unread").click()
    expect(inbox.get_by_role("alert")).to_have_text(
        "Couldn't mark it as unread: Try again in a moment."
    )
    expect(inbox).to_have_url(f"{ats.server.url}/c/{cara.conversation}")


@pytest.mark.parametrize("size", SIZES)
def test_empty_states_sit_under_the_filters_and_in_the_middle(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    alice = ats.staff("Alice Recruiter", org="empty")
    inbox = browsers.open(ats.staff_link(alice), **SIZES[size])  # type: ignore[arg-type]
    empty = inbox.locator("#inbox-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("No conversations yet")
    head = inbox.locator(".inbox-head").bounding_box()
    box = empty.bounding_box()
    assert head is not None
    assert box is not None
    assert box["y"] - (head["y"] + head["height"]) < 80, (head, box)

    cara = ats.application("cara", "Cara Candidate", org="empty")
    inbox.goto(f"{ats.server.url}/c/{cara.conversation}")
    hint = inbox.locator('[data-role="empty"]')
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("No messages yet")
    timeline = inbox.locator('[data-role="timeline"]').bounding_box()
    box = hint.bounding_box()
    assert timeline is not None
    assert box is not None
    centre = box["y"] + box["height"] / 2
    assert abs(centre - (timeline["y"] + timeline["height"] / 2)) < timeline["height"] / 4


def test_an_application_given_to_another_candidate_renames_the_header_and_rows_live(
    browsers: Browsers, ats: Ats
) -> None:
    """The host gives Mia's application to Nina while Alice has it open,
    and Dan's (not open) to Dina: the header and both rows name the new
    candidates without a reload, so nobody writes "Hi Mia" to Nina."""
    alice = ats.staff("Alice Recruiter")
    mia = ats.application("mia", "Mia Moved")
    dan = ats.application("dan", "Dan Jones", job="Science Technician")
    staff = browsers.staff_at(ats, alice, mia)
    title = staff.locator('.conversation [data-field="title"]')
    expect(title).to_have_text("Mia Moved")
    expect(item(staff, mia.conversation)).to_contain_text("Mia Moved")
    expect(item(staff, dan.conversation)).to_contain_text("Dan Jones")

    ats.application("mia", "Nina New")
    expect(title).to_have_text("Nina New")
    expect(item(staff, mia.conversation)).to_contain_text("Nina New")
    expect(item(staff, mia.conversation)).not_to_contain_text("Mia")

    ats.application("dan", "Dina Other", job="Science Technician")
    expect(item(staff, dan.conversation)).to_contain_text("Dina Other")
    expect(item(staff, dan.conversation)).not_to_contain_text("Dan Jones")
    expect(title).to_have_text("Nina New")
