"""attachments by bytes

- `ix_attachments_sha256` and `ix_attachments_thumbnail_sha256`: whether
  any attachment still refers to a blob, asked before its bytes are
  deleted once the message that carried it is deleted for everyone.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 23:10:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index('ix_attachments_sha256', ['sha256'], unique=False)
        batch_op.create_index(
            'ix_attachments_thumbnail_sha256', ['thumbnail_sha256'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_thumbnail_sha256')
        batch_op.drop_index('ix_attachments_sha256')
