"""The deployed campaigns: the files under `campaigns/definitions/`, loaded one by one
and re-read when one changes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from campaigns.sequences.campaign import Campaign, DefinitionError, parse_campaign

log = logging.getLogger(__name__)


def load_all(definitions_dir: Path, templates_dir: Path) -> dict[str, Campaign]:
    """Every campaign in the folder, or DefinitionError listing every problem found."""
    campaigns: dict[str, Campaign] = {}
    problems: list[str] = []
    files = sorted(definitions_dir.glob("*.yaml")) + sorted(definitions_dir.glob("*.yml"))
    for path in files:
        try:
            campaign = parse_campaign(path, templates_dir)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        campaigns[campaign.key] = campaign
    if problems:
        raise DefinitionError(problems)
    return campaigns


# How long `loaded` trusts the last look at the files (the web app looks every
# SEQUENCES_REFRESH_SECONDS, web/app.py).
LOADED_FOR = 5.0


class Registry:
    """The loaded campaigns, re-read when a file changes so workers pick up edits.

    Files are loaded one by one: a mistake in one campaign's file never stops the others.
    A campaign whose edited file is broken keeps running on its last good version; one
    that never loaded is listed in `errors` and its people wait, nothing is dropped.
    """

    def __init__(self, definitions_dir: Path, templates_dir: Path):
        self.definitions_dir = Path(definitions_dir)
        self.templates_dir = Path(templates_dir)
        self._stamp: tuple | None = None
        self._looked = float("-inf")  # when campaigns() last looked at the files
        self._campaigns: dict[str, Campaign] = {}
        self.errors: dict[str, list[str]] = {}  # campaign key (file name) -> problems

    def _current_stamp(self) -> tuple:
        return tuple(
            (p.name, p.stat().st_mtime_ns) for p in sorted(self.definitions_dir.glob("*.y*ml"))
        )

    def campaigns(self) -> dict[str, Campaign]:
        stamp = self._current_stamp()
        self._looked = time.monotonic()
        if stamp != self._stamp:
            loaded: dict[str, Campaign] = {}
            errors: dict[str, list[str]] = {}
            for path in sorted(self.definitions_dir.glob("*.y*ml")):
                try:
                    campaign = parse_campaign(path, self.templates_dir)
                except DefinitionError as exc:
                    errors[path.stem] = exc.problems
                    previous = self._campaigns.get(path.stem)
                    log.error(
                        "campaign file %s is broken%s: %s",
                        path.name,
                        "; still running its last good version" if previous else "",
                        "; ".join(exc.problems),
                    )
                    if previous is not None:
                        loaded[previous.key] = previous
                    continue
                loaded[campaign.key] = campaign
            self._campaigns, self.errors, self._stamp = loaded, errors, stamp
        return self._campaigns

    def unavailable(self) -> set[str]:
        """Campaigns whose file is broken and that have no good version loaded."""
        campaigns = self.campaigns()
        return {key for key in self.errors if key not in campaigns}

    def loaded(self, key: str) -> Campaign | None:
        """The campaign as last loaded, without looking at the files (for an event loop,
        web/hits.py); None when it has none, or the files were not looked at within
        LOADED_FOR seconds."""
        if self._stamp is None or time.monotonic() - self._looked > LOADED_FOR:
            return None
        return self._campaigns.get(key)

    def get(self, key: str) -> Campaign:
        campaigns = self.campaigns()
        if key not in campaigns:
            raise DefinitionError(
                self.errors.get(key) or [f"no campaign {key!r} in {self.definitions_dir}"]
            )
        return campaigns[key]
