"""the contact queue: staff notes on a request, and who on the care team has it

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assigned_to', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'contact_request_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.Integer(), nullable=False),
        sa.Column('author', sa.String(length=80), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['contact_requests.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('contact_request_notes', schema=None) as batch_op:
        batch_op.create_index(
            'ix_contact_request_notes_request', ['request_id', 'created_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('contact_request_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_request_notes_request')
    op.drop_table('contact_request_notes')
    # Plain ALTER TABLE (SQLite 3.35+ has DROP COLUMN): a batch would copy and drop the
    # contact_requests table, which the notes and other rows point at.
    op.execute('ALTER TABLE contact_requests DROP COLUMN assigned_at')
    op.execute('ALTER TABLE contact_requests DROP COLUMN assigned_to')
