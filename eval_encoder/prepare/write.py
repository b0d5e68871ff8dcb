"""Prepared annotations -> ``<data_root>/<dataset>/``: manifests, ``classes.csv``, the
``videos`` link and ``prepare_report.json`` (every annotated video absent on disk is listed
there, with counts; nothing is dropped without a trace)."""
from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from eval_encoder.files import write_atomic
from eval_encoder.prepare.base import SPLITS, Item, Prepared, PrepareError, VideoIndex
from eval_encoder.prepare.lines import format_line
from eval_encoder.files import file_sha256
from eval_encoder.resources import FOLDERS
from eval_encoder.video.manifest import DatasetCard

log = logging.getLogger("eval_encoder.prepare")

REPORT_NAME = "prepare_report.json"
CLASSES_NAME = "classes.csv"
LINK_NAME = "videos"


def validate(prepared: Prepared, card: DatasetCard) -> None:
    """Class count equal to the card's and every label inside it, before anything is written."""
    if len(prepared.classes) != card.num_classes:
        raise PrepareError(class_count_message(prepared, card))
    for split, items in prepared.splits.items():
        bad = next((i for i in items if not 0 <= i.label < card.num_classes), None)
        if bad is not None:
            raise PrepareError(f"{prepared.dataset} {split}: video {bad.video} has label "
                               f"{bad.label} outside the {card.num_classes} classes")


def class_count_message(prepared: Prepared, card: DatasetCard) -> str:
    """The annotations and the card disagree on the class count: both numbers, and how to
    prepare a subset of the classes (a card of one's own, in a folder of one's own cards)."""
    n = len(prepared.classes)
    return (f"{prepared.dataset}: the annotations give {n} classes, the card {card.path} says "
            f"num_classes: {card.num_classes}. For a subset of the classes, use a card of your "
            f"own: copy that card into a folder of your own cards (my_cards/{card.name}.yaml), "
            f"set num_classes: {n} and a version of your own (version: \"{n}-class\"), and "
            f"point {FOLDERS['datasets'].env}=my_cards at it for prepare, check and the runs "
            "(it replaces the shipped cards; copy any others you use)")


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (both resolved)."""
    return path == folder or folder in path.parents


def ensure_link(link: Path, target: Path) -> None:
    """``link`` -> ``target``; an existing link elsewhere or a real folder is an error, not
    silently replaced."""
    if link.is_symlink():
        if link.resolve() != target:
            raise PrepareError(f"{link} already links to {os.readlink(link)}, not {target}; "
                               "remove it or choose another --out")
        return
    if link.exists():
        raise PrepareError(f"{link} exists and is not a link to {target}; move it or pass "
                           "--videos inside the dataset folder")
    link.symlink_to(target, target_is_directory=True)
    log.info("linked %s -> %s", link, target)


def video_prefix(videos: str, folder: Path, data_root: Path, link: Optional[bool]) -> Tuple[str, bool]:
    """(prefix of manifest paths, whether a link was made). Videos inside the dataset folder
    are addressed directly; otherwise ``<folder>/videos`` links to them (the default when they
    lie outside the data root, or with ``--link``), or, with ``--no_link``, a relative path."""
    target = Path(videos).resolve()
    if inside(target, folder.resolve()):
        return Path(os.path.relpath(target, folder.resolve())).as_posix(), False
    if link is None:
        link = not inside(target, data_root.resolve())
    if link:
        ensure_link(folder / LINK_NAME, target)
        return LINK_NAME, True
    return Path(os.path.relpath(target, folder.resolve())).as_posix(), False


def join(prefix: str, rel: str) -> str:
    """Manifest path of a video found at ``rel`` below the videos folder."""
    return rel if prefix == "." else f"{prefix}/{rel}"


def resolve(items: Sequence[Item], index: VideoIndex, prefix: str) -> Tuple[List[str], Counter]:
    """(manifest lines of the videos found, ``{absent video: lines left out}``)."""
    lines: List[str] = []
    absent: Counter = Counter()
    found: Dict[Tuple[str, ...], Optional[str]] = {}
    for item in items:
        if item.names not in found:  # long videos carry many segments: look each up once
            found[item.names] = index.find(item.names)
        rel = found[item.names]
        if rel is None:
            absent[item.video] += 1
        else:
            lines.append(format_line(join(prefix, rel), item.label, item.segment))
    return lines, absent


def classes_text(classes: Sequence[str]) -> str:
    """``index,name`` rows (names quoted by the csv module where they hold commas)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "name"])
    writer.writerows(enumerate(classes))
    return buf.getvalue()


def split_report(manifest: str, items: Sequence[Item], written: int, absent: Counter) -> Dict[str, Any]:
    """The report block of one split."""
    return {"manifest": manifest, "annotated_lines": len(items), "written_lines": written,
            "absent_lines": sum(absent.values()), "absent_videos_count": len(absent),
            "absent_videos": sorted(absent)}


def write_dataset(prepared: Prepared, card: DatasetCard, index: VideoIndex, data_root: Path,
                  link: Optional[bool], context: Dict[str, Any]) -> Dict[str, Any]:
    """Write one dataset's files; returns (and writes) its report."""
    folder = data_root / card.name
    folder.mkdir(parents=True, exist_ok=True)
    prefix, linked = video_prefix(index.root, folder, data_root, link)
    manifests = {"train": card.train_manifest, "val": card.val_manifest}
    splits = {}
    for split in SPLITS:
        lines, absent = resolve(prepared.splits[split], index, prefix)
        write_atomic(folder / manifests[split], "".join(f"{line}\n" for line in lines))
        splits[split] = split_report(manifests[split], prepared.splits[split], len(lines), absent)
    write_atomic(folder / CLASSES_NAME, classes_text(prepared.classes))
    report = {"format": "eval_encoder.prepare_report", "version": 1, "dataset": card.name,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              **context, "video_prefix": prefix, "linked": linked,
              "video_files_found": len(index), "num_classes": len(prepared.classes),
              "classes_file": CLASSES_NAME, "splits": splits,
              "skipped": {r: {"count": len(w), "where": w} for r, w in sorted(prepared.skipped.items())},
              "ambiguous_names": index.ambiguous, "notes": prepared.notes}
    write_atomic(folder / REPORT_NAME, json.dumps(report, indent=1) + "\n")
    return report


def annotation_context(used: Sequence[Path], videos: str, options: Dict[str, str],
                       target: str) -> Dict[str, Any]:
    """The inputs a report names: target, options, videos folder, annotation files + sha256."""
    files = sorted(dict.fromkeys(str(p.resolve()) for p in used))
    return {"target": target, "options": options, "videos": str(Path(videos).resolve()),
            "annotation_files": [{"path": p, "sha256": file_sha256(p)} for p in files]}
