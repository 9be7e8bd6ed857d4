"""identity_key on requests and grants: the person as the catalogue named them, compared with the catalogue
again when the approval lands and on every sync; group-policy leases pinned to one member

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('requests', sa.Column('identity_key', sa.String(length=2048), nullable=True))
    op.add_column('grants', sa.Column('identity_key', sa.String(length=2048), nullable=True))
    # Before identities, a principal was an IAM user (or role) ARN, and an IAM user's identity key is its
    # ARN: the rows keep meaning what they meant. A role ARN matches no identity any more, so the grants
    # of such rows end at their next sync instead of admitting every session of the role.
    op.execute("UPDATE requests SET identity_key = principal_arn")
    op.execute("UPDATE grants SET identity_key = principal_arn")
    # A group's inline policy held one statement per role, for every member: now one per role and member.
    op.execute(
        "UPDATE grants SET lease_key = lease_key || '#' || session_name "
        "WHERE target_key LIKE 'inline_group:%' AND session_name IS NOT NULL AND lease_key NOT LIKE '%#%'"
    )


def downgrade() -> None:
    op.drop_column('grants', 'identity_key')
    op.drop_column('requests', 'identity_key')
