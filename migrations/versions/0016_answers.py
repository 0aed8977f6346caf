"""check-in answers (a person's answer to a step's question) and the question an inbox
text may reply to

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'answers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subscriber_id', sa.Integer(), nullable=False),
        sa.Column('enrollment_id', sa.Integer(), nullable=False),
        sa.Column('campaign_key', sa.String(length=63), nullable=False),
        sa.Column('step_key', sa.String(length=63), nullable=False),
        sa.Column('question', sa.String(length=40), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=False),
        sa.Column('via', sa.String(length=10), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=True),
        sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id']),
        sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id']),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id']),
        sa.ForeignKeyConstraint(['event_id'], ['events.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('enrollment_id', 'step_key', name='uq_answer_enrollment_step'),
    )
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.create_index('ix_answers_subscriber_id', ['subscriber_id'], unique=False)
        batch_op.create_index(
            'ix_answers_campaign_step', ['campaign_key', 'step_key'], unique=False
        )
    with op.batch_alter_table('inbox_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('question_message_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            'fk_inbox_items_question_message_id', 'messages', ['question_message_id'], ['id']
        )


def downgrade() -> None:
    with op.batch_alter_table('inbox_items', schema=None) as batch_op:
        batch_op.drop_constraint('fk_inbox_items_question_message_id', type_='foreignkey')
        batch_op.drop_column('question_message_id')
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_index('ix_answers_campaign_step')
        batch_op.drop_index('ix_answers_subscriber_id')
    op.drop_table('answers')
