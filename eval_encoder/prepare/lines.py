"""The text of a manifest line, written by ``prepare`` and read by ``check``.

``path,label`` for a whole clip, ``path,label,start,end`` for a segment of a long video:
start and end in seconds (``11.9``, always with a decimal point) or as frame numbers with an
``f`` suffix (``1200f``). Parsing follows the suite's manifest reader (UTF-8 with or without
a byte order mark, blank lines and ``#`` comments skipped, the path may hold commas since the
fields are split from the right); the suite's own reader does not take segment lines yet
(another change adds them), so ``check`` parses with :func:`read_entries`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from eval_encoder.prepare.base import PrepareError, Segment
from eval_encoder.video.manifest import ManifestError


@dataclass(frozen=True)
class Entry:
    """A parsed manifest line."""

    path: str
    label: int
    segment: Optional[Segment]
    line: int


def format_time(value: float, unit: str) -> str:
    """``1200f`` for frames, ``11.9`` / ``0.0`` for seconds (microsecond precision)."""
    if unit == "f":
        return f"{int(value)}f"
    text = f"{value:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def format_line(path: str, label: int, segment: Optional[Segment] = None) -> str:
    """One manifest line (no newline). A path that would break the line, or one whose last
    comma-separated parts would read back as a segment, is an error naming it."""
    if "\n" in path or "\r" in path:
        raise PrepareError(f"video path {path!r} holds a line break")
    if segment is None:
        fields = f"{path},{label}".rsplit(",", 3)
        if len(fields) == 4 and _segment(fields[2], fields[3]) is not None:
            raise PrepareError(f"video path {path!r} would be read back as a segment line")
        return f"{path},{label}"
    return (f"{path},{label},{format_time(segment.start, segment.unit)},"
            f"{format_time(segment.end, segment.unit)}")


def parse_time(text: str) -> Tuple[float, str]:
    """``("1200f") -> (1200, "f")``, ``("11.9") -> (11.9, "s")``; ValueError otherwise."""
    text = text.strip()
    if text.endswith("f"):
        return int(text[:-1]), "f"
    return float(text), "s"


def _segment(start: str, end: str) -> Optional[Segment]:
    """The segment of two time fields, None if they are not both times of one unit."""
    try:
        (a, unit_a), (b, unit_b) = parse_time(start), parse_time(end)
    except ValueError:
        return None
    return Segment(a, b, unit_a) if unit_a == unit_b else None


def parse_line(text: str, path: str, lineno: int, num_classes: int) -> Entry:
    """One non-comment line of ``path``; ManifestError naming the file and line if malformed."""
    where = f"{path}:{lineno}"
    fields = text.rsplit(",", 3)
    segment = _segment(fields[2], fields[3]) if len(fields) == 4 else None
    if segment is not None:
        rel, label_text = fields[0], fields[1]
    elif "," in text:
        rel, label_text = text.rsplit(",", 1)
    else:
        raise ManifestError(f"{where}: expected 'path,label' or 'path,label,start,end', got {text!r}")
    try:
        label = int(label_text.strip())
    except ValueError:
        raise ManifestError(f"{where}: label {label_text.strip()!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise ManifestError(f"{where}: label {label} outside the dataset's {num_classes} classes")
    if not rel.strip():
        raise ManifestError(f"{where}: empty video path")
    if segment is not None and not segment.end > segment.start:
        raise ManifestError(f"{where}: segment end {fields[3]} is not after its start {fields[2]}")
    return Entry(rel.strip(), label, segment, lineno)


def read_entries(path: str, num_classes: int) -> List[Entry]:
    """Every entry of a manifest (an empty list for a manifest without entries)."""
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    entries = []
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if text and not text.startswith("#"):
                entries.append(parse_line(text, path, lineno, num_classes))
    return entries
