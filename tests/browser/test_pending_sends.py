"""Pending sends are matched to their messages by client_id, never by text.

Playwright's WebSocket routing sits between the page and the real server,
so a test can hold back an ack until the message frame has passed (the
order a busy server may produce), refuse one send as the server would, or
drop the socket between a stored send and its ack. Everything else passes
through untouched. Routing the history request the same way holds a
conversation's opening until a send made meanwhile has been acknowledged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, Route, WebSocketRoute, expect

from tests.browser.conftest import Ats, Browsers, seqs

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
Frame = dict[str, Any]


def send(page: Page, text: str) -> None:
    """With the Send button: Enter starts a new line on a phone."""
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("send").click()


class Relay:
    """The page's WebSockets, relayed to the server frame by frame.

    `to_server(frame, link)` and `to_page(frame, link)` return whether to pass
    the frame on; they may send other frames themselves through `link`.
    """

    def __init__(self, page: Page) -> None:
        self.links: list[Link] = []
        self.to_server: Callable[[Frame, Link], bool] = lambda frame, link: True
        self.to_page: Callable[[Frame, Link], bool] = lambda frame, link: True
        page.route_web_socket("**/ws", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        self.links.append(Link(self, ws))

    def sends(self) -> list[Frame]:
        """Every send frame the page wrote, over all its sockets, in order."""
        return [f for link in self.links for f in link.from_page if f["type"] == "send"]


class Link:
    """One of the page's sockets, with what went each way."""

    def __init__(self, relay: Relay, ws: WebSocketRoute) -> None:
        self.relay = relay
        self.ws = ws
        self.server = ws.connect_to_server()
        self.from_page: list[Frame] = []
        self.from_server: list[Frame] = []
        ws.on_message(self._from_page)
        self.server.on_message(self._from_server)

    def _from_page(self, data: str | bytes) -> None:
        frame = json.loads(data)
        self.from_page.append(frame)
        if self.relay.to_server(frame, self):
            self.server.send(data)

    def _from_server(self, data: str | bytes) -> None:
        frame = json.loads(data)
        self.from_server.append(frame)
        if self.relay.to_page(frame, self):
            self.ws.send(data)

    def to_page(self, frame: Frame) -> None:
        self.ws.send(json.dumps(frame))


