"""attachments by uploader

- `ix_attachments_uploader`: a person's recent uploads, counted before each
  upload to bound the files a person may have uploaded and not sent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 07:40:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(
            'ix_attachments_uploader', ['uploader_kind', 'uploader_id', 'created_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_uploader')
