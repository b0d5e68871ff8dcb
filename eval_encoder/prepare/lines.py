"""The text of a manifest line, written by ``prepare`` and read by ``check``.

``path,label`` for a whole clip, ``path,label,start,end`` for a segment of a long video:
start and end in seconds (``11.9``, always with a decimal point) or as frame numbers with an
``f`` suffix (``1200f``), frames counted from 0, end excluded. Reading is the suite's own
(eval_encoder/video/manifest.py), so ``check`` sees exactly what a run will.
"""
from __future__ import annotations

from typing import List, Optional

from eval_encoder.prepare.base import PrepareError, Segment
from eval_encoder.video.manifest import (ManifestEntry, format_time, parse_manifest,  # noqa: F401
                                         segment_of)


# a parsed manifest line is the suite's own entry (path, label, line, segment)
Entry = ManifestEntry


def format_line(path: str, label: int, segment: Optional[Segment] = None) -> str:
    """One manifest line (no newline). A path that would break the line, or one whose last
    comma-separated parts would read back as a segment, is an error naming it."""
    if "\n" in path or "\r" in path:
        raise PrepareError(f"video path {path!r} holds a line break")
    if segment is None:
        fields = f"{path},{label}".rsplit(",", 3)
        if len(fields) == 4 and segment_of(fields[2], fields[3]) is not None:
            raise PrepareError(f"video path {path!r} would be read back as a segment line")
        return f"{path},{label}"
    return (f"{path},{label},{format_time(segment.start, segment.unit)},"
            f"{format_time(segment.end, segment.unit)}")


def read_entries(path: str, num_classes: int) -> List[Entry]:
    """Every entry of a manifest, read as the suite reads it (an empty list for a manifest
    without entries, which ``check`` reports)."""
    return parse_manifest(path, num_classes)
