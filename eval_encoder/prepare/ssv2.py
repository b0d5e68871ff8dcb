"""Something-Something v2: ``labels.json`` plus ``train.json`` / ``validation.json``.

As distributed (``something-something-v2-labels.json`` etc.): the label map is
``{"Approaching something with your camera": "0", ...}`` (174 templates, index as a string);
each split file is a list of ``{"id": "78687", "label": ..., "template": "Holding [something]
next to [something]", "placeholders": [...]}``. The class is the template with its brackets
removed; the video is ``<id>.webm``. The test file has no templates and is not read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       integer, json_objects, read_json)
from eval_encoder.prepare.registry import register_format

SPLIT_FILES = {"train": ("*train.json",), "val": ("*validation.json",)}


def read_labels(path: Path) -> List[str]:
    """Template names in index order from ``{template: "index"}``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise PrepareError(f"{path}: expected {{template: index}}, got {type(data).__name__}")
    by_index = {integer(v, f"{path}: index of {k!r}"): k for k, v in data.items()}
    if sorted(by_index) != list(range(len(data))):
        raise PrepareError(f"{path}: indices are not 0..{len(data) - 1} without gaps or repeats")
    return [by_index[i] for i in range(len(data))]


def template_class(template: str) -> str:
    """``"Holding [something] next to [something]"`` -> ``"Holding something next to something"``."""
    return template.replace("[", "").replace("]", "")


def read_split(path: Path, index: Dict[str, int]) -> List[Item]:
    """Items of one split file."""
    items = []
    for where, entry in json_objects(path, ("id", "template")):
        name = template_class(entry["template"])
        if name not in index:
            raise PrepareError(f"{where}: template {entry['template']!r} is not in the label map")
        vid = str(entry["id"])
        items.append(Item(vid, (f"{vid}.webm", vid), index[name]))
    return items


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """The ``ssv2`` dataset from the official JSON files."""
    classes = read_labels(files.one(("*labels.json",), "SSv2 label map"))
    index = {name: i for i, name in enumerate(classes)}
    splits = {split: read_split(files.one(patterns, f"SSv2 {split} file"), index)
              for split, patterns in SPLIT_FILES.items()}
    return [Prepared("ssv2", classes, splits)]


FORMAT = register_format(Format(
    name="ssv2", datasets=("ssv2",), read=read,
    files="something-something-v2-labels.json, -train.json, -validation.json",
    source="Qualcomm AI Research, 'Something-Something V2' download page (labels archive "
           "and the 20bn-something-something-v2 video parts)",
    videos="<id>.webm, in one folder"))
