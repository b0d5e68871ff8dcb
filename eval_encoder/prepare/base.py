"""What every format module shares: the records a reader returns, finding the official
annotation files, and finding the videos they name on disk.

A format module turns the publisher's annotation files into a :class:`Prepared` per dataset:
its class names in index order and, per split, :class:`Item` s (a video named by the
annotations, its label and, for long videos, a :class:`Segment`). It never looks at the video
folder: :class:`VideoIndex` resolves the names, and :mod:`eval_encoder.prepare.write` writes
the manifests and lists what was not found.
"""
from __future__ import annotations

import csv
import fnmatch
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from eval_encoder.video.manifest import Segment  # noqa: F401  (re-exported)

SPLITS = ("train", "val")
# containers a video can come in; anything else under --videos is not a video
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".flv", ".mpg",
                              ".mpeg", ".3gp", ".ogv", ".wmv", ".ts"})


class PrepareError(ValueError):
    """Annotations that cannot be turned into manifests, naming the file, line or value."""


@dataclass(frozen=True)
class Item:
    """One future manifest line: ``video`` is the annotation's name for the video (used in
    the report of absent videos), ``names`` the file names or stems to look for, in order."""

    video: str
    names: Tuple[str, ...]
    label: int
    segment: Optional[Segment] = None


@dataclass
class Prepared:
    """One dataset read from its annotations: class names in index order, items per split,
    annotation rows left out on purpose ``{reason: [where, ...]}`` and the choices made."""

    dataset: str
    classes: List[str]
    splits: Dict[str, List[Item]]
    skipped: Dict[str, List[str]] = field(default_factory=dict)
    notes: Dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        """Record an annotation row that is deliberately not written, with where it was."""
        self.skipped.setdefault(reason, []).append(where)


@dataclass(frozen=True)
class Option:
    """A per-format choice on the command line (``--<name>``), with a documented default."""

    name: str
    choices: Tuple[str, ...]
    default: str
    help: str


@dataclass(frozen=True)
class Format:
    """A registered official annotation format.

    ``read(files, datasets, options)`` returns one :class:`Prepared` per dataset name in
    ``datasets`` (a subset of ``self.datasets``). ``group`` names a target that prepares every
    dataset of the format from one reading (``epic``). ``files`` and ``source`` describe the
    official download, for ``--help`` and the README.
    """

    name: str
    datasets: Tuple[str, ...]
    read: Callable[["AnnotationFiles", Tuple[str, ...], Dict[str, str]], List[Prepared]]
    files: str
    source: str
    videos: str
    options: Tuple[Option, ...] = ()
    group: Optional[str] = None


class AnnotationFiles:
    """The files given with ``--annotations`` (folders are searched recursively); readers ask
    for them by file-name pattern, and every file handed out is remembered for the report."""

    def __init__(self, paths: Sequence[str]):
        self.roots = [str(p) for p in paths]
        self.files: List[Path] = []
        for path in map(Path, paths):
            if path.is_dir():
                self.files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
            elif path.is_file():
                self.files.append(path)
            else:
                raise PrepareError(f"--annotations {path}: no such file or folder")
        self.used: List[Path] = []

    def matching(self, patterns: Sequence[str]) -> List[Path]:
        """Files whose name matches any pattern (case-insensitive, as download tools and
        unzip on some systems change the case)."""
        pats = [p.lower() for p in patterns]
        return [f for f in self.files if any(fnmatch.fnmatchcase(f.name.lower(), p) for p in pats)]

    def one(self, patterns: Sequence[str], what: str) -> Path:
        """The single file matching ``patterns``; none or several is an error naming them."""
        found = self.matching(patterns)
        if len(found) != 1:
            where = ", ".join(self.roots)
            if not found:
                raise PrepareError(f"no {what} ({' or '.join(patterns)}) among the "
                                   f"{len(self.files)} files of --annotations {where}")
            listed = ", ".join(map(str, found))
            raise PrepareError(f"several files could be the {what}: {listed}; "
                               "pass the one to use with --annotations")
        self.used.append(found[0])
        return found[0]

    def many(self, patterns: Sequence[str], what: str) -> List[Path]:
        """Every file matching ``patterns`` (at least one)."""
        found = self.matching(patterns)
        if not found:
            raise PrepareError(f"no {what} ({' or '.join(patterns)}) among the files of "
                               f"--annotations {', '.join(self.roots)}")
        self.used.extend(found)
        return found


