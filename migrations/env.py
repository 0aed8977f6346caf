"""Alembic environment: URL from settings (or the caller), batch mode for SQLite."""

from alembic import context
from sqlalchemy import pool

from campaigns.db import make_engine
from campaigns.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    from settings import get_settings

    url = get_settings().database_url


def render_item(type_, obj, autogen_context):
    # Migrations use plain SQLAlchemy types, so they never import the models module.
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    connectable = make_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it (batch mode) and dropping the old one,
            # which foreign keys pointing at its rows forbid. SQLite's own recipe: turn
            # them off outside the transaction (a PRAGMA inside one does nothing), migrate,
            # check every reference still holds, then commit.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")


if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
