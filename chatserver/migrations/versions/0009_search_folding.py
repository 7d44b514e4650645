"""search columns folded for accent- and case-insensitive search

Candidate names, job titles and message bodies get a folded copy
(chatserver/store/folding.py) that search compares with the folded query,
so "chloe" finds "Chloé" on SQLite and PostgreSQL alike. Existing rows are
folded here: ASCII text by the database's own lower() (which folds ASCII the
same way everywhere), the rest in Python, a page at a time. The server
default only serves this migration; the application always writes the column.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-23 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatserver.store.folding import fold

revision: str = '0009'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, source column, folded column)
COLUMNS = (
    ('candidates', 'name', 'search_name'),
    ('jobs', 'title', 'search_title'),
    ('messages', 'body', 'search_body'),
)
# Rows folded in Python per round trip.
PAGE = 1000


def upgrade() -> None:
    for table, _, folded in COLUMNS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column(folded, sa.Text(), nullable=False, server_default=''))
    bind = op.get_bind()
    for table, source, folded in COLUMNS:
        _fold_existing(bind, table, source, folded)
    for table, _, folded in COLUMNS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column(
                folded, server_default=None, existing_type=sa.Text(), existing_nullable=False
            )


def _fold_existing(bind: sa.engine.Connection, table: str, source: str, folded: str) -> None:
    bind.execute(sa.text(f'UPDATE {table} SET {folded} = lower({source})'))
    # Characters and bytes differ in number exactly when the text is not ASCII.
    if bind.dialect.name == 'postgresql':
        byte_length = f'octet_length({source})'
    else:
        byte_length = f'length(CAST({source} AS BLOB))'
    last = ''
    while True:
        rows = bind.execute(
            sa.text(
                f'SELECT id, {source} FROM {table} '
                f'WHERE length({source}) <> {byte_length} AND id > :last ORDER BY id LIMIT :page'
            ),
            {'last': last, 'page': PAGE},
        ).all()
        if not rows:
            return
        bind.execute(
            sa.text(f'UPDATE {table} SET {folded} = :folded WHERE id = :id'),
            [{'id': row[0], 'folded': fold(row[1])} for row in rows],
        )
        last = rows[-1][0]


def downgrade() -> None:
    for table, _, folded in COLUMNS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column(folded)
