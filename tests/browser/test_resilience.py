"""SPEC 3 and 6 from the browser's side: a crashed and restarted server is
survived with no lost and no doubled message; the page shows a connection
banner meanwhile and keeps unacknowledged sends visibly pending. And the
production path (PostgreSQL, Redis, two workers) carries a live chat."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Ats, Browsers, Server, seqs

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'


def send(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")


def stored_bodies(ats: Ats, application_id: str) -> list[str]:
    """What the database holds, read as the candidate over the session API."""
    with httpx.Client(base_url=ats.server.url) as client:
        client.get(ats.candidate_link(application_id), follow_redirects=True)
        history = client.get(f"/api/conversations/{_conversation(client)}/messages").json()
    return [m["body"] for m in history["messages"]]


def _conversation(client: httpx.Client) -> str:
    return str(client.get("/api/conversations").json()["conversations"][0]["id"])


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    # Room for a colleague's long conversation written at once.
    s = Server(tmp_path / "restart", {"CHAT_SEND_BURST": "100"})
    s.start()
    yield s
    s.stop()


def test_a_restarted_server_loses_and_doubles_nothing(
    browsers: Browsers, own_server: Server
) -> None:
    ats = Ats(own_server)
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.open(ats.staff_link(alice))
    staff.goto(f"{own_server.url}/c/{app.conversation}")
    candidate = browsers.open(ats.candidate_link(app.id))
    send(staff, "Before the crash")
    expect(candidate.locator(MESSAGE, has_text="Before the crash")).to_be_visible()

    # Sent as the server dies: it may or may not have been stored.
    send(candidate, "Racing the crash")
    own_server.kill()
    send(candidate, "Written while the server is down")
    pending = candidate.locator(".msg.pending", has_text="while the server is down")
    expect(pending).to_contain_text("Sending…")
    expect(candidate.locator("#conn-banner")).to_be_visible()
    expect(staff.locator("#conn-banner")).to_contain_text("Reconnecting")

    own_server.start()
    for page in (staff, candidate):
        expect(page.locator(MESSAGE, has_text="while the server is down")).to_have_count(1)
        expect(page.locator(MESSAGE, has_text="Racing the crash")).to_have_count(1)
        expect(page.locator("#conn-banner")).to_be_hidden()
    expect(candidate.locator(".msg.pending")).to_have_count(0)

    send(staff, "After the restart")
    expect(candidate.locator(MESSAGE, has_text="After the restart")).to_be_visible()
    assert seqs(staff) == seqs(candidate) == [1, 2, 3, 4]
    assert sorted(stored_bodies(ats, app.id)) == sorted(
        [
            "Before the crash",
            "Racing the crash",
            "Written while the server is down",
            "After the restart",
        ]
    )


def test_what_failed_to_load_while_the_server_was_down_is_asked_again(
    browsers: Browsers, own_server: Server
) -> None:
    """A filter chosen, the inbox scrolled or the history scrolled up while
    the server is out of reach: nothing of another filter is left on
    screen, and each comes once the server is back, without scrolling."""
    ats = Ats(own_server)
    alice = ats.staff("Alice Recruiter")
    apps = [ats.application(f"app{n}", f"Candidate {n:02d}") for n in range(53)]
    long_one = apps[-1]
    ats.staff_says(alice, long_one.conversation, *(f"Note {n}" for n in range(1, 56)))
    inbox = browsers.open(ats.staff_link(alice))
    rows = inbox.locator('[data-testid="inbox-item"]')
    expect(rows).to_have_count(50)

    own_server.kill()
    inbox.get_by_test_id("filter-archived").click()
    expect(inbox.get_by_text("Couldn't load conversations")).to_be_visible()
    expect(rows).to_have_count(0)
    own_server.start()
    expect(inbox.get_by_text("Nothing archived")).to_be_visible()

    def scrolled_while_down(selector: str, script: str) -> None:
        own_server.kill()
        inbox.locator(selector).evaluate(script)
        expect(inbox.locator("#conn-banner")).to_be_visible()
        own_server.start()

    inbox.get_by_test_id("filter-all").click()
    expect(rows).to_have_count(50)
    scrolled_while_down("#inbox-list", "list => list.scrollTop = list.scrollHeight")
    expect(rows).to_have_count(53)

    inbox.goto(f"{own_server.url}/c/{long_one.conversation}")
    messages = inbox.locator(MESSAGE)
    expect(messages).to_have_count(50)
    scrolled_while_down('[data-role="timeline"]', "t => t.scrollTop = 0")
    expect(messages).to_have_count(55)
    expect(messages.first).to_contain_text("Note 1")


@pytest.fixture
def production_server(tmp_path: Path, postgres_db: str, redis_available: str) -> Iterator[Server]:
    s = Server(
        tmp_path / "production",
        {
            "DATABASE_URL": postgres_db,
            "REDIS_URL": redis_available,
            "CHAT_REDIS_PREFIX": f"browser-{uuid.uuid4().hex[:10]}:",
            "WEB_CONCURRENCY": "2",
        },
    )
    s.start()
    yield s
    s.stop()


def test_live_chat_on_postgresql_and_redis_with_two_workers(
    browsers: Browsers, production_server: Server
) -> None:
    ats = Ats(production_server)
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    candidate = browsers.open(ats.candidate_link(app.id))
    # Each page has its own socket; with two workers some land on each.
    for n in range(3):
        send(candidate, f"Question {n}")
        expect(inbox.locator(f'[data-conversation="{app.conversation}"]')).to_contain_text(
            f"Question {n}"
        )
    expect(inbox.get_by_test_id("unread-badge")).to_have_text("3")
    inbox.locator(f'[data-conversation="{app.conversation}"]').click()
    send(inbox, "Answers below")
    expect(candidate.locator(MESSAGE, has_text="Answers below")).to_be_visible()
    assert seqs(candidate) == [1, 2, 3, 4]


BACKOFF_SAMPLES = """async () => {
  const { connection } = await import("/static/js/socket.js");
  const saved = { attempt: connection.attempt, downSince: connection.downSince };
  const sample = (downForMs) => {
    const delays = [];
    for (let attempt = 0; attempt < 24; attempt += 1) {
      connection.attempt = attempt;
      connection.downSince = Date.now() - downForMs;
      for (let i = 0; i < 50; i += 1) delays.push([attempt, connection.backoffDelay()]);
    }
    return delays;
  };
  const result = { quick: sample(0), slow: sample(10 * 60 * 1000) };
  Object.assign(connection, saved);
  return result;
}"""


def test_reconnect_delays_start_short_and_stay_capped(browsers: Browsers, ats: Ats) -> None:
    alice = ats.staff("Alice Recruiter")
    page = browsers.open(ats.staff_link(alice))
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    delays = page.evaluate(BACKOFF_SAMPLES)
    quick = delays["quick"]
    # The first retry comes within a quarter second, never at the same instant for all.
    first = [d for attempt, d in quick if attempt == 0]
    assert all(125 <= d <= 250 for d in first), first
    assert len({round(d) for d in first}) > 1, "no jitter"
    # Early in an outage no wait is longer than 2 s, so a server that answers
    # again is found within about 2 s.
    assert max(d for _, d in quick) <= 2000
    assert min(d for attempt, d in quick if attempt >= 3) >= 1000
    # A long outage backs off further, still capped.
    slow = [d for attempt, d in delays["slow"] if attempt >= 10]
    assert 2000 < max(slow) <= 15000
    assert min(slow) >= 7500


CONNECT_TIMEOUTS = """async () => {
  const { connectTimeout } = await import("/static/js/backoff.js");
  const { connection } = await import("/static/js/socket.js");
  if (!connection.isOpen()) {
    await new Promise((resolve) => connection.on("state", (s) => s === "open" && resolve()));
  }
  const timeouts = [0, 1, 2, 3, 4, 40].map((n) => connectTimeout(n));
  return { timeouts, inRow: connection.timeoutsInRow, open: connection.isOpen() };
}"""


def test_connect_timeouts_grow_with_each_timeout_in_a_row(browsers: Browsers, ats: Ats) -> None:
    """A handshake abandoned pending waits longer next time (5, 10, 20, then
    30 s), so a crowd of reconnects does not keep re-queueing at a busy
    server; an open socket starts afresh."""
    alice = ats.staff("Alice Recruiter")
    page = browsers.open(ats.staff_link(alice))
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.wait_for_function("async () => (await import('/static/js/socket.js')).connection.isOpen()")
    found = page.evaluate(CONNECT_TIMEOUTS)
    assert found["timeouts"] == [5000, 10000, 20000, 30000, 30000, 30000]
    assert found["open"] is True
    assert found["inRow"] == 0


# Puts the page's next retry ten minutes away, as after a long outage.
FAR_RETRY = """async () => {
  const { connection } = await import("/static/js/socket.js");
  connection.backoffDelay = () => 10 * 60 * 1000;
  connection.scheduleReconnect();
}"""


@pytest.mark.parametrize(
    "event",
    [
        "window.dispatchEvent(new Event('online'))",
        "document.dispatchEvent(new Event('visibilitychange'))",
    ],
    ids=["online", "visible"],
)
def test_coming_online_or_into_view_reconnects_at_once(
    browsers: Browsers, own_server: Server, event: str
) -> None:
    ats = Ats(own_server)
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.open(ats.staff_link(alice))
    staff.goto(f"{own_server.url}/c/{app.conversation}")
    expect(staff.get_by_test_id("composer")).to_be_enabled()

    own_server.kill()
    banner = staff.locator("#conn-banner")
    expect(banner).to_be_visible()
    staff.evaluate(FAR_RETRY)
    own_server.start()
    staff.evaluate(event)
    expect(banner).to_be_hidden()
    send(staff, "Back again")
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(candidate.locator(MESSAGE, has_text="Back again")).to_be_visible()


def test_going_offline_says_so_at_once_and_sends_once_back_online(
    browsers: Browsers, ats: Ats
) -> None:
    """Offline, an open socket neither closes nor carries frames: the page
    gives it up rather than wait for a close that does not come."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app)
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(staff.get_by_test_id("composer")).to_be_enabled()

    staff.context.set_offline(True)
    banner = staff.locator("#conn-banner")
    expect(banner).to_have_text(re.compile("You're offline. Messages will be sent when"))
    send(staff, "Written offline")
    expect(staff.locator(".msg.pending", has_text="Written offline")).to_contain_text("Sending…")

    staff.context.set_offline(False)
    expect(banner).to_be_hidden()
    expect(candidate.locator(MESSAGE, has_text="Written offline")).to_have_count(1)
    send(staff, "And online")
    expect(candidate.locator(MESSAGE)).to_have_text(
        [re.compile("Written offline"), re.compile("And online")]
    )
    expect(staff.locator(".msg.pending")).to_have_count(0)


