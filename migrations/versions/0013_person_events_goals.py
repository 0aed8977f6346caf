"""person events, API keys, the goal an enrollment reached, and enrollments made by a
trigger (entry number, trigger reference; one enrollment per person, campaign and entry)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'person_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=100), nullable=False),
        sa.Column('subscriber_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('properties', sa.JSON(), nullable=True),
        sa.Column('source', sa.String(length=10), nullable=False),
        sa.Column('source_ref', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id'),
    )
    with op.batch_alter_table('person_events', schema=None) as batch_op:
        batch_op.create_index(
            'ix_person_events_subscriber_id', ['subscriber_id'], unique=False
        )
        batch_op.create_index(
            'ix_person_events_name_created', ['name', 'created_at'], unique=False
        )
    op.create_table(
        'api_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_hash'),
    )
    # On SQLite this copies the table (a unique constraint cannot be altered in place);
    # migrations/env.py turns foreign keys off around it, as SQLite's own recipe says.
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('goal_event_id', sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column('goal_reached_at', sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column('entry', sa.Integer(), server_default=sa.text('1'), nullable=False)
        )
        batch_op.add_column(sa.Column('trigger_ref', sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            'fk_enrollments_goal_event_id', 'person_events', ['goal_event_id'], ['id']
        )
        batch_op.drop_constraint('uq_enrollment_subscriber_campaign', type_='unique')
        batch_op.create_unique_constraint(
            'uq_enrollment_subscriber_campaign', ['subscriber_id', 'campaign_key', 'entry']
        )
        batch_op.create_unique_constraint(
            'uq_enrollment_trigger', ['campaign_key', 'trigger_ref']
        )


def downgrade() -> None:
    # Refused (a unique violation) while anyone has joined a campaign a second time.
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_constraint('uq_enrollment_trigger', type_='unique')
        batch_op.drop_constraint('uq_enrollment_subscriber_campaign', type_='unique')
        batch_op.create_unique_constraint(
            'uq_enrollment_subscriber_campaign', ['subscriber_id', 'campaign_key']
        )
        batch_op.drop_constraint('fk_enrollments_goal_event_id', type_='foreignkey')
        batch_op.drop_column('trigger_ref')
        batch_op.drop_column('entry')
        batch_op.drop_column('goal_reached_at')
        batch_op.drop_column('goal_event_id')
    op.drop_table('api_keys')
    op.drop_table('person_events')
