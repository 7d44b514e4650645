"""The inbox against a plain model, step by random step (issue 8 item 1).

Several staff and candidates of one organisation work on many conversations
(and another organisation works beside them, whose data must never show):
they send, read, mark as unread, delete for themselves and for everyone,
archive and unarchive, end and reopen, and the host changes statuses and
renames candidates; outsiders try things on conversations that are not
theirs. After every step, the listings of the staff and candidates in
`LISTED` (every filter with every sort, and that step's search with every
filter, each paged through `next` with a limit drawn for it) and every
`inbox` frame on the staff sockets that follow the inbox must equal what
the model below says, on both backends. Every answer (201, 204, 403, 404,
409) must be the one the model expects too.

The model is dicts and lists written from SPEC, not from the code: unread
counts the other side's messages after the reader's position that are
neither deleted for everyone nor deleted by the reader for themselves;
"messaged" is anything ever written; archive is per staff member and holds
only while the candidate has written nothing since (any message of theirs,
deleted or not; staff messages and system lines never bring it back); a
conversation's activity is its newest message's time, or the application's;
search folds case and accents (NFKD without combining marks, case-folded)
over candidate name, job title and the text of messages the viewer can
still read. Ending, reopening and a status change each write a system line
(sender kind `system`) that takes the next seq: the model expects each one,
checks it in history, and counts it as nobody's words (never unread, never
the preview, never activity, never "messaged", never searched). The app's
clock is the test's: step N happens at second N, so every order is exact.

The sequence is random but seeded (`INBOX_MODEL_SEED` picks another one);
a failure names the seed and the steps so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chatserver.app import create_app
from chatserver.chat import events
from chatserver.settings import Settings
from tests.helpers import AUTH, Host, Person, publish_about, sign_in_staff, signed_in
from tests.helpers import open_link as follow_link
from tests.ws_helpers import LiveServer, Socket, live_server, open_socket

SEED = int(os.environ.get("INBOX_MODEL_SEED", "20261123"))
STEPS = int(os.environ.get("INBOX_MODEL_STEPS", "24"))
FILTERS = ("all", "unread", "messaged", "archived")
SORTS = ("unread", "newest", "oldest")
# Each listing pages with one of these limits: small ones page a lot.
LIMITS = (4, 9, 50)
LIMIT_WEIGHTS = (1, 2, 6)
# Whose listings are checked after every step: two staff members of one
# organisation (each their own reads, hides and archive), the other
# organisation's, and the candidates with the interesting sessions (Chloé
# spans two organisations, Tom opened one of his three links). Carol and the
# other candidates only act.
LISTED = (
    ("staff", "alice"),
    ("staff", "bob"),
    ("staff", "mallory"),
    ("candidate", "chloe"),
    ("candidate", "tom"),
)
LISTED_STAFF = [person for kind, person in LISTED if kind == "staff"]
# Random operations before step 1 (answers checked, listings and frames not).
HISTORY = 60
# What a run must have gone through for its checks to mean something.
REACHED = {
    "unread",
    "archived",
    "ended",
    "reopened",
    "deleted",
    "hidden",
    "marked unread",
    "refused",
    "paged",
    "searched",
    "matched an older message",
    "other tenant",
    "system line",
    "reply unarchived",
}
# How long to wait for frames that are not coming (the end of the run).
QUIET_SECONDS = 0.5

ACME = ("acme", "Acme Academy")
GLOBEX = ("globex", "Globex School")
STAFF = {"alice": ACME, "bob": ACME, "carol": ACME, "mallory": GLOBEX}
STAFF_OF = {org: [s for s, o in STAFF.items() if o == org] for org in (ACME, GLOBEX)}
# Staff who follow the inbox, with how many sockets (Alice has two tabs).
SOCKETS = {"alice": 2, "bob": 1, "mallory": 1}
CANDIDATES = {
    "chloe": "Chloé Dubois",
    "zoe": "Zoë Müller",
    "jose": "José Núñez",
    "renee": "Renée O'Brien",
    "francois": "François Lefèvre",
    "bjorn": "Björn Ångström",
    "siobhan": "Siobhán Ní Bhriain",
    "noel": "Noël Großmann",
    "ana": "Ana Pérez",
    "tom": "Tom Smith",
}
RENAMES = ("Chloe Dubois-Martin", "ZOË MÜLLER", "Jose Nunez", "Renée Ó Briain")
JOBS = {
    "maths": "Teacher of Mathematics",
    "french": "Professeur de Français",
    "lab": "Técnico de Laboratório",
    "science": "Head of Science",
    "remote": "100% remote_IT lead",
    "globex-art": "Art Tutor (Café club)",
}
STATUSES = (
    "submitted",
    "shortlisted",
    "interviewing",
    "offered",
    "hired",
    "not_progressing",
    "withdrawn",
)
STATUS_LABELS = {status: status.replace("_", " ").capitalize() for status in STATUSES}
# Mostly statuses in which candidates may write, so they do.
STATUS_WEIGHTS = (2, 1, 4, 3, 2, 1, 1)
WORDS = (
    "Hello",
    "café",
    "CRÈME brûlée",
    "Chloé",
    "naïve",
    "résumé",
    "Straße",
    "interview",
    "**portfolio**",
    "100% sure",
    "under_score",
    "Zoë",
    "thanks",
    "Müller",
)
SEARCHES = (
    "chloe",
    "CHLOÉ",
    "muller",
    "MÜLLER",
    "nunez",
    "Briain",
    "francais",
    "LABORATORIO",
    "cafe",
    "Café",
    "resume",
    "strasse",
    "GROSSMANN",
    "100%",
    "e_i",
    "_score",
    "creme brulee",
    "portfolio",
    "interview",
    "zzz",
)


def model_fold(text: str) -> str:
    """Case and accents away, the plain way."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def line_words(event: dict[str, Any]) -> str:
    """A system line's sentence (docs/protocol.md)."""
    if event["type"] == "status_changed":
        before, after = (STATUS_LABELS[event[k]] for k in ("from", "to"))
        return f"Application status changed from {before} to {after}."
    return f"{event['by']['name']} {event['type']} the conversation."


