"""Security keys (WebAuthn credentials) people register in the console to confirm approvals, and the
single-use challenges handed out for registering one or confirming a request

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'security_keys',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('credential_id', sa.String(length=1400), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('sign_count', sa.Integer(), nullable=False),
        sa.Column('transports', sa.String(length=128), nullable=True),
        sa.Column('label', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('credential_id'),
    )
    op.create_index('ix_security_keys_person', 'security_keys', ['user_id', 'team_id'])
    op.create_table(
        'security_key_challenges',
        sa.Column('challenge', sa.String(length=128), nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('purpose', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('challenge'),
    )
    op.create_index('ix_security_key_challenges_created_at', 'security_key_challenges', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_security_key_challenges_created_at', table_name='security_key_challenges')
    op.drop_table('security_key_challenges')
    op.drop_index('ix_security_keys_person', table_name='security_keys')
    op.drop_table('security_keys')
