"""archives until a reply

- `archives.seq`: the conversation's `last_seq` when the staff member
  archived it. An archive is in force only while the candidate has written
  nothing after it, so a reply brings the conversation back to the inbox
  (store/archiving.py). Archives made before this revision take the
  conversation's current `last_seq`: what the candidate wrote before now
  cannot be told from what they wrote before the archive, so those stay
  archived until the next reply.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('archives', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
    op.execute(
        """
        UPDATE archives SET seq = (
            SELECT last_seq FROM conversations
            WHERE conversations.id = archives.conversation_id
        )
        """
    )
    with op.batch_alter_table('archives', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('archives', schema=None) as batch_op:
        batch_op.drop_column('seq')
