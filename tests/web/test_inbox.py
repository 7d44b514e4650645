"""SPEC sections 5a and 6: the inbox listing — filters, search, sorts and
keyset paging."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from tests.conftest import Scene
from tests.helpers import Host, Person, delete_message, error_of

PAGE_SIZE = 50


async def ids(person: Person, **params: Any) -> list[str]:
    return [c["id"] for c in (await person.inbox(**params))["conversations"]]


async def every_page(person: Person, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        found = await person.inbox(**params, **({"cursor": cursor} if cursor else {}))
        pages.append([c["id"] for c in found["conversations"]])
        cursor = found["next"]
        if cursor is None:
            return pages
        assert len(pages) < 10, "paging does not end"


def cursor_of(key: object) -> str:
    """A hand-made cursor (a client must treat real ones as opaque)."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


async def application(host: Host, application_id: str, **kwargs: Any) -> str:
    return str((await host.application(application_id, **kwargs))["conversation_id"])


async def test_a_summary_has_the_spec_fields(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hello Cara")
    [summary] = (await scene.bob.inbox())["conversations"]
    assert summary["id"] == scene.conversation
    assert summary["application_id"] == "app-1"
    assert summary["candidate"] == {"id": "cara", "name": "Cara"}
    assert summary["job"] == {"id": "acme-job-1", "title": "Teacher of Mathematics"}
    assert summary["status"] == "interviewing"
    assert summary["applied_at"] == "2026-11-02T09:30:00.000Z"
    assert summary["state"] == "open"
    assert summary["unread"] == 0
    assert summary["last_message"]["body"] == "Hello Cara"
    assert (await scene.cara.inbox())["conversations"][0]["unread"] == 1


async def test_filters_all_unread_messaged_archived(scene: Scene, host: Host) -> None:
    replied = scene.conversation
    written = await application(host, "app-2", candidate="erin")
    silent = await application(host, "app-3", candidate="finn")
    await scene.alice.send(written, "Hello Erin")
    await scene.alice.send(replied, "Hello Cara")
    await scene.cara.send(replied, "Hello Alice")

    assert set(await ids(scene.alice)) == {replied, written, silent}
    assert set(await ids(scene.alice, filter="all")) == {replied, written, silent}
    assert await ids(scene.alice, filter="unread") == [replied]
    assert set(await ids(scene.alice, filter="messaged")) == {replied, written}
    assert await ids(scene.alice, filter="archived") == []

    await scene.alice.post(f"/api/conversations/{silent}/archive")
    await scene.alice.post(f"/api/conversations/{replied}/archive")
    assert await ids(scene.alice, filter="archived", sort="oldest") == [silent, replied]
    assert await ids(scene.alice) == [written]
    assert await ids(scene.alice, filter="unread") == []
    assert set(await ids(scene.bob)) == {replied, written, silent}

    await scene.alice.post(f"/api/conversations/{replied}/read", {"seq": 2})
    await scene.alice.post(f"/api/conversations/{replied}/unarchive")
    assert await ids(scene.alice, filter="unread") == []
    assert await ids(scene.bob, filter="unread") == [replied]
    assert await ids(scene.cara, filter="archived") == []


async def test_a_candidate_reply_brings_an_archived_conversation_back(
    scene: Scene, host: Host
) -> None:
    """An archive holds while only staff write; the candidate's next message
    (even one deleted since) brings the conversation back to the archiver's
    All and Unread, and their conversation says it is no longer archived.
    Archiving again holds until the next reply."""
    replied = scene.conversation
    other = await application(host, "app-2", candidate="erin")
    conversation = f"/api/conversations/{replied}"
    await scene.alice.send(replied, "Hello Cara")
    await scene.cara.send(replied, "Hello Alice")
    await scene.alice.post(f"{conversation}/archive")
    await scene.bob.post(f"/api/conversations/{other}/archive")

    async def alice_sees() -> tuple[set[str], list[str], list[str], list[str], bool]:
        archived = (await scene.alice.client.get(conversation)).json()["archived"]
        return (
            set(await ids(scene.alice)),
            await ids(scene.alice, filter="unread"),
            await ids(scene.alice, filter="messaged"),
            await ids(scene.alice, filter="archived"),
            archived,
        )

    # Staff messages, hers and a colleague's, leave it archived.
    await scene.alice.send(replied, "One more thing")
    await scene.bob.send(replied, "And from me")
    assert await alice_sees() == ({other}, [], [], [replied], True)

    await scene.cara.send(replied, "Thanks, see you then")
    assert await alice_sees() == ({replied, other}, [replied], [replied], [], False)
    [row] = [c for c in (await scene.alice.inbox())["conversations"] if c["id"] == replied]
    assert row["unread"] == 2
    # Per staff member: Bob's archive of another conversation holds.
    assert await ids(scene.bob, filter="archived") == [other]

    # Archiving again counts from now.
    assert (await scene.alice.post(f"{conversation}/archive")).status_code == 204
    assert await alice_sees() == ({other}, [], [], [replied], True)

    # A reply deleted for everyone since still brought it back.
    sent = (await scene.cara.send(replied, "Oops, wrong chat")).json()
    await delete_message(scene.cara, sent["id"], "everyone")
    assert await alice_sees() == ({replied, other}, [replied], [replied], [], False)

    # Unarchive and archive as before.
    await scene.alice.post(f"{conversation}/unarchive")
    assert (await alice_sees())[3:] == ([], False)
    await scene.alice.post(f"{conversation}/archive")
    assert (await alice_sees())[3:] == ([replied], True)


async def test_search_covers_candidate_job_and_message_text(scene: Scene, host: Host) -> None:
    physics = await application(
        host,
        "app-2",
        candidate="erin",
        candidate_name="Erin Ó Briain",
        job="j2",
        job_title="Physics",
    )
    chemistry = await application(host, "app-3", candidate="finn", job="j3", job_title="Chemistry")
    await scene.alice.send(chemistry, "Could you bring your **portfolio**?")

    assert await ids(scene.alice, q="erin") == [physics]
    assert await ids(scene.alice, q="briain") == [physics]
    assert await ids(scene.alice, q="PHYSICS") == [physics]
    assert await ids(scene.alice, q="mathematics") == [scene.conversation]
    assert await ids(scene.alice, q="portfolio") == [chemistry]
    assert await ids(scene.alice, q="  portfolio  ") == [chemistry]
    assert await ids(scene.alice, q="nothing like this") == []
    assert await ids(scene.alice, q="portfolio", filter="unread") == []
    assert await ids(scene.mallory, q="portfolio") == []
    error_of(
        await scene.alice.client.get("/api/conversations", params={"q": "x" * 201}), 422, "invalid"
    )


async def test_search_ignores_case_beyond_ascii(scene: Scene, host: Host) -> None:
    erin = await application(host, "app-2", candidate="erin", candidate_name="Erin Ó Briain")
    zoe = await application(host, "app-3", candidate="zoe", job="j3", job_title="ÉDUCATION")
    assert await ids(scene.alice, q="ó briain") == [erin]
    assert await ids(scene.alice, q="éducation") == [zoe]


async def test_search_wildcards_are_literal(scene: Scene, host: Host) -> None:
    percent = await application(host, "app-2", candidate="erin", job="j2", job_title="100% remote")
    underscore = await application(host, "app-3", candidate="finn", job="j3", job_title="IT_Lead")
    backslash = await application(host, "app-4", candidate="gus", job="j4", job_title="R\\D")
    await application(host, "app-5", candidate="hal", job="j5", job_title="ITs Lead 100 remote")

    assert await ids(scene.alice, q="%") == [percent]
    assert await ids(scene.alice, q="0% r") == [percent]
    assert await ids(scene.alice, q="_") == [underscore]
    assert await ids(scene.alice, q="t_l") == [underscore]
    assert await ids(scene.alice, q="\\") == [backslash]


async def test_search_finds_the_words_as_shown_and_as_written(scene: Scene) -> None:
    """A recruiter types what they see: Markdown marks, escapes and line
    breaks do not stand between the words; what was written still finds it."""
    await scene.cara.send(scene.conversation, "Is there a **uniform** policy?")
    await scene.cara.send(scene.conversation, "Book a *lesson observation*\nplease, \\*soon\\*")
    await scene.alice.send(scene.conversation, "[Pick a slot](https://cal.example/x)")
    for query in (
        "uniform policy",
        "**uniform** policy",
        "lesson observation please",
        "please, *soon*",
        "pick a slot",
        "cal.example/x",
    ):
        assert await ids(scene.alice, q=query) == [scene.conversation], query
    # The words as shown and as written are kept apart: no phrase runs
    # from the end of one into the start of the other.
    assert await ids(scene.alice, q="*soon* book a") == []


async def test_deleted_message_text_is_not_searchable(scene: Scene) -> None:
    sent = (await scene.alice.send(scene.conversation, "secret salary figure")).json()
    assert await ids(scene.alice, q="salary") == [scene.conversation]
    await scene.alice.client.delete(
        f"/api/messages/{sent['id']}", params={"for": "everyone"}, headers=scene.alice.csrf
    )
    assert await ids(scene.alice, q="salary") == []


async def test_sorts_newest_oldest_and_unread_first(scene: Scene, host: Host) -> None:
    first = scene.conversation
    second = await application(host, "app-2", candidate="erin")
    third = await application(host, "app-3", candidate="finn")
    await scene.alice.send(first, "one")
    await scene.alice.send(second, "two")
    await scene.alice.send(third, "three")

    assert await ids(scene.alice) == [third, second, first]
    assert await ids(scene.alice, sort="newest") == [third, second, first]
    assert await ids(scene.alice, sort="oldest") == [first, second, third]

    await scene.cara.send(first, "a reply")
    assert await ids(scene.alice, sort="newest") == [first, third, second]
    await scene.alice.send(third, "newest of all")
    assert await ids(scene.alice, sort="unread") == [first, third, second]
    assert await ids(scene.alice, sort="newest") == [third, first, second]

    for params in (
        {"sort": "random"},
        {"filter": "starred"},
        {"q": "nul \x00"},
        {"cursor": "%%%"},
        {"cursor": "e30"},
        {"cursor": cursor_of([0, "yesterday", "abc"])},
        {"cursor": cursor_of([0, "2026-11-02T09:30:00+00:00", "bad\x00id"])},
        {"cursor": cursor_of([7, "2026-11-02T09:30:00+00:00", "abc"])},
    ):
        response = await scene.alice.client.get("/api/conversations", params=params)
        error_of(response, 422, "invalid")


async def test_keyset_paging_neither_repeats_nor_skips(scene: Scene, host: Host) -> None:
    created = [scene.conversation]
    for batch in range(0, 119, 20):
        results = await asyncio.gather(
            *(
                host.application(f"bulk-{n}", candidate=f"cand-{n}")
                for n in range(batch, min(batch + 20, 119))
            )
        )
        created.extend(r["conversation_id"] for r in results)
    # Some conversations have messages, and some of those are unread.
    for conversation in created[::7]:
        await scene.alice.send(conversation, "Hello")
    assert (await scene.cara.send(scene.conversation, "Hi")).status_code == 201

    for sort in ("newest", "oldest", "unread"):
        pages = await every_page(scene.alice, sort=sort)
        assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 20], sort
        flat = [c for page in pages for c in page]
        assert sorted(flat) == sorted(created), sort
        whole = await scene.alice.inbox(sort=sort)
        assert flat[:PAGE_SIZE] == [c["id"] for c in whole["conversations"]]
    newest = [c for page in await every_page(scene.alice, sort="newest") for c in page]
    oldest = [c for page in await every_page(scene.alice, sort="oldest") for c in page]
    assert oldest == newest[::-1]
    unread_first = [c for page in await every_page(scene.alice, sort="unread") for c in page]
    assert unread_first[0] == scene.conversation

    messaged = [c for page in await every_page(scene.alice, filter="messaged") for c in page]
    assert sorted(messaged) == sorted(created[::7])


