"""Length caps on stored user text (reason, ticket, notes) in the database itself, and an index on
processed_events.at so the retention prune does not scan the table

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, longest): the numbers of service/store/limits.py as they were when this was written.
CAPS = (
    ('requests', 'reason', 2000),
    ('requests', 'decision_note', 2000),
    ('requests', 'ticket', 256),
    ('approvals', 'note', 2000),
)


def _name(table: str, column: str) -> str:
    return f'ck_{table}_{column}_len'


# PostgreSQL: a CHECK constraint, NOT VALID so rows filed before it (if any were longer) do not stop the
# upgrade; every new or changed row is checked. SQLite: a constraint would mean rebuilding `requests`, whose
# DROP fails under foreign keys (see 0003), so triggers refuse the same rows instead.
def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for table, column, longest in CAPS:
        name = _name(table, column)
        if postgresql:
            op.execute(f'ALTER TABLE {table} ADD CONSTRAINT {name} '
                       f'CHECK ({column} IS NULL OR char_length({column}) <= {longest}) NOT VALID')
            continue
        for event in ('INSERT', f'UPDATE OF {column}'):
            op.execute(
                f"CREATE TRIGGER {name}_{event.split()[0].lower()} BEFORE {event} ON {table} "
                f"WHEN NEW.{column} IS NOT NULL AND length(NEW.{column}) > {longest} "
                f"BEGIN SELECT RAISE(ABORT, '{table}.{column} is longer than {longest} characters'); END")
    op.create_index('ix_processed_events_at', 'processed_events', ['at'])


def downgrade() -> None:
    op.drop_index('ix_processed_events_at', table_name='processed_events')
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for table, column, _longest in CAPS:
        name = _name(table, column)
        if postgresql:
            op.execute(f'ALTER TABLE {table} DROP CONSTRAINT {name}')
        else:
            op.execute(f'DROP TRIGGER {name}_insert')
            op.execute(f'DROP TRIGGER {name}_update')


