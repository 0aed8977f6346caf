"""schedulers: one lease row says which leads; one row per scheduler process (heartbeat)

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'scheduler_leases',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('term', sa.Integer(), nullable=False),
        sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'scheduler_instances',
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('host', sa.String(length=160), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_tick_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('holder'),
    )


def downgrade() -> None:
    op.drop_table('scheduler_instances')
    op.drop_table('scheduler_leases')
