"""attachment positions

- `attachments.position`: a file's place among its message's files, in the
  order the sender named them in the send (0, 1, …); null until a send
  claims the file. Files sent before this revision get their place by the
  order they were listed in until now: upload time, then id.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 10:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('position', sa.Integer(), nullable=True))
    # How many of the message's files come before this one (one correlated
    # count each: both PostgreSQL and SQLite run it, and a message has at
    # most five files).
    op.execute(
        """
        UPDATE attachments SET position = (
            SELECT count(*) FROM attachments earlier
            WHERE earlier.message_id = attachments.message_id
              AND (earlier.created_at < attachments.created_at
                   OR (earlier.created_at = attachments.created_at
                       AND earlier.id < attachments.id))
        )
        WHERE message_id IS NOT NULL
        """
    )


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_column('position')
