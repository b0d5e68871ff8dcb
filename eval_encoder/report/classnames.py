"""Class names for the report's per-class tables: ``classes.csv`` (``index,name`` rows, as
``prepare`` writes it: :func:`eval_encoder.prepare.write.classes_text`) beside a record's
manifests, found through the paths its ``dataset`` block holds.

A label shows as ``"<index> <name>"`` where the file names it, else as its index. Reading never
breaks the report: a record without manifest paths has no names; a missing, unreadable or
malformed file is logged once (a missing one at info level: datasets made by hand often have
none; a damaged one as a warning naming it) and the labels stay indices.
"""
from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from eval_encoder.prepare.write import CLASSES_NAME

log = logging.getLogger(__name__)

Labeller = Callable[[int], str]


class ClassesFileError(ValueError):
    """A ``classes.csv`` that is not ``index,name`` rows."""


def classes_file(record: Dict[str, Any]) -> Optional[Path]:
    """``classes.csv`` beside the record's validation manifest (else its training one); None
    when the record holds no manifest path (records made before they were written)."""
    block = record.get("dataset") or {}
    manifest = block.get("val_manifest") or block.get("train_manifest")
    return Path(manifest).parent / CLASSES_NAME if isinstance(manifest, str) and manifest \
        else None


def read_classes(path: Path) -> Dict[int, str]:
    """{index: name} of a ``classes.csv``; :class:`ClassesFileError` when it is malformed."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"index", "name"} <= set(reader.fieldnames or ()):
            raise ClassesFileError(f"its header is {reader.fieldnames}, not index,name")
        names = {}
        for line, row in enumerate(reader, start=2):
            index, name = (row.get("index") or "").strip(), row.get("name")
            if not index.isdigit() or name is None:
                raise ClassesFileError(f"line {line} is not an index and a name: {row}")
            names[int(index)] = name.strip()
    return names


@functools.lru_cache(maxsize=None)
def names_in(path: Path) -> Dict[int, str]:
    """:func:`read_classes` of ``path``, or {} with a log line naming it (once per file)."""
    try:
        return read_classes(path)
    except FileNotFoundError:
        log.info("no class names: %s does not exist; classes shown by index", path)
    except (OSError, UnicodeDecodeError, csv.Error, ClassesFileError) as exc:
        log.warning("no class names: %s cannot be read (%s); classes shown by index", path, exc)
    return {}


def class_names(record: Dict[str, Any]) -> Dict[int, str]:
    """The record's dataset's class names, {} when unknown."""
    path = classes_file(record)
    return names_in(path.resolve()) if path is not None else {}


def labeller(names: Dict[int, str]) -> Labeller:
    """A label as the tables show it: ``"3 Pushing something"``, or ``"3"`` without a name."""
    def text(label: int) -> str:
        name = names.get(int(label))
        return f"{int(label)} {name}" if name else str(int(label))

    return text


def record_labeller(record: Dict[str, Any]) -> Labeller:
    """:func:`labeller` of the record's class names."""
    return labeller(class_names(record))
