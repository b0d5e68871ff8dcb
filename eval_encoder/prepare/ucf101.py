"""UCF101, split 1: ``classInd.txt`` plus ``trainlist01.txt`` / ``testlist01.txt``.

As distributed (``UCF101TrainTestSplits-RecognitionTask.zip`` -> ``ucfTrainTestlist/``):
``classInd.txt`` lines are ``1 ApplyEyeMakeup`` (1-based); the train list gives
``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, the test list only the path, whose folder
names the class. Folder names are matched without regard to case (the published lists spell
``HandstandPushups`` while the files say ``HandStandPushups``). Label = index - 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       integer, text_lines)
from eval_encoder.prepare.registry import register_format

SPLIT_FILES = {"train": ("trainlist01.txt",), "val": ("testlist01.txt",)}


def read_class_ind(path: Path) -> List[str]:
    """Class names in index order from ``<1-based index> <name>`` lines."""
    names: Dict[int, str] = {}
    for lineno, text in text_lines(path):
        parts = text.split()
        if len(parts) != 2:
            raise PrepareError(f"{path}:{lineno}: expected '<index> <class>', got {text!r}")
        names[integer(parts[0], f"{path}:{lineno}") - 1] = parts[1]
    if sorted(names) != list(range(len(names))):
        raise PrepareError(f"{path}: class indices are not 1..{len(names)} without gaps")
    return [names[i] for i in range(len(names))]


def read_list(path: Path, index: Dict[str, int]) -> List[Item]:
    """Items of one list; the class comes from the video's folder, checked against a given
    label (train list) so that a list out of step with ``classInd.txt`` fails loudly."""
    items = []
    for lineno, text in text_lines(path):
        parts = text.split()
        folder = parts[0].split("/")[0].lower()
        if "/" not in parts[0] or folder not in index or len(parts) > 2:
            raise PrepareError(f"{path}:{lineno}: expected '<Class>/<video>.avi [label]' with a "
                               f"class of classInd.txt, got {text!r}")
        label = index[folder]
        if len(parts) == 2 and integer(parts[1], f"{path}:{lineno}") - 1 != label:
            raise PrepareError(f"{path}:{lineno}: label {parts[1]} disagrees with folder "
                               f"{parts[0].split('/')[0]!r} (class {label + 1} in classInd.txt)")
        items.append(Item(parts[0], (parts[0], parts[0].split("/")[-1]), label))
    return items


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """The ``ucf101`` dataset from the split-1 lists."""
    classes = read_class_ind(files.one(("classInd.txt",), "UCF101 class index"))
    index = {name.lower(): i for i, name in enumerate(classes)}
    splits = {split: read_list(files.one(patterns, f"UCF101 {split} list"), index)
              for split, patterns in SPLIT_FILES.items()}
    return [Prepared("ucf101", classes, splits, notes={"split": 1})]


FORMAT = register_format(Format(
    name="ucf101", datasets=("ucf101",), read=read,
    files="ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt",
    source="the UCF101 page of the UCF Center for Research in Computer Vision (UCF101.rar and "
           "UCF101TrainTestSplits-RecognitionTask.zip)",
    videos="<Class>/v_<Class>_gNN_cNN.avi"))