def wire_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class StepClock:
    """The app's clock: moved by the test, one second per step."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(seconds=1)


# -- the model -------------------------------------------------------------------


@dataclass
class Conv:
    id: str
    application_id: str
    org: tuple[str, str]
    candidate: str
    job: str
    status: str
    applied_at: datetime
    state: str = "open"
    # Wire MESSAGEs as the sender's answer gave them (system lines as
    # history gave them), by seq - 1.
    messages: list[dict[str, Any]] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)  # message ids deleted for everyone

    @property
    def has_staff_message(self) -> bool:
        return any(m["sender"]["kind"] == "staff" for m in self.messages)

    @property
    def written(self) -> list[dict[str, Any]]:
        """What people wrote: the messages without the system lines."""
        return [m for m in self.messages if m["sender"]["kind"] != "system"]


Viewer = tuple[str, str]  # (kind, id)


@dataclass
class Model:
    names: dict[str, str]  # candidate id -> name
    convs: dict[str, Conv] = field(default_factory=dict)
    positions: dict[tuple[Viewer, str], int] = field(default_factory=dict)
    hidden: set[tuple[Viewer, str]] = field(default_factory=set)  # (viewer, message id)
    # (staff id, conversation) -> the conversation's last seq when archived
    archives: dict[tuple[str, str], int] = field(default_factory=dict)
    sessions: dict[str, list[str]] = field(default_factory=dict)  # candidate -> applications

    def visible_to(self, viewer: Viewer, conv: Conv) -> bool:
        kind, person = viewer
        if kind == "staff":
            return STAFF[person] == conv.org
        return conv.candidate == person and conv.application_id in self.sessions.get(person, [])

    def archived(self, staff_id: str, conv: Conv) -> bool:
        """Archived by this staff member, and the candidate has written
        nothing since."""
        seq = self.archives.get((staff_id, conv.id))
        return seq is not None and not any(
            m["sender"]["kind"] == "candidate" and m["seq"] > seq for m in conv.messages
        )

    def unread(self, viewer: Viewer, conv: Conv) -> int:
        other = "candidate" if viewer[0] == "staff" else "staff"
        position = self.positions.get((viewer, conv.id), 0)
        return sum(
            1
            for m in conv.messages
            if m["seq"] > position
            and m["sender"]["kind"] == other
            and m["id"] not in conv.deleted
            and (viewer, m["id"]) not in self.hidden
        )

    def newest_countable(self, viewer: Viewer, conv: Conv) -> int | None:
        """The seq of the newest message that would count as unread for this
        viewer were it after their position (what "mark as unread" brings back)."""
        other = "candidate" if viewer[0] == "staff" else "staff"
        seqs = [
            m["seq"]
            for m in conv.messages
            if m["sender"]["kind"] == other
            and m["id"] not in conv.deleted
            and (viewer, m["id"]) not in self.hidden
        ]
        return max(seqs, default=None)

    def last_message(self, viewer: Viewer, conv: Conv) -> dict[str, Any] | None:
        """The newest message this viewer has not deleted for themselves; one
        deleted for everyone is a placeholder; a system line never is."""
        for m in reversed(conv.written):
            if (viewer, m["id"]) in self.hidden:
                continue
            if m["id"] in conv.deleted:
                return {**m, "body": "", "html": "", "attachments": [], "deleted": True}
            return dict(m)
        return None

    def activity(self, conv: Conv) -> datetime:
        if conv.written:
            return datetime.fromisoformat(conv.written[-1]["created_at"])
        return conv.applied_at

    def matches(self, viewer: Viewer, conv: Conv, q: str) -> bool:
        folded = model_fold(q.strip())
        if not folded:
            return True
        texts = [self.names[conv.candidate], JOBS[conv.job]]
        texts += [
            m["body"]
            for m in conv.written
            if m["id"] not in conv.deleted and (viewer, m["id"]) not in self.hidden
        ]
        return any(folded in model_fold(text) for text in texts)

    def match(self, viewer: Viewer, conv: Conv, folded: str) -> dict[str, Any] | None:
        """The newest message this viewer can still read whose text has
        the search in it: why a search result matched (None: by its name
        or job)."""
        for m in reversed(conv.written):
            readable = m["id"] not in conv.deleted and (viewer, m["id"]) not in self.hidden
            if readable and folded in model_fold(m["body"]):
                return dict(m)
        return None

    def summary(self, viewer: Viewer, conv: Conv, q: str = "") -> dict[str, Any]:
        shown = {
            "id": conv.id,
            "application_id": conv.application_id,
            "candidate": {"id": conv.candidate, "name": self.names[conv.candidate]},
            "job": {"id": conv.job, "title": JOBS[conv.job]},
            "org": {"id": conv.org[0], "name": conv.org[1]},
            "status": conv.status,
            "applied_at": wire_time(conv.applied_at),
            "state": conv.state,
            "unread": self.unread(viewer, conv),
            "last_message": self.last_message(viewer, conv),
        }
        if folded := model_fold(q.strip()):
            shown["match"] = self.match(viewer, conv, folded)
        return shown

    def listing(self, viewer: Viewer, filter: str, sort: str, q: str) -> list[dict[str, Any]]:
        rows = [c for c in self.convs.values() if self.visible_to(viewer, c)]
        if viewer[0] == "staff":
            archived = filter == "archived"
            rows = [c for c in rows if self.archived(viewer[1], c) == archived]
        elif filter == "archived":
            rows = []
        if filter == "unread":
            rows = [c for c in rows if self.unread(viewer, c) > 0]
        elif filter == "messaged":
            rows = [c for c in rows if c.written]
        rows = [c for c in rows if self.matches(viewer, c, q)]
        if sort == "oldest":
            rows.sort(key=lambda c: (self.activity(c), c.id))
        elif sort == "newest":
            rows.sort(key=lambda c: (self.activity(c), c.id), reverse=True)
        else:
            rows.sort(
                key=lambda c: (self.unread(viewer, c) > 0, self.activity(c), c.id), reverse=True
            )
        return [self.summary(viewer, c, q) for c in rows]

    def inbox_frame(self, staff_id: str, conv: Conv) -> dict[str, Any]:
        viewer = ("staff", staff_id)
        return {
            "type": "inbox",
            "conversation": conv.id,
            "unread": self.unread(viewer, conv),
            "last_message": self.last_message(viewer, conv),
            "state": conv.state,
            "status": conv.status,
            "candidate": {"id": conv.candidate, "name": self.names[conv.candidate]},
        }

    def may_send(self, viewer: Viewer, conv: Conv) -> tuple[int, str | None]:
        """The answer SPEC section 1's table gives a send."""
        if viewer[0] == "staff":
            return (403, "not_allowed") if conv.status == "withdrawn" else (201, None)
        if conv.status in ("withdrawn", "not_progressing"):
            return 403, "not_allowed"
        if conv.state == "ended":
            return 409, "conversation_ended"
        if not conv.has_staff_message and conv.status not in ("interviewing", "offered", "hired"):
            return 403, "not_allowed"
        return 201, None


