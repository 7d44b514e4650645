"""attachment bytes in the database, thumbnails, emails composed when sent

- `attachment_blobs`: attachment and thumbnail bytes by content hash, in
  parts, so that several machines sharing one PostgreSQL database serve the
  same files (the embedded default keeps them in CHAT_ATTACHMENTS_DIR).
- `attachments.thumbnail_sha256`: the server-made thumbnail of an image.
- `outgoing_emails`: what an email is about (topic, conversation, seq range,
  digest date), so its text is composed when it is sent, from what is still
  there, rather than stored when it is planned.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('attachment_blobs',
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', 'part')
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('thumbnail_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='messages'))
        batch_op.add_column(sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('after_seq', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_seq', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('local_date', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))
    # Emails recorded before this revision carry their coverage in the key:
    # msg:<conversation>:<last seq>:<kind>:<person> and digest:<date>:<kind>:<person>.
    emails = sa.table(
        'outgoing_emails',
        sa.column('id', sa.Integer()),
        sa.column('key', sa.String()),
        sa.column('topic', sa.String()),
        sa.column('conversation_id', sa.String()),
        sa.column('last_seq', sa.Integer()),
        sa.column('local_date', sa.String()),
    )
    bind = op.get_bind()
    for email_id, key in bind.execute(sa.select(emails.c.id, emails.c.key)).all():
        fields = key.split(':')
        if fields[0] == 'msg' and len(fields) >= 3 and fields[2].isdigit():
            values = {'topic': 'messages', 'conversation_id': fields[1], 'last_seq': int(fields[2])}
        elif fields[0] == 'digest' and len(fields) >= 2:
            values = {'topic': 'digest', 'local_date': fields[1][:10]}
        else:
            continue
        bind.execute(sa.update(emails).where(emails.c.id == email_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.drop_column('local_date')
        batch_op.drop_column('last_seq')
        batch_op.drop_column('after_seq')
        batch_op.drop_column('conversation_id')
        batch_op.drop_column('topic')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_column('thumbnail_sha256')
    op.drop_table('attachment_blobs')
