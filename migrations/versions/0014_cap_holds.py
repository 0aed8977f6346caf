"""cap_holds: due steps the frequency cap held back, and until when

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'cap_holds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subscriber_id', sa.Integer(), nullable=False),
        sa.Column('enrollment_id', sa.Integer(), nullable=False),
        sa.Column('campaign_key', sa.String(length=63), nullable=False),
        sa.Column('step_key', sa.String(length=63), nullable=False),
        sa.Column('cap', sa.String(length=10), nullable=False),
        sa.Column('allowed', sa.Integer(), nullable=False),
        sa.Column('counted', sa.Integer(), nullable=False),
        sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('held_until', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id']),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('cap_holds', schema=None) as batch_op:
        batch_op.create_index('ix_cap_holds_subscriber_id', ['subscriber_id'], unique=False)
        batch_op.create_index(
            'ix_cap_holds_campaign_step', ['campaign_key', 'step_key'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('cap_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_cap_holds_campaign_step')
        batch_op.drop_index('ix_cap_holds_subscriber_id')
    op.drop_table('cap_holds')
