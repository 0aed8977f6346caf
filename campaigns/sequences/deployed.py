"""The campaigns that run, read from their revisions in the database.

Every process (a worker, the scheduler, the web) keeps its own copy of the running
revisions' files in a private folder and parses and renders from there. So a publish
needs no rebuild and no shared disk: each process sees the new revision within
`refresh_seconds` (one cheap query for the newest revision per campaign) and writes its
files.

Each revision's files go into a folder of their own that is never changed afterwards
(`templates/@rev/<campaign>-<number>-<serial>/<campaign>/...`), and the Campaign parsed
from it names that folder as its `template_root`. A message is rendered from the very
revision its Campaign came from, even while a newer one lands in the same process: a
batch that read revision 3's subject and steps gets revision 3's bodies, never a mix. A
process keeps the last three folders of each campaign. `templates/<campaign>` (a link to
the newest) and `definitions/` stay for the tools that read a campaign's files by name
(the clinical review's fingerprint on the results page).

A revision that cannot be installed or parsed (a bad file name in its templates, a schema
a newer version of the code refuses) is reported in `errors` and leaves the other
campaigns, and that campaign's last good revision if it had one, running.

Seeding (campaigns.editing.seeding) is not done here: the long-running processes do it
once as they start (workers.runtime), not every command.
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
from dataclasses import replace
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.models import SequenceRevision
from campaigns.sequences.bundles import BundleError, link_shared, write_bundle
from campaigns.sequences.campaign import Campaign, DefinitionError, parse_campaign
from campaigns.sequences.store import bundle_of, head_digests, revision

log = logging.getLogger(__name__)

KEEP = 3  # revision folders a process keeps per campaign: the running one and two before
REVISIONS = "@rev"  # under templates/: a name no campaign key can take


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
        self._revisions = self.templates_dir / REVISIONS
        for d in (self.definitions_dir, self._revisions):
            d.mkdir(parents=True, exist_ok=True)
        link_shared(self.templates_dir, self.shipped_templates)
        self._campaigns: dict[str, Campaign] = {}
        self._running: dict[str, tuple[int, str]] = {}  # key -> (number, digest)
        self._installed: dict[str, list[Path]] = {}
        self.errors: dict[str, list[str]] = {}
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self._serial = itertools.count()
        self.sync_error: str | None = None

    @property
    def running(self) -> dict[str, int]:
        """{campaign: revision number} this process runs now."""
        return {key: number for key, (number, _) in self._running.items()}

    def refresh(self) -> None:
        """Look now, whatever the pause since the last look (after a publish here)."""
        self._checked = float("-inf")
        self._sync()

    def _sync(self) -> None:
        if time.monotonic() - self._checked < self.refresh_seconds:
            return
        with self._lock:
            if time.monotonic() - self._checked < self.refresh_seconds:
                return
            try:
                with self._reader() as session:
                    for key, (number, digest) in sorted(head_digests(session).items()):
                        if self._running.get(key) == (number, digest):
                            continue
                        row = revision(session, key, number)
                        if row is not None:
                            self._install(row)
                self.sync_error = None
            except Exception as exc:  # the database is away: keep running what we have
                self.sync_error = f"{type(exc).__name__}: {exc}"
                log.warning("cannot read the deployed sequences (%s); running what is loaded", exc)
            self._checked = time.monotonic()

    def _install(self, row: SequenceRevision) -> None:
        """Write one revision's files and parse them; on any failure that campaign keeps
        its last good revision (if any) and the problem is in `errors`."""
        key = row.campaign_key
        serial = next(self._serial)
        name = f"{key}-{row.number}-{serial}"
        folder = self._revisions / name
        definitions = folder / "definition"
        try:
            bundle = bundle_of(row)
            write_bundle(bundle, definitions, folder)
            (folder / key).mkdir(parents=True, exist_ok=True)
            campaign = parse_campaign(definitions / bundle.file_name, folder)
        except (BundleError, DefinitionError, OSError, ValueError) as exc:
            problems = exc.problems if isinstance(exc, DefinitionError) else [str(exc)]
            self.errors[key] = [f"revision {row.number}: {p}" for p in problems]
            # Not tried again until a newer revision comes: remember this one as seen.
            self._running[key] = (row.number, row.digest)
            shutil.rmtree(folder, ignore_errors=True)
            log.error(
                "campaign %s revision %s cannot run%s: %s",
                key,
                row.number,
                "; still running its last good revision" if key in self._campaigns else "",
                "; ".join(problems),
            )
            return
        self._campaigns[key] = replace(campaign, template_root=f"{REVISIONS}/{name}/{key}")
        self._running[key] = (row.number, row.digest)
        self.errors.pop(key, None)
        self._point_at(key, folder / key, definitions / bundle.file_name, serial)
        installed = self._installed.setdefault(key, [])
        installed.append(folder)
        # By the order they were installed, not by number: a rollback's number is higher,
        # a wiped database's lower.
        while len(installed) > KEEP:
            shutil.rmtree(installed.pop(0), ignore_errors=True)
        log.info("campaign %s: running revision %s", key, row.number)

    def _point_at(self, key: str, templates: Path, definition: Path, serial: int) -> None:
        """`templates/<key>` and `definitions/<key>.yaml` name the newest revision's."""
        aside = self.templates_dir / f".{key}.{serial}"
        aside.symlink_to(templates, target_is_directory=True)
        os.replace(aside, self.templates_dir / key)
        for old in self.definitions_dir.glob(f"{key}.y*ml"):
            if old.name != definition.name:
                old.unlink()
        tmp = self.definitions_dir / f".{definition.name}.{serial}"
        tmp.write_bytes(definition.read_bytes())
        os.replace(tmp, self.definitions_dir / definition.name)

    # The Registry interface.
    def campaigns(self) -> dict[str, Campaign]:
        self._sync()
        return dict(self._campaigns)

    def unavailable(self) -> set[str]:
        self._sync()
        return {key for key in self.errors if key not in self._campaigns}

    def loaded(self, key: str) -> Campaign | None:
        """The campaign as this process last loaded it, without looking for a newer
        revision (no database: for an event loop, web/hits.py); None when it has none,
        or has not looked within twice `refresh_seconds`."""
        # Not looked for a while (nothing refreshes it, as the web app's task would): a
        # None sends the caller the way that looks.
        if time.monotonic() - self._checked > 2 * self.refresh_seconds + 1:
            return None
        return self._campaigns.get(key)

    def get(self, key: str) -> Campaign:
        self._sync()
        campaign = self._campaigns.get(key)
        if campaign is None:
            raise DefinitionError(self.errors.get(key) or [f"no campaign {key!r} is published"])
        return campaign
