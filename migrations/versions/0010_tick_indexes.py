"""tick indexes: reconcile reaches the people on another revision through an index;
consent histories are read from their index alone; messages enter the provider-id index
only once a provider has named them

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# campaigns.models.RECONCILABLE, copied: a migration stays as it was written.
RECONCILABLE = (
    "status = 'active' OR (status = 'paused' AND exit_reason LIKE 'step % no longer exists')"
)
NAMED = "provider_message_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_records_subscriber_id')
        batch_op.create_index(
            'ix_consent_records_subscriber_id',
            ['subscriber_id'],
            unique=False,
            postgresql_include=['channel', 'action', 'created_at', 'id'],
        )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_provider_id')
        batch_op.create_index(
            'ix_messages_provider_id',
            ['provider', 'provider_message_id'],
            unique=False,
            postgresql_where=sa.text(NAMED),
            sqlite_where=sa.text(NAMED),
        )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(
            'ix_enrollments_reconcile',
            ['campaign_key', 'campaign_revision'],
            unique=False,
            postgresql_where=sa.text(RECONCILABLE),
            sqlite_where=sa.text(RECONCILABLE),
        )


def downgrade() -> None:
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollments_reconcile')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_provider_id')
        batch_op.create_index(
            'ix_messages_provider_id', ['provider', 'provider_message_id'], unique=False
        )
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_records_subscriber_id')
        batch_op.create_index('ix_consent_records_subscriber_id', ['subscriber_id'], unique=False)
