"""published sequences live in the database as revisions; one draft per campaign

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sequence_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('campaign_key', sa.String(length=63), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('file_name', sa.String(length=80), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('templates', sa.JSON(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('note', sa.String(length=500), nullable=True),
        sa.Column('published_by', sa.String(length=80), nullable=False),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('campaign_key', 'number', name='uq_sequence_revision'),
    )
    op.create_table(
        'sequence_drafts',
        sa.Column('campaign_key', sa.String(length=63), nullable=False),
        sa.Column('base_number', sa.Integer(), nullable=False),
        sa.Column('file_name', sa.String(length=80), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('templates', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=80), nullable=False),
        sa.Column('updated_by', sa.String(length=80), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('campaign_key'),
    )


def downgrade() -> None:
    op.drop_table('sequence_drafts')
    op.drop_table('sequence_revisions')
