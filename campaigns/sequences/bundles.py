"""A campaign as one piece of data: its definition file's text and every file of its
templates folder, byte for byte.

This is what the database keeps for each published revision (campaigns.sequences.store)
and what `drip campaigns push` / `pull` carry between a git checkout and the database:

    read_bundle(definitions_dir, templates_dir, key)   -> Bundle   (from the files)
    write_bundle(bundle, definitions_dir, templates_dir)           (to the files: a pull)
    scratch(bundle, shared_templates)                  -> a folder laid out like the repo,
                                                          for the file-based tools (parse,
                                                          lint, review, preview, promote)

Templates shared by every campaign (`templates/_layout`, `_partials`, `_system`) ship with
the code, not in a bundle: they are the footer, the safety block and the system emails,
which a campaign edit must not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campaigns.sequences.campaign import DefinitionError, parse_campaign

# A bundle's size is bounded so a publish (from a browser form or a push) cannot fill the
# database: the shipped course is about 150 KB of templates.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Bundle:
    key: str
    definition: str  # the YAML text, exactly as written
    templates: dict[str, str] = field(default_factory=dict)  # "en/welcome.html" -> text
    file_name: str = ""  # hip_and_back.yaml (or .yml): kept so a pull writes the same name

    def __post_init__(self):
        if not self.file_name:
            object.__setattr__(self, "file_name", f"{self.key}.yaml")

    @property
    def digest(self) -> str:
        """The same files give the same digest: a push of unchanged files is no revision."""
        doc = json.dumps(
            [self.file_name, self.definition, sorted(self.templates.items())], ensure_ascii=False
        )
        return hashlib.sha256(doc.encode()).hexdigest()

    @property
    def size(self) -> int:
        return len(self.definition.encode()) + sum(
            len(k.encode()) + len(v.encode()) for k, v in self.templates.items()
        )

    def replace(self, *, definition: str | None = None, templates: dict | None = None) -> Bundle:
        return Bundle(
            self.key,
            self.definition if definition is None else definition,
            dict(self.templates if templates is None else templates),
            self.file_name,
        )


class BundleError(ValueError):
    """A bundle that cannot be read or written; the message says which file and why."""


def definition_path(definitions_dir: Path, key: str) -> Path | None:
    for suffix in SUFFIXES:
        path = Path(definitions_dir) / f"{key}{suffix}"
        if path.is_file():
            return path
    return None


def file_keys(definitions_dir: Path) -> list[str]:
    """The campaigns a definitions folder holds, by file name."""
    return sorted({p.stem for s in SUFFIXES for p in Path(definitions_dir).glob(f"*{s}")})


def safe_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)


def read_bundle(
    definitions_dir: Path, templates_dir: Path, key: str, file: Path | None = None
) -> Bundle:
    """`file`: read the definition from there instead (an older copy under another name)."""
    path = Path(file) if file else definition_path(definitions_dir, key)
    if path is None:
        raise BundleError(f"no campaign file {key}.yaml in {definitions_dir}")
    try:
        definition = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
    templates: dict[str, str] = {}
    folder = Path(templates_dir) / key
    if folder.is_dir():
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder).as_posix()
            if not f.is_file() or not safe_name(rel):
                continue  # editor swap files, .DS_Store: not part of a campaign
            try:
                templates[rel] = f.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise BundleError(f"{f}: cannot read as UTF-8 text: {exc}") from None
    bundle = Bundle(key, definition, templates, f"{key}{path.suffix}" if file else path.name)
    if bundle.size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{key}: {bundle.size} bytes, more than {MAX_BUNDLE_BYTES}")
    return bundle


def _write(path: Path, text: str) -> None:
    """Aside, then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600: keep the mode the file had, else the usual 0644.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bundle(bundle: Bundle, definitions_dir: Path, templates_dir: Path) -> list[str]:
    """Write the bundle's files and remove the campaign's template files it does not hold,
    so the folder then equals the bundle. Returns the paths written or removed."""
    changed: list[str] = []
    for name in bundle.templates:
        if not safe_name(name):
            raise BundleError(f"{bundle.key}: template name {name!r} is not a plain path")
    target = Path(definitions_dir) / bundle.file_name
    for other in SUFFIXES:
        stale = Path(definitions_dir) / f"{bundle.key}{other}"
        if stale != target and stale.is_file():
            stale.unlink()
            changed.append(str(stale))
    if not target.is_file() or target.read_bytes() != bundle.definition.encode():
        _write(target, bundle.definition)
        changed.append(str(target))
    folder = Path(templates_dir) / bundle.key
    for name, text in bundle.templates.items():
        path = folder / name
        if not path.is_file() or path.read_bytes() != text.encode():
            _write(path, text)
            changed.append(str(path))
    if folder.is_dir():
        for f in sorted(folder.rglob("*"), reverse=True):
            rel = f.relative_to(folder).as_posix()
            if f.is_file() and safe_name(rel) and rel not in bundle.templates:
                f.unlink()
                changed.append(str(f))
            elif f.is_dir() and not any(f.iterdir()):
                f.rmdir()
    return changed


def link_shared(templates_dir: Path, shared_templates: Path) -> None:
    """The shared layouts and partials (folders starting with `_`), linked, not copied."""
    for shared in sorted(Path(shared_templates).glob("_*")):
        link = Path(templates_dir) / shared.name
        if shared.is_dir() and not link.exists():
            link.symlink_to(shared.resolve(), target_is_directory=True)


@contextlib.contextmanager
def scratch(bundle: Bundle, shared_templates: Path) -> Iterator[tuple[Path, Path]]:
    """A throwaway folder laid out like the repo (definitions/, templates/ with the shared
    folders linked), holding this one bundle: (definition file, templates dir)."""
    root = Path(tempfile.mkdtemp(prefix="drip-bundle-"))
    try:
        definitions, templates = root / "definitions", root / "templates"
        definitions.mkdir()
        templates.mkdir()
        link_shared(templates, shared_templates)
        write_bundle(bundle, definitions, templates)
        yield definitions / bundle.file_name, templates
    finally:
        shutil.rmtree(root, ignore_errors=True)


def parse_bundle(bundle: Bundle, shared_templates: Path):
    """The campaign a bundle defines, or DefinitionError naming every problem."""
    if bundle.size > MAX_BUNDLE_BYTES:
        raise DefinitionError([f"{bundle.key}: more than {MAX_BUNDLE_BYTES} bytes"])
    try:
        with scratch(bundle, shared_templates) as (path, templates):
            return parse_campaign(path, templates)
    except BundleError as exc:
        raise DefinitionError([str(exc)]) from None