async def test_a_candidate_lists_only_their_own_conversations(scene: Scene, host: Host) -> None:
    await application(host, "app-2", candidate="erin")
    assert await ids(scene.cara) == [scene.conversation]
    assert await ids(scene.cara, q="Erin") == []
    assert await ids(scene.mallory) == [scene.other_conversation]


async def test_an_untouched_application_sorts_by_its_application_date(
    scene: Scene, host: Host
) -> None:
    """Newest means latest activity: a message, or the application itself
    while nobody has written yet."""
    old = await application(host, "app-2", candidate="erin", applied_at="2020-01-01T00:00:00Z")
    new = await application(host, "app-3", candidate="finn", applied_at="2099-01-01T00:00:00Z")
    await scene.alice.send(scene.conversation, "Hello Cara")
    assert await ids(scene.alice, sort="newest") == [new, scene.conversation, old]
    assert await ids(scene.alice, sort="oldest") == [old, scene.conversation, new]


# -- search folds case and accents (issue 11 item 9) ---------------------------------


async def test_search_folds_accents_and_case_both_ways(scene: Scene, host: Host) -> None:
    chloe = await application(host, "app-2", candidate="chloe", candidate_name="Chloé Dubois")
    plain = await application(host, "app-3", candidate="zed", candidate_name="Chloe Zed")
    french = await application(
        host, "app-4", candidate="finn", job="j4", job_title="Professeur de Français"
    )
    await scene.alice.send(scene.conversation, "We met at the CAFÉ on Großstraße")

    for q in ("chloe", "Chloé", "CHLOÉ", "chlöe", "CHLOE"):
        assert set(await ids(scene.alice, q=q)) == {chloe, plain}, q
    for q in ("francais", "FRANÇAIS", "professeur de fr"):
        assert await ids(scene.alice, q=q) == [french], q
    for q in ("cafe", "Café", "grossstrasse", "GROẞSTRASSE", "at the café"):
        assert await ids(scene.alice, q=q) == [scene.conversation], q
    # Folding never turns a letter into a wildcard or a different word.
    assert await ids(scene.alice, q="chloé dubois") == [chloe]
    assert await ids(scene.alice, q="chloe_dubois") == []
    # A query that folds to nothing (a lone accent) is no search at all.
    assert len(await ids(scene.alice, q="\u0301")) == 4
    # The other organisation searches its own conversations only.
    assert await ids(scene.mallory, q="chloe") == []


