"""The campaigns that run, read from their revisions in the database.

Every process (a worker, the scheduler, the web) keeps its own copy of the running
revisions' files in a private folder laid out like the repo, and reads campaigns through
the same file-based `Registry` and template loader as a checkout would. So a publish
needs no rebuild and no shared disk: each process sees the new revision within
`refresh_seconds` (one cheap query for the newest number per campaign), writes its files,
and from then on parses and renders from them.

Within the folder, `templates/<campaign>` is a symbolic link to that revision's own folder,
replaced in one rename: a render running while a publish lands reads either the old files
or the new, never a mix. The shared folders (`_layout`, `_partials`, `_system`) link to
the ones shipped with the code.

When it is built (the process starts) it seeds: a campaign file with no revision in the
database becomes revision 1. Later edits of the files run only once pushed
(`drip campaigns push`).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.models import SequenceRevision
from campaigns.sequences.bundles import link_shared, write_bundle
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.registry import Registry
from campaigns.sequences.store import bundle_of, heads, revision, seed

log = logging.getLogger(__name__)


def _reader(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for the look at the revisions. It runs wherever a campaign is asked for,
    often inside the caller's write transaction. On SQLite every transaction of the main
    engine begins IMMEDIATE (campaigns.db), so a look through it would wait on the
    caller's own lock: it reads through a second engine in autocommit, which WAL lets read
    beside a writer."""
    bind = factory.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return factory
    engine = create_engine(bind.url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 30})
    return sessionmaker(engine)


class DeployedRegistry:
    """The Registry interface (campaigns, get, unavailable, errors, definitions_dir,
    templates_dir) over the revisions in the database."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        shipped_definitions: Path,
        shipped_templates: Path,
        *,
        refresh_seconds: float = 2.0,
        root: Path | None = None,
    ):
        self.factory = factory
        self._reader = _reader(factory)
        self.clock = clock
        self.shipped_definitions = Path(shipped_definitions)
        self.shipped_templates = Path(shipped_templates)
        self.refresh_seconds = refresh_seconds
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="drip-sequences-"))
        if root is None:
            weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self.definitions_dir = self.root / "definitions"
        self.templates_dir = self.root / "templates"
        self._store = self.root / "revisions"
        for d in (self.definitions_dir, self.templates_dir, self._store):
            d.mkdir(parents=True, exist_ok=True)
        link_shared(self.templates_dir, self.shipped_templates)
        self._files = Registry(self.definitions_dir, self.templates_dir)
        self._running: dict[str, int] = {}
        self._installed: dict[str, list[Path]] = {}
        self._checked = float("-inf")
        self._shipped_stamp: tuple | None = None
        self._lock = threading.Lock()
        self._serial = itertools.count()
        self.sync_error: str | None = None
        # Seeding writes, so it happens here, outside any caller's transaction: on SQLite
        # a write from inside another open write transaction of this process would wait
        # on itself.
        self._seed()

    def _seed(self) -> None:
        try:
            stamp = self._shipped() if self.shipped_definitions.is_dir() else ()
            if stamp == self._shipped_stamp:
                return
            with transaction(self.factory) as session:
                seed(
                    session,
                    self.clock,
                    self.shipped_definitions,
                    self.shipped_templates,
                    self.shipped_templates,
                )
            self._shipped_stamp = stamp
        except Exception as exc:  # the database is away: the next process to start seeds
            self.sync_error = f"{type(exc).__name__}: {exc}"
            log.warning("cannot seed the deployed sequences from the files: %s", exc)

    @property
    def running(self) -> dict[str, int]:
        """{campaign: revision number} this process runs now."""
        return dict(self._running)

    def refresh(self) -> None:
        """Look now, whatever the pause since the last look (after a publish here)."""
        self._checked = float("-inf")
        self._sync()

    def _shipped(self) -> tuple:
        return tuple(
            (p.name, p.stat().st_mtime_ns) for p in sorted(self.shipped_definitions.glob("*.y*ml"))
        )

    def _sync(self) -> None:
        if time.monotonic() - self._checked < self.refresh_seconds:
            return
        with self._lock:
            if time.monotonic() - self._checked < self.refresh_seconds:
                return
            try:
                with self._reader() as session:
                    wanted = heads(session)
                    for key, number in sorted(wanted.items()):
                        if self._running.get(key) != number:
                            row = revision(session, key, number)
                            if row is not None:
                                self._install(row)
                self.sync_error = None
            except Exception as exc:  # the database is away: keep running what we have
                self.sync_error = f"{type(exc).__name__}: {exc}"
                log.warning("cannot read the deployed sequences (%s); running what is loaded", exc)
            self._checked = time.monotonic()

    def _install(self, row: SequenceRevision) -> None:
        bundle = bundle_of(row)
        serial = next(self._serial)
        folder = self._store / f"{row.campaign_key}-{row.number}-{serial}"
        defs = folder / "definitions"
        defs.mkdir(parents=True)
        write_bundle(bundle, defs, folder / "templates")
        (folder / "templates" / row.campaign_key).mkdir(parents=True, exist_ok=True)
        # Jinja's loader sees a changed template by its modification time: give every file
        # of a new revision a later one than any before, even within one clock tick.
        stamp = time.time_ns() + serial
        for f in (folder / "templates").rglob("*"):
            if f.is_file():
                os.utime(f, ns=(stamp, stamp))
        link = self.templates_dir / row.campaign_key
        aside = self.templates_dir / f".{row.campaign_key}.{serial}"
        aside.symlink_to(folder / "templates" / row.campaign_key, target_is_directory=True)
        os.replace(aside, link)
        for old in self.definitions_dir.glob(f"{row.campaign_key}.y*ml"):
            if old.name != bundle.file_name:
                old.unlink()
        target = self.definitions_dir / bundle.file_name
        tmp = self.definitions_dir / f".{bundle.file_name}.{serial}"
        tmp.write_bytes((defs / bundle.file_name).read_bytes())
        os.utime(tmp, ns=(stamp, stamp))
        os.replace(tmp, target)
        self._running[row.campaign_key] = row.number
        installed = self._installed.setdefault(row.campaign_key, [])
        installed.append(folder)
        # Keep this folder and the one before (a render that began just before the swap
        # may still read it); older ones no render can hold. By order of installing, not
        # by revision number: a rollback's number is higher, a wiped database's lower.
        while len(installed) > 2:
            shutil.rmtree(installed.pop(0), ignore_errors=True)
        log.info("campaign %s: running revision %s", row.campaign_key, row.number)

    # The Registry interface.
    @property
    def errors(self) -> dict[str, list[str]]:
        self._sync()
        return self._files.errors

    def campaigns(self) -> dict[str, Campaign]:
        self._sync()
        return self._files.campaigns()

    def unavailable(self) -> set[str]:
        self._sync()
        return self._files.unavailable()

    def get(self, key: str) -> Campaign:
        self._sync()
        return self._files.get(key)
