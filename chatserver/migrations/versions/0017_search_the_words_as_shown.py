"""search finds the words as shown

`messages.search_body` held the body as written, folded, so a search for
"uniform policy" missed "is there a **uniform** policy". It now holds the
words as shown and, when they differ, the body as written
(chatserver/chat/formatting.py `searchable`). Existing messages are
refolded here in Python, a page at a time; only rows whose text changes
are written. The schema does not change.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from chatserver.chat.formatting import searchable
from chatserver.store.folding import fold

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows read per round trip.
PAGE = 1000


def upgrade() -> None:
    _refold(lambda body: fold(searchable(body)))


def downgrade() -> None:
    _refold(fold)


def _refold(searched: Callable[[str], str]) -> None:
    bind = op.get_bind()
    last = ''
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, body, search_body FROM messages "
                "WHERE deleted = :no AND sender_kind <> 'system' AND id > :last "
                "ORDER BY id LIMIT :page"
            ),
            {'no': False, 'last': last, 'page': PAGE},
        ).all()
        if not rows:
            return
        changed = [
            {'id': id_, 'searched': new}
            for id_, body, old in rows
            if (new := searched(body)) != old
        ]
        if changed:
            bind.execute(
                sa.text('UPDATE messages SET search_body = :searched WHERE id = :id'), changed
            )
        last = rows[-1][0]