def read_json(path: Path) -> Any:
    """A JSON file, or an error naming it and the position of the fault."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise PrepareError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def json_objects(path: Path, keys: Sequence[str]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``(where, entry)`` for each object of a JSON file holding a list of videos, each an
    object with at least ``keys``; anything else is an error naming the file and entry."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise PrepareError(f"{path}: expected a list of videos, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or any(k not in entry for k in keys):
            raise PrepareError(f"{where}: expected an object with "
                               + " and ".join(repr(k) for k in keys))
        yield where, entry


def csv_rows(path: Path, required: Sequence[str]) -> Iterator[Tuple[int, Dict[str, str]]]:
    """``(line, row)`` of a CSV file with a header naming at least ``required``."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(f"{path}:1: header lacks column(s) {missing}; "
                               f"found {reader.fieldnames}")
        for row in reader:
            yield reader.line_num, row


def text_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """``(line, text)`` of the non-blank lines, stripped (the UCF101 and HMDB51 lists end
    their lines with CR LF and trailing spaces)."""
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                yield lineno, raw.strip()


def number(text: str, where: str) -> float:
    """``float(text)``, or an error saying where the bad value was."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PrepareError(f"{where}: {text!r} is not a number") from None


def integer(text: Any, where: str) -> int:
    """``int(text)``, or an error saying where the bad value was."""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise PrepareError(f"{where}: {text!r} is not an integer") from None


def check_range(label: int, count: int, where: str) -> int:
    """``label`` if it is a valid index into ``count`` classes."""
    if not 0 <= label < count:
        raise PrepareError(f"{where}: class {label} outside the {count} classes")
    return label


def class_index(names: Sequence[str]) -> Dict[str, int]:
    """``{name: index}``; a repeated name is an error, as two classes would merge."""
    index: Dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise PrepareError(f"class name {name!r} appears twice (indices {index[name]}, {i})")
        index[name] = i
    return index


class VideoIndex:
    """Every video file under a folder, found by relative path or by file stem.

    Official annotations name videos by id; downloads differ in folders (flat, per class,
    per participant) and extensions (.mp4/.MP4/.webm/.mkv), so a name is looked up as a
    relative path first, then as a stem anywhere below the folder. The folder is walked once.
    """

    def __init__(self, root: str):
        self.root = root
        self.paths = set()
        self.stems: Dict[str, List[str]] = defaultdict(list)
        seen = set()
        for folder, dirs, names in os.walk(root, followlinks=True):
            # links are followed (downloads are often assembled from links), so a link back up
            # the tree -- e.g. a data root's ``videos`` link inside --videos -- must not loop
            real = os.path.realpath(folder)
            if real in seen:
                dirs[:] = []
                continue
            seen.add(real)
            rel_folder = os.path.relpath(folder, root)
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
                    self.paths.add(rel)
                    self.stems[stem].append(rel)
        self.ambiguous: Dict[str, List[str]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def find(self, names: Sequence[str]) -> Optional[str]:
        """The relative path of the first name found; several files with one stem take the
        first in sorted order and are remembered in :attr:`ambiguous` for the report."""
        for name in names:
            if name in self.paths:
                return name
            stem = os.path.basename(name)
            root, ext = os.path.splitext(stem)
            found = self.stems.get(root if ext.lower() in VIDEO_EXTENSIONS else stem)
            if found:
                if len(found) > 1:
                    self.ambiguous[name] = sorted(found)
                return sorted(found)[0]
        return None