async def test_search_follows_renames_and_finds_nothing_deleted_or_hidden(
    scene: Scene, host: Host
) -> None:
    renamed = await application(host, "app-2", candidate="erin", candidate_name="Erin Smith")
    await application(host, "app-2", candidate="erin", candidate_name="Éireann Nic Mhathúna")
    assert await ids(scene.alice, q="eireann") == [renamed]
    assert await ids(scene.alice, q="smith") == []

    sent = (await scene.alice.send(scene.conversation, "Le résumé est arrivé")).json()
    assert await ids(scene.bob, q="resume") == [scene.conversation]
    response = await scene.bob.client.delete(
        f"/api/messages/{sent['id']}", params={"for": "me"}, headers=scene.bob.csrf
    )
    assert response.status_code == 204
    # Bob deleted it for himself: his search no longer finds it; Alice's does.
    assert await ids(scene.bob, q="resume") == []
    assert await ids(scene.alice, q="resume") == [scene.conversation]
    response = await scene.alice.client.delete(
        f"/api/messages/{sent['id']}", params={"for": "everyone"}, headers=scene.alice.csrf
    )
    assert response.status_code == 204
    assert await ids(scene.alice, q="resume") == []


# -- the listing's own parameters, hostile -------------------------------------------


async def test_forged_cursors_limits_and_filters_answer_invalid(scene: Scene) -> None:
    key = ["2026-11-02T09:30:00+00:00", scene.conversation]
    for params in (
        {"cursor": cursor_of([0, "2026-11-02T09:30:00", scene.conversation])},  # no zone
        {"cursor": cursor_of([0, "0001-01-01T00:00:00+14:00", "abc"])},  # before year 1
        {"cursor": cursor_of([0, "9999-12-31T23:59:59-14:00", "abc"])},  # after 9999
        {"cursor": cursor_of([0, "2026-13-45T00:00:00+00:00", "abc"])},
        {"cursor": cursor_of([True, *key])},
        {"cursor": cursor_of([1.0, *key])},
        {"cursor": cursor_of([-1, *key])},
        {"cursor": cursor_of([0, 20261102, scene.conversation])},
        {"cursor": cursor_of([0, *key, "extra"])},
        {"cursor": cursor_of([0, key[0], ""])},
        {"cursor": cursor_of([0, key[0], "x" * 65])},
        {"cursor": cursor_of({"flag": 0})},
        {"cursor": cursor_of([0, key[0], None])},
        {"cursor": "A" * 5000},
        {"cursor": "\x00"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": str(2**70)},
        {"limit": "1e3"},
        {"filter": "ALL"},
        {"sort": ""},
        {"q": "x" * 201},
    ):
        response = await scene.alice.client.get("/api/conversations", params=params)
        error_of(response, 422, "invalid")


async def test_a_cursor_naming_another_tenants_conversation_reveals_nothing(
    scene: Scene, host: Host
) -> None:
    """A cursor is a position, not an id lookup: forged with another
    organisation's conversation it still lists only the viewer's own."""
    await application(host, "app-2", candidate="erin")
    forged = cursor_of([1, "2099-01-01T00:00:00+00:00", scene.other_conversation])
    for sort in ("unread", "newest", "oldest"):
        page = await scene.alice.inbox(cursor=forged, sort=sort)
        assert {c["id"] for c in page["conversations"]} <= {
            scene.conversation,
            *await ids(scene.alice),
        }
        assert scene.other_conversation not in {c["id"] for c in page["conversations"]}
    # A zone other than UTC names the same instant.
    paris = cursor_of([0, "2099-01-01T01:00:00+01:00", "zzzz"])
    assert len((await scene.alice.inbox(cursor=paris))["conversations"]) == 2


async def test_limit_pages_with_the_keyset(scene: Scene, host: Host) -> None:
    for n in range(2, 8):
        await application(host, f"app-{n}", candidate=f"c{n}")
    pages = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = await scene.alice.inbox(**params)
        pages.append([c["id"] for c in page["conversations"]])
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [c for p in pages for c in p] == await ids(scene.alice, limit=100)
