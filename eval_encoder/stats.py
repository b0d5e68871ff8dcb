"""Intervals, paired comparisons and per-dataset metrics, from the per-clip prediction files.

Every complete run keeps what its reported head said about every scored validation clip in
``<run_id>.predictions.npz`` beside its record (``record["predictions"]``: file, sha256; arrays
``id``, ``label``, ``top5`` and, when the card's metrics need it, ``prob``). From those files:

- **Metrics** (:data:`METRICS`): top-1, top-5, mean per-class accuracy (mean over the classes
  present of each class's top-1 recall) and mAP (mean over the classes present of each class's
  average precision, from every class's probability; tied scores form one threshold, as in
  scikit-learn's ``average_precision_score``). EPIC-Kitchens action accuracy (verb and noun both
  right) joins an ``epic_verb`` and an ``epic_noun`` run by clip id (:data:`DERIVED`).
- **Intervals**: a clip-level bootstrap percentile interval with a fixed seed, and the exact
  Clopper-Pearson interval for a share of clips. The interval of an average over datasets
  resamples each dataset's clips on its own (its own random stream, keyed by its name) and
  averages the per-dataset replicates.
- **Paired comparison**: two runs (or seed-means) on the same clips, resampled jointly, and
  the exact McNemar test (two-sided binomial test on the discordant clips).

How the bootstrap is computed. Every statistic here depends on the clips only through how many
clips fall in each of a few *cells* (:class:`ClipStat`): top-1 needs right/wrong (2 cells),
mean per-class accuracy (class, right) (2C cells), a paired difference (A right, B right) (4
cells), a seed-mean the pattern over seeds. Drawing n clips with replacement puts
Multinomial(n, counts / n) clips in the cells, so a resample is drawn as those counts: the same
distribution as resampling clip indices, at a cost that does not grow with n. mAP depends on
every clip's rank (one cell per clip), so it draws clip indices, in chunks, and its replicates
are re-centred on the estimate (see :func:`centre` for why and what was measured).
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder.video.manifest import file_sha256

log = logging.getLogger(__name__)

RESAMPLES = 2000  # bootstrap replicates
SEED = 0  # the bootstrap's fixed seed; each dataset gets its own stream (see rng_for)
LEVEL = 0.95
CHUNK = 20_000_000  # cell counts per chunk of replicates (bounds memory for per-clip cells)
INTERVALS = ("bootstrap", "exact")


class StatsError(ValueError):
    """A prediction file or a comparison that cannot be used, with the reason."""


class MissingPredictions(StatsError):
    """A record without (or whose file lacks) per-clip predictions, e.g. an older record."""


class ClipsDiffer(StatsError):
    """Two prediction files that should cover the same clips do not."""


# ----------------------------------------------------------------------------- clip statistics
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


# ----------------------------------------------------------------------------- average precision
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


# ----------------------------------------------------------------------------- metrics
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


# ----------------------------------------------------------------------------- prediction files
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


# ----------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    method: str  # "bootstrap" | "exact"


def rng_for(key: str, seed: int = SEED) -> np.random.Generator:
    """The bootstrap's random stream for ``key`` (a dataset): fixed, and independent of the
    other datasets' streams, so averaging their replicates averages independent draws."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def bootstrap(stat: ClipStat, resamples: int = RESAMPLES,
              rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """``resamples`` replicates of the statistic on clips drawn with replacement."""
    if resamples < 1:
        raise StatsError(f"the bootstrap needs at least one resample (got {resamples})")
    rng = rng if rng is not None else np.random.default_rng(SEED)
    counts = stat.counts()
    step = max(1, CHUNK // max(stat.size, 1))
    parts = [stat.value(_draw(counts, min(step, resamples - start), rng))
             for start in range(0, resamples, step)]
    return np.concatenate(parts)


def _draw(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Counts per cell [resamples, K] of n clips drawn with replacement."""
    n, size = int(counts.sum()), counts.size
    if size * 16 <= n:  # few cells: one multinomial draw per replicate
        return rng.multinomial(n, counts / n, size=resamples)
    cell_of = np.repeat(np.arange(size, dtype=np.int64), counts)
    drawn = cell_of[rng.integers(0, n, size=(resamples, n), dtype=np.int32)]
    drawn += np.arange(resamples)[:, None] * size
    return np.bincount(drawn.ravel(), minlength=resamples * size).reshape(resamples, size)


def centre(replicates: np.ndarray, estimate: float) -> np.ndarray:
    """Replicates shifted so that their mean is the estimate. For mAP: a resample holds some
    clips two or more times, and a duplicated positive ties with its copy at every threshold,
    which lifts AP; on simulated Charades-Ego-like data (2,000 clips, 40 classes) the replicates
    sat about 1 point above the estimate, more than the interval's half-width, while their
    spread matched the true sampling spread (sd 0.65-0.76 against 0.70 over 150 fresh
    samples). Percentiles of the centred replicates keep that spread around the estimate."""
    return replicates - replicates.mean() + estimate


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """The central ``level`` percentile interval of bootstrap replicates."""
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(replicates, [tail, 100.0 - tail])
    return Interval(float(lo), float(hi), "bootstrap")


@lru_cache(maxsize=8)
def _log_factorials(n: int) -> np.ndarray:
    """log(k!) for k = 0..n."""
    return np.array([math.lgamma(k + 1.0) for k in range(n + 1)])


def _log_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = k), k = 0..n, for X ~ Binomial(n, p), 0 < p < 1."""
    lgamma = _log_factorials(n)
    k = np.arange(n + 1)
    return lgamma[n] - lgamma - lgamma[::-1] + k * math.log(p) + (n - k) * math.log1p(-p)


def _tail(log_pmf: np.ndarray) -> float:
    """sum(exp(log_pmf)), computed stably."""
    if log_pmf.size == 0:
        return 0.0
    top = float(log_pmf.max())
    return math.exp(top) * float(np.exp(log_pmf - top).sum())


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    return 0.0 if p >= 1.0 else min(1.0, _tail(_log_pmf(n, p)[: k + 1]))


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Interval:
    """The exact (Clopper-Pearson) interval of a share k/n, in percent: the p whose binomial
    tails P(X >= k) and P(X <= k) are each (1 - level) / 2, found by bisection."""
    if n <= 0 or not 0 <= k <= n:
        raise StatsError(f"a share needs 0 <= k <= n and n > 0 (k={k}, n={n})")
    alpha = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else _solve(lambda p: 1.0 - binomial_cdf(k - 1, n, p) - alpha)
    hi = 1.0 if k == n else _solve(lambda p: alpha - binomial_cdf(k, n, p))
    return Interval(100.0 * lo, 100.0 * hi, "exact")


def _solve(f: Callable[[float], float], steps: int = 60) -> float:
    """The root in (0, 1) of an increasing function, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2.0


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact McNemar p-value: two-sided binomial test of ``only_a`` successes in
    only_a + only_b discordant clips at p = 1/2 (twice the smaller tail, at most 1)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf(min(only_a, only_b), n, 0.5))


# ----------------------------------------------------------------------------- leaderboard cells
@dataclass
class Cell:
    """One leaderboard cell: the mean over its runs (seeds of one configuration), each run's
    value and seed, and with an interval, the clip-level one and its replicates (for AVG).
    ``note`` says why a value or an interval is missing (a key of the leaderboard's notes)."""

    value: float
    seeds: Tuple[Any, ...] = ()
    values: Tuple[float, ...] = ()
    interval: Optional[Interval] = None
    replicates: Optional[np.ndarray] = None
    note: str = ""

    @property
    def sd(self) -> float:
        """Sample standard deviation across seeds (NaN for one run)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan


def seed_of(record: Dict[str, Any]) -> Any:
    return (record.get("config") or {}).get("seed")


DEFAULT_METRICS = ("top1", "top5", "mean_class_acc")  # a card's when it names none


def declared(record: Dict[str, Any], metric: str) -> bool:
    """Whether a run measures ``metric``: its record's ``metrics`` when it has them, else a
    number in its ``reported`` (top-1 and top-5 of older records), else its dataset card."""
    if record.get("metrics"):
        return metric in record["metrics"]
    key = METRICS[metric].reported_key
    if key is not None and (record.get("reported") or {}).get(key) is not None:
        return True
    return metric in card_metrics(record["dataset"]["name"])


def card_metrics(dataset: str) -> Tuple[str, ...]:
    """The metrics a dataset's card declares (the defaults for a dataset without a card)."""
    from eval_encoder.video.manifest import ManifestError, load_card

    try:
        return tuple(load_card(dataset).metrics)
    except ManifestError as exc:
        log.warning("%s; taking the default metrics %s", exc, ", ".join(DEFAULT_METRICS))
        return DEFAULT_METRICS


def record_value(record: Dict[str, Any], metric: str) -> float:
    """``record["metrics"][metric]``, else the reported value, else computed from the file."""
    stored = (record.get("metrics") or {}).get(metric)
    key = METRICS[metric].reported_key
    if stored is None and key is not None:
        stored = (record.get("reported") or {}).get(key)
    return float(stored) if stored is not None else measure(record, metric).stat.estimate()


def cell_summary(records: Sequence[Dict[str, Any]], metric: str, key: str,
                 ci: Optional[str] = None, resamples: int = RESAMPLES) -> Cell:
    """The cell of ``records`` (one per seed) for ``metric``; ``key`` names the bootstrap's
    random stream (the dataset)."""
    seeds = tuple(seed_of(r) for r in records)
    try:
        values = tuple(record_value(r, metric) for r in records)
    except MissingPredictions as exc:
        log.info("%s", exc)
        return Cell(math.nan, seeds, note="no_predictions")
    cell = Cell(float(np.mean(values)), seeds, values)
    if ci:
        _add_interval(cell, lambda: _seed_measure(records, metric, key), key, ci, resamples)
    return cell


def derived_summary(name: str, pairs: Sequence[Tuple[Dict[str, Any], Dict[str, Any]]],
                    ci: Optional[str] = None, resamples: int = RESAMPLES) -> Cell:
    """The cell of a :data:`DERIVED` column from (first, second) record pairs, one per seed."""
    seeds = tuple(seed_of(a) for a, _ in pairs)
    try:
        measures = [derived_measure(name, a, b) for a, b in pairs]
    except MissingPredictions as exc:
        log.info("%s", exc)
        return Cell(math.nan, seeds, note="no_predictions")
    except ClipsDiffer as exc:
        log.warning("%s", exc)
        return Cell(math.nan, seeds, note="clips_differ")
    values = tuple(m.stat.estimate() for m in measures)
    cell = Cell(float(np.mean(values)), seeds, values)
    if ci:
        names = [where(a) for a, _ in pairs]
        _add_interval(cell, lambda: _mean_measure(measures, names, name), name, ci, resamples)
    return cell


def seed_pairs(first: Sequence[Dict[str, Any]], second: Sequence[Dict[str, Any]]
               ) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """Runs of a derived column's two parts with the same seed; without a common seed, the
    latest of each."""
    other = {seed_of(r): r for r in second}
    pairs = [(r, other[seed_of(r)]) for r in first if seed_of(r) in other]
    return pairs or [(first[-1], second[-1])]


def _seed_measure(records: Sequence[Dict[str, Any]], metric: str, what: str) -> Measure:
    ids = len(records) > 1
    return _mean_measure([measure(r, metric, ids) for r in records], [where(r) for r in records],
                         what)


def _mean_measure(measures: Sequence[Measure], names: Sequence[str], what: str) -> Measure:
    if len(measures) == 1:
        return measures[0]
    parts = aligned(measures, names, what)
    return Measure(mean_of([m.stat for m in parts]), False, parts[0].ids,
                   any(m.centred for m in parts))


def _add_interval(cell: Cell, make: Callable[[], Measure], key: str, ci: str,
                  resamples: int) -> None:
    """Bootstrap the cell's statistic; ``exact`` gives a single run's share Clopper-Pearson."""
    try:
        found = make()
    except MissingPredictions as exc:
        log.info("%s", exc)
        cell.note = "no_predictions"
        return
    except ClipsDiffer as exc:
        log.warning("%s", exc)
        cell.note = "clips_differ"
        return
    cell.replicates = bootstrap(found.stat, resamples, rng_for(key))
    if found.centred:
        cell.replicates = centre(cell.replicates, found.stat.estimate())
    if ci == "exact" and found.proportion:
        hits = found.hits()
        cell.interval = clopper_pearson(int(hits.sum()), hits.size)
    else:
        cell.interval = percentile_interval(cell.replicates)
    _check_estimate(cell, found, key)


def _check_estimate(cell: Cell, found: Measure, key: str) -> None:
    """The file must give the value the records state (to their rounding)."""
    from_file = found.stat.estimate()
    if abs(from_file - cell.value) > 0.05:
        log.warning("%s: the records give %.2f but their per-clip predictions give %.2f; the "
                    "interval is from the predictions", key, cell.value, from_file)


def average_interval(replicates: Sequence[np.ndarray], level: float = LEVEL) -> Interval:
    """Interval of a mean over datasets: each dataset resampled on its own, replicates
    averaged replicate by replicate."""
    return percentile_interval(np.mean(np.stack(replicates), axis=0), level)


# ----------------------------------------------------------------------------- paired comparison
@dataclass(frozen=True)
class Paired:
    """A minus B on one dataset's clips: both values, the difference (points), its paired
    bootstrap interval and replicates, and for two single runs of a share of clips the
    discordant clips and the exact McNemar p-value."""

    clips: int
    a: float
    b: float
    diff: float
    interval: Interval
    replicates: np.ndarray
    only_a: Optional[int] = None
    only_b: Optional[int] = None
    p: Optional[float] = None


def paired(a: Sequence[Measure], b: Sequence[Measure], names: Sequence[str], key: str,
           resamples: int = RESAMPLES, level: float = LEVEL) -> Paired:
    """Compare the seed-means of ``a`` and ``b`` (measures with ids) on the same clips,
    resampled jointly; ``names`` (a's then b's files) and ``key`` (dataset) name them."""
    parts = aligned([*a, *b], names, key)
    na = len(a)
    each = [m.stat for m in parts]
    diff = joint(each, lambda v: np.mean(v[:na], axis=0) - np.mean(v[na:], axis=0))
    replicates = bootstrap(diff, resamples, rng_for(key))
    if any(m.centred for m in parts):
        replicates = centre(replicates, diff.estimate())
    values = [s.estimate() for s in each]
    out = dict(clips=int(parts[0].ids.size), a=float(np.mean(values[:na])),
               b=float(np.mean(values[na:])), diff=diff.estimate(),
               interval=percentile_interval(replicates, level), replicates=replicates)
    if len(parts) == 2 and parts[0].proportion:
        ha, hb = parts[0].hits(), parts[1].hits()
        only_a, only_b = int((ha & ~hb).sum()), int((hb & ~ha).sum())
        out.update(only_a=only_a, only_b=only_b, p=mcnemar_exact(only_a, only_b))
    return Paired(**out)