def test_a_removed_staff_members_composer_turns_off_and_says_why(
    browsers: Browsers, ats: Ats
) -> None:
    """The host removes a recruiter with the conversation open: the page
    says the session ended and nothing more can be typed or sent there."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, cara)
    composer = staff.get_by_test_id("composer")
    expect(composer).to_be_enabled()
    ats.remove_staff(alice)
    expect(staff.locator("#conn-banner")).to_contain_text("Your session has ended")
    expect(composer).to_be_disabled()
    expect(staff.get_by_test_id("send")).to_be_disabled()
    expect(staff.get_by_test_id("send-disabled-reason")).to_have_text(
        "Your session has ended. Open your link again to continue."
    )


def test_opening_another_conversation_after_removal_says_the_session_ended(
    browsers: Browsers, ats: Ats
) -> None:
    """Removed by the host, a recruiter who clicks another inbox row is told
    the session ended, not that the server did not answer, and is not
    offered to try again: it cannot help."""
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    dan = ats.application("dan", "Dan Candidate")
    staff = browsers.staff_at(ats, alice, cara)
    expect(staff.get_by_test_id("composer")).to_be_enabled()
    ats.remove_staff(alice)
    expect(staff.locator("#conn-banner")).to_contain_text("Your session has ended")
    staff.locator(f'[data-conversation="{dan.conversation}"]').first.click()
    error = staff.get_by_test_id("pane-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Your session has ended. Open your link again to continue.")
    expect(error).not_to_contain_text("The server didn't answer")
    expect(error.get_by_role("button", name="Try again")).to_be_hidden()


def test_a_conversation_given_to_another_candidate_says_it_is_no_longer_available(
    browsers: Browsers, ats: Ats
) -> None:
    """The host gives Mia's application to Nina while Mia has it open,
    with a message still on its way: her page drops the history, turns
    the composer off with the reason, and neither sends nor offers to
    retry anything."""
    alice = ats.staff("Alice Recruiter")
    app = ats.application("given", "Mia Moved")
    ats.staff_says(alice, app.conversation, "Hello Mia")
    mia = browsers.open(ats.candidate_link(app.id))
    expect(mia.locator(MESSAGE, has_text="Hello Mia")).to_be_visible()
    composer = mia.get_by_test_id("composer")
    expect(composer).to_be_enabled()

    mia.context.set_offline(True)
    send(mia, "Written before the move")
    expect(mia.locator(".msg.pending", has_text="Written before the move")).to_be_visible()
    ats.application("given", "Nina New")
    mia.context.set_offline(False)

    gone = "This conversation is no longer available to you."
    expect(mia.get_by_text(gone).first).to_be_visible()
    expect(composer).to_be_disabled()
    expect(mia.get_by_test_id("send")).to_be_disabled()
    expect(mia.get_by_test_id("send-disabled-reason")).to_have_text(gone)
    expect(mia.locator(MESSAGE, has_text="Hello Mia")).to_be_hidden()
    expect(mia.locator(".msg.pending")).to_have_count(0)
    mia.wait_for_timeout(1500)
    expect(mia.get_by_text("Not sent")).to_have_count(0)
    expect(mia.get_by_role("button", name="Retry", exact=True)).to_have_count(0)
    with httpx.Client(base_url=ats.server.url, timeout=10) as client:
        client.get(ats.staff_link(alice), follow_redirects=True)
        history = client.get(f"/api/conversations/{app.conversation}/messages").json()
    assert [m["body"] for m in history["messages"]] == ["Hello Mia"]


def test_a_list_refused_while_the_socket_stays_up_is_asked_again(
    browsers: Browsers, ats: Ats
) -> None:
    """The server answers a new filter's list with 503 (overloaded), the
    socket stays up: the page says so, then asks again by itself."""
    alice = ats.staff("Alice Recruiter")
    ats.application("cara", "Cara Candidate")
    inbox = browsers.open(ats.staff_link(alice))
    expect(inbox.locator('[data-testid="inbox-item"]')).to_have_count(1)
    refused: list[str] = []

    def once(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=503, json={"error": {"code": "unavailable", "message": "Try again soon."}}
        )

    inbox.route("**/api/conversations?*filter=archived*", once)
    inbox.get_by_test_id("filter-archived").click()
    expect(inbox.get_by_text("Couldn't load conversations")).to_be_visible()
    expect(inbox.get_by_text("Nothing archived")).to_be_visible()
    assert len(refused) == 1
