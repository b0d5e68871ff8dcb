"""HMDB51, split 1 of the official three-way splits.

As distributed (``test_train_splits.rar`` -> ``testTrainMulti_7030_splits/``): one file per
class and split, ``<class>_test_split1.txt``, with lines ``<video>.avi <id>`` where id 1 is
train, 2 is test (our val) and 0 is not used by that split. Classes are the 51 class names in
sorted order (the usual index order); videos lie in class folders, ``<class>/<video>.avi``, as
unpacked from the per-class archives. Lines with id 0 are counted in the report, not written.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       text_lines)
from eval_encoder.prepare.registry import register_format

SPLIT_SUFFIX = "_test_split1.txt"
SPLIT_OF_ID = {"1": "train", "2": "val"}
UNUSED_ID = "0"


def class_of(path: Path) -> str:
    """``brush_hair_test_split1.txt`` -> ``brush_hair``."""
    return path.name[:-len(SPLIT_SUFFIX)]


def read_class_file(path: Path, label: int, out: Prepared) -> None:
    """Add the lines of one class's split file to ``out``."""
    name = class_of(path)
    for lineno, text in text_lines(path):
        parts = text.split()
        if len(parts) != 2 or parts[1] not in (*SPLIT_OF_ID, UNUSED_ID):
            raise PrepareError(f"{path}:{lineno}: expected '<video>.avi 0|1|2', got {text!r}")
        video, split_id = parts
        if split_id == UNUSED_ID:
            out.skip("not in split 1 (id 0)", f"{path.name}:{lineno} {video}")
            continue
        out.splits[SPLIT_OF_ID[split_id]].append(Item(video, (f"{name}/{video}", video), label))


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """The ``hmdb51`` dataset from the 51 split-1 files."""
    paths = sorted(files.many((f"*{SPLIT_SUFFIX}",), "HMDB51 split-1 files"), key=class_of)
    classes = [class_of(p) for p in paths]
    out = Prepared("hmdb51", classes, {"train": [], "val": []},
                   notes={"split": 1, "class_order": "sorted class names"})
    for label, path in enumerate(paths):
        read_class_file(path, label, out)
    return [out]


FORMAT = register_format(Format(
    name="hmdb51", datasets=("hmdb51",), read=read,
    files="testTrainMulti_7030_splits/<class>_test_split1.txt (51 files)",
    source="the HMDB51 page of the Serre lab, Brown University (hmdb51_org.rar and "
           "test_train_splits.rar)",
    videos="<class>/<video>.avi"))
