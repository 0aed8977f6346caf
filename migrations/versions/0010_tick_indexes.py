"""tick indexes: reconcile reaches the people on another revision through an index

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# campaigns.models.RECONCILABLE, copied: a migration stays as it was written.
RECONCILABLE = (
    "status = 'active' OR (status = 'paused' AND exit_reason LIKE 'step % no longer exists')"
)


def upgrade() -> None:
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(
            'ix_enrollments_reconcile',
            ['campaign_key', 'campaign_revision'],
            unique=False,
            postgresql_where=sa.text(RECONCILABLE),
            sqlite_where=sa.text(RECONCILABLE),
        )


def downgrade() -> None:
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollments_reconcile')
