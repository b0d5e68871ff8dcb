"""What the statistics read from a run: the metrics and views a table can show, the record's
per-clip predictions file (checked against its sha256), and a run's clips as a
:class:`Measure`, aligned by clip id with another run's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder.files import file_sha256
from eval_encoder.stats.clips import ClipStat, class_mean, map_stat, proportion
from eval_encoder.stats.errors import ClipsDiffer, MissingPredictions, StatsError


def _hits(arrays: Dict[str, np.ndarray], k: int) -> np.ndarray:
    return (arrays["top5"][:, :k] == arrays["label"][:, None]).any(axis=1)


@dataclass(frozen=True)
class Metric:
    """A per-dataset metric: the arrays of the prediction file it reads, how its statistic is
    made from them, whether it is a share of clips (exact interval and McNemar apply), the
    key of ``record["reported"]`` that holds it in records older than ``metrics``, and whether
    its bootstrap replicates are re-centred on the estimate (see :func:`centre`)."""

    title: str
    arrays: Tuple[str, ...]
    stat: Callable[[Dict[str, np.ndarray]], ClipStat]
    proportion: bool
    reported_key: Optional[str] = None
    centred: bool = False


METRICS: Dict[str, Metric] = {
    "top1": Metric("top-1 accuracy", ("label", "top5"), lambda a: proportion(_hits(a, 1)),
                   True, "top1"),
    "top5": Metric("top-5 accuracy", ("label", "top5"), lambda a: proportion(_hits(a, 5)),
                   True, "top5"),
    "mean_class_acc": Metric("mean per-class accuracy", ("label", "top5"),
                             lambda a: class_mean(a["label"], _hits(a, 1)), False),
    "map": Metric("mAP over classes", ("label", "prob"),
                  lambda a: map_stat(a["prob"].astype(np.float32), a["label"]), False,
                  centred=True),
}


@dataclass(frozen=True)
class Derived:
    """A column made from the same clips of two datasets' runs, matched by clip id: a clip
    counts as right when it is right in both (EPIC-Kitchens action = verb and noun)."""

    parts: Tuple[str, str]
    title: str


DERIVED: Dict[str, Derived] = {
    "epic_action": Derived(("epic_verb", "epic_noun"),
                           "EPIC-Kitchens action accuracy (verb and noun both right)"),
}


@dataclass(frozen=True)
class View:
    """What ``--metric NAME`` shows: the metric of every dataset cell, and derived columns."""

    metric: str
    derived: Tuple[str, ...] = ()


VIEWS: Dict[str, View] = {
    **{name: View(name) for name in METRICS},
    "action": View("top1", ("epic_action",)),
}


def view(name: str) -> View:
    """The named view; an unknown name lists the known ones."""
    if name not in VIEWS:
        raise StatsError(f"unknown metric {name!r}; known: {', '.join(VIEWS)}")
    return VIEWS[name]


def where(record: Dict[str, Any]) -> str:
    return str(record.get("_path") or record.get("run_id") or "a record")


def predictions_path(record: Dict[str, Any]) -> Path:
    """The record's per-clip file; MissingPredictions when it has none or it is gone."""
    entry = record.get("predictions")
    if not isinstance(entry, dict) or not entry.get("file"):
        raise MissingPredictions(f"{where(record)}: no per-clip predictions (a record written "
                                 "before they were kept, or whose reported head was scored "
                                 "before a resume)")
    if not record.get("_path"):
        raise MissingPredictions(f"{where(record)}: the record was not read from a file, so "
                                 "its predictions file cannot be found")
    path = Path(record["_path"]).parent / entry["file"]
    if not path.is_file():
        raise MissingPredictions(f"{path}: the per-clip predictions named by {where(record)} "
                                 "are not there")
    return path


