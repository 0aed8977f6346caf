"""events.automated

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

Whether an engagement event is possibly a machine's becomes a column that the provider's
webhook module or the link page sets, instead of provider-specific payload flags that
reports had to know. Rows stored before it get it from those flags.
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The payload flags that meant "possibly automated" before this column existed: the link
# pages' own, and SendGrid's machine-open flag.
FLAGS = ("maybe_automated", "sg_machine_open")


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('automated', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    events = sa.table('events', sa.column('payload', sa.JSON), sa.column('automated', sa.Boolean))
    # PostgreSQL's ->> gives 'true', SQLite's json_extract gives 1 for JSON true.
    flagged = sa.or_(*[sa.func.coalesce(events.c.payload[flag].as_string(), '').in_(('true', '1'))
                       for flag in FLAGS])
    op.execute(events.update().where(flagged).values(automated=True))


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('automated')
