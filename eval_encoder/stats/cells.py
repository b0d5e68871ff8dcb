"""Leaderboard cells and paired comparisons from run records: a cell's value over its seeds
with a clip-level interval, derived columns (EPIC-Kitchens action), and A minus B on the
same clips with a paired bootstrap and McNemar's test.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder.stats.clips import joint, mean_of
from eval_encoder.stats.errors import ClipsDiffer, MissingPredictions
from eval_encoder.stats.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    bootstrap,
    centre,
    clopper_pearson,
    mcnemar_exact,
    percentile_interval,
    rng_for,
)
from eval_encoder.stats.measures import (
    METRICS,
    Measure,
    aligned,
    derived_measure,
    measure,
    where,
)
from eval_encoder.stats.small import (
    jeffreys_draws,
    needs_exact,
    newcombe,
    paired_draws,
    table_of,
)
from eval_encoder.video.manifest import DEFAULT_METRICS, ManifestError, load_card

log = logging.getLogger(__name__)


@dataclass
class Cell:
    """One leaderboard cell: the mean over its runs (seeds of one configuration), each run's
    value and seed, and with an interval, the clip-level one and its replicates (for AVG).
    ``note`` says why a value or an interval is missing (a key of the leaderboard's notes);
    ``small``: a share under the small-share rule (:func:`needs_exact`)."""

    value: float
    seeds: Tuple[Any, ...] = ()
    values: Tuple[float, ...] = ()
    interval: Optional[Interval] = None
    replicates: Optional[np.ndarray] = None
    note: str = ""
    small: bool = False

    @property
    def sd(self) -> float:
        """Sample standard deviation across seeds (NaN for one run)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan


def seed_of(record: Dict[str, Any]) -> Any:
    return (record.get("config") or {}).get("seed")


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
    """Bootstrap the cell's statistic; a single run's share gets Clopper-Pearson with
    ``exact``, and with either ``ci`` when it falls under :func:`needs_exact` (its AVG
    resamples are then Jeffreys draws)."""
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
    cell.interval = percentile_interval(cell.replicates)
    if found.proportion:
        _share_interval(cell, found, key, ci, resamples)
    _check_estimate(cell, found, key)


def _share_interval(cell: Cell, found: Measure, key: str, ci: str, resamples: int) -> None:
    """Clopper-Pearson for a single run's share under ``exact`` or the small-share rule."""
    hits = found.hits()
    k, n = int(hits.sum()), int(hits.size)
    cell.small = needs_exact(k, n)
    if cell.small:
        cell.replicates = jeffreys_draws(k, n, resamples, rng_for(key))
    if ci == "exact" or cell.small:
        cell.interval = clopper_pearson(k, n)


def _check_estimate(cell: Cell, found: Measure, key: str) -> None:
    """The file must give the value the records state (to their rounding)."""
    from_file = found.stat.estimate()
    if abs(from_file - cell.value) > 0.05:
        log.warning("%s: the records give %.2f but their per-clip predictions give %.2f; the "
                    "interval is from the predictions", key, cell.value, from_file)


@dataclass(frozen=True)
class Paired:
    """A minus B on one dataset's clips: both values, the difference (points), its paired
    interval (bootstrap, or Newcombe's for small shares: ``interval.method``) and replicates, and for two single runs of a share of clips the
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
        out.update(_paired_shares(parts[0].hits(), parts[1].hits(), key, resamples, level))
    return Paired(**out)


def _paired_shares(ha: np.ndarray, hb: np.ndarray, key: str, resamples: int, level: float
                   ) -> Dict[str, Any]:
    """McNemar's counts and test; Newcombe's interval (and Dirichlet draws for AVG) when
    either share falls under :func:`needs_exact` or no clip is discordant."""
    table = table_of(ha, hb)
    only_a, only_b, n = int(table[0, 1]), int(table[1, 0]), int(table.sum())
    out: Dict[str, Any] = dict(only_a=only_a, only_b=only_b, p=mcnemar_exact(only_a, only_b))
    small = needs_exact(int(ha.sum()), n) or needs_exact(int(hb.sum()), n)
    if small or only_a + only_b == 0:
        out.update(interval=newcombe(table, level),
                   replicates=paired_draws(table, resamples, rng_for(key)))
    return out
