"""Kinetics-400/600/700: the official CSVs ``label,youtube_id,time_start,time_end,split[,is_cc]``.

As distributed by DeepMind and mirrored by the CVDF ``kinetics-dataset`` downloads
(``train.csv`` / ``validate.csv``, older ``kinetics_train.csv`` / ``kinetics_val.csv``,
``kinetics-600_val.csv``, ...): the file decides the split (any ``*train*.csv`` is train,
``*val*.csv`` -- ``validate.csv`` included -- is val; the ``split`` column is not needed).
Classes are the train file's labels in sorted order, the usual index order. A clip is looked
for as ``<youtube_id>_<start:06d>_<end:06d>`` (the downloaders' name), then unpadded, then
``<youtube_id>`` alone, with any video extension, flat or in class folders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       csv_rows, number)
from eval_encoder.prepare.registry import register_format

SPLIT_FILES = {"train": ("*train*.csv",), "val": ("*val*.csv",)}
COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def clip_names(youtube_id: str, start: int, end: int) -> Tuple[str, ...]:
    """File stems a downloaded clip goes by, most specific first."""
    return (f"{youtube_id}_{start:06d}_{end:06d}", f"{youtube_id}_{start}_{end}", youtube_id)


def read_rows(path: Path) -> List[Tuple[str, Item]]:
    """``(class name, item with label -1)`` per row; labels are set once classes are known."""
    rows = []
    for lineno, row in csv_rows(path, COLUMNS):
        where = f"{path}:{lineno}"
        yid, name = row["youtube_id"].strip(), row["label"].strip()
        if not yid or not name:
            raise PrepareError(f"{where}: empty youtube_id or label")
        names = clip_names(yid, int(number(row["time_start"], where)),
                           int(number(row["time_end"], where)))
        rows.append((name, Item(names[0], names, -1)))
    return rows


def labelled(rows: List[Tuple[str, Item]], index: Dict[str, int], path: Path) -> List[Item]:
    """The items of ``rows`` with their class index; a class the train file lacks is an error."""
    unknown = sorted({name for name, _ in rows} - set(index))
    if unknown:
        raise PrepareError(f"{path}: classes not in the train file: {unknown[:5]}")
    return [Item(item.video, item.names, index[name]) for name, item in rows]


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """One Kinetics dataset (``datasets`` holds one of k400/k600/k700) from its CSVs."""
    paths = {split: files.one(patterns, f"Kinetics {split} CSV")
             for split, patterns in SPLIT_FILES.items()}
    rows = {split: read_rows(path) for split, path in paths.items()}
    classes = sorted({name for name, _ in rows["train"]})
    index = {name: i for i, name in enumerate(classes)}
    splits = {split: labelled(rows[split], index, paths[split]) for split in rows}
    return [Prepared(datasets[0], classes, splits, notes={"class_order": "sorted train labels"})]


FORMAT = register_format(Format(
    name="kinetics", datasets=("k400", "k600", "k700"), read=read,
    files="train.csv and validate.csv (or kinetics_train.csv / kinetics_val.csv) of the release",
    source="DeepMind's Kinetics page; the CVDF 'kinetics-dataset' repository hosts the CSVs "
           "and the clips (k400, k600, k700-2020)",
    videos="<youtube_id>_<start:06d>_<end:06d>.mp4, flat or in class folders"))
