"""SPEC 5, the WebSocket protocol, frame by frame, on both backends."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus

from chatserver.chat.limits import limits_from_settings
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import Host
from tests.ws_helpers import (
    FRAME_TIMEOUT,
    LiveServer,
    Socket,
    Subscriptions,
    had,
    open_socket,
    seqs,
)


def send_frame(conversation: str, body: object = "Hello", **extra: Any) -> dict[str, Any]:
    return {
        "type": "send",
        "conversation": conversation,
        "client_id": str(uuid.uuid4()),
        "body": body,
        **extra,
    }


async def test_ping_answers_pong(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws:
        await ws.send({"type": "ping"})
        assert await ws.recv() == {"type": "pong"}


async def test_malformed_frames_get_invalid_and_the_connection_stays_open(
    server: LiveServer, scene: Scene
) -> None:
    async with open_socket(server, scene.alice) as ws:
        for bad in (
            "not json",
            "[1]",
            '{"type": "dance"}',
            '{"type": "subscribe", "conversation": 5}',
            '{"type": "subscribe", "conversation": "c", "after": true}',
            '{"type": "read", "conversation": "c", "seq": -1}',
        ):
            await ws.send(bad)
            error = await ws.expect("error")
            assert error["code"] == "invalid"
            assert error["message"]
        await ws.send({"type": "ping"})
        assert await ws.recv() == {"type": "pong"}


async def test_a_bad_send_echoes_its_client_id(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws:
        frame = send_frame(scene.conversation, body=42)
        await ws.send(frame)
        error = await ws.expect("error")
        assert error["code"] == "invalid"
        assert error["client_id"] == frame["client_id"]


async def test_unauthenticated_client_gets_unauthorized_then_close(server: LiveServer) -> None:
    async with open_socket(server, None) as ws:
        error = await ws.expect("error")
        assert error["code"] == "unauthorized"
        assert await ws.closed_code() == 1008


async def test_foreign_origin_is_refused_at_the_handshake(server: LiveServer, scene: Scene) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(server, scene.alice, origin="https://evil.example") as ws:
            await ws.send({"type": "ping"})  # never reached: the handshake fails
    assert refused.value.response.status_code == 403
    async with open_socket(server, scene.alice, origin=None) as ws:
        await ws.send({"type": "ping"})
        assert await ws.recv() == {"type": "pong"}


async def test_a_frame_over_64_kib_closes_with_1009(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws:
        await ws.send("x" * (64 * 1024 + 1))
        assert await ws.closed_code() == 1009
    async with open_socket(server, scene.alice) as ws:
        await ws.send(send_frame(scene.conversation, body="y" * 1000))
        assert (await ws.expect("ack"))["message"]["seq"] == 1


async def test_other_tenants_conversation_is_not_found(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.mallory) as ws:
        await ws.send({"type": "subscribe", "conversation": scene.conversation})
        assert (await ws.expect("error"))["code"] == "not_found"
        frame = send_frame(scene.conversation)
        await ws.send(frame)
        error = await ws.expect("error")
        assert (error["code"], error["client_id"]) == ("not_found", frame["client_id"])
        await ws.send({"type": "read", "conversation": scene.conversation, "seq": 1})
        assert (await ws.expect("error"))["code"] == "not_found"
        await ws.send({"type": "typing", "conversation": scene.conversation})
        assert (await ws.expect("error"))["code"] == "invalid"
        await ws.send({"type": "subscribe", "conversation": "no-such-thing"})
        assert (await ws.expect("error"))["code"] == "not_found"


async def test_send_is_acked_and_reaches_every_subscriber_and_the_senders_other_tab(
    server: LiveServer, scene: Scene
) -> None:
    async with (
        open_socket(server, scene.alice) as tab1,
        open_socket(server, scene.alice) as tab2,
        open_socket(server, scene.cara) as cara,
    ):
        for ws in (tab1, tab2, cara):
            subscribed = await ws.subscribe(scene.conversation)
            assert subscribed["last_seq"] == 0
            assert subscribed["state"] == "open"
        frame = send_frame(scene.conversation, "Hello **Cara**")
        await tab1.send(frame)
        frames = await tab1.collect(lambda fs: any(f["type"] == "ack" for f in fs))
        ack = next(f for f in frames if f["type"] == "ack")
        assert ack["client_id"] == frame["client_id"]
        message = ack["message"]
        assert message["seq"] == 1
        assert message["body"] == "Hello **Cara**"
        assert "<strong>Cara</strong>" in message["html"]
        assert message["sender"] == {"kind": "staff", "id": "alice", "name": "Alice Recruiter"}
        assert (await tab2.expect("message"))["message"] == message
        assert (await cara.expect("message"))["message"] == message
        # The sending socket's copy is left out (its ack carried the
        # message): the room has fanned out by now, so a copy would have
        # been queued before the answer to this ping.
        await tab1.send({"type": "ping"})
        rest = await tab1.collect(lambda fs: bool(fs) and fs[-1]["type"] == "pong")
        assert [f["type"] for f in frames + rest] == ["ack", "pong"]


async def test_pipelined_sends_are_all_acked_and_stored_in_the_order_sent(
    server: LiveServer, scene: Scene
) -> None:
    async with open_socket(server, scene.alice) as ws:
        frames = [send_frame(scene.conversation, f"p{n}") for n in range(50)]
        for frame in frames:
            await ws.send(frame)
        answers = await ws.collect(
            lambda fs: sum(f["type"] == "ack" for f in fs) == len(frames), within=20
        )
    seq_of = {f["client_id"]: f["message"]["seq"] for f in answers if f["type"] == "ack"}
    assert [seq_of[f["client_id"]] for f in frames] == list(range(1, 51))


async def test_a_repeated_client_id_is_acked_with_the_original(
    server: LiveServer, scene: Scene
) -> None:
    async with open_socket(server, scene.alice) as ws:
        frame = send_frame(scene.conversation)
        await ws.send(frame)
        first = await ws.expect("ack")
        await ws.send(frame)
        second = await ws.expect("ack")
        assert first["message"] == second["message"]
    assert len(await scene.alice.history(scene.conversation)) == 1


async def test_subscribe_with_after_replays_exactly_the_missing_messages(
    server: LiveServer, scene: Scene
) -> None:
    for n in range(5):
        assert (await scene.alice.send(scene.conversation, f"m{n}")).status_code == 201
    async with open_socket(server, scene.cara) as ws:
        subscribed = await ws.subscribe(scene.conversation, after=2)
        assert subscribed["last_seq"] == 5
        replay = await ws.collect(lambda fs: len(fs) == 3)
        assert seqs(replay) == [3, 4, 5]
        assert [f["message"]["body"] for f in replay] == ["m2", "m3", "m4"]
        await scene.alice.send(scene.conversation, "live")
        assert (await ws.expect("message"))["message"]["seq"] == 6
        assert seqs(await ws.quiet()) == []


async def test_history_replay_and_live_stream_equal_the_database_under_concurrent_sends(
    server: LiveServer, scene: Scene
) -> None:
    """Subscribing while messages are being sent misses and repeats nothing."""
    total = 60
    # The late socket subscribes while sends are under way.
    under_way = asyncio.Event()

    async def sender() -> None:
        for n in range(total):
            response = await scene.alice.send(scene.conversation, f"m{n}")
            assert response.status_code == 201
            if n == 2:
                under_way.set()

    async with open_socket(server, scene.cara) as early, open_socket(server, scene.bob) as late:
        await early.subscribe(scene.conversation)
        sending = asyncio.create_task(sender())
        await asyncio.wait_for(under_way.wait(), FRAME_TIMEOUT)
        await late.subscribe(scene.conversation)
        early_frames = await early.collect(lambda fs: len(seqs(fs)) >= total, within=20)
        late_frames = await late.collect(
            lambda fs: bool(seqs(fs)) and seqs(fs)[-1] >= total, within=20
        )
        await sending
        assert seqs(early_frames) == list(range(1, total + 1))
        assert seqs(late_frames) == list(range(1, total + 1))
        stored = await scene.alice.history(scene.conversation, limit=200)
        assert [m["seq"] for m in stored] == list(range(1, total + 1))


async def test_two_subscribers_see_the_same_seq_order(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.cara) as cara:
        await alice.subscribe(scene.conversation)
        await cara.subscribe(scene.conversation)
        for n in range(10):
            await alice.send(send_frame(scene.conversation, f"a{n}"))
            await cara.send(send_frame(scene.conversation, f"c{n}"))
        alice_frames = await alice.collect(lambda fs: len(had(fs)) == 20)
        cara_frames = await cara.collect(lambda fs: len(had(fs)) == 20)
        # Each has every seq, and its message frames come in seq order, once
        # each (an ack may come ahead of another's earlier message).
        assert had(alice_frames) == had(cara_frames) == set(range(1, 21))
        for frames in (alice_frames, cara_frames):
            assert seqs(frames) == sorted(set(seqs(frames)))


async def test_hidden_messages_replay_as_hidden_and_empty(server: LiveServer, scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "keep")
    secret = (await scene.cara.send(scene.conversation, "hide me")).json()
    response = await scene.alice.client.delete(
        f"/api/messages/{secret['id']}", params={"for": "me"}, headers=scene.alice.csrf
    )
    assert response.status_code == 204
    async with open_socket(server, scene.alice) as ws:
        await ws.subscribe(scene.conversation)
        first, second = await ws.collect(lambda fs: len(fs) == 2)
        assert first["message"]["hidden"] is False
        assert second["message"]["seq"] == 2
        assert second["message"]["hidden"] is True
        assert (second["message"]["body"], second["message"]["html"]) == ("", "")


async def test_read_receipts_reach_the_other_subscribers(server: LiveServer, scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "hello")
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.cara) as cara:
        await alice.subscribe(scene.conversation)
        await alice.expect("message")
        await cara.subscribe(scene.conversation)
        await cara.expect("message")
        await cara.send({"type": "read", "conversation": scene.conversation, "seq": 1})
        read = await alice.next_of("read")
        assert read == {
            "type": "read",
            "conversation": scene.conversation,
            "reader": {"kind": "candidate", "id": scene.cara.id, "name": scene.cara.me["name"]},
            "seq": 1,
        }


async def test_typing_reaches_others_but_not_the_typist_and_is_throttled(
    server: LiveServer, scene: Scene
) -> None:
    async with (
        open_socket(server, scene.alice) as alice,
        open_socket(server, scene.alice) as alice_tab,
        open_socket(server, scene.cara) as cara,
    ):
        for ws in (alice, alice_tab, cara):
            await ws.subscribe(scene.conversation)
        await alice.send({"type": "typing", "conversation": scene.conversation})
        await alice.send({"type": "typing", "conversation": scene.conversation})
        typing = await cara.expect("typing")
        assert typing == {
            "type": "typing",
            "conversation": scene.conversation,
            "who": {"kind": "staff", "id": "alice", "name": "Alice Recruiter"},
        }
        assert await cara.quiet() == []
        assert await alice.quiet() == []
        assert await alice_tab.quiet(0.05) == []


async def test_typing_needs_a_subscription(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws:
        await ws.send({"type": "typing", "conversation": scene.conversation})
        assert (await ws.expect("error"))["code"] == "invalid"


async def test_inbox_frames_carry_each_staff_members_own_unread(
    server: LiveServer, scene: Scene, subscriptions: Subscriptions
) -> None:
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.bob) as bob:
        for ws in (alice, bob):
            await ws.send({"type": "inbox"})
            # Frames are answered in order: the pong says the inbox frame was taken.
            await ws.send({"type": "ping"})
            await ws.expect("pong")
        await subscriptions.live("org:")
        await scene.cara.send(scene.conversation, "Is the job still open?")
        for ws in (alice, bob):
            inbox = await ws.next_of("inbox")
            assert inbox["conversation"] == scene.conversation
            assert inbox["unread"] == 1
            assert inbox["last_message"]["body"] == "Is the job still open?"
        await alice.send({"type": "read", "conversation": scene.conversation, "seq": 1})
        assert (await alice.next_of("inbox"))["unread"] == 0
        bobs = await bob.next_of("inbox")
        assert bobs["unread"] == 1
        assert bobs["last_message"]["seq"] == 1


async def test_inbox_is_for_staff(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.cara) as ws:
        await ws.send({"type": "inbox"})
        assert (await ws.expect("error"))["code"] == "forbidden"


async def test_ending_and_reopening_sends_conversation_frames_with_per_role_can_send(
    server: LiveServer, scene: Scene
) -> None:
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.cara) as cara:
        assert (await alice.subscribe(scene.conversation))["can_send"] is True
        assert (await cara.subscribe(scene.conversation))["can_send"] is True
        response = await scene.alice.post(f"/api/conversations/{scene.conversation}/end")
        assert response.status_code == 200
        expected = {"type": "conversation", "conversation": scene.conversation, "state": "ended"}
        assert await alice.next_of("conversation") == {**expected, "can_send": True}
        assert await cara.next_of("conversation") == {**expected, "can_send": False}
        await cara.send(send_frame(scene.conversation))
        assert (await cara.next_of("error"))["code"] == "conversation_ended"
        await alice.send(send_frame(scene.conversation, "One more thing"))
        reopened = {**expected, "state": "open"}
        assert await alice.next_of("conversation") == {**reopened, "can_send": True}
        assert await cara.next_of("conversation") == {**reopened, "can_send": True}


def staff_message(frames: list[dict[str, Any]]) -> bool:
    """Whether the last frame is a staff member's message."""
    return (
        bool(frames)
        and frames[-1]["type"] == "message"
        and (frames[-1]["message"]["sender"]["kind"] == "staff")
    )


