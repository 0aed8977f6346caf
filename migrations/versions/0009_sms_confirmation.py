"""sms double opt-in: when a "reply YES" text was asked for and sent

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('sms_confirmation_requested_at', sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column('sms_confirmation_sent_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite 3.35+ has DROP COLUMN): a batch would copy and drop the
    # subscribers table, which the rows of other tables point at.
    op.execute('ALTER TABLE subscribers DROP COLUMN sms_confirmation_sent_at')
    op.execute('ALTER TABLE subscribers DROP COLUMN sms_confirmation_requested_at')
