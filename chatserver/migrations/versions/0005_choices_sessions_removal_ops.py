"""person's own choices, revocable sessions, staff removal, operators,
candidate links bound to the candidate, staff-link replay window

- staff/candidates `timezone_chosen`, `notifications_chosen`: the host's
  value is only a default until the person chooses in Settings.
- staff/candidates `session_generation`: sessions and staff links carry it;
  sign-out and removal bump it, which ends every earlier session.
- staff `removed_at` (DELETE /api/v1/staff/{id}) and `ops` (operators).
- applications `candidate_since`: candidate links signed before the current
  candidate was given the application are refused.
- used_login_tokens `expires_at`: a used token is forgotten only once it can
  no longer verify (rows already there get their used time plus the
  link's lifetime and a margin, which is later than their real expiry).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 15:30:00
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0005'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The staff-link lifetime (5 minutes) plus a margin, for rows written before
# this revision recorded each token's own expiry.
LEGACY_TOKEN_LIFETIME = timedelta(minutes=5, seconds=10)


def _person_columns(batch_op: object) -> None:
    add = batch_op.add_column  # type: ignore[attr-defined]
    add(sa.Column('timezone_chosen', sa.Boolean(), nullable=False, server_default=sa.false()))
    add(sa.Column('notifications_chosen', sa.Boolean(), nullable=False, server_default=sa.false()))
    add(sa.Column('session_generation', sa.Integer(), nullable=False, server_default='0'))


def upgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        _person_columns(batch_op)
        batch_op.add_column(sa.Column('removed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('ops', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        _person_columns(batch_op)
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('candidate_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('used_login_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    tokens = sa.table(
        'used_login_tokens',
        sa.column('token_id', sa.String()),
        sa.column('used_at', sqlmodel.sql.sqltypes.UTCDateTime()),
        sa.column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    bind = op.get_bind()
    for token_id, used_at in bind.execute(sa.select(tokens.c.token_id, tokens.c.used_at)).all():
        bind.execute(
            tokens.update()
            .where(tokens.c.token_id == token_id)
            .values(expires_at=used_at + LEGACY_TOKEN_LIFETIME)
        )


def downgrade() -> None:
    with op.batch_alter_table('used_login_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_column('candidate_since')
    for table in ('candidates', 'staff'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == 'staff':
                batch_op.drop_column('ops')
                batch_op.drop_column('removed_at')
            batch_op.drop_column('session_generation')
            batch_op.drop_column('notifications_chosen')
            batch_op.drop_column('timezone_chosen')