async def test_the_first_staff_message_lets_a_waiting_candidate_reply_at_once(
    server: LiveServer, scene: Scene, host: Host
) -> None:
    """A candidate may reply only once staff have written (status
    submitted): the first staff message brings their open page a
    `conversation` frame with can_send, before the message itself."""
    await host.application("app-1", org="acme", candidate="cara", status="submitted")
    async with open_socket(server, scene.cara) as cara:
        assert (await cara.subscribe(scene.conversation))["can_send"] is False
        await scene.alice.send(scene.conversation, "Thanks for applying")
        frames = await cara.collect(staff_message)
        changes = [f for f in frames if f["type"] == "conversation" or f is frames[-1]]
        assert [f["type"] for f in changes] == ["conversation", "message"]
        assert changes[0] == {
            "type": "conversation",
            "conversation": scene.conversation,
            "state": "open",
            "can_send": True,
        }
        await scene.alice.send(scene.conversation, "We will be in touch")
        frames = await cara.collect(staff_message)
        assert "conversation" not in [f["type"] for f in frames], "only the first changes it"
        await cara.send(send_frame(scene.conversation, "Thank you!"))
        assert (await cara.next_of("ack"))["message"]["body"] == "Thank you!"


async def test_deleting_for_everyone_sends_deleted(server: LiveServer, scene: Scene) -> None:
    message = (await scene.cara.send(scene.conversation, "oops")).json()
    async with open_socket(server, scene.alice) as alice:
        await alice.subscribe(scene.conversation)
        await alice.expect("message")
        response = await scene.cara.client.delete(
            f"/api/messages/{message['id']}", params={"for": "everyone"}, headers=scene.cara.csrf
        )
        assert response.status_code == 204
        assert await alice.next_of("deleted") == {
            "type": "deleted",
            "conversation": scene.conversation,
            "seq": 1,
        }


