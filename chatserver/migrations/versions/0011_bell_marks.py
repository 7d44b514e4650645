"""bell marks

- `bell_marks`: per person and conversation, the seq up to which the bell
  entry was marked read. The bell is derived from messages, read positions
  and these marks, so a send no longer writes a `notifications` row per
  recipient (issue 10: nothing per message grows with the organisation).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bell_marks',
    sa.Column('person_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.PrimaryKeyConstraint('person_kind', 'person_id', 'conversation_id')
    )


def downgrade() -> None:
    op.drop_table('bell_marks')
