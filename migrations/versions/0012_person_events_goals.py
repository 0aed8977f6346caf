"""person events, API keys, and the goal an enrollment reached

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
# 0011 is another change of the same release; until it is merged this branch follows 0010.
down_revision = '0010'
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
    if op.get_bind().dialect.name == 'sqlite':
        # Added in place: a batch copy of enrollments would have to drop the old table,
        # which SQLite refuses while messages point at its rows.
        op.execute(
            'ALTER TABLE enrollments ADD COLUMN goal_event_id INTEGER '
            'REFERENCES person_events (id)'
        )
        op.execute('ALTER TABLE enrollments ADD COLUMN goal_reached_at DATETIME')
    else:
        op.add_column('enrollments', sa.Column('goal_event_id', sa.Integer(), nullable=True))
        op.add_column(
            'enrollments', sa.Column('goal_reached_at', sa.DateTime(timezone=True), nullable=True)
        )
        op.create_foreign_key(
            'fk_enrollments_goal_event_id', 'enrollments', 'person_events',
            ['goal_event_id'], ['id'],
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE enrollments DROP COLUMN goal_reached_at')
        op.execute('ALTER TABLE enrollments DROP COLUMN goal_event_id')
    else:
        op.drop_constraint('fk_enrollments_goal_event_id', 'enrollments', type_='foreignkey')
        op.drop_column('enrollments', 'goal_reached_at')
        op.drop_column('enrollments', 'goal_event_id')
    op.drop_table('api_keys')
    op.drop_table('person_events')
