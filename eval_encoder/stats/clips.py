"""Statistics of a set of clips that depend on them only through how many clips fall in each
of a few cells (:class:`ClipStat`), so that a bootstrap resample is a draw of cell counts:
shares of clips, per-class means, joint statistics of several runs on the same clips, and
average precision (one cell per clip).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np

from eval_encoder.stats.errors import StatsError


@dataclass(frozen=True)
class ClipStat:
    """A statistic of a set of clips that depends on them only through the number of clips in
    each of ``size`` cells; ``cells[i]`` is clip i's cell and ``value`` maps counts per cell
    [R, size] to the statistic [R], in percent. For a share of clips (:func:`proportion`)
    cell 1 holds the clips that count as right."""

    cells: np.ndarray
    size: int
    value: Callable[[np.ndarray], np.ndarray]

    def counts(self) -> np.ndarray:
        return np.bincount(self.cells, minlength=self.size)

    def estimate(self) -> float:
        """The statistic on the clips themselves."""
        return float(self.value(self.counts()[None, :])[0])

    def take(self, order: np.ndarray) -> "ClipStat":
        """The same clips in another order (cells move with their clips)."""
        return ClipStat(self.cells[order], self.size, self.value)


def proportion(hit: np.ndarray) -> ClipStat:
    """The share of clips (percent) for which ``hit`` holds."""
    return ClipStat(np.asarray(hit, dtype=np.int64), 2, _share)


def _share(counts: np.ndarray) -> np.ndarray:
    return 100.0 * counts[:, 1] / counts.sum(axis=1)


def class_mean(label: np.ndarray, hit: np.ndarray) -> ClipStat:
    """Mean over the classes present of each class's share of ``hit`` (percent); a class
    that a resample leaves without clips is left out of that replicate's mean."""
    classes, index = np.unique(label, return_inverse=True)
    k = classes.size

    def value(counts: np.ndarray) -> np.ndarray:
        cells = counts.reshape(len(counts), k, 2)
        total = cells.sum(axis=2)
        recall = np.where(total > 0, cells[..., 1] / np.maximum(total, 1), np.nan)
        return 100.0 * np.nanmean(recall, axis=1)

    return ClipStat(index.reshape(-1) * 2 + np.asarray(hit, dtype=np.int64), 2 * k, value)


def joint(stats: Sequence[ClipStat], combine: Callable[[List[np.ndarray]], np.ndarray]
          ) -> ClipStat:
    """One statistic of several on the same clips (aligned: clip i is clip i in each), so a
    resample draws the clips once for all of them; ``combine`` maps their values to one."""
    codes = np.stack([s.cells for s in stats], axis=1)
    combos, inverse = np.unique(codes, axis=0, return_inverse=True)
    projections = [_projection(combos[:, i], s.size) for i, s in enumerate(stats)]

    def value(counts: np.ndarray) -> np.ndarray:
        return combine([s.value(p(counts)) for s, p in zip(stats, projections)])

    return ClipStat(inverse.reshape(-1), len(combos), value)


def _projection(target: np.ndarray, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Counts per joint cell [R, K] -> counts per cell of one part [R, size]."""
    order = np.argsort(target, kind="stable")
    sorted_target = target[order]
    starts = np.flatnonzero(np.r_[True, sorted_target[1:] != sorted_target[:-1]])

    def project(counts: np.ndarray) -> np.ndarray:
        out = np.zeros((len(counts), size), dtype=counts.dtype)
        out[:, sorted_target[starts]] = np.add.reduceat(counts[:, order], starts, axis=1)
        return out

    return project


def mean_of(stats: Sequence[ClipStat]) -> ClipStat:
    """The mean of several statistics on the same clips (seeds of one configuration)."""
    return stats[0] if len(stats) == 1 else joint(stats, lambda v: np.mean(v, axis=0))


COLUMN_CELLS = 8_000_000  # clips x thresholds per matrix product in map_stat (memory bound)


def _thresholds(scores: np.ndarray, positive: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one class: its positive clips, the distinct scores among them (descending: the only
    thresholds at which recall moves) and which positive clears which threshold [P, G]."""
    pos = np.flatnonzero(positive)
    steps = np.unique(scores[pos])[::-1]
    return pos, steps, (scores[pos][:, None] >= steps[None, :]).astype(np.float32)


def _ap(tp: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """AP [R] from the (weighted) positives and clips at or above each threshold [R, G]:
    sum over thresholds of (gain in recall) x precision; NaN where no positive counts."""
    tp, seen = tp.astype(np.float64), seen.astype(np.float64)
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    gained = np.diff(tp, axis=1, prepend=0.0)
    total = tp[:, -1]
    return np.divide((gained * precision).sum(axis=1), total,
                     out=np.full(len(tp), np.nan), where=total > 0)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of one class: sum over score thresholds of (gain in recall) x precision; clips with
    equal scores form one threshold (order-free, as scikit-learn's average_precision_score).
    One sort, so it costs O(n log n) whatever the number of distinct scores."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if not positive.any():
        raise StatsError("average precision needs at least one positive clip")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    last = np.r_[ranked[1:] != ranked[:-1], True]  # the last clip of each group of equal scores
    tp = np.cumsum(hits)[last].astype(np.float64)
    seen = np.arange(1, hits.size + 1)[last]
    return float((np.diff(tp, prepend=0.0) * tp / seen).sum() / tp[-1])


def map_stat(prob: np.ndarray, label: np.ndarray) -> ClipStat:
    """mAP (percent) over the classes present, from every class's probability [n, C]. One
    cell per clip (AP depends on each clip's rank); a resample weighs clip i by how often it
    was drawn, and the clips at or above every threshold of every class come from one matrix
    product of those weights with the threshold indicators."""
    classes = np.unique(label)
    parts = [_thresholds(prob[:, c], label == c) for c in classes]

    def value(counts: np.ndarray) -> np.ndarray:
        weights = counts.astype(np.float32)  # exact: integer sums below 2**24
        ap = np.empty((len(weights), classes.size))
        for group in _column_groups([p[1].size for p in parts], COLUMN_CELLS // label.size):
            cols = [(prob[:, classes[i]][:, None] >= parts[i][1][None, :]) for i in group]
            seen = weights @ np.concatenate(cols, axis=1).astype(np.float32)
            edges = np.cumsum([0] + [parts[i][1].size for i in group])
            for j, i in enumerate(group):
                pos, _, cleared = parts[i]
                ap[:, i] = _ap(weights[:, pos] @ cleared, seen[:, edges[j]:edges[j + 1]])
        return 100.0 * np.nanmean(ap, axis=1)

    return ClipStat(np.arange(label.size), label.size, value)


def _column_groups(widths: Sequence[int], columns: int) -> List[List[int]]:
    """Consecutive classes in groups of about ``columns`` thresholds."""
    groups: List[List[int]] = [[]]
    total = 0
    for i, width in enumerate(widths):
        if groups[-1] and total + width > columns:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += width
    return groups
