"""client_token on requests and approvals: a redelivered Slack interaction finds what it already did

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A column and a unique index, no table constraint: on SQLite a constraint means rebuilding `requests`,
# whose DROP fails under foreign keys once approvals and grants point at it (tests/test_migrations.py).
def upgrade() -> None:
    op.add_column('requests', sa.Column('client_token', sa.String(length=128), nullable=True))
    op.create_index('ix_requests_client_token', 'requests', ['client_token'], unique=True)
    op.add_column('approvals', sa.Column('client_token', sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column('approvals', 'client_token')
    op.drop_index('ix_requests_client_token', table_name='requests')
    op.drop_column('requests', 'client_token')  # SQLite 3.35+ drops a column in place