def staff_in_conversation(browsers: Browsers, ats: Ats) -> tuple[Page, Relay, Page]:
    """Alice's page on the conversation, its sockets relayed; Cara's page."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.open(ats.staff_link(alice))
    relay = Relay(staff)
    staff.goto(f"{ats.server.url}/c/{app.conversation}")
    expect(staff.get_by_test_id("composer")).to_be_enabled()
    candidate = browsers.open(ats.candidate_link(app.id))
    return staff, relay, candidate


def client_ids_by_seq(page: Page) -> dict[int, str]:
    pairs = page.locator(MESSAGE).evaluate_all(
        "els => els.map(e => [Number(e.dataset.seq), e.dataset.clientId || null])"
    )
    return {int(seq): client_id for seq, client_id in pairs}


def test_identical_texts_are_confirmed_each_by_its_own_ack(browsers: Browsers, ats: Ats) -> None:
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    # Acks are held until both messages have passed, then come in reverse.
    held: list[tuple[Frame, Link]] = []

    def to_page(frame: Frame, link: Link) -> bool:
        if frame["type"] != "ack":
            return True
        held.append((frame, link))
        if len(held) == 2:
            for ack, via in reversed(held):
                via.to_page(ack)
        return False

    relay.to_page = to_page
    send(staff, "See you at nine")
    send(staff, "See you at nine")

    for page in (staff, candidate):
        expect(page.locator(MESSAGE, has_text="See you at nine")).to_have_count(2)
    expect(staff.locator(".msg.pending")).to_have_count(0)
    first, second = (f["client_id"] for f in relay.sends())
    assert first != second
    # The first bubble became the first message, the second the second.
    assert client_ids_by_seq(staff) == {1: first, 2: second}
    assert [ack["client_id"] for ack, _ in held] == [first, second]


def test_a_refused_send_keeps_its_bubble_when_the_same_text_goes_through(
    browsers: Browsers, ats: Ats
) -> None:
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    refused: list[str] = []

    def to_server(frame: Frame, link: Link) -> bool:
        if frame["type"] == "send" and not refused:
            # Refused as the server refuses a send it cannot take.
            refused.append(frame["client_id"])
            link.to_page(
                {
                    "type": "error",
                    "code": "invalid",
                    "message": "Not today.",
                    "client_id": frame["client_id"],
                }
            )
            return False
        return True

    # The message frame of the second send reaches the page before its ack:
    # the server may send the sender its own copy, and the relay plays
    # that order (the copy made from the ack, as the server would send it).
    passed: list[int] = []

    def to_page(frame: Frame, link: Link) -> bool:
        if frame["type"] == "ack":
            passed.append(frame["message"]["seq"])
            link.to_page({"type": "message", "message": frame["message"]})
            link.to_page(frame)
            return False
        return True

    relay.to_server = to_server
    relay.to_page = to_page
    send(staff, "Parking is free")
    failed = staff.locator(".msg.failed")
    expect(failed).to_contain_text("Not sent: Not today.")
    send(staff, "Parking is free")

    confirmed = staff.locator(MESSAGE, has_text="Parking is free")
    expect(confirmed).to_have_count(1)
    expect(staff.locator(".msg.pending")).to_have_count(0)
    # The refused bubble is still the refused send, with its Retry.
    expect(failed).to_have_count(1)
    assert failed.get_attribute("data-client-id") == refused[0]
    second = relay.sends()[1]["client_id"]
    assert client_ids_by_seq(staff) == {1: second}
    assert passed == [1], "the message frame did not come before its ack"

    failed.get_by_role("button", name="Retry").click()
    expect(staff.locator(".msg.failed")).to_have_count(0)
    for page in (staff, candidate):
        expect(page.locator(MESSAGE, has_text="Parking is free")).to_have_count(2)
    assert client_ids_by_seq(staff) == {1: second, 2: refused[0]}


def test_a_send_retried_after_a_reconnect_shows_once(browsers: Browsers, ats: Ats) -> None:
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    dropped: list[Frame] = []

    def to_page(frame: Frame, link: Link) -> bool:
        if link is not relay.links[0]:
            return True
        if frame["type"] == "message":
            return False
        if frame["type"] == "ack":
            # Stored, but the page hears nothing before its socket drops.
            dropped.append(frame)
            link.ws.close()
            return False
        return True

    relay.to_page = to_page
    send(staff, "Only once, please")

    for page in (staff, candidate):
        expect(page.locator(MESSAGE, has_text="Only once, please")).to_have_count(1)
    expect(staff.locator(".msg.pending")).to_have_count(0)
    assert len(dropped) == 1
    assert len(relay.links) >= 2
    # The same send went again on the new socket, with its client_id.
    first, *again = relay.sends()
    assert first["client_id"] == dropped[0]["client_id"]
    assert again, "the send was not retried"
    assert {f["client_id"] for f in again} == {first["client_id"]}
    assert client_ids_by_seq(staff) == {1: first["client_id"]}


def test_a_pending_send_is_still_shown_after_switching_conversations(
    browsers: Browsers, ats: Ats
) -> None:
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Jones")
    inbox = browsers.open(ats.staff_link(alice))
    relay = Relay(inbox)
    holding = [True]

    def to_server(frame: Frame, link: Link) -> bool:
        return not (holding[0] and frame["type"] == "send")

    relay.to_server = to_server
    inbox.reload()
    row = inbox.locator(f'[data-conversation="{cara.conversation}"]')
    row.click()
    send(inbox, "Still on its way")
    pending = inbox.locator(".msg.pending", has_text="Still on its way")
    expect(pending).to_contain_text("Sending…")

    inbox.locator(f'[data-conversation="{dan.conversation}"]').click()
    expect(inbox.locator('#conversation-pane [data-field="title"]')).to_have_text("Dan Jones")
    expect(pending).to_have_count(0)
    row.click()
    expect(inbox.locator('#conversation-pane [data-field="title"]')).to_have_text("Cara Candidate")
    # socket.js still holds the send: the conversation shows it again.
    expect(pending).to_have_count(1)

    holding[0] = False
    relay.links[-1].ws.close()
    expect(inbox.locator(MESSAGE, has_text="Still on its way")).to_have_count(1)
    expect(inbox.locator(".msg.pending")).to_have_count(0)
    candidate = browsers.open(ats.candidate_link(cara.id))
    expect(candidate.locator(MESSAGE, has_text="Still on its way")).to_have_count(1)
    assert len({f["client_id"] for f in relay.sends()}) == 1


@pytest.mark.parametrize("who", ["staff", "candidate"])
def test_a_send_acknowledged_before_the_history_arrives_shows_once(
    browsers: Browsers, ats: Ats, who: str
) -> None:
    """Sending while the conversation opens: the ack comes before the
    history, and a colleague's message came between the history's read and
    the send. The bubble becomes the message, and nothing is missed."""
    alice = ats.staff("Alice Recruiter")
    bob = ats.staff("Bob Head")
    app = ats.application("app", "Cara Candidate")
    ats.staff_says(bob, app.conversation, "Hello from Bob")
    if who == "staff":
        page = browsers.open(ats.staff_link(alice), width=390, height=844, mobile=True)
    else:
        page = browsers.open(ats.candidate_link(app.id))
        # Its history is in before the next one is held.
        expect(page.locator(MESSAGE)).to_have_count(1)
    held: list[Route] = []

    def history(route: Route) -> None:
        if route.request.method == "GET":
            held.append(route)
        else:
            route.continue_()

    page.route(re.compile(rf".*/api/conversations/{app.conversation}/messages\?.*"), history)
    if who == "staff":
        page.locator(f'[data-conversation="{app.conversation}"]').click()
    else:
        page.reload()
    expect(page.get_by_test_id("composer")).to_be_enabled()
    # The history is held, and answered below as if read before this.
    ats.staff_says(bob, app.conversation, "Are you there?")
    page.evaluate(
        """async () => {
            window.chatConnection = (await import("/static/js/socket.js")).connection;
        }"""
    )
    send(page, "Hello from me")
    # Its bubble (pending, or the message already) keeps its client_id.
    expect(page.locator(".msg[data-client-id]", has_text="Hello from me")).to_have_count(1)
    page.wait_for_function("() => window.chatConnection.sends.size === 0")
    assert len(held) == 1, "the history did not wait for the ack"

    response = held[0].fetch()
    stored = response.json()
    assert [m["seq"] for m in stored["messages"]] == [1, 2, 3]
    stored["messages"] = stored["messages"][:1]
    held[0].fulfill(response=response, body=json.dumps(stored))

    texts = ["Hello from Bob", "Are you there?", "Hello from me"]
    expect(page.locator(MESSAGE)).to_have_text([re.compile(t) for t in texts])
    expect(page.locator(".msg:not([data-seq])")).to_have_count(0)
    expect(page.locator(".msg.ours")).to_have_count(3 if who == "staff" else 1)


def test_a_page_resumes_after_its_own_acked_message(browsers: Browsers, ats: Ats) -> None:
    """The server leaves out the sender's own `message` copy when the ack
    is the next seq the socket lacks: the page counts the ack as having
    that message, and resubscribes after it."""
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    send(staff, "Counted by its ack")
    expect(candidate.locator(MESSAGE, has_text="Counted by its ack")).to_be_visible()
    expect(staff.locator(".msg.pending")).to_have_count(0)
    first = relay.links[0]
    assert [f["type"] for f in first.from_server if f["type"] in ("ack", "message")] == ["ack"]

    first.ws.close()
    send(candidate, "Heard after the reconnect")
    expect(staff.locator(MESSAGE, has_text="Heard after the reconnect")).to_be_visible()
    resubscribed = [
        f for link in relay.links[1:] for f in link.from_page if f["type"] == "subscribe"
    ]
    assert resubscribed, "the page did not subscribe again"
    assert resubscribed[0]["after"] == 1
    assert seqs(staff) == [1, 2]


OUTBOX_KEYS = "Object.keys(localStorage).filter(k => k.startsWith('chatserver.outbox/'))"


@pytest.mark.parametrize("lost", ["the send", "its ack"])
def test_a_send_whose_page_closed_before_its_ack_goes_from_the_next_page(
    browsers: Browsers, ats: Ats, lost: str
) -> None:
    """The tab is closed while a send waits for its ack, either because the
    send never reached the server or because the ack never came back. The
    next page the person opens sends it again with its client_id: stored
    once either way."""
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    conversation = staff.url
    if lost == "the send":
        relay.to_server = lambda frame, link: frame["type"] != "send"
    else:
        relay.to_page = lambda frame, link: frame["type"] != "ack"
    send(staff, "Sent as the lid closed")
    expect(staff.locator(".msg.pending", has_text="Sent as the lid closed")).to_be_visible()
    [first] = relay.sends()

    later = staff.context.new_page()
    staff.close()
    again = Relay(later)
    later.goto(conversation)
    expect(later.locator(MESSAGE, has_text="Sent as the lid closed")).to_have_count(1)
    expect(later.locator(".msg:not([data-seq])")).to_have_count(0)
    later.wait_for_function(f"() => {OUTBOX_KEYS}.length === 0")
    assert {f["client_id"] for f in again.sends()} == {first["client_id"]}
    expect(candidate.locator(MESSAGE, has_text="Sent as the lid closed")).to_have_count(1)
    candidate.reload()
    expect(candidate.locator(MESSAGE)).to_have_count(1)


def test_a_send_kept_from_a_page_closed_long_ago_waits_for_retry_or_discard(
    browsers: Browsers, ats: Ats
) -> None:
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    conversation = staff.url
    relay.to_server = lambda frame, link: frame["type"] != "send"
    send(staff, "Written yesterday")
    send(staff, "Also yesterday")
    send(staff, "Written last month")
    expect(staff.locator(".msg.pending")).to_have_count(3)
    staff.goto(f"{ats.server.url}/healthz")
    staff.evaluate(
        f"""() => {{
            for (const key of {OUTBOX_KEYS}) {{
                const kept = JSON.parse(localStorage.getItem(key));
                const month = kept.body === "Written last month";
                kept.createdAt -= month ? 31 * 24 * 3600 * 1000 : 2 * 3600 * 1000;
                localStorage.setItem(key, JSON.stringify(kept));
            }}
        }}"""
    )
    relay.to_server = lambda frame, link: True
    sent_before = len(relay.sends())
    staff.goto(conversation)
    yesterday = staff.locator(".msg.failed", has_text="Written yesterday")
    expect(yesterday).to_contain_text("the page was closed")
    expect(staff.locator(".msg.failed")).to_have_count(2)
    # Untouched for over 30 days, it is forgotten, as a draft would be.
    expect(staff.locator(".msg", has_text="Written last month")).to_have_count(0)
    assert len(relay.sends()) == sent_before, "a send kept that long went by itself"

    yesterday.get_by_role("button", name="Retry").click()
    expect(staff.locator(MESSAGE, has_text="Written yesterday")).to_have_count(1)
    staff.locator(".msg.failed", has_text="Also yesterday").get_by_role(
        "button", name="Discard"
    ).click()
    expect(staff.locator(".msg:not([data-seq])")).to_have_count(0)
    staff.wait_for_function(f"() => {OUTBOX_KEYS}.length === 0")
    staff.reload()
    expect(staff.locator(MESSAGE)).to_have_text([re.compile("Written yesterday")])
    expect(staff.locator(".msg:not([data-seq])")).to_have_count(0)
    expect(candidate.locator(MESSAGE)).to_have_text([re.compile("Written yesterday")])


def test_sends_kept_for_a_person_whose_id_extends_yours_are_not_yours(
    browsers: Browsers, ats: Ats
) -> None:
    """Ids may hold dots: the sends kept for staff "ann.lee" in a shared
    browser are not sent when staff "ann" opens a page."""
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    conversation = staff.url
    me = staff.evaluate("document.body.dataset.me")
    relay.to_server = lambda frame, link: frame["type"] != "send"
    send(staff, "Kept for someone else")
    expect(staff.locator(".msg.pending")).to_have_count(1)
    staff.goto(f"{ats.server.url}/healthz")
    staff.evaluate(
        f"""me => {{
            for (const key of {OUTBOX_KEYS}) {{
                const theirs = key.replace(`staff:${{me}}`, `staff:${{me}}.lee`);
                localStorage.setItem(theirs, localStorage.getItem(key));
                localStorage.removeItem(key);
            }}
        }}""",
        me,
    )
    relay.to_server = lambda frame, link: True
    staff.goto(conversation)
    send(staff, "Mine")
    expect(candidate.locator(MESSAGE, has_text="Mine")).to_be_visible()
    assert [f["body"] for f in relay.sends()] == ["Kept for someone else", "Mine"]
    expect(candidate.locator(MESSAGE)).to_have_count(1)


def test_damaged_kept_sends_are_dropped_and_the_page_works(browsers: Browsers, ats: Ats) -> None:
    staff, relay, candidate = staff_in_conversation(browsers, ats)
    conversation = staff.url.rsplit("/", 1)[-1]
    staff.evaluate(
        """async conversation => {
            const { keyOf } = await import("/static/js/local-store.js");
            const send = { clientId: "x", conversation, body: "Damaged", createdAt: Date.now() };
            const damaged = [
                { ...send, files: [null] },
                { ...send, files: [{ name: "no id" }] },
                { ...send, files: [], failed: "refused" },
                { ...send, files: [], createdAt: "today" },
                "not a send",
            ];
            damaged.forEach((value, i) => {
                localStorage.setItem(keyOf("outbox", `bad-${i}`), JSON.stringify(value));
            });
            localStorage.setItem(keyOf("outbox", "unparsable"), "{");
        }""",
        conversation,
    )
    staff.reload()
    send(staff, "Sent after the damage")
    expect(candidate.locator(MESSAGE, has_text="Sent after the damage")).to_be_visible()
    staff.wait_for_function(f"() => {OUTBOX_KEYS}.length === 0")
    expect(staff.locator(".msg:not([data-seq])")).to_have_count(0)
    assert [f["body"] for f in relay.sends()] == ["Sent after the damage"]
