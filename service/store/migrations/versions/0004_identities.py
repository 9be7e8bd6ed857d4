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
    # The role whose session cuts a grant needs, remembered: a role renamed or removed in the catalogue
    # must not take the cuts of its ended grants with it.
    op.add_column('grants', sa.Column('cut_key', sa.String(length=512), nullable=True))
    # When IAM was first verified to hold the access: a grant that never got that far needs no session cut.
    op.add_column('grants', sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE grants SET activated_at = starts_at WHERE state <> 'provisioning' AND state <> 'failed'")
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
    # ... and the group-wide statement in IAM goes at the next sweep, not at the next reconcile.
    op.execute(
        "UPDATE targets SET dirty_since = CURRENT_TIMESTAMP WHERE key LIKE 'inline_group:%' AND dirty_since IS NULL")
    op.execute(
        "UPDATE grants SET cut_key = 'role_sessions:' || substr(target_key, length('trust_policy:') + 1) "
        "WHERE target_key LIKE 'trust_policy:%'")


def downgrade() -> None:
    op.drop_column('grants', 'activated_at')
    op.drop_column('grants', 'cut_key')
    op.drop_column('grants', 'identity_key')
    op.drop_column('requests', 'identity_key')
