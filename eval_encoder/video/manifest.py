"""Dataset cards (datasets/<name>.yaml) and CSV manifests.

A manifest line is ``relative/path,label`` (a whole clip) or ``relative/path,label,start,end``
(a segment of a long video): start and end in seconds (``11.9``) or as frame numbers with an
``f`` suffix (``1200f``), both in one unit. Frames count from 0 in decoding order; a segment
covers [start, end): in seconds, the frames whose timestamp t has start <= t < end.
Fields are split from the right, so a path may hold commas.
"""
from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

from eval_encoder import resources
from eval_encoder.text import did_you_mean


# the metrics a card may name: what a run computes from its per-clip predictions
# (eval_encoder/probe/predictions.py) and what the statistics read (eval_encoder/stats/measures.py)
METRIC_NAMES: Tuple[str, ...] = ("top1", "top5", "mean_class_acc", "map")
DEFAULT_METRICS: Tuple[str, ...] = ("top1", "top5", "mean_class_acc")  # a card that names none


class ManifestError(ValueError):
    """A manifest or dataset card that cannot be used, naming the file and line."""


@dataclass(frozen=True)
class DatasetCard:
    name: str
    num_classes: int
    train_manifest: str
    val_manifest: str
    default_epochs: int
    default_batch_size: int
    version: str = "1"
    metric: str = "top1"  # the table's column
    # what a run computes for its reported head (see eval_encoder/probe/predictions.py METRICS)
    metrics: Tuple[str, ...] = DEFAULT_METRICS
    description: str = ""
    # the frame size a run takes when neither its recipe nor its command line gives one
    # (None: the encoder's own); a model built for another size is run at this one
    input_size: Optional[int] = None
    path: str = ""


@dataclass(frozen=True)
class Segment:
    """A stretch [start, end) of a long video: seconds (``unit="s"``) or frames (``"f"``)."""

    start: float
    end: float
    unit: str


def format_time(value: float, unit: str) -> str:
    """``1200f`` for frames, ``11.9`` / ``0.0`` for seconds (microsecond precision)."""
    if unit == "f":
        return f"{int(value)}f"
    text = f"{value:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    label: int
    line: int
    segment: Optional[Segment] = None

    @property
    def id(self) -> str:
        """The clip's identity across runs: its path, and ``@<start>-<end>`` for a segment."""
        if self.segment is None:
            return self.path
        seg = self.segment
        return f"{self.path}@{format_time(seg.start, seg.unit)}-{format_time(seg.end, seg.unit)}"


def cards_dir() -> Path:
    """Where cards live: $EVAL_ENCODER_DATASETS, else the shipped ones (eval_encoder.resources)."""
    return resources.data_dir("datasets")


def known_datasets() -> List[str]:
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))


def load_card(name: str) -> DatasetCard:
    """Read ``datasets/<name>.yaml``; an unknown name lists the known ones."""
    path = cards_dir() / f"{name}.yaml"
    if not path.is_file():
        known = known_datasets()
        hint = did_you_mean(name, known)
        raise ManifestError(f"unknown dataset {name!r}.{hint} Known: {', '.join(known)}")
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping of key: value")
    allowed = {f.name for f in fields(DatasetCard)} - {"path"}
    unknown = set(data) - allowed
    if unknown:
        raise ManifestError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = {"name", "num_classes", "train_manifest", "val_manifest",
               "default_epochs", "default_batch_size"} - set(data)
    if missing:
        raise ManifestError(f"{path}: missing keys {sorted(missing)}")
    data["version"] = str(data.get("version", "1"))
    if "metrics" in data:
        data["metrics"] = _metric_names(data["metrics"], path)
    return DatasetCard(**data, path=str(path))


def _metric_names(value, path: Path) -> Tuple[str, ...]:
    names = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ManifestError(f"{path}: unknown metrics {unknown}; known: {sorted(METRIC_NAMES)}")
    return names


# characters that do not show in a printed path: format (zero-width, BOM, bidi), control,
# line/paragraph separators and every space other than U+0020
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp", "Zs"})
_NICKNAMES = {0xFEFF: "ZERO WIDTH NO-BREAK SPACE (byte order mark)"}


