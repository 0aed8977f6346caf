"""A campaign's files as a git revision holds them, for `drip campaigns diff --against-rev`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from campaigns.sequences.bundles import Bundle, BundleError, safe_name


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
    `templates_dir`, as they were at git revision `rev` (files a push would skip, such as
    hidden ones, are skipped here too)."""
    definition = definition.resolve()
    key = definition.stem
    top = Path(_git(definition.parent, "rev-parse", "--show-toplevel").decode().strip())
    try:
        rel = definition.relative_to(top).as_posix()
        folder = (Path(templates_dir).resolve() / key).relative_to(top).as_posix()
    except ValueError:
        raise BundleError(
            f"{definition} or {templates_dir} is not in the git checkout {top}"
        ) from None
    # -z: names as they are, not quoted (a name with accents would be).
    listed = _git(top, "ls-tree", "-r", "-z", "--name-only", rev, "--", folder)
    names = [n.decode("utf-8", errors="surrogateescape") for n in listed.split(b"\0") if n]
    templates = {}
    for name in names:
        relative = name.removeprefix(folder + "/")
        if safe_name(relative):
            templates[relative] = _text(_git(top, "show", f"{rev}:{name}"), f"{rev}:{name}")
    return Bundle(
        key, _text(_git(top, "show", f"{rev}:{rel}"), f"{rev}:{rel}"), templates, definition.name
    )


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
