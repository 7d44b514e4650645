"""`chatserver demo`: a demo organisation with people, jobs and history.

Seeding goes through the same domain actions as the host API and the
pages, so the demo shows real behaviour: each scripted message is sent by
the person who writes it (a reply names whoever wrote before it), who then
reads up to it, as the pages record once a sent message is on screen (so
no inbox row shows someone's own newest message as unread). Client ids are
derived from the script, so running the demo twice adds nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chatserver.broker.memory import MemoryBroker
from chatserver.chat import applications, message_send, reads, staff_users
from chatserver.chat.events import Events
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, Status
from chatserver.chat.service import Chat
from chatserver.chat.signing import Signer
from chatserver.errors import ChatError
from chatserver.settings import Settings
from chatserver.store import contexts, people
from chatserver.store.db import Database

ORG = ("demo-school", "Northfield Academy")
ALEX, PRIYA = "demo-alex", "demo-priya"
STAFF = [
    (ALEX, "Alex Morgan", "alex.morgan@northfield.example", "Europe/London"),
    (PRIYA, "Priya Shah", "priya.shah@northfield.example", "Europe/London"),
]
# Who writes a line of a script: the candidate, or a staff member by id.
CANDIDATE = "candidate"
JOBS = [
    ("demo-job-maths", "Teacher of Mathematics"),
    ("demo-job-english", "Head of English"),
    ("demo-job-business", "School Business Manager"),
]


@dataclass(frozen=True)
class DemoCandidate:
    key: str
    name: str
    job: int
    status: Status
    days_ago: int
    # (who, body): CANDIDATE or the id of the staff member who writes it.
    script: tuple[tuple[str, str], ...] = ()


CANDIDATES = [
    DemoCandidate(
        "sam",
        "Sam Taylor",
        0,
        Status.INTERVIEWING,
        9,
        (
            (
                ALEX,
                "Hi Sam, thanks for applying! Could you come in for an interview on "
                "**Tuesday at 10am**?",
            ),
            (CANDIDATE, "Hello Alex, Tuesday at 10am works for me. Should I bring anything?"),
            (
                ALEX,
                "Please bring:\n- photo ID\n- your teaching certificate\n- a short lesson plan",
            ),
            (CANDIDATE, "Perfect, see you then!"),
        ),
    ),
    DemoCandidate(
        "jordan",
        "Jordan Lee",
        0,
        Status.SHORTLISTED,
        6,
        (
            (
                ALEX,
                "Hi Jordan, you've been *shortlisted* for the maths post. "
                "We'll be in touch about interview dates shortly.",
            ),
        ),
    ),
    DemoCandidate("maria", "Maria Garcia", 1, Status.SUBMITTED, 2),
    DemoCandidate(
        "tom",
        "Tom Okafor",
        1,
        Status.OFFERED,
        20,
        (
            (ALEX, "Tom, we're delighted to offer you the post of Head of English."),
            (CANDIDATE, "Thank you so much! I'm thrilled to accept."),
            (ALEX, "Wonderful. HR will send the contract this week."),
        ),
    ),
    DemoCandidate(
        "aisha",
        "Aisha Khan",
        2,
        Status.INTERVIEWING,
        4,
        ((CANDIDATE, "Hello, I wanted to check the interview format for Thursday?"),),
    ),
    DemoCandidate("li", "Li Wei", 2, Status.SUBMITTED, 1),
    DemoCandidate(
        "ben",
        "Ben Carter",
        0,
        Status.NOT_PROGRESSING,
        15,
        (
            (
                ALEX,
                "Thank you for your interest, Ben. Unfortunately we won't be taking "
                "your application further.",
            ),
        ),
    ),
    DemoCandidate(
        "chloe",
        "Chloé Martin",
        1,
        Status.WITHDRAWN,
        12,
        (
            (ALEX, "Hi Chloé, are you available for an interview next week?"),
            (CANDIDATE, "Sorry, I've accepted another offer and will withdraw."),
        ),
    ),
    DemoCandidate(
        "noah",
        "Noah Williams",
        2,
        Status.HIRED,
        40,
        (
            (PRIYA, "Welcome aboard, Noah! Your start date is 1 December."),
            (CANDIDATE, "Thanks Priya, looking forward to it."),
        ),
    ),
    DemoCandidate("emma", "Emma Brown", 0, Status.SUBMITTED, 0),
    DemoCandidate(
        "oliver",
        "Oliver Smith",
        1,
        Status.INTERVIEWING,
        3,
        ((ALEX, "Hi Oliver, your interview is confirmed for Friday at 2pm."),),
    ),
    DemoCandidate("zara", "Zara Ahmed", 2, Status.SHORTLISTED, 5),
]


def _client_id(candidate: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"chatserver-demo/{candidate}/{index}"))


async def seed(chat: Chat) -> None:
    for staff_id, name, email, timezone in STAFF:
        # Both demo staff are operators, so the ops page can be explored.
        await staff_users.upsert_staff(chat, staff_id, ORG, name, email, timezone, ops=True)
    now = datetime.now(UTC)
    staff_viewers = {
        staff_id: Viewer(Role.STAFF, staff_id, name, timezone, org_id=ORG[0])
        for staff_id, name, _, timezone in STAFF
    }
    for candidate in CANDIDATES:
        application_id = f"demo-app-{candidate.key}"
        if await _seeded(chat, application_id):
            # Seeded by an earlier run: going through "interviewing" again
            # would add status changes (and their system lines) each time.
            continue
        job_id, job_title = JOBS[candidate.job]
        result = await applications.upsert_application(
            chat,
            application_id,
            ORG,
            (job_id, job_title),
            (f"demo-{candidate.key}", candidate.name, f"{candidate.key}@candidates.example"),
            # Messages go in before a final status that would forbid them.
            Status.INTERVIEWING if candidate.script else candidate.status,
            now - timedelta(days=candidate.days_ago),
        )
        viewer = Viewer(
            Role.CANDIDATE,
            f"demo-{candidate.key}",
            candidate.name,
            "UTC",
            application_ids=(application_id,),
        )
        conversation_id = result["conversation_id"]
        for index, (who, body) in enumerate(candidate.script):
            sender = viewer if who == CANDIDATE else staff_viewers[who]
            try:
                sent = await message_send.send_message(
                    chat, sender, conversation_id, _client_id(candidate.key, index), body
                )
                # The writer has read up to their own message, as the pages
                # record it once the sent message is on their screen.
                await reads.mark_read(chat, sender, conversation_id, sent.message["seq"])
            except ChatError as exc:  # pragma: no cover - the script is valid
                raise RuntimeError(f"demo script for {candidate.key}: {exc.message}") from exc
        if candidate.script:
            await applications.upsert_application(
                chat,
                application_id,
                ORG,
                (job_id, job_title),
                (f"demo-{candidate.key}", candidate.name, f"{candidate.key}@candidates.example"),
                candidate.status,
                now - timedelta(days=candidate.days_ago),
            )


async def _seeded(chat: Chat, application_id: str) -> bool:
    async with chat.db.transaction() as conn:
        return await contexts.load_by_application(conn, application_id) is not None


def links(
    settings: Settings, generations: Mapping[str, int] | None = None
) -> list[tuple[str, str]]:
    """Sign-in links for the demo's people: (who, absolute URL). A staff
    link names the person's session generation (`generations`, 0 for a
    fresh seed): one issued before a sign-out would be refused."""
    signer = Signer(settings)
    result = []
    for staff_id, name, _, _ in STAFF:
        token, _ = signer.staff_link_token(staff_id, (generations or {}).get(staff_id, 0))
        result.append((f"{name} (staff)", f"{settings.base_url}/auth/staff?token={token}"))
    for candidate in CANDIDATES[:3]:
        token = signer.candidate_link_token(f"demo-app-{candidate.key}", f"demo-{candidate.key}")
        label = f"{candidate.name} (candidate, {candidate.status.value})"
        result.append((label, f"{settings.base_url}/auth/candidate?token={token}"))
    return result


async def seed_and_print_links(settings: Settings) -> None:
    chat = Chat(
        settings.with_(send_rate=1000.0, send_burst=1000),
        Database.from_settings(settings),
        Events(MemoryBroker()),
    )
    await chat.start()
    try:
        await seed(chat)
        async with chat.db.transaction() as conn:
            generations = {
                staff_id: int(row["session_generation"])
                for staff_id, *_ in STAFF
                if (row := await people.get_staff(conn, staff_id)) is not None
            }
    finally:
        await chat.stop()
        await chat.db.dispose()
    print("\nchatserver demo is starting at", settings.base_url)
    print("Sign in (staff links work once and for 5 minutes; the sign-in page makes new ones):")
    for who, url in links(settings, generations):
        print(f"  {who:<45} {url}")
    print(f"  Demo sign-in page (every person):              {settings.base_url}/dev/sign-in")
    print(f"  Local mailbox (emails the notifier wrote):     {settings.base_url}/dev/mailbox\n")
