"""The journey catalog events are routed to: the valid journeys of a folder, apart from the
broken files, validated once per process and again only when a file changes.

One broken file must not stop routing: the valid journeys keep receiving events (exit events
above all, or users keep getting messages), and every broken file is reported with its problems.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from journeys.language.loader import CATALOG_NAMES, SUFFIXES, journey_files, load_catalog, read_document
from journeys.language.models import Journey
from journeys.language.problems import Problem
from journeys.validation.triggers import triggers_checked
from journeys.validation.validate import UNREADABLE, Result, duplicate_journeys, validate_file

#: (name, size, mtime_ns, inode) of each file the catalog was read from: an edit, or a file
#: replaced by a rename, changes it.
Stamp = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class Catalog:
    """A folder's journeys: ``journeys`` route events; ``broken`` maps each file that cannot
    (unreadable, not YAML/JSON, invalid, a duplicate id, a broken event catalog) to its problems."""

    folder: str
    journeys: tuple[Journey, ...]
    broken: dict[str, list[Problem]] = field(default_factory=dict)
    #: The file each routing journey was read from.
    files: dict[str, str] = field(default_factory=dict)
    #: Broken files whose last good version still routes (the file was valid before an edit).
    kept: tuple[str, ...] = ()

    @property
    def problems(self) -> list[Problem]:
        """Every problem of every broken file, in file order."""
        return [problem for problems in self.broken.values() for problem in problems]

    @property
    def unreadable(self) -> list[str]:
        """The files that gave no document at all (I/O, encoding or syntax errors)."""
        return [path for path, problems in self.broken.items()
                if any(p.code in UNREADABLE for p in problems)]

    def warning(self) -> str | None:
        """One report of the broken files for a command's stderr, or None if there are none."""
        if not self.broken:
            return None
        lines = [f"{len(self.broken)} file(s) of the journey catalog {self.folder} are skipped "
                 f"({len(self.journeys)} journey(s) route events):"]
        lines += [f"  {path}: its last good version routes until it is fixed" for path in self.kept]
        return "\n".join([*lines, *(f"  {problem}" for problem in self.problems)])

    def claimed(self, journey_id: str) -> bool:
        """Does a broken file still say it is ``journey_id`` (an edit under way, not a removal)?"""
        return any(_claims(path, journey_id) for path in self.broken)

    def why_not(self, journey_id: str) -> str:
        """Why ``journey_id`` routes no event here, naming its file where one still claims it:
        the warning beside users who are still in it (``status``, the router's log)."""
        where = f"journey '{journey_id}' is not in the catalog {self.folder}"
        tail = "its users go on with the version they entered with until they leave"
        for path, problems in self.broken.items():
            if _claims(path, journey_id):
                first = f" ({problems[0].message})" if problems else ""
                return f"{where}: its file {path} is broken{first}; {tail}"
        return f"{where}: no file holds it any more (renamed, removed or given another id); {tail}"


def _claims(path: str, journey_id: str) -> bool:
    """Does the broken file ``path`` still say it is ``journey_id`` (its ``id`` field)?"""
    try:
        raw = read_document(Path(path))
    except Exception:  # unreadable, not YAML: it claims nothing we can see
        return False
    return isinstance(raw, dict) and raw.get("id") == journey_id


def load(folder: str | Path) -> Catalog:
    """Read and validate ``folder`` now. A folder that does not exist is a ``UsageError``."""
    folder = Path(folder)
    files = list(journey_files([folder]))  # raises UsageError for a missing folder
    schemas, catalog_problems = load_catalog(folder)
    # The event catalog's problems are its own: a journey is not broken by them.
    results: list[Result] = triggers_checked(duplicate_journeys(
        [validate_file(path, (schemas, [])) for path in files if path != folder]))
    broken: dict[str, list[Problem]] = {}
    if folder in files:  # a folder that could not be listed: no journey at all
        broken[str(folder)] = validate_file(folder, ({}, []))[1]
    if catalog_problems:
        broken[catalog_problems[0].file] = catalog_problems
    journeys, sources = [], {}
    for loaded, problems in results:
        if problems or loaded.journey is None:
            broken[loaded.path] = problems
        else:
            journeys.append(loaded.journey)
            sources[loaded.journey.id] = str(loaded.path)
    return Catalog(str(folder), tuple(journeys), broken, sources)


def keep_last_good(before: Catalog, now: Catalog) -> Catalog:
    """``now``, where an edit broke a file that was valid ``before``: its last good journey routes.

    Users in that journey keep getting their exit and wait events while the file is fixed. A
    file that was removed is not kept: removing it is the change.
    """
    kept_journeys, kept = [], []
    routing = {journey.id for journey in now.journeys}
    for journey in before.journeys:
        path = before.files.get(journey.id)
        if path in now.broken and journey.id not in routing and os.path.lexists(path):
            kept_journeys.append(journey)
            kept.append(path)
            routing.add(journey.id)
    if not kept:
        return now
    files = now.files | {j.id: before.files[j.id] for j in kept_journeys}
    return Catalog(now.folder, (*now.journeys, *kept_journeys), now.broken, files, tuple(kept))


def _stamp(folder: Path) -> Stamp:
    """What the catalog was read from, cheaply: a stat of the folder's files, no reading."""
    stamps = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return ()
    for name in names:
        if Path(name).suffix in SUFFIXES or name in CATALOG_NAMES:
            try:
                stat = os.stat(folder / name)
            except OSError:
                stamps.append((name, -1, -1, -1))
                continue
            stamps.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(stamps)


_cache: dict[Path, tuple[Stamp, Catalog]] = {}
_lock = threading.Lock()


def catalog(folder: str | Path) -> Catalog:
    """The catalog of ``folder``, validated once per process: later calls stat its files and
    validate again only if one was added, removed or changed (size or mtime_ns). A file that an
    edit broke keeps routing its last good version (``Catalog.kept``)."""
    key = Path(os.path.abspath(folder))
    with _lock:
        stamp = _stamp(key)
        cached = _cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        result = load(folder)
        if cached is not None:
            result = keep_last_good(cached[1], result)
        _cache[key] = (stamp, result)
        return result


def clear_cache() -> None:
    """Forget every catalog read (tests; a process that wants a fresh read)."""
    with _lock:
        _cache.clear()