# -- the run ---------------------------------------------------------------------


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
async def model_app(settings: Settings, clock: StepClock) -> AsyncIterator[Any]:
    application = create_app(settings, clock=clock, run_notifier=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def browsers(model_app: Any) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=model_app)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        return clients[-1]

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def server(model_app: Any, settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(model_app, settings) as running:
        yield running


class Run:
    """The cast, the model and the checks of one seeded run."""

    def __init__(self, app: Any, clock: StepClock, make: Callable[[], httpx.AsyncClient]) -> None:
        self.app = app
        self.clock = clock
        self.make = make
        self.host = Host(make())
        self.rng = random.Random(SEED)
        self.model = Model(names=dict(CANDIDATES))
        self.people: dict[Viewer, Person] = {}
        self.sockets: list[tuple[str, Socket]] = []
        self.log: list[str] = []
        self.step = 0
        self.reached: set[str] = set()

    # -- set-up --------------------------------------------------------------

    async def cast(self) -> None:
        for staff_id, (org_id, org_name) in STAFF.items():
            body = {
                "org": {"id": org_id, "name": org_name},
                "name": staff_id.title(),
                "email": f"{staff_id}@{org_id}.example",
                "timezone": "UTC",
            }
            response = await self.host.client.put(
                f"/api/v1/staff/{staff_id}", json=body, headers=AUTH
            )
            assert response.status_code == 200, response.text
        # 24 conversations in Acme over ten candidates; three in Globex (one
        # of them Chloé's, so one candidate spans both organisations).
        plan: list[tuple[str, tuple[str, str], str, str]] = []
        candidates = list(CANDIDATES)
        acme_jobs = [j for j in JOBS if not j.startswith("globex")]
        for index in range(24):
            candidate = candidates[index % len(candidates)]
            job = acme_jobs[(index // len(candidates) + index) % len(acme_jobs)]
            plan.append((f"app-{index:02d}", ACME, candidate, job))
        plan += [
            ("gx-1", GLOBEX, "chloe", "globex-art"),
            ("gx-2", GLOBEX, "tom", "globex-art"),
            ("gx-3", GLOBEX, "ana", "globex-art"),
        ]
        for application_id, org, candidate, job in plan:
            status = self.rng.choices(STATUSES, STATUS_WEIGHTS)[0]
            # Few distinct days, so activities tie and the id decides.
            applied_at = self.clock.now - timedelta(days=self.rng.randint(1, 4))
            conversation = await self.upsert(
                application_id, org, candidate, job, status, applied_at
            )
            self.model.convs[conversation] = Conv(
                conversation, application_id, org, candidate, job, status, applied_at
            )
        for staff_id in STAFF:
            self.people[("staff", staff_id)] = await sign_in_staff(self.host, self.make(), staff_id)
        for candidate in CANDIDATES:
            browser = self.make()
            mine = [c for c in self.model.convs.values() if c.candidate == candidate]
            # Tom opens only his first link: his other two conversations
            # are not his to see in this session.
            opened = mine[:1] if candidate == "tom" else mine
            for conv in opened:
                url = await self.host.candidate_link(conv.application_id)
                assert (await follow_link(browser, url)).status_code == 303
            self.model.sessions[candidate] = [c.application_id for c in opened]
            self.people[("candidate", candidate)] = await signed_in(browser)
        # History before the checked steps: a third of the conversations
        # have a staff message and the candidate's reply where they may
        # write, then random operations by the rules of the steps, so the
        # steps start from conversations already written, read, ended and
        # archived. Only its answers are checked as it goes.
        for conv in list(self.model.convs.values())[::3]:
            self.clock.tick()
            await self.send(conv, ("staff", self.rng.choice(STAFF_OF[conv.org])))
            replier: Viewer = ("candidate", conv.candidate)
            if self.model.visible_to(replier, conv):
                self.clock.tick()
                await self.send(conv, replier)
        for _ in range(HISTORY):
            self.clock.tick()
            await self.rng.choice(self.operations())()
        self.reached.clear()

    async def upsert(
        self,
        application_id: str,
        org: tuple[str, str],
        candidate: str,
        job: str,
        status: str,
        applied_at: datetime,
    ) -> str:
        body = {
            "org": {"id": org[0], "name": org[1]},
            "job": {"id": job, "title": JOBS[job]},
            "candidate": {
                "id": candidate,
                "name": self.model.names[candidate],
                "email": f"{candidate}@mail.example",
            },
            "status": status,
            "applied_at": applied_at.isoformat(),
        }
        response = await self.host.client.put(
            f"/api/v1/applications/{application_id}", json=body, headers=AUTH
        )
        assert response.status_code == 200, response.text
        return str(response.json()["conversation_id"])

    async def follow_inboxes(self, server: LiveServer, stack: contextlib.AsyncExitStack) -> None:
        """Open the staff sockets, follow the inbox, and make sure each feed
        is live before the first step (the follow has no answer frame)."""
        for staff_id, count in SOCKETS.items():
            for _ in range(count):
                ws = await stack.enter_async_context(
                    open_socket(server, self.people[("staff", staff_id)])
                )
                await ws.send({"type": "inbox"})
                self.sockets.append((staff_id, ws))
        chat = self.app.state.services.chat
        for org in (ACME, GLOBEX):
            probe, marker = [c.id for c in self.model.convs.values() if c.org == org][:2]
            waiting = [ws for s, ws in self.sockets if STAFF[s] == org]
            live: list[Socket] = []
            for _ in range(50):
                await publish_about(chat, probe, events.inbox_changed(probe))
                for ws in list(waiting):
                    with contextlib.suppress(TimeoutError):
                        await ws.next_of("inbox", within=0.2)
                        waiting.remove(ws)
                        live.append(ws)
                if not waiting:
                    break
            assert not waiting, "an inbox feed never became live"
            # Probe frames may still be on their way: read up to a marker.
            await publish_about(chat, marker, events.inbox_changed(marker))
            for ws in live:
                while (await ws.next_of("inbox"))["conversation"] != marker:
                    pass

    # -- steps ---------------------------------------------------------------

    def note(self, text: str) -> None:
        self.log.append(f"step {self.step}: {text}")

    def failure(self, what: str) -> str:
        return f"seed {SEED}: {what}\n" + "\n".join(self.log)

    def pick_conv(self, org: tuple[str, str] = ACME) -> Conv:
        return self.rng.choice([c for c in self.model.convs.values() if c.org == org])

    def pick_actor(
        self, conv: Conv, candidate_share: float = 0.45, outsiders: float = 0.08
    ) -> Viewer:
        """Usually someone who may see the conversation, sometimes (with
        `outsiders`) not: the candidate with `candidate_share`, else one of
        the organisation's staff."""
        roll = self.rng.random()
        if roll < outsiders * 0.6:
            outsider = "alice" if conv.org == GLOBEX else "mallory"
            return ("staff", outsider)
        if roll < outsiders:
            return ("candidate", self.rng.choice([c for c in CANDIDATES if c != conv.candidate]))
        if roll < outsiders + candidate_share and self.model.visible_to(
            ("candidate", conv.candidate), conv
        ):
            return ("candidate", conv.candidate)
        return ("staff", self.rng.choice([s for s, org in STAFF.items() if org == conv.org]))

    async def expect(
        self, response: httpx.Response, status: int, code: str | None = None
    ) -> httpx.Response:
        assert response.status_code == status, self.failure(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} {response.text}, the model says {status} {code}"
        )
        if code is not None:
            assert response.json()["error"]["code"] == code, self.failure(response.text)
        if code == "not_found":
            self.reached.add("other tenant")
        return response

    def operations(self) -> list[Callable[[], Awaitable[list[Conv]]]]:
        """One round of the deck: each operation as often as it is dealt."""
        counts = (
            (3, self.send),
            (2, self.reopen),
            (3, self.read),
            (3, self.mark_unread),
            (2, self.delete_for_me),
            (2, self.delete_for_everyone),
            (2, self.archive),
            (1, self.reply_to_archived),
            (2, self.end),
            (2, self.change_status),
            (1, self.rename),
            (1, self.trespass),
            (1, self.overstep),
        )
        return [operation for count, operation in counts for _ in range(count)]

    def deck(self, steps: int) -> list[Callable[[], Awaitable[list[Conv]]]]:
        """The checked steps' operations, shuffled: every kind comes up in
        every run, whatever the seed."""
        dealt: list[Callable[[], Awaitable[list[Conv]]]] = []
        while len(dealt) < steps:
            round_ = self.operations()
            self.rng.shuffle(round_)
            dealt += round_
        return dealt[:steps]

    async def reopen(self) -> list[Conv]:
        """A staff member writes in an ended conversation; while there is none
        they may write in, a staff member ends one (for the next reopen)."""
        ended = [
            c for c in self.model.convs.values() if c.state == "ended" and c.status != "withdrawn"
        ]
        if not ended:
            conv = self.pick_conv()
            return await self.end(conv, ("staff", self.rng.choice(["alice", "bob", "carol"])))
        conv = self.rng.choice(ended)
        staff_id = self.rng.choice([s for s, org in STAFF.items() if org == conv.org])
        return await self.send(conv, ("staff", staff_id))

    async def send(self, conv: Conv | None = None, actor: Viewer | None = None) -> list[Conv]:
        if conv is None:
            conv = self.pick_conv(GLOBEX if self.rng.random() < 0.1 else ACME)
        if actor is None:
            actor = self.pick_actor(conv)
        body = " ".join(self.rng.sample(WORDS, self.rng.randint(1, 3)))
        self.note(f"{actor} sends {body!r} in {conv.application_id}")
        person = self.people[actor]
        response = await person.send(conv.id, body, client_id=str(uuid.uuid4()))
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        status, code = self.model.may_send(actor, conv)
        await self.expect(response, status, code)
        if status != 201:
            self.reached.add("refused")
            return []
        if actor[0] == "staff" and conv.state == "ended":
            self.reached.add("reopened")
            # The line comes first, then the message that reopened it.
            by = {"kind": "staff", "id": actor[1], "name": actor[1].title()}
            await self.expect_line(conv, {"type": "reopened", "by": by})
        message = response.json()
        assert message["seq"] == len(conv.messages) + 1, self.failure(str(message))
        assert message["created_at"] == wire_time(self.clock.now), self.failure(str(message))
        # A reply that brings it back to a listed staff member's inbox.
        brought_back = actor[0] == "candidate" and any(
            self.model.archived(s, conv) for s in LISTED_STAFF
        )
        conv.messages.append(message)
        if brought_back:
            self.reached.add("reply unarchived")
        if actor[0] == "staff":
            conv.state = "open"  # a staff message reopens
        return [conv]

    async def read(
        self, conv: Conv | None = None, actor: Viewer | None = None, seq: int | None = None
    ) -> list[Conv]:
        """Mostly a staff member reading what the candidate wrote."""
        replied = [
            c
            for c in self.model.convs.values()
            if any(m["sender"]["kind"] == "candidate" for m in c.messages)
        ]
        if conv is None and replied and self.rng.random() < 0.6:
            conv = self.rng.choice(replied)
        elif conv is None:
            conv = self.pick_conv(GLOBEX if self.rng.random() < 0.1 else ACME)
        if actor is None:
            actor = self.pick_actor(conv, candidate_share=0.3)
        if seq is None:
            ends = [len(conv.messages), len(conv.messages) + 3, self.rng.randint(0, 3)]
            seq = self.rng.choice(ends)
        self.note(f"{actor} reads {conv.application_id} up to {seq}")
        response = await self.people[actor].post(f"/api/conversations/{conv.id}/read", {"seq": seq})
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        await self.expect(response, 204)
        seq = min(seq, len(conv.messages))
        before = self.model.positions.get((actor, conv.id), 0)
        if seq <= before:
            return []
        self.model.positions[(actor, conv.id)] = seq
        return [conv] if actor[0] == "staff" else []

    async def mark_unread(self) -> list[Conv]:
        """By someone who has read the candidate's newest message (while
        nobody has, someone reads up instead). Refusals are `trespass`'s
        and the dedicated tests'."""
        convs = [c for c in self.model.convs.values() if c.org == ACME]
        read_up = [
            (("staff", s), c)
            for c in convs
            for s in ("alice", "bob", "carol")
            if (newest := self.model.newest_countable(("staff", s), c)) is not None
            and self.model.positions.get((("staff", s), c.id), 0) >= newest
        ]
        if not read_up:
            # Someone reads up, so that there is something to mark next time.
            replied = [c for c in convs if self.model.newest_countable(("staff", "bob"), c)]
            if not replied:
                return await self.read()
            conv = self.rng.choice(replied)
            reader = ("staff", self.rng.choice(["alice", "bob", "carol"]))
            return await self.read(conv, reader, len(conv.messages))
        actor, conv = self.rng.choice(read_up)
        self.note(f"{actor} marks {conv.application_id} unread")
        response = await self.people[actor].post(f"/api/conversations/{conv.id}/unread")
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        if actor[0] == "candidate":
            await self.expect(response, 403, "forbidden")
            return []
        await self.expect(response, 204)
        newest = self.model.newest_countable(actor, conv)
        if newest is None or self.model.positions.get((actor, conv.id), 0) < newest:
            return []  # nothing to mark, or unread already
        self.model.positions[(actor, conv.id)] = newest - 1
        self.reached.add("marked unread")
        return [conv]

    def pick_message(self) -> tuple[Conv, dict[str, Any]] | None:
        written = [c for c in self.model.convs.values() if c.messages]
        if not written:
            return None
        conv = self.rng.choice(written)
        return conv, self.rng.choice(conv.messages)

    async def delete_for_me(self) -> list[Conv]:
        picked = self.pick_message()
        if picked is None:
            return []
        conv, message = picked
        actor = self.pick_actor(conv, outsiders=0)
        self.note(f"{actor} deletes seq {message['seq']} of {conv.application_id} for me")
        person = self.people[actor]
        response = await person.client.delete(
            f"/api/messages/{message['id']}", params={"for": "me"}, headers=person.csrf
        )
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        await self.expect(response, 204)
        self.model.hidden.add((actor, message["id"]))
        self.reached.add("hidden")
        return [conv] if actor[0] == "staff" else []

    async def delete_for_everyone(self) -> list[Conv]:
        """Mostly a sender deleting one of their messages still standing."""
        standing = [
            (c, m) for c in self.model.convs.values() for m in c.written if m["id"] not in c.deleted
        ]
        picked = self.rng.choice(standing) if standing else self.pick_message()
        if picked is None:
            return []
        conv, message = picked
        sender = (message["sender"]["kind"], message["sender"]["id"])
        # Nobody may delete a system line for everyone.
        system = sender[0] == "system"
        actor = sender if self.rng.random() < 0.7 and not system else self.pick_actor(conv)
        self.note(f"{actor} deletes seq {message['seq']} of {conv.application_id} for everyone")
        person = self.people[actor]
        response = await person.client.delete(
            f"/api/messages/{message['id']}", params={"for": "everyone"}, headers=person.csrf
        )
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        if actor != sender:
            await self.expect(response, 403, "forbidden")
            return []
        await self.expect(response, 204)
        if message["id"] in conv.deleted:
            return []
        conv.deleted.add(message["id"])
        self.reached.add("deleted")
        return [conv]

    async def archive(self) -> list[Conv]:
        conv = self.pick_conv()
        actor = self.pick_actor(conv, candidate_share=0.1)
        archived = actor[0] == "staff" and self.model.archived(actor[1], conv)
        if actor[0] == "staff" and self.model.visible_to(actor, conv):
            # The conversation itself says the same as the listings.
            shown = await self.people[actor].client.get(f"/api/conversations/{conv.id}")
            assert shown.json()["archived"] == archived, self.failure(
                f"{actor}'s {conv.application_id} says archived={shown.json()['archived']}"
            )
        # Mostly a change; now and then the same again (idempotent).
        change = "unarchive" if archived else "archive"
        verb = change if self.rng.random() < 0.8 else ("archive", "unarchive")[archived]
        self.note(f"{actor} {verb}s {conv.application_id}")
        response = await self.people[actor].post(f"/api/conversations/{conv.id}/{verb}")
        if actor[0] == "candidate":
            await self.expect(response, 403, "forbidden")
            return []
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        await self.expect(response, 204)
        if verb == "archive":
            self.model.archives[(actor[1], conv.id)] = len(conv.messages)
        else:
            self.model.archives.pop((actor[1], conv.id), None)
        return []

    async def reply_to_archived(self) -> list[Conv]:
        """The candidate writes where a listed staff member archived the
        conversation, which brings it back to their inbox; while there is
        none, a listed staff member archives one where the candidate may
        write (for the next reply)."""
        writable = [
            c
            for c in self.model.convs.values()
            if self.model.visible_to(("candidate", c.candidate), c)
            and self.model.may_send(("candidate", c.candidate), c)[0] == 201
        ]
        waiting = [c for c in writable if any(self.model.archived(s, c) for s in LISTED_STAFF)]
        if waiting:
            conv = self.rng.choice(waiting)
            return await self.send(conv, ("candidate", conv.candidate))
        if not writable:
            return await self.send()
        conv = self.rng.choice(writable)
        staff_id = self.rng.choice([s for s in LISTED_STAFF if STAFF[s] == conv.org])
        self.note(f"('staff', {staff_id!r}) archives {conv.application_id}")
        response = await self.people[("staff", staff_id)].post(
            f"/api/conversations/{conv.id}/archive"
        )
        await self.expect(response, 204)
        self.model.archives[(staff_id, conv.id)] = len(conv.messages)
        return []

    async def end(self, conv: Conv | None = None, actor: Viewer | None = None) -> list[Conv]:
        if conv is None:
            conv = self.pick_conv()
        if actor is None:
            actor = self.pick_actor(conv, candidate_share=0.1)
        self.note(f"{actor} ends {conv.application_id}")
        response = await self.people[actor].post(f"/api/conversations/{conv.id}/end")
        if not self.model.visible_to(actor, conv):
            await self.expect(response, 404, "not_found")
            return []
        if actor[0] == "candidate":
            await self.expect(response, 403, "forbidden")
            return []
        assert (await self.expect(response, 200)).json() == {"state": "ended"}
        if conv.state == "ended":
            return []
        conv.state = "ended"
        self.reached.add("ended")
        by = {"kind": "staff", "id": actor[1], "name": actor[1].title()}
        await self.expect_line(conv, {"type": "ended", "by": by})
        return [conv]

    async def change_status(self) -> list[Conv]:
        conv = self.pick_conv(GLOBEX if self.rng.random() < 0.15 else ACME)
        status = self.rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        self.note(f"the host sets {conv.application_id} to {status}")
        await self.upsert(
            conv.application_id, conv.org, conv.candidate, conv.job, status, conv.applied_at
        )
        if status == conv.status:
            return []
        line = {"type": "status_changed", "by": None, "from": conv.status, "to": status}
        conv.status = status
        await self.expect_line(conv, line)
        return [conv]

    async def expect_line(self, conv: Conv, event: dict[str, Any]) -> None:
        """The system line the model expects next in `conv`, as a staff
        member of its organisation reads it in history."""
        seq = len(conv.messages) + 1
        reader = self.people[("staff", STAFF_OF[conv.org][0])]
        found = await reader.history(conv.id, before=seq + 1, limit=1)
        assert len(found) == 1, self.failure(f"no system line at seq {seq}: {found}")
        line = found[0]
        expected = {
            "conversation": conv.id,
            "seq": seq,
            "sender": {"kind": "system", "id": "system", "name": "chatserver"},
            "attachments": [],
            "created_at": wire_time(self.clock.now),
            "deleted": False,
            "hidden": False,
            "via": "app",
            "event": event,
        }
        shown = {k: v for k, v in line.items() if k not in ("id", "body", "html")}
        assert shown == expected, self.failure(f"system line {line}, expected {expected}")
        assert line["body"] == line_words(event), self.failure(f"the line's words: {line}")
        assert line["html"] == line["body"], self.failure(f"the line's html: {line}")
        self.reached.add("system line")
        conv.messages.append(line)

    async def rename(self) -> list[Conv]:
        candidate = self.rng.choice(["chloe", "zoe", "jose", "renee"])
        self.model.names[candidate] = self.rng.choice(RENAMES)
        conv = next(c for c in self.model.convs.values() if c.candidate == candidate)
        self.note(f"the host renames {candidate} to {self.model.names[candidate]!r}")
        await self.upsert(
            conv.application_id, conv.org, conv.candidate, conv.job, conv.status, conv.applied_at
        )
        return []

    async def trespass(self) -> list[Conv]:
        """Someone who may not see a conversation tries something on it: the
        other organisation's staff, another candidate, or Tom on an
        application whose link he never opened. It answers as missing."""
        conv = self.pick_conv(GLOBEX if self.rng.random() < 0.3 else ACME)
        outsiders: list[Viewer] = [("staff", s) for s, org in STAFF.items() if org != conv.org] + [
            ("candidate", c)
            for c in CANDIDATES
            if not self.model.visible_to(("candidate", c), conv)
        ]
        actor = self.rng.choice(outsiders)
        person = self.people[actor]
        actions = ["send", "read", "unread", "end", "history", "summary", "delete"]
        if actor[0] == "staff":
            actions.append("archive")  # a candidate is refused any archive first
        action = self.rng.choice(actions)
        self.note(f"{actor} tries {action} on {conv.application_id}")
        path = f"/api/conversations/{conv.id}"
        if action == "send":
            response = await person.send(conv.id, "Let me in")
        elif action in ("read", "unread", "end", "archive"):
            body = {"seq": 1} if action == "read" else None
            response = await person.post(f"{path}/{action}", body)
        elif action == "delete" and conv.messages:
            message = self.rng.choice(conv.messages)
            response = await person.client.delete(
                f"/api/messages/{message['id']}",
                params={"for": self.rng.choice(["me", "everyone"])},
                headers=person.csrf,
            )
        else:
            response = await person.client.get(f"{path}/messages" if action == "history" else path)
        await self.expect(response, 404, "not_found")
        return []

    async def overstep(self) -> list[Conv]:
        """Someone in the conversation tries what the policy refuses them: a
        candidate ends, archives or marks unread, or writes where they may
        not; a staff member deletes another's message for everyone, or writes
        to a withdrawn candidate."""
        conv = self.pick_conv()
        candidate: Viewer = ("candidate", conv.candidate)
        staff: Viewer = ("staff", self.rng.choice(STAFF_OF[conv.org]))
        tries: list[tuple[str, Viewer]] = [("delete", staff)] if conv.messages else []
        if conv.status == "withdrawn":
            tries.append(("send", staff))
        if self.model.visible_to(candidate, conv):
            tries += [("end", candidate), ("archive", candidate), ("unread", candidate)]
            if self.model.may_send(candidate, conv)[0] != 201:
                tries.append(("send", candidate))
        if not tries:
            return await self.trespass()
        action, actor = self.rng.choice(tries)
        self.note(f"{actor} tries {action} on {conv.application_id}")
        person = self.people[actor]
        if action == "send":
            status, code = self.model.may_send(actor, conv)
            await self.expect(await person.send(conv.id, "May I?"), status, code)
        elif action == "delete":
            others = [m for m in conv.messages if m["sender"]["id"] != actor[1]]
            if not others:
                return []
            message = self.rng.choice(others)
            response = await person.client.delete(
                f"/api/messages/{message['id']}", params={"for": "everyone"}, headers=person.csrf
            )
            await self.expect(response, 403, "forbidden")
        else:
            response = await person.post(f"/api/conversations/{conv.id}/{action}")
            await self.expect(response, 403, "forbidden")
        self.reached.add("refused")
        return []

    # -- checks --------------------------------------------------------------

    async def check_listings(self) -> None:
        """Every filter with every sort, and a search (a new term each step)
        with every filter, for every listed viewer; each listing paged
        through `next` with a limit drawn for it, so small pages come up
        often. Viewers are checked concurrently (a browser each)."""
        q = self.rng.choice(SEARCHES)
        search_sort = SORTS[self.step % len(SORTS)]
        combos = [(f, s, "") for f in FILTERS for s in SORTS]
        combos += [(f, search_sort, q) for f in FILTERS]
        # Limits drawn before the concurrent part, so a seed is one run.
        by_viewer = {
            viewer: [
                (filter, sort, search, self.rng.choices(LIMITS, LIMIT_WEIGHTS)[0])
                for filter, sort, search in combos
            ]
            for viewer in LISTED
        }
        await asyncio.gather(*(self.check_viewer(v, items) for v, items in by_viewer.items()))

    async def check_viewer(self, viewer: Viewer, items: list[tuple[str, str, str, int]]) -> None:
        person = self.people[viewer]
        for filter, sort, search, limit in items:
            expected = self.model.listing(viewer, filter, sort, search)
            got = await self.every_page(person, filter, sort, search, limit)
            if expected:
                self.reached.add(filter)
                if len(expected) > limit:
                    self.reached.add("paged")
                if (
                    search
                    and filter == "all"
                    and len(expected) < len(self.model.listing(viewer, filter, sort, ""))
                ):
                    self.reached.add("searched")
                if any(r.get("match") not in (None, r["last_message"]) for r in expected):
                    self.reached.add("matched an older message")
            if got != expected:
                raise AssertionError(
                    self.failure(
                        f"{viewer} filter={filter} sort={sort} q={search!r} limit={limit}:\n"
                        f" got {_brief(got)}\nwant {_brief(expected)}\n"
                        f" first difference: {_first_difference(got, expected)}"
                    )
                )

    async def every_page(
        self, person: Person, filter: str, sort: str, q: str, limit: int
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"filter": filter, "sort": sort, "limit": limit}
        if q:
            params["q"] = q
        rows: list[dict[str, Any]] = []
        for _ in range(len(self.model.convs) + 2):
            page = await person.inbox(**params)
            rows += page["conversations"]
            if page["next"] is None:
                assert len(page["conversations"]) <= limit
                return rows
            assert len(page["conversations"]) == limit, self.failure("a short page before the end")
            params["cursor"] = page["next"]
        raise AssertionError(self.failure("paging does not end"))

    async def check_frames(self, changed: list[Conv]) -> None:
        for staff_id, ws in self.sockets:
            for conv in changed:
                if STAFF[staff_id] != conv.org:
                    continue
                frame = await ws.next_of("inbox")
                expected = self.model.inbox_frame(staff_id, conv)
                assert frame == expected, self.failure(
                    f"{staff_id}'s inbox frame:\n got {frame}\nwant {expected}"
                )

    async def check_no_more_frames(self) -> None:
        for staff_id, ws in self.sockets:
            extra = [f for f in await ws.quiet(QUIET_SECONDS) if f["type"] == "inbox"]
            assert extra == [], self.failure(f"{staff_id} got frames nothing caused: {extra}")


def _brief(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["application_id"], r["unread"], r["state"]) for r in rows]


def _first_difference(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> str:
    for a, b in zip(got, want, strict=False):
        if a != b:
            keys = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
            return "; ".join(f"{k}: got {a.get(k)!r}, want {b.get(k)!r}" for k in keys)
    return f"lengths {len(got)} and {len(want)}"


@pytest.mark.timeout(300)
async def test_the_inbox_follows_the_model(
    model_app: Any,
    clock: StepClock,
    browsers: Callable[[], httpx.AsyncClient],
    server: LiveServer,
) -> None:
    run = Run(model_app, clock, browsers)
    await run.cast()
    async with contextlib.AsyncExitStack() as stack:
        await run.follow_inboxes(server, stack)
        await run.check_listings()
        for step, operation in enumerate(run.deck(STEPS), start=1):
            run.step = step
            clock.tick()
            changed = await operation()
            await run.check_frames(changed)
            await run.check_listings()
        await run.check_no_more_frames()
    # The seed did lead through the states worth checking.
    assert run.reached >= REACHED, run.failure(f"never reached {REACHED - run.reached}")
