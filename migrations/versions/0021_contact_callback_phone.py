"""the number a person typed on the call-request form, kept on the request

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_phone', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact_requests', schema=None) as batch_op:
        batch_op.drop_column('callback_phone')
