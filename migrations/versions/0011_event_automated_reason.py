"""events.automated_reason

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

Why an open or click was judged a machine's (campaigns.tracking.machine.Why): kept beside
the event so a report can say how many it left out and why. Rows flagged before it were
flagged for a scanner's user agent on our link pages or a provider's own machine flag;
they keep a NULL reason ("flagged before reasons were kept").
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('automated_reason', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('automated_reason')
