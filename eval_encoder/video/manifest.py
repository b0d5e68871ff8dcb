"""Dataset cards (datasets/<name>.yaml) and CSV manifests (``relative/path,label`` per line)."""
from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional

import yaml

CARDS_DIR = Path(__file__).resolve().parents[2] / "datasets"


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
    metric: str = "top1"
    description: str = ""
    path: str = ""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    label: int
    line: int


def cards_dir() -> Path:
    """Where cards live: $EVAL_ENCODER_DATASETS, else the repository's datasets/ folder."""
    return Path(os.environ.get("EVAL_ENCODER_DATASETS", CARDS_DIR))


def known_datasets() -> List[str]:
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))


def load_card(name: str) -> DatasetCard:
    """Read ``datasets/<name>.yaml``; an unknown name lists the known ones."""
    path = cards_dir() / f"{name}.yaml"
    if not path.is_file():
        import difflib

        known = known_datasets()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
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
    return DatasetCard(**data, path=str(path))


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


def read_manifest(path: str, num_classes: int) -> List[ManifestEntry]:
    """Parse ``relative/path,label`` lines; blank lines and ``#`` comments are skipped.

    A malformed line or a label outside ``[0, num_classes)`` raises ManifestError with the
    file and line number, before any training starts. A UTF-8 byte order mark at the start
    of the file (as some spreadsheet tools write) is not part of the first path.
    """
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    entries: List[ManifestEntry] = []
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if "," not in text:
                raise ManifestError(f"{path}:{lineno}: expected 'path,label', got {text!r}")
            rel, label_text = text.rsplit(",", 1)
            try:
                label = int(label_text.strip())
            except ValueError:
                raise ManifestError(f"{path}:{lineno}: label {label_text.strip()!r} is not an integer") from None
            if not 0 <= label < num_classes:
                raise ManifestError(
                    f"{path}:{lineno}: label {label} outside the dataset's {num_classes} classes")
            if not rel.strip():
                raise ManifestError(f"{path}:{lineno}: empty video path")
            entries.append(ManifestEntry(rel.strip(), label, lineno))
    if not entries:
        raise ManifestError(f"manifest {path} has no entries")
    return entries


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_paths(card: DatasetCard, data_root: str, train_csv: Optional[str] = None,
                val_csv: Optional[str] = None):
    """(video folder, train manifest path, val manifest path) in the upstream layout:
    ``<root>/<dataset>/<manifest>.csv`` with video paths relative to ``<root>/<dataset>``."""
    folder = os.path.join(data_root, card.name)
    return (folder, os.path.join(folder, train_csv or card.train_manifest),
            os.path.join(folder, val_csv or card.val_manifest))
