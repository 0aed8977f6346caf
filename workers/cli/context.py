"""What every `drip` command shares: click's context object.

Settings are read once per invocation, and the runtime (workers/runtime.py, the
composition root) is built on first use, so `drip --help` and `drip campaigns validate`
need no database, and a command that only reads the database builds no provider client.
A configuration or schema problem becomes a one-line error and exit status 1.

Tests hand in a runtime of their own: `CliRunner().invoke(main, args, obj=Drip.around(runtime))`.
"""

from __future__ import annotations

import getpass

import click

from campaigns.migrate import SchemaError
from campaigns.staff.audit import Actor
from settings import Settings, SettingsError, load_settings
from workers.runtime import Runtime, build_runtime


class Drip:
    def __init__(self, settings: Settings | None = None, runtime: Runtime | None = None) -> None:
        self._settings = settings
        self._runtime = runtime
        # A runtime handed in is the caller's to vouch for; one built here is checked once.
        self._schema_checked = runtime is not None
        self._built_here = False

    @classmethod
    def around(cls, runtime: Runtime) -> Drip:
        return cls(runtime.settings, runtime)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    def runtime(self, *, needs_database: bool = True) -> Runtime:
        """The object graph; with `needs_database`, only once the schema is at head (the
        error says `run drip db upgrade`). Commands that only render files pass False."""
        if self._runtime is None:
            self._runtime = build_runtime(self.settings)
            self._built_here = True
        if needs_database and not self._schema_checked:
            try:
                self._runtime.check_schema()
            except SchemaError as exc:
                raise click.ClickException(str(exc)) from None
            self._schema_checked = True
        return self._runtime

    def close(self) -> None:
        """Close the database pool of a runtime built here (one handed in stays open)."""
        if self._built_here:
            self._runtime.dispose()


# `@pass_drip` hands a command the shared Drip, creating it if the command runs alone.
pass_drip = click.make_pass_decorator(Drip, ensure=True)


def cli_actor(name: str | None = None) -> Actor:
    """Who acts from the command line, for the audit log: `cli:<os user>`, or `cli:<name>`
    when a command's --by names someone. Whoever can run `drip` against the database can
    do anything, so the role is admin."""
    user = (name or "").strip()
    try:
        user = user or getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's bare user)
        user = "unknown"
    return Actor(f"cli:{user}", "admin", "cli")
