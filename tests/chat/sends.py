"""Scenario helpers of the send tests: the worker's chat, a viewer, a send
request, the stored seqs, and one batch written by a queue of its own (a
second worker, as far as what it remembers goes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from chatserver.chat import queries
from chatserver.chat.formatting import render
from chatserver.chat.identity import Viewer
from chatserver.chat.limits import Limits
from chatserver.chat.send_request import SendRequest, SendResult
from chatserver.chat.sending import SendQueue
from chatserver.chat.service import Chat
from chatserver.clock import utcnow


def chat_of(app: Any) -> Chat:
    chat = app.state.services.chat
    assert isinstance(chat, Chat)
    return chat


async def viewer(chat: Chat, kind: str, person_id: str, *applications: str) -> Viewer:
    found = await queries.viewer_for(chat, kind, person_id, applications)
    assert found is not None
    return found


def request(who: Viewer, conversation: str, body: str, client_id: str | None = None) -> SendRequest:
    return SendRequest(
        viewer=who,
        conversation_id=conversation,
        client_id=client_id or str(uuid.uuid4()),
        body=body,
        html=render(body),
    )


async def seqs(chat: Chat, who: Viewer, conversation: str) -> list[int]:
    history = await queries.history(chat, who, conversation, limit=200)
    return [m["seq"] for m in history]


async def one_batch(
    chat: Chat, requests: Sequence[SendRequest], limits: Limits | None = None
) -> tuple[list[SendResult | BaseException], list[int]]:
    """Queue every request before a single writer starts, so they are
    written as one batch; returns the outcomes and the stored batch sizes."""
    batches: list[int] = []
    queue = SendQueue(
        chat.db,
        chat.events,
        limits or chat.limits,
        utcnow,
        max_batch=len(requests),
        writers=1,
        on_stored=lambda count, _seconds: batches.append(count),
    )
    pending = [asyncio.ensure_future(queue.submit(r)) for r in requests]
    await asyncio.sleep(0)
    assert queue.backlog == len(requests)
    await queue.start()
    try:
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await queue.stop()
    return list(outcomes), batches


async def cast(app: Any) -> tuple[Chat, Viewer, Viewer]:
    """The worker's chat, and the scene's alice (staff) and cara (the
    candidate of app-1), as the domain sees them."""
    chat = chat_of(app)
    return (
        chat,
        await viewer(chat, "staff", "alice"),
        await viewer(chat, "candidate", "cara", "app-1"),
    )
