"""Per-class views of a run's per-clip predictions (``<run_id>.predictions.npz``): each class's
accuracy with its counts, the most frequent confusions (true -> predicted) with example clips,
and the classes whose accuracy moved most between two runs of one dataset.

Everything here is computed from the file's ``label``, ``top5`` (its first column is the
reported head's top-1) and ``id`` arrays; nothing is read from logs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Sequence

import numpy as np

from eval_encoder import stats

ARRAYS = ("id", "label", "top5")  # what the views read from a predictions file
EXAMPLES = 3  # example clip ids per confusion


@dataclass
class ClassLine:
    label: int
    clips: int
    right: int

    @property
    def accuracy(self) -> float:
        return 100.0 * self.right / self.clips


@dataclass
class Confusion:
    true: int
    predicted: int
    count: int
    share: float  # of the true class's clips, in percent
    examples: List[str]


def load(record: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """The record's per-clip arrays this module reads (sha256 checked by :mod:`stats`)."""
    return stats.load_predictions(record, ARRAYS)


def predicted(arrays: Dict[str, np.ndarray]) -> np.ndarray:
    """The reported head's top-1 class of every clip."""
    return np.asarray(arrays["top5"])[:, 0].astype(np.int64)


def per_class(arrays: Dict[str, np.ndarray]) -> List[ClassLine]:
    """Every class present among the labels: clips and clips right, worst accuracy first
    (ties: the class with more clips first, then by label)."""
    labels = np.asarray(arrays["label"]).astype(np.int64)
    right = predicted(arrays) == labels
    classes, clips = np.unique(labels, return_counts=True)
    hits = np.bincount(labels[right], minlength=int(classes.max()) + 1 if classes.size else 0)
    return worst_first(ClassLine(int(c), int(n), int(hits[c])) for c, n in zip(classes, clips))


def worst_first(lines: Iterable[ClassLine]) -> List[ClassLine]:
    """Worst accuracy first; ties: the class with more clips first, then by label."""
    return sorted(lines, key=lambda x: (x.accuracy, -x.clips, x.label))


def confusions(arrays: Dict[str, np.ndarray], top: int = 20) -> List[Confusion]:
    """The ``top`` most frequent (true, predicted) pairs among the wrong clips, with the first
    :data:`EXAMPLES` distinct clip ids of each (ties: by true, then predicted class)."""
    labels = np.asarray(arrays["label"]).astype(np.int64)
    guess = predicted(arrays)
    wrong = np.flatnonzero(guess != labels)
    if not wrong.size:
        return []
    pairs, inverse, counts = np.unique(np.stack([labels[wrong], guess[wrong]], axis=1), axis=0,
                                       return_inverse=True, return_counts=True)
    order = sorted(range(len(pairs)), key=lambda i: (-counts[i], *pairs[i]))[:top]
    totals = np.bincount(labels)
    ids = np.asarray(arrays["id"])
    return [Confusion(int(pairs[i][0]), int(pairs[i][1]), int(counts[i]),
                      100.0 * counts[i] / totals[pairs[i][0]],
                      _examples(ids[wrong[inverse.ravel() == i]]))
            for i in order]


def _examples(ids: np.ndarray) -> List[str]:
    """The first :data:`EXAMPLES` distinct ids (a clip wrong in two seeds counts once)."""
    return list(dict.fromkeys(str(x) for x in ids))[:EXAMPLES]


def mean_accuracy(runs: Sequence[Dict[str, np.ndarray]]) -> Dict[int, ClassLine]:
    """{class: its line} summed over the runs (seeds of one cell); accuracy is then the share
    of all their clips of that class that were right."""
    found: Dict[int, ClassLine] = {}
    for arrays in runs:
        for line in per_class(arrays):
            have = found.setdefault(line.label, ClassLine(line.label, 0, 0))
            have.clips += line.clips
            have.right += line.right
    return found


def pooled_per_class(runs: Sequence[Dict[str, np.ndarray]]) -> List[ClassLine]:
    """:func:`per_class` of several runs of one cell (seeds): each class's clips and clips
    right summed over them (:func:`mean_accuracy`), worst first."""
    return worst_first(mean_accuracy(runs).values())


def pooled(runs: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """The runs' arrays one after the other: :func:`confusions` of it sums their counts."""
    return {name: np.concatenate([np.asarray(r[name]) for r in runs]) for name in ARRAYS}


def moved(a: Sequence[Dict[str, np.ndarray]], b: Sequence[Dict[str, np.ndarray]],
          top: int = 10) -> List[Dict[str, Any]]:
    """The ``top`` classes whose accuracy differs most between A and B (A - B, points), over
    the classes both hold; largest |difference| first, then by class."""
    left, right = mean_accuracy(a), mean_accuracy(b)
    lines = [{"label": c, "a": left[c].accuracy, "b": right[c].accuracy,
              "diff": left[c].accuracy - right[c].accuracy, "clips_a": left[c].clips,
              "clips_b": right[c].clips} for c in sorted(set(left) & set(right))]
    return sorted(lines, key=lambda x: (-abs(x["diff"]), x["label"]))[:top]
