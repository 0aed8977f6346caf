"""retention: opens and clicks rolled up per message before raw events are deleted

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'event_rollups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=20), nullable=False),
        sa.Column('automated', sa.Boolean(), nullable=False),
        sa.Column('automated_reason', sa.String(length=40), nullable=False),
        sa.Column('route', sa.Text(), nullable=False),
        sa.Column('link', sa.Text(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('detail_key', sa.String(length=64), nullable=False),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint(
            'message_id', 'type', 'automated', 'detail_key', name='uq_event_rollup_detail'
        ),
    )
    with op.batch_alter_table('events') as batch:
        batch.create_index('ix_events_occurred', ['occurred_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events') as batch:
        batch.drop_index('ix_events_occurred')
    op.drop_table('event_rollups')
