"""erasure: when a person's data was wiped

Suppressions of an erased person's addresses keep their row; only the address column
changes to a keyed hash ("hmac:<hex>", still under uq_suppression_address), so no new
column is needed there.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscribers') as batch:
        batch.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscribers') as batch:
        batch.drop_column('erased_at')