async def test_notifications_reach_the_recipients_sockets(
    server: LiveServer, scene: Scene, subscriptions: Subscriptions
) -> None:
    async with open_socket(server, scene.cara) as cara:
        await subscriptions.live("org:")
        await scene.alice.send(scene.conversation, "Can you come on Tuesday?")
        note = (await cara.next_of("notification"))["notification"]
        assert note["conversation"] == scene.conversation
        assert "Alice Recruiter" in note["text"]


async def test_sending_too_fast_is_rate_limited_with_retry_after(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    chat = app.state.services.chat
    usual = chat.limits
    chat.limits = chat.sends.limits = limits_from_settings(
        chat.settings.with_(send_rate=0.5, send_burst=1)
    )
    await chat.limits.start()
    try:
        await send_too_fast(server, scene)
    finally:
        await chat.limits.stop()
        chat.limits = chat.sends.limits = usual


async def send_too_fast(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws:
        await ws.send(send_frame(scene.conversation))
        await ws.expect("ack")
        frame = send_frame(scene.conversation)
        await ws.send(frame)
        error = await ws.expect("error")
        assert (error["code"], error["client_id"]) == ("rate_limited", frame["client_id"])
        assert 0 < error["retry_after_ms"] <= 2000


def limit_frames(app: Any, rate: float, burst: int) -> None:
    """Sockets opened from now on get `burst` frames, then `rate` per second."""
    hub = app.state.services.hub
    hub.settings = hub.settings.with_(frame_rate=rate, frame_burst=burst)


async def test_a_flood_of_subscribes_is_answered_rate_limited_and_replays_nothing_more(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    history = 4
    for number in range(history):
        await scene.cara.send(scene.conversation, f"message {number}")
    burst, flood = 5, 150
    limit_frames(app, rate=0.5, burst=burst)
    async with open_socket(server, scene.alice) as ws:
        for _ in range(flood):
            await ws.send({"type": "subscribe", "conversation": scene.conversation, "after": 0})
        frames = await ws.collect(
            lambda fs: sum(f["type"] in ("subscribed", "error") for f in fs) == flood, within=30
        )
        frames += await ws.quiet()
    errors = [f for f in frames if f["type"] == "error"]
    assert len([f for f in frames if f["type"] == "subscribed"]) == burst
    assert len(errors) == flood - burst
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert all(0 < e["retry_after_ms"] <= 2000 for e in errors)
    assert len(seqs(frames)) == burst * history


async def test_reads_typing_unsubscribes_and_pings_share_the_sockets_budget_but_sends_do_not(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    limit_frames(app, rate=0.5, burst=1)
    async with open_socket(server, scene.alice) as ws:
        await ws.subscribe(scene.conversation)
        limited: list[dict[str, Any]] = [
            {"type": "read", "conversation": scene.conversation, "seq": 0},
            {"type": "typing", "conversation": scene.conversation},
            {"type": "unsubscribe", "conversation": scene.conversation},
            {"type": "inbox"},
            {"type": "ping"},
        ]
        for frame in limited:
            await ws.send(frame)
            error = await ws.expect("error")
            assert error["code"] == "rate_limited"
            assert error["retry_after_ms"] > 0
        frame = send_frame(scene.conversation)
        await ws.send(frame)
        ack = await ws.next_of("ack")
        assert ack["client_id"] == frame["client_id"]
    async with open_socket(server, scene.alice) as fresh:
        await fresh.send({"type": "ping"})
        assert await fresh.expect("pong") == {"type": "pong"}


async def test_the_frame_budget_refills_at_its_rate(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    limit_frames(app, rate=20.0, burst=1)
    async with open_socket(server, scene.alice) as ws:
        await ws.send({"type": "ping"})
        await ws.expect("pong")
        await ws.send({"type": "ping"})
        error = await ws.expect("error")
        assert error["code"] == "rate_limited"
        await asyncio.sleep(error["retry_after_ms"] / 1000)
        await ws.send({"type": "ping"})
        await ws.expect("pong")


async def test_connections_beyond_the_per_user_cap_are_refused(
    server: LiveServer, scene: Scene, settings: Settings
) -> None:
    cap = settings.max_connections_per_user
    sockets: list[Socket] = []
    contexts = [open_socket(server, scene.alice) for _ in range(cap)]
    try:
        for context in contexts:
            sockets.append(await context.__aenter__())
        for ws in sockets:
            await ws.send({"type": "ping"})
            await ws.expect("pong")
        async with open_socket(server, scene.alice) as extra:
            error = await extra.expect("error")
            assert error["code"] == "rate_limited"
            assert await extra.closed_code() == 1013
        async with open_socket(server, scene.bob) as other:
            await other.send({"type": "ping"})
            await other.expect("pong")
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)
    async with open_socket(server, scene.alice) as again:
        await again.send({"type": "ping"})
        await again.expect("pong")


async def test_unsubscribe_stops_the_stream(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws:
        await ws.subscribe(scene.conversation)
        await ws.send({"type": "unsubscribe", "conversation": scene.conversation})
        await ws.send({"type": "ping"})
        await ws.expect("pong")
        await scene.cara.send(scene.conversation, "anyone?")
        assert seqs(await ws.quiet()) == []


frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "send", "read", "typing", "unsubscribe", "x"])},
    optional={
        "conversation": st.none() | st.integers() | st.text(max_size=300),
        "after": st.none() | st.integers() | st.booleans() | st.text(max_size=3),
        "seq": st.none() | st.integers() | st.floats(allow_nan=False),
        "client_id": st.none() | st.text(max_size=40) | st.just(str(uuid.uuid4())),
        "body": st.none() | st.integers() | st.text(max_size=50),
        "attachments": st.none() | st.lists(st.text(max_size=5) | st.integers(), max_size=3),
    },
).map(json.dumps) | st.text(max_size=100)


async def test_generated_malformed_frames_never_break_the_connection(
    server: LiveServer, scene: Scene
) -> None:
    generated: list[str] = []

    @hypothesis_settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def collect(frame: str) -> None:
        generated.append(frame)

    collect()
    async with open_socket(server, scene.mallory) as ws:
        for frame in generated:
            await ws.send(frame)
        await ws.send({"type": "ping"})
        answers = await ws.collect(lambda fs: bool(fs) and fs[-1]["type"] == "pong", within=30)
        codes = {f.get("code") for f in answers if f["type"] == "error"}
        assert codes <= {"invalid", "not_found", "too_large", "rate_limited"}
