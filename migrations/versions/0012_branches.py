"""branches: what a waiting cursor waits for; subscriber attributes

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

`enrollments.waiting_for` holds "<event>:<awaited step>><waiting step>" while the cursor
waits on a step with `wait_for` (campaigns.sequences.waits), so an open or a click can
make it due at once without reading the campaign file. `subscribers.attributes` holds
the attributes conditions can test (`attribute: {plan: medicare}`), set by an import's
`attr_<name>` columns. Both are nullable, added without a default: no row is rewritten.
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waiting_for', sa.String(length=140), nullable=True))
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attributes', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('attributes')
    with op.batch_alter_table('enrollments', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('waiting_for')
