"""A campaign's files as a git revision holds them, for `drip campaigns diff --against-rev`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from campaigns.sequences.bundles import Bundle, BundleError


def _git(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"git {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        raise BundleError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def bundle_at_revision(rev: str, definition: Path, templates_dir: Path) -> Bundle:
    """The definition file at `definition` and the campaign's templates folder under
    `templates_dir`, as they were at git revision `rev`."""
    definition = definition.resolve()
    key = definition.stem
    top = Path(_git(definition.parent, "rev-parse", "--show-toplevel").decode().strip())
    rel = definition.relative_to(top).as_posix()
    text = _git(top, "show", f"{rev}:{rel}").decode("utf-8", errors="replace")
    try:
        folder = (Path(templates_dir).resolve() / key).relative_to(top).as_posix()
    except ValueError:
        raise BundleError(f"{templates_dir} is not in the git checkout {top}") from None
    names = _git(top, "ls-tree", "-r", "--name-only", rev, "--", folder).decode().splitlines()
    templates = {
        name.removeprefix(folder + "/"): _git(top, "show", f"{rev}:{name}").decode("utf-8")
        for name in names
    }
    return Bundle(key, text, templates, definition.name)
