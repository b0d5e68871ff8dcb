"""Diving48 (V2 labels): ``Diving48_vocab.json`` plus ``Diving48_V2_train.json`` /
``Diving48_V2_test.json``.

As distributed on the Diving48 page (SVCL, UCSD): the vocabulary is a list of 48 entries,
each the dive's four attributes (``["Back", "15som", "05Twis", "FREE"]``), the class index
being the position; each split file is a list of ``{"vid_name": "-mmq0PT-u8k_00155",
"label": 0, "start_frame": 0, "end_frame": 82}``. The video is ``<vid_name>.mp4``; the V2
test file is the validation split, as in the published probe.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       check_range, integer, json_objects, read_json)
from eval_encoder.prepare.registry import register_format

SPLIT_FILES = {"train": ("Diving48_V2_train.json",), "val": ("Diving48_V2_test.json",)}


def read_vocab(path: Path) -> List[str]:
    """Class names: each entry's attributes joined with ``_`` (a plain string is kept)."""
    vocab = read_json(path)
    if not isinstance(vocab, list):
        raise PrepareError(f"{path}: expected a list of classes, got {type(vocab).__name__}")
    return [e if isinstance(e, str) else "_".join(map(str, e)) for e in vocab]


def read_split(path: Path, num_classes: int) -> List[Item]:
    """Items of one split file."""
    items = []
    for where, entry in json_objects(path, ("vid_name", "label")):
        label = check_range(integer(entry["label"], where), num_classes, where)
        vid = str(entry["vid_name"])
        items.append(Item(vid, (f"{vid}.mp4", vid), label))
    return items


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """The ``diving48`` dataset from the official V2 JSON files."""
    classes = read_vocab(files.one(("Diving48*vocab.json",), "Diving48 vocabulary"))
    splits = {split: read_split(files.one(patterns, f"Diving48 V2 {split} file"), len(classes))
              for split, patterns in SPLIT_FILES.items()}
    return [Prepared("diving48", classes, splits)]


FORMAT = register_format(Format(
    name="diving48", datasets=("diving48",), read=read,
    files="Diving48_vocab.json, Diving48_V2_train.json, Diving48_V2_test.json",
    source="the Diving48 page of SVCL, UC San Diego (V2 annotations and the rgb video tarball)",
    videos="<vid_name>.mp4, in one folder"))