def _char_name(ch: str) -> str:
    code = ord(ch)
    name = _NICKNAMES.get(code) or unicodedata.name(ch, "")
    return f"U+{code:04X} {name or 'control character'}"


def invisible_characters(text: str) -> List[str]:
    """Each character of ``text`` that would not show when printed, as
    ``"U+200B ZERO WIDTH SPACE at position 3"`` (0-based position in ``text``)."""
    return [f"{_char_name(ch)} at position {i}" for i, ch in enumerate(text)
            if ch != " " and unicodedata.category(ch) in _INVISIBLE_CATEGORIES]


def invisible_note(path: str) -> str:
    """``" (path contains U+200B ZERO WIDTH SPACE at position 3)"`` for a path holding
    invisible characters, else ``""``: a path that prints right but is not found often holds
    one, and the message should say so."""
    found = invisible_characters(path)
    return f" (path contains {', '.join(found)})" if found else ""


def parse_time(text: str) -> Tuple[float, str]:
    """``"1200f" -> (1200, "f")``, ``"11.9" -> (11.9, "s")``; ValueError otherwise."""
    text = text.strip()
    if text.endswith("f"):
        return int(text[:-1]), "f"
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite time")
    return value, "s"


def segment_of(start: str, end: str) -> Optional[Segment]:
    """The segment of two time fields, None unless both are times of one unit."""
    try:
        (a, unit_a), (b, unit_b) = parse_time(start), parse_time(end)
    except ValueError:
        return None
    return Segment(a, b, unit_a) if unit_a == unit_b else None


def parse_line(text: str, path: str, lineno: int, num_classes: int) -> ManifestEntry:
    """One non-comment manifest line; ManifestError naming the file and line if malformed."""
    where = f"{path}:{lineno}"
    fields = text.rsplit(",", 3)
    segment = segment_of(fields[2], fields[3]) if len(fields) == 4 else None
    if segment is not None:
        rel, label_text = fields[0], fields[1]
    elif "," in text:
        rel, label_text = text.rsplit(",", 1)
    else:
        raise ManifestError(f"{where}: expected 'path,label' or 'path,label,start,end', "
                            f"got {text!r}")
    try:
        label = int(label_text.strip())
    except ValueError:
        raise ManifestError(f"{where}: label {label_text.strip()!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise ManifestError(f"{where}: label {label} outside the dataset's {num_classes} classes")
    if not rel.strip():
        raise ManifestError(f"{where}: empty video path")
    if segment is not None and not (segment.end > segment.start >= 0):
        raise ManifestError(f"{where}: segment {fields[2].strip()}-{fields[3].strip()} is "
                            "empty, reversed or negative")
    return ManifestEntry(rel.strip(), label, lineno, segment)


def parse_manifest(path: str, num_classes: int) -> List[ManifestEntry]:
    """Every entry of a manifest (blank lines and ``#`` comments skipped; a UTF-8 byte order
    mark, as some spreadsheet tools write, is not part of the first path)."""
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    with open(path, encoding="utf-8-sig") as fh:
        lines = [(n, raw.strip()) for n, raw in enumerate(fh, start=1)]
    return [parse_line(text, path, n, num_classes) for n, text in lines
            if text and not text.startswith("#")]


def read_manifest(path: str, num_classes: int) -> List[ManifestEntry]:
    """:func:`parse_manifest`, refusing an empty manifest. A malformed line or a label
    outside ``[0, num_classes)`` raises ManifestError with the file and line number, before
    any training starts."""
    entries = parse_manifest(path, num_classes)
    if not entries:
        raise ManifestError(f"manifest {path} has no entries")
    return entries


def split_paths(card: DatasetCard, data_root: str, train_csv: Optional[str] = None,
                val_csv: Optional[str] = None):
    """(video folder, train manifest path, val manifest path) in the upstream layout:
    ``<root>/<dataset>/<manifest>.csv`` with video paths relative to ``<root>/<dataset>``."""
    folder = os.path.join(data_root, card.name)
    return (folder, os.path.join(folder, train_csv or card.train_manifest),
            os.path.join(folder, val_csv or card.val_manifest))
