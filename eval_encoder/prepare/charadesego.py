"""Charades-Ego v1: ``CharadesEgo_v1_{train,test}_only1st.csv`` (or ``_only3rd``, or both
views), classes from ``Charades_v1_classes.txt``; one segment line per action.

As distributed (``CharadesEgo.zip`` of the Allen Institute's Charades-Ego page): one row per
video, columns ``id, subject, scene, ..., actions, length, ...`` where ``actions`` is
``c092 11.90 21.20;c147 0.00 12.60;...`` (class, start s, end s); the classes file has
lines ``c000 Holding some clothes`` (157 classes, index = the number after ``c``). Videos are
``<id>.mp4`` (``CharadesEgo_v1_480/``); first-person ids end in ``EGO``.

Choices (``--view``, ``--overlap``) and why:

* ``--view 1st`` (default): the egocentric videos only, train on ``train_only1st``, validate
  on ``test_only1st``. Charades-Ego is used as an egocentric benchmark, and the published
  egocentric protocols (EgoVLP, LaViLa and the video-encoder papers that follow them) train
  and test on exactly these two files; ``3rd`` and ``both`` are there for ablations.
* ``--overlap keep`` (default): one line per (video, action) annotation, as a segment in
  seconds, even where segments of different classes overlap in time. A single-label probe
  on Charades-Ego can only be trained on per-action segments (LaViLa's fine-tuning clips
  are exactly these), and every annotated action then counts once; the cost is that an
  overlapping stretch of video appears under several labels, which caps top-1 below 100%.
  ``drop`` leaves out every segment that overlaps a segment of another class in the same
  video (listed in the report) for a cleaner single-label set, at the price of most of the
  data. Either way identical triples are written once, and videos without actions and
  segments whose end is not after their start are not written; the report counts and lists
  all three.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Option, Prepared,
                                       PrepareError, Segment, csv_rows, number, text_lines)
from eval_encoder.prepare.registry import register_format

VIEW_SUFFIX = {"1st": "_only1st", "3rd": "_only3rd", "both": ""}
Action = Tuple[int, float, float]


def read_classes(path: Path) -> List[str]:
    """Class names in index order from ``cNNN name`` lines."""
    names: Dict[int, str] = {}
    for lineno, text in text_lines(path):
        code, _, name = text.partition(" ")
        if not (code.startswith("c") and code[1:].isdigit() and name):
            raise PrepareError(f"{path}:{lineno}: expected 'cNNN <name>', got {text!r}")
        names[int(code[1:])] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise PrepareError(f"{path}: class codes are not c000..c{len(names) - 1:03d} without gaps")
    return [names[i] for i in range(len(names))]


def parse_actions(text: str, where: str, num_classes: int) -> List[Action]:
    """``"c092 11.90 21.20;c147 0.00 12.60"`` -> ``[(92, 11.9, 21.2), (147, 0.0, 12.6)]``."""
    actions = []
    for triple in filter(None, (t.strip() for t in text.split(";"))):
        parts = triple.split()
        if len(parts) != 3 or not parts[0].startswith("c") or not parts[0][1:].isdigit():
            raise PrepareError(f"{where}: action {triple!r} is not 'cNNN start end'")
        label = int(parts[0][1:])
        if label >= num_classes:
            raise PrepareError(f"{where}: action {triple!r} outside the {num_classes} classes")
        actions.append((label, number(parts[1], where), number(parts[2], where)))
    return actions


def overlapping(actions: List[Action]) -> set:
    """Indices of actions overlapping (in time, not just touching) one of another class."""
    return {i for i, (c, s, e) in enumerate(actions)
            for c2, s2, e2 in actions if c2 != c and min(e, e2) > max(s, s2)}


def video_items(vid: str, actions: List[Action], where: str, overlap: str,
                out: Prepared) -> List[Item]:
    """The items of one video, after the choices of the module notes."""
    unique = list(dict.fromkeys(actions))
    for _ in range(len(actions) - len(unique)):
        out.skip("identical action triple written once", where)
    drop = overlapping(unique) if overlap == "drop" else set()
    items = []
    for i, (label, start, end) in enumerate(unique):
        if end <= start:
            out.skip("segment end not after start", f"{where} c{label:03d} {start} {end}")
        elif i in drop:
            out.skip("overlaps another class (--overlap drop)", f"{where} c{label:03d}")
        else:
            items.append(Item(vid, (f"{vid}.mp4", vid), label, Segment(start, end, "s")))
    return items


def read_split(path: Path, split: str, overlap: str, out: Prepared) -> None:
    """Add one split file's videos to ``out``."""
    for lineno, row in csv_rows(path, ("id", "actions")):
        where = f"{path.name}:{lineno} {row['id']}"
        actions = parse_actions(row["actions"] or "", f"{path}:{lineno}", len(out.classes))
        if not actions:
            out.skip("video without actions", where)
        out.splits[split].extend(video_items(row["id"].strip(), actions, where, overlap, out))


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options: Dict[str, str]) -> List[Prepared]:
    """The ``charadesego`` dataset for the chosen view and overlap handling."""
    classes = read_classes(files.one(("Charades*_v1_classes.txt",), "Charades class list"))
    suffix = VIEW_SUFFIX[options["view"]]
    out = Prepared("charadesego", classes, {"train": [], "val": []},
                   notes={"view": options["view"], "overlap": options["overlap"],
                          "segments": "seconds, one line per (video, action)"})
    for split, name in (("train", "train"), ("val", "test")):
        path = files.one((f"CharadesEgo_v1_{name}{suffix}.csv",), f"Charades-Ego {name} CSV")
        read_split(path, split, options["overlap"], out)
    return [out]


FORMAT = register_format(Format(
    name="charadesego", datasets=("charadesego",), read=read,
    files="CharadesEgo_v1_train_only1st.csv, CharadesEgo_v1_test_only1st.csv (per --view), "
          "Charades_v1_classes.txt",
    source="the Charades-Ego page of the Allen Institute for AI (PRIOR): CharadesEgo.zip "
           "(annotations) and CharadesEgo_v1_480.tar (videos)",
    videos="<id>.mp4 (long videos; lines are segments in seconds)",
    options=(Option("view", tuple(VIEW_SUFFIX), "1st",
                    "Charades-Ego: which videos (1st person, 3rd person or both)"),
             Option("overlap", ("keep", "drop"), "keep",
                    "Charades-Ego: keep every action segment, or drop segments overlapping "
                    "another class"))))
