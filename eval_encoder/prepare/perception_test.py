"""Perception Test action localisation: one segment line per annotated action.

As distributed (``action_localisation_{train,valid}_annotations.zip`` holding
``action_localisation_{train,valid}.json``, or the full ``all_{train,valid}.json``): a JSON
object ``{video_id: {"metadata": {"split": ..., "num_frames": ..., "frame_rate": ...},
"action_localisation": [{"label": ..., "label_id": ..., "timestamps": [start, end], ...}]}}``.
Every such file given is read (``*train*.json``, ``*valid*.json``, ``*_annotations.json``);
a video's split is its ``metadata.split`` (``train`` -> train, ``valid`` -> val; ``test``
videos carry no labels and are counted, not written), else the file name's. A video found in
two files (``all_train.json`` and ``action_localisation_train.json``) is read once if its
actions agree and is an error if they differ.

Timestamps are taken as microseconds and written as seconds. The repository README called
them milliseconds from 2023-06-30 to 2023-11-17 and says microseconds since (e104aeb), as the
official loader (dividing by 1e6) does; since copies of the old text circulate, the unit is
checked against the videos' own length (``num_frames / frame_rate`` in the metadata): if the
median video's last action does not end between 5% and 105% of the video, reading fails and
says which unit the numbers look like. Segments ending past their video are listed in the report's notes.
Class names come from the ``label`` of each ``label_id`` (63 classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from eval_encoder.prepare.base import (AnnotationFiles, Format, Item, Prepared, PrepareError,
                                       Segment, integer, number, read_json)
from eval_encoder.prepare.registry import register_format

PATTERNS = ("*train*.json", "*valid*.json", "*_annotations.json")
SPLIT_NAMES = {"train": "train", "valid": "val", "validation": "val", "val": "val"}
US = 1e6  # timestamps are microseconds


def split_of(video: Dict[str, Any], path: Path) -> Optional[str]:
    """``train``/``val``, ``test`` or None (unknown) from the metadata, else the file name."""
    split = (video.get("metadata") or {}).get("split")
    if split is None:
        split = next((s for s in ("train", "valid", "test") if s in path.name.lower()), None)
    return "test" if split == "test" else SPLIT_NAMES.get(split)


def collect(files: AnnotationFiles) -> Dict[str, Tuple[Dict[str, Any], Path]]:
    """``{video_id: (video, file)}`` over every file; a video annotated differently in two
    files is an error naming both."""
    videos: Dict[str, Tuple[Dict[str, Any], Path]] = {}
    for path in files.many(PATTERNS, "Perception Test annotation file"):
        data = read_json(path)
        if not isinstance(data, dict):
            raise PrepareError(f"{path}: expected {{video_id: {{...}}}}, got {type(data).__name__}")
        for vid, video in data.items():
            if vid in videos and videos[vid][0].get("action_localisation") != video.get("action_localisation"):
                raise PrepareError(f"{vid}: different action annotations in {videos[vid][1]} and {path}")
            videos.setdefault(vid, (video, path))
    return videos


def action_segment(action: Dict[str, Any], where: str) -> Tuple[int, str, Segment]:
    """``(label_id, label, segment in seconds)`` of one action."""
    stamps = action.get("timestamps")
    if "label_id" not in action or not isinstance(stamps, list) or len(stamps) != 2:
        raise PrepareError(f"{where}: expected 'label_id' and 'timestamps': [start, end]")
    start, end = (number(t, where) / US for t in stamps)
    return integer(action["label_id"], where), str(action.get("label", "")), Segment(start, end, "s")


def duration(video: Dict[str, Any]) -> Optional[float]:
    """Seconds from the metadata, None if it does not say."""
    meta = video.get("metadata") or {}
    if meta.get("num_frames") and meta.get("frame_rate"):
        return float(meta["num_frames"]) / float(meta["frame_rate"])
    return None


def add_video(vid: str, video: Dict[str, Any], split: str, out: Prepared,
              names: Dict[int, str]) -> Optional[float]:
    """Add one video's actions to ``out`` (and their class names to ``names``); returns how
    far into the video (a fraction of its length) the last action ends, if known."""
    length, last = duration(video), 0.0
    for i, action in enumerate(video.get("action_localisation") or []):
        where = f"{vid} action {i}"
        label, name, segment = action_segment(action, where)
        if names.setdefault(label, name) != name:
            raise PrepareError(f"{where}: label_id {label} is {name!r} here, {names[label]!r} elsewhere")
        if segment.end <= segment.start:
            out.skip("segment end not after start", where)
            continue
        if length is not None and segment.end > length + 0.5:
            out.notes.setdefault("segments_past_video_end", []).append(where)
        out.splits[split].append(Item(vid, (f"{vid}.mp4", vid), label, segment))
        last = max(last, segment.end)
    return last / length if length else None


def check_unit(reach: List[float]) -> None:
    """Fail when the timestamps cannot be microseconds (see the module notes)."""
    if not reach:
        return
    median = sorted(reach)[len(reach) // 2]
    if not 0.05 <= median <= 1.05:
        unit = "milliseconds" if median < 0.05 else "larger units than microseconds"
        raise PrepareError(f"Perception Test timestamps read as microseconds put the median "
                           f"video's last action at {median:.4g} x its length; they look like {unit}")


def read(files: AnnotationFiles, datasets: Tuple[str, ...], options) -> List[Prepared]:
    """The ``perception_test`` dataset from the action-localisation annotations."""
    out = Prepared("perception_test", [], {"train": [], "val": []},
                   notes={"segments": "seconds, one line per action (timestamps in microseconds)"})
    names: Dict[int, str] = {}
    reach: List[float] = []
    for vid, (video, path) in sorted(collect(files).items()):
        split = split_of(video, path)
        if split in (None, "test"):
            out.skip(f"video of split {split or 'unknown'} (no labels used)", f"{path.name} {vid}")
        elif not video.get("action_localisation"):
            out.skip("video without actions", f"{path.name} {vid}")
        else:
            reach.append(add_video(vid, video, split, out, names))
    check_unit([r for r in reach if r is not None])
    out.classes = [names.get(i, f"unseen_{i}") for i in range(max(names) + 1)] if names else []
    return [out]


FORMAT = register_format(Format(
    name="perception_test", datasets=("perception_test",), read=read,
    files="action_localisation_train.json and action_localisation_valid.json (or all_train.json "
          "/ all_valid.json)",
    source="the google-deepmind/perception_test GitHub README's download table (annotation and "
           "video zips for the train and valid splits)",
    videos="<video_id>.mp4 (long videos; lines are segments in seconds)"))
