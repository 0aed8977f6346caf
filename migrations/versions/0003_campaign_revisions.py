"""campaign revisions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa



revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_key', sa.String(length=63), nullable=False),
    sa.Column('revision', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('structure', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_key', 'revision', name='uq_campaign_revision')
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('campaign_revision', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('cursor_base_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_column('cursor_base_at')
        batch_op.drop_column('campaign_revision')

    op.drop_table('campaign_revisions')
