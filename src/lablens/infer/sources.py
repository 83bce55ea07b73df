"""What ``lablens predict`` reads: folders, globs, CSV manifests and text files of paths, as one stream of paths.

Every source is expanded lazily and in a fixed order (folders sorted, as :func:`~lablens.data.io.walk_files`
walks them; glob matches sorted; manifests and lists in file order), so the same sources always give the same
sequence and an archive of millions of files is never held in memory. Nothing is opened here: a path that does
not exist is passed on and reported by the decoder with its reason, like any other unusable file.

- a folder: every supported image below it (hidden entries skipped);
- a glob (``scans/**/*.png``): every supported image it matches;
- ``*.csv``: a manifest with a ``path`` column (relative paths are relative to the CSV's folder);
- ``*.txt`` / ``*.lst``: one path per line (blank lines and ``#`` comments ignored; relative to the file);
- any other file: itself.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterable, Iterator
from pathlib import Path

from lablens.data.io import SUPPORTED_SUFFIXES, walk_files
from lablens.errors import LablensError

LIST_SUFFIXES = (".txt", ".lst")
_GLOB_CHARS = set("*?[")


class SourceError(LablensError):
    """A source that cannot be read as a list of images; the message names it and says why."""


def _relative_to(base: Path, entry: str) -> str:
    p = Path(entry)
    return str(p if p.is_absolute() else base / p)


def _csv_paths(path: Path) -> Iterator[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise SourceError(f"{path}: a manifest CSV needs a 'path' column")
            for row in reader:
                entry = (row.get("path") or "").strip()
                if entry:
                    yield _relative_to(path.parent, entry)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not a UTF-8 text CSV ({exc.reason})") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _list_paths(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    yield _relative_to(path.parent, entry)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not a UTF-8 list of paths ({exc.reason})") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _images_in(paths: Iterable[Path | str]) -> Iterator[str]:
    return (str(p) for p in paths if Path(p).suffix.lower() in SUPPORTED_SUFFIXES)


def iter_paths(sources: Iterable[str | Path]) -> Iterator[str]:
    """Every image path the sources name, in a stable order (see the module docstring)."""
    for source in sources:
        text = str(source)
        path = Path(source)
        if path.is_dir():
            yield from _images_in(walk_files(path))
        elif path.is_file() and path.suffix.lower() == ".csv":
            yield from _csv_paths(path)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            yield from _list_paths(path)
        elif path.is_file():
            yield text
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.iglob(text, recursive=True))
            if not matches:
                raise SourceError(f"{text}: the pattern matches no file")
            yield from _images_in(m for m in matches if Path(m).is_file())
        else:
            yield text  # reported as a missing file, with the other unusable inputs
