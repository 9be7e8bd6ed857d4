"""What Keyturn owns in each target as last read back from IAM (the console's grant detail shows it)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('targets') as batch:
        batch.add_column(sa.Column('last_owned', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('targets') as batch:
        batch.drop_column('last_owned')
