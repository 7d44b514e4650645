"""reply by email

- `reply_addresses`: who a reply address speaks for (one person in one
  conversation); reply tokens carry its id, since host ids are too long for
  the 64 characters an address may have before the `@`.
- `messages.via`: "email" for a message that came as a reply to a
  notification email (shown as "by email"), null for the app.
- `outgoing_emails.reason`: the sentence of an email that tells someone why
  their reply was not posted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('reply_addresses',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('person_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_kind', 'person_id', 'conversation_id', name='uq_reply_addresses_person')
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('via')
    op.drop_table('reply_addresses')
