"""message reason codes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Reports count messages by a stable code instead of matching sentences. Rows written
before the codes existed get theirs from the sentences the engine used to write.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# (code, SQL LIKE pattern over the old sentence), most specific first.
BACKFILL = [
    ("no_address", "no email address"), ("no_address", "no phone number"),
    ("no_consent", "no % consent"),
    ("unsubscribed", "subscriber unsubscribed"),
    ("address_suppressed", "address suppressed: %"),
    ("enrollment_exited", "enrollment exited%"),
    ("outside_text_hours", "outside text hours%"),
    ("template_error", "template error"),
    ("accepted", "accepted by provider"),
    ("temporary_error", "temporary provider error"),
    ("retries_exhausted", "gave up after % attempts"),
    ("channel_paused", "channel paused: %"),
    ("outcome_unknown", "provider call outcome unknown%"),
    ("lease_expired", "lease expired during the provider call%"),
    ("confirmed_by_lookup", "confirmed by provider look-up"),
    ("not_received", "provider never received it%"),
    ("settled_sent", "settled by ops: provider has it"),
    ("settled_failed", "settled by ops: provider never sent it%"),
    ("settled_resend", "settled by ops: resending"),
    ("webhook", "% webhook: %"),
]


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason_code', sa.String(length=40), nullable=True))
    messages = sa.table('messages', sa.column('reason'), sa.column('reason_code'))
    for code, pattern in BACKFILL:
        op.execute(messages.update()
                   .where(messages.c.reason_code.is_(None), messages.c.reason.like(pattern))
                   .values(reason_code=code))
    # A failed message left with a sentence was a permanent rejection (its cause as the
    # text); anything else keeps no code rather than a wrong one.
    failed = sa.table('messages', sa.column('reason'), sa.column('reason_code'), sa.column('status'))
    op.execute(failed.update()
               .where(failed.c.reason_code.is_(None), failed.c.reason.is_not(None),
                      failed.c.status == 'failed')
               .values(reason_code='rejected'))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): rebuilding the table would trip the foreign keys
    # that events hold on messages.
    with op.batch_alter_table('messages', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('reason_code')
