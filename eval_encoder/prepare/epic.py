"""EPIC-Kitchens-100 verbs and nouns: ``EPIC_100_train.csv`` / ``EPIC_100_validation.csv``.

As distributed in the ``epic-kitchens-100-annotations`` repository: one row per action
segment, ``narration_id, participant_id, video_id, narration_timestamp, start_timestamp,
stop_timestamp, start_frame, stop_frame, narration, verb, verb_class, noun, noun_class, ...``.
Both datasets come from one reading: each row is a segment of the long video
``<participant_id>/videos/<video_id>.MP4`` (any other layout or ``.mp4`` is found by the video
id), labelled with ``verb_class`` for ``epic_verb`` and ``noun_class`` for ``epic_noun``.

Segments are frame numbers (``start_frame``/``stop_frame``, written ``123f``) rather than the
HH:MM:SS.ff timestamps: they are exact, whereas the timestamps are rounded to 1/100 s. They
are published counted from 1 and inclusive (``frame_0000000001.jpg`` is the first frame), and
written 0-based and end-exclusive as manifests count: ``start_frame - 1`` to ``stop_frame``. Class names are the ``key`` column of
``EPIC_100_verb_classes.csv`` / ``EPIC_100_noun_classes.csv`` when given (97 and 300 rows);
without them each class is named after its most frequent narrated word, ids no row uses are
named ``unseen_<id>``, and unused highest ids make the class count fall short of the card's,
which is an error naming both counts.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       Segment, csv_rows, integer)
from eval_encoder.prepare.registry import register_format

SPLIT_FILES = {"train": ("EPIC_100_train.csv",), "val": ("EPIC_100_validation.csv",)}
COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
           "verb_class", "noun_class")
# dataset -> (class id column, narrated word column, class file)
KINDS = {"epic_verb": ("verb_class", "verb", "EPIC_100_verb_classes.csv"),
         "epic_noun": ("noun_class", "noun", "EPIC_100_noun_classes.csv")}


def read_class_file(path: Path) -> List[str]:
    """Class keys in id order from ``id,key,...``."""
    keys = {integer(row["id"], f"{path}:{n}"): row["key"] for n, row in csv_rows(path, ("id", "key"))}
    if sorted(keys) != list(range(len(keys))):
        raise PrepareError(f"{path}: class ids are not 0..{len(keys) - 1} without gaps")
    return [keys[i] for i in range(len(keys))]


def names_from_rows(words: Dict[int, Counter]) -> List[str]:
    """Class names from the rows alone: the most frequent narrated word of each id seen."""
    return [words[i].most_common(1)[0][0] if i in words else f"unseen_{i}"
            for i in range(max(words) + 1)] if words else []


def row_item(row: Dict[str, str], where: str, column: str) -> Item:
    """The segment item of one row, labelled by ``column``."""
    start, stop = integer(row["start_frame"], where), integer(row["stop_frame"], where)
    vid, person = row["video_id"].strip(), row["participant_id"].strip()
    return Item(vid, (f"{person}/videos/{vid}.MP4", vid), integer(row[column], where),
                Segment(start - 1, stop, "f"))


def read_split(path: Path, out: Dict[str, Prepared], split: str,
               words: Dict[str, Dict[int, Counter]]) -> None:
    """Add one split file's rows to every wanted dataset in ``out``."""
    for lineno, row in csv_rows(path, COLUMNS):
        where = f"{path}:{lineno}"
        if integer(row["stop_frame"], where) <= integer(row["start_frame"], where):
            for prepared in out.values():
                prepared.skip("stop_frame not after start_frame", f"{where} {row['narration_id']}")
            continue
        for dataset, prepared in out.items():
            column, word, _ = KINDS[dataset]
            prepared.splits[split].append(row_item(row, where, column))
            words[dataset][integer(row[column], where)][row.get(word, "")] += 1


def class_names(files: AnnotationFiles, dataset: str, words: Dict[int, Counter]) -> List[str]:
    """From the class file if one was given, else from the rows (see the module notes)."""
    pattern = KINDS[dataset][2]
    if files.matching((pattern,)):
        return read_class_file(files.one((pattern,), f"EPIC-100 {dataset} class file"))
    return names_from_rows(words)


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """``epic_verb`` and/or ``epic_noun`` from the official CSVs."""
    out = {d: Prepared(d, [], {"train": [], "val": []}) for d in datasets}
    words: Dict[str, Dict[int, Counter]] = {d: defaultdict(Counter) for d in datasets}
    for split, patterns in SPLIT_FILES.items():
        read_split(files.one(patterns, f"EPIC-100 {split} CSV"), out, split, words)
    for dataset, prepared in out.items():
        prepared.classes = class_names(files, dataset, words[dataset])
        prepared.notes = {"segments": "frame numbers as published (start_frame/stop_frame)",
                          "class_names": "class file" if files.matching((KINDS[dataset][2],))
                          else "most frequent narrated word per class id"}
    return list(out.values())


FORMAT = register_format(Format(
    name="epic", datasets=("epic_verb", "epic_noun"), read=read, group="epic",
    files="EPIC_100_train.csv, EPIC_100_validation.csv (+ EPIC_100_verb_classes.csv, "
          "EPIC_100_noun_classes.csv for class names)",
    source="the epic-kitchens-100-annotations GitHub repository; videos from the "
           "EPIC-KITCHENS-100 download scripts (University of Bristol data.bris)",
    videos="<participant_id>/videos/<video_id>.MP4 (long videos; lines are frame segments)"))
