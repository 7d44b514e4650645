"""The entrance of the send flow: a send checked and handed to the
group-commit queue (`chat/sending.py`, which spends the senders' rate
limits, plans with `chat/send_plan.py`, persists with `chat/send_fast.py`
or `chat/send_careful.py` and publishes with `chat/send_publish.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from chatserver.chat import ids
from chatserver.chat.formatting import render, searchable
from chatserver.chat.identity import Viewer
from chatserver.chat.send_request import SendRequest, SendResult
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid, not_found
from chatserver.store.folding import fold


def has_content(body: str, attachment_ids: Sequence[str]) -> bool:
    """Whether a send holds something to post: words, or a file."""
    return bool(body.strip() or attachment_ids)


async def send_message(
    chat: Chat,
    viewer: Viewer,
    conversation_id: str,
    client_id: object,
    body: object,
    attachment_ids: object = (),
    *,
    via: str | None = None,
) -> SendResult:
    """Validate and hand the send to the group-commit queue. `via` says how
    the message came when not through the app ("email")."""
    request = prepare_send(chat, viewer, conversation_id, client_id, body, attachment_ids, via=via)
    return await chat.sends.submit(request)


def prepare_send(
    chat: Chat,
    viewer: Viewer,
    conversation_id: str,
    client_id: object,
    body: object,
    attachment_ids: object = (),
    *,
    via: str | None = None,
) -> SendRequest:
    """A send checked: the part a socket runs in frame order before its
    sends are pipelined. Its rate limit is spent with its batch's."""
    client = ids.client_id(client_id)
    if not isinstance(body, str):
        raise invalid("body must be a string.")
    if "\x00" in body:
        raise invalid("body must not contain NUL characters.")
    if attachment_ids is None:
        attachment_ids = ()
    if not isinstance(attachment_ids, list | tuple) or not all(
        isinstance(a, str) for a in attachment_ids
    ):
        raise invalid("attachments must be a list of attachment ids.")
    if len(attachment_ids) > chat.settings.max_attachments_per_message:
        raise invalid(
            f"At most {chat.settings.max_attachments_per_message} attachments per message."
        )
    if len(body) > chat.settings.max_body_chars:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"A message has at most {chat.settings.max_body_chars} characters."
        )
    if not has_content(body, attachment_ids):
        raise invalid("A message needs a body or an attachment.")
    # Checked here, not in the batch: one malformed id must not become a
    # database error that fails every other send written with it.
    ids.our_id(conversation_id)
    if not all(ids.plausible_id(a) for a in attachment_ids):
        raise not_found("attachment")
    return SendRequest(
        viewer=viewer,
        conversation_id=conversation_id,
        client_id=client,
        body=body,
        html=render(body),
        attachment_ids=tuple(attachment_ids),
        via=via,
        search_body=fold(searchable(body)),
    )
