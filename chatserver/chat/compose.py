"""What the composer asks before sending: the body's HTML as it will be shown.

The live preview is rendered by the same `formatting.render` as a sent
message (one renderer, so the preview never disagrees with the message),
under the same limits as a send.
"""

from __future__ import annotations

from typing import Any

from chatserver.chat import formatting
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid


def preview(chat: Chat, body: Any) -> dict[str, str]:
    if not isinstance(body, str):
        raise invalid("body must be a string.")
    if "\x00" in body:
        raise invalid("body must not contain NUL characters.")
    if len(body) > chat.settings.max_body_chars:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"A message has at most {chat.settings.max_body_chars} characters."
        )
    return {"html": formatting.render(body)}