def load_predictions(record: Dict[str, Any], names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The named arrays of a record's per-clip file, after checking its sha256."""
    path = predictions_path(record)
    want, got = record["predictions"].get("sha256"), file_sha256(str(path))
    if want and got != want:
        raise StatsError(f"{path}: sha256 {got} is not the {want} its record {where(record)} "
                         "names (the file was changed or is another run's)")
    with np.load(path, allow_pickle=False) as npz:
        missing = [n for n in names if n not in npz.files]
        if missing:
            raise MissingPredictions(f"{path}: no {', '.join(missing)} array (has {', '.join(npz.files)})"
                             + ("; 'prob' is kept only when the dataset card's metrics include "
                                "map" if "prob" in missing else ""))
        return {n: npz[n] for n in names}


@dataclass(frozen=True)
class Measure:
    """A statistic of one run's clips (``ids`` when clips must be matched across files)."""

    stat: ClipStat
    proportion: bool
    ids: Optional[np.ndarray] = None
    centred: bool = False

    def take(self, order: np.ndarray) -> "Measure":
        ids = None if self.ids is None else self.ids[order]
        return Measure(self.stat.take(order), self.proportion, ids, self.centred)

    def hits(self) -> np.ndarray:
        """The clips counted as right, for a share of clips."""
        return self.stat.cells == 1


def measure(record: Dict[str, Any], metric: str, ids: bool = False) -> Measure:
    """``metric`` of a record's clips, from its predictions file."""
    spec = METRICS[metric]
    arrays = load_predictions(record, (*spec.arrays, "id") if ids else spec.arrays)
    return Measure(spec.stat(arrays), spec.proportion, clip_keys(arrays["id"]) if ids else None,
                   spec.centred)


def derived_measure(name: str, first: Dict[str, Any], second: Dict[str, Any]) -> Measure:
    """A :data:`DERIVED` column's share of clips right in both runs (clips matched by id)."""
    a, b = (load_predictions(r, ("id", "label", "top5")) for r in (first, second))
    ka, kb = clip_keys(a["id"]), clip_keys(b["id"])
    order = alignment(ka, kb, (where(first), where(second)), name)
    return Measure(proportion(_hits(a, 1) & _hits(b, 1)[order]), True, ka)


def clip_keys(ids: np.ndarray) -> np.ndarray:
    """Clip ids as keys: a repeated id (two annotations of one segment) gets ``#2``, ``#3``
    in file order, so each key names one clip."""
    ids = np.asarray(ids).astype(str)
    if np.unique(ids).size == ids.size:
        return ids
    seen: Dict[str, int] = {}
    keys = []
    for clip in ids.tolist():
        seen[clip] = seen.get(clip, 0) + 1
        keys.append(clip if seen[clip] == 1 else f"{clip}#{seen[clip]}")
    return np.asarray(keys)


def alignment(first: np.ndarray, other: np.ndarray, names: Tuple[str, str], what: str
              ) -> np.ndarray:
    """The order that puts ``other``'s clips in ``first``'s order; ClipsDiffer, with
    examples, when the two files do not hold the same clips."""
    o1, o2 = np.argsort(first, kind="stable"), np.argsort(other, kind="stable")
    if first.size == other.size and np.array_equal(first[o1], other[o2]):
        order = np.empty_like(o2)
        order[o1] = o2
        return order
    only1, only2 = np.setdiff1d(first, other), np.setdiff1d(other, first)
    raise ClipsDiffer(
        f"{what}: {only1.size + only2.size} clip(s) are in one file only "
        f"({only1.size} only in {names[0]}{_examples(only1)}; "
        f"{only2.size} only in {names[1]}{_examples(only2)}); the runs must score the same "
        "clips (a clip skipped in one run?)")


def _examples(keys: np.ndarray) -> str:
    return f", e.g. {', '.join(map(repr, keys[:3].tolist()))}" if keys.size else ""


def aligned(measures: Sequence[Measure], names: Sequence[str], what: str) -> List[Measure]:
    """The measures with every file's clips in the first one's order."""
    first = measures[0]
    return [first] + [m.take(alignment(first.ids, m.ids, (names[0], n), what))
                      for m, n in zip(measures[1:], names[1:])]
