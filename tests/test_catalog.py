"""The routing catalog: broken files are set aside and reported, the valid journeys keep
routing, and a folder is validated once per process until one of its files changes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from journeys.language.loader import journey_files
from journeys.language.problems import UsageError
from journeys.validation import catalog as catalogs
from journeys.validation.catalog import Catalog, catalog, clear_cache, load
from tests.helpers.support import EXAMPLES

VALID = sorted(path.stem for path in journey_files([EXAMPLES]))


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the examples: every journey valid, with their event catalog."""
    shutil.copytree(EXAMPLES, tmp_path / "journeys", ignore=shutil.ignore_patterns("invalid"))
    return tmp_path / "journeys"


def ids(found: Catalog) -> list[str]:
    return sorted(journey.id for journey in found.journeys)


def broken(found: Catalog) -> dict[str, list[str]]:
    return {Path(path).name: [p.code for p in problems] for path, problems in found.broken.items()}


def test_a_valid_folder(folder: Path) -> None:
    found = load(folder)
    assert ids(found) == VALID and found.broken == {} and found.warning() is None


def test_broken_files_are_set_aside_and_the_rest_route(folder: Path) -> None:
    (folder / "empty.yaml").write_text("")
    (folder / "syntax.yaml").write_text("id: [unclosed\n")
    (folder / "alias.yml").write_text("id: &a x\nname: *a\n")
    shutil.copy(EXAMPLES / "invalid" / "cycle.yaml", folder / "cycle.yaml")
    (folder / "zz-again.yaml").write_text((folder / "birthday.yaml").read_text())
    found = load(folder)
    assert ids(found) == VALID, "every valid journey still routes"
    assert broken(found) == {"alias.yml": ["yaml-alias"], "cycle.yaml": ["cycle"],
                             "empty.yaml": ["bad-value"], "syntax.yaml": ["unreadable"],
                             "zz-again.yaml": ["duplicate-journey"]}
    assert found.unreadable == [str(folder / "syntax.yaml")]
    assert all(p.file in found.broken for p in found.problems)
    warning = found.warning()
    assert warning is not None and warning.startswith(
        f"5 file(s) of the journey catalog {folder} are skipped ({len(VALID)} journey(s) route events):")
    assert "[cycle]" in warning and str(folder / "empty.yaml") in warning


def test_the_first_of_two_journeys_with_one_id_routes(folder: Path) -> None:
    (folder / "0-birthday.json").write_text('{"id": "birthday", "name": "B", "entry": "a", '
                                            '"nodes": [{"id": "a", "type": "action", "event": "E"}]}')
    found = load(folder)
    assert broken(found) == {"birthday.yaml": ["duplicate-journey"]}
    assert [j.name for j in found.journeys if j.id == "birthday"] == ["B"]


def test_a_broken_event_catalog_breaks_no_journey(folder: Path) -> None:
    (folder / "event-catalog.yaml").write_text("events:\n  Charged: {}\n  Charged: {}\n")
    found = load(folder)
    assert ids(found) == VALID
    assert broken(found) == {"event-catalog.yaml": ["duplicate-key"]}


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        catalog(tmp_path / "nope")


# --- once per process ----------------------------------------------------------------------------

@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders actually read and validated."""
    seen: list[str] = []
    real = catalogs.load

    def counting(folder: str | Path) -> Catalog:
        seen.append(str(folder))
        return real(folder)

    monkeypatch.setattr(catalogs, "load", counting)
    return seen


def test_a_folder_is_validated_once(folder: Path, loads: list[str]) -> None:
    first = catalog(folder)
    assert catalog(folder) is first
    assert catalog(str(folder) + "/") is first, "the same folder however it is spelt"
    assert len(loads) == 1


def test_an_edit_is_noticed(folder: Path, loads: list[str]) -> None:
    first = catalog(folder)
    path = folder / "birthday.yaml"
    path.write_text(path.read_text().replace("\nid: birthday\n", "\nid: birthday-2\n"))
    second = catalog(folder)
    assert second is not first and "birthday-2" in ids(second) and len(loads) == 2


def test_an_edit_of_the_same_size_is_noticed_by_its_mtime(folder: Path, loads: list[str]) -> None:
    catalog(folder)
    path = folder / "birthday.yaml"
    stat = path.stat()
    path.write_text(path.read_text().replace("\nid: birthday\n", "\nid: birthdaX\n"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert "birthdaX" in ids(catalog(folder)) and len(loads) == 2


@pytest.mark.parametrize("change", ["add", "remove", "break", "event-catalog"])
def test_files_added_removed_or_broken_are_noticed(folder: Path, loads: list[str], change: str) -> None:
    catalog(folder)
    if change == "add":
        (folder / "new.yaml").write_text("")
    elif change == "remove":
        (folder / "birthday.yaml").unlink()
    elif change == "break":
        (folder / "birthday.yaml").write_text("id: [")
    else:
        (folder / "event-catalog.yaml").write_text("events: 5\n")
    found = catalog(folder)
    assert len(loads) == 2
    assert found.broken or "birthday" not in ids(found)
    assert catalog(folder) is found and len(loads) == 2
