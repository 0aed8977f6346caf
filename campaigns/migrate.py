"""Run the Alembic migrations from code (the CLI, the demo and the tests use this).

The migrations live beside the code, not in settings: the repository root is the folder
above this package that holds alembic.ini and migrations/. (The domain never imports
settings; whoever calls passes the database URL.)
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config


@functools.cache
def _root() -> Path:
    for folder in Path(__file__).resolve().parents:
        if (folder / "alembic.ini").is_file() and (folder / "migrations").is_dir():
            return folder
    raise RuntimeError(f"no alembic.ini with a migrations/ folder above {__file__}")


def alembic_config(database_url: str) -> Config:
    root = _root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


class SchemaError(RuntimeError):
    """The database is missing or behind the code's migrations."""


def check_current(engine) -> None:
    """Raise SchemaError (with the command that fixes it) unless the schema is at head."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = (
            "has no schema"
            if current is None
            else f"is at revision {current}, the code needs {head}"
        )
        raise SchemaError(f"the database {where} {state}; run `drip db upgrade`")
