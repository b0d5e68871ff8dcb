"""The leaderboard board: measured rows, the paper's rows beside them and the deltas.

The table has the paper's layout: a block per frame count, a row per method, columns Arch,
Res, AVG and the benchmark datasets (default: the paper's eight, or without the paper's rows
the datasets the records hold: :func:`default_columns`). Each cell is the score a
record reports (``record["reported"]["top1"]``) of the latest *complete* record for that
(frames, method, arch, res, dataset); a dataset whose latest attempt failed and that has no
complete record shows ``fail``. AVG is the mean over the benchmark datasets and is given only
for rows that have all of them; a partial row shows ``partial (n/N)`` instead.

With ``reported`` the paper's numbers (``results/paper_attentive_probe.csv``) stand under the
measured ones with a delta row (measured - paper). A reported AVG that is not the mean of its
own printed cells, rounded half-up to the one decimal the paper prints, is flagged (see
:func:`eval_encoder.report.reported.check_reported_avgs` for why that rounding).

Runs of one configuration that differ only by ``config.seed`` share a cell, which shows their
mean and "(n seeds)". ``metric`` (``--metric``) picks what the cells show (top-1 by default;
top5, mean_class_acc, map; ``action`` adds an EPIC-Kitchens action column), read from each
record's ``metrics`` or computed from its per-clip predictions; a metric a dataset does not
declare leaves its cell empty, with a footnote. ``ci`` (``--ci [bootstrap|exact]``) adds a
95% interval to every cell and AVG (``52.3 ±1.1``; ``_lo``/``_hi`` columns in csv; error bars
in the plot) and the spread across seeds; records without a predictions file get none, said
once in a footnote. The statistics are in :mod:`eval_encoder.stats`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

from eval_encoder import stats
from eval_encoder.protocol import ONEVISION, PUBLISHED, Published
from eval_encoder.report.cells import CellKey, measured_table, pick_latest, score_cells
from eval_encoder.report.names import (
    ASYMMETRY,
    DISPLAY_NAMES,
    PAPER_DATASETS,
    ROW_KEYS,
    LeaderboardError,
)
from eval_encoder.report.records import records_frame
from eval_encoder.report.reported import check_reported_avgs

ONEVISION_TABLE = PUBLISHED[ONEVISION]

SOURCES = ("measured", "reported", "delta")


@dataclass
class Board:
    """A built leaderboard: the long table and which dataset columns it shows."""

    table: pd.DataFrame  # a line per (row, source); see build_board
    published: Published  # whose table: its protocols' runs, its reported numbers
    datasets: List[str]  # benchmark columns: AVG is over these
    extras: List[str] = field(default_factory=list)  # other datasets found in the records
    metric: str = "top1"  # the view shown (stats.VIEWS)
    ci: Optional[str] = None  # the interval asked for: None, "bootstrap" or "exact"
    notes: List[str] = field(default_factory=list)  # footnotes on metric, intervals, seeds
    stat_suffixes: List[str] = field(default_factory=list)  # <col>_<suffix> columns held
    gflops: bool = False  # show the encoder's GFLOPs per clip (``--gflops``)
    head_kind: Optional[str] = None  # the probe head kind of its cells (None: the records' one)
    # cells whose latest attempt failed, with the record's error (see failure_rows)
    failures: List[Dict[str, Any]] = field(default_factory=list)
    # the records' line of every cell (cells.pick_latest: its row keys, dataset, status, the
    # record's path and the positions of its seeds' records); None for reported numbers only
    picked: Optional[pd.DataFrame] = None
    # the records the board was built from (picked's ``refs`` and ``ref`` index them)
    records: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> List[str]:
        return [*self.datasets, *self.extras]


def default_columns(records: Sequence[Dict[str, Any]], reported: bool,
                    published: Published = ONEVISION_TABLE) -> List[str]:
    """The benchmark columns (AVG's) when none are asked for: the published table's (the
    OneVision paper's eight) beside its reported rows; else those the records hold, the
    published table's among them in its order or, when they hold none of them, all of them,
    so that a table of one's own datasets shows them rather than empty columns. Other
    datasets stand after them, outside AVG."""
    held = {r["dataset"]["name"] for r in records}
    if reported or not held:
        return list(published.datasets)
    return [d for d in published.datasets if d in held] or sorted(held)


def build_board(records: Sequence[Dict[str, Any]], datasets: Sequence[str] = PAPER_DATASETS,
                reported: Optional[pd.DataFrame] = None, metric: str = "top1",
                ci: Optional[str] = None, resamples: int = stats.RESAMPLES,
                published: Published = ONEVISION_TABLE) -> Board:
    """The leaderboard: measured rows and, with ``reported``, paper rows and delta rows.

    Table columns: ROW_KEYS, source (measured | reported | delta), avg, one per dataset,
    n_done, n_datasets, complete, failed (datasets whose latest attempt failed), and for
    paper rows avg_mean (recomputed) and avg_flag; then ``<col>_lo``, ``<col>_hi`` and
    ``<col>_ci`` (the interval and its method, with ``ci``) and ``<col>_sd`` and
    ``<col>_seeds`` (when a cell has several seeds) for AVG and every column. Cells show ``metric`` (a :data:`stats.VIEWS` name).
    Rows: frame blocks ascending, in a block the paper's order, then other methods by name;
    in a row measured, reported, delta. ``published``: whose table it is (the OneVision
    paper's by default); a table without frame blocks (V-JEPA 2's) puts every row in one.
    """
    datasets = list(datasets)
    _check_options(datasets, reported, metric, ci, published)
    parts, extras, cells, failures = [], [], {}, []
    if records:
        picked, cells = score_cells(pick_latest(_framed(records_frame(records), published)),
                                    records, metric, ci, resamples)
        failures = failure_rows(picked, records)
        extras = sorted(set(picked["dataset"]) - set(datasets))
        parts.append(measured_table(picked, datasets, cells))
    if reported is not None:
        rep = check_reported_avgs(reported, datasets)
        _add_counts(rep, datasets)
        parts.append(rep)
        if records:
            parts.append(delta_rows(parts[0], rep, datasets, published.pair_on))
    if not parts:
        raise LeaderboardError("nothing to show: no run records and no reported numbers")
    table = _order(_flagged(pd.concat(parts, ignore_index=True)), reported, published.pair_on)
    suffixes = (["lo", "hi", "ci"] if ci else []) + (
        ["sd", "seeds"] if any(len(c.seeds) > 1 for c in cells.values()) else [])
    notes = stat_notes(cells, metric, ci, resamples) if records else []
    return Board(_columns(table, datasets, extras, suffixes), published, datasets, extras,
                 metric, ci, notes, suffixes, failures=failures,
                 picked=picked if records else None, records=list(records))


def _flagged(table: pd.DataFrame) -> pd.DataFrame:
    """The table with avg_mean and avg_flag (False unless a paper row's AVG was flagged)
    and mixed ("" unless a cell mixes configurations)."""
    for col in ("avg_mean", "avg_flag"):
        if col not in table.columns:
            table[col] = math.nan
    table["avg_flag"] = table["avg_flag"].eq(True)
    table["mixed"] = table["mixed"].fillna("") if "mixed" in table.columns else ""
    return table


def _columns(table: pd.DataFrame, datasets: List[str], extras: List[str],
             suffixes: List[str]) -> pd.DataFrame:
    """The board's columns in their order: row keys and cells, counts, then each cell's
    interval and seed columns."""
    fixed = [*ROW_KEYS, "source", "avg", *datasets, *extras]
    rest = ["n_done", "n_datasets", "complete", "failed", "mixed", "avg_mean", "avg_flag",
            "gflops"]
    held = [f"{c}_{s}" for c in ["avg", *datasets, *extras] for s in suffixes]
    return table.reindex(columns=fixed + rest + held)


def _framed(frame: pd.DataFrame, published: Published) -> pd.DataFrame:
    """The records' lines, in one block (frames 0) when the table has no frame blocks."""
    return frame if published.frame_blocks else frame.assign(frames=0)


def failure_rows(picked: pd.DataFrame, records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The cells whose latest attempt failed: row labels, dataset, the record's ``error``
    (its first line) and file, so a board of failed runs says why each one failed."""
    rows = []
    for line in picked[picked["status"] != "complete"].to_dict("records"):
        record = records[line["ref"]]
        error = str(record.get("error") or "no error recorded").strip().splitlines()
        rows.append({"frames": line["frames"], "method": line["method"],
                     "dataset": line["dataset"], "error": error[0] if error else "",
                     "record": line["path"]})
    return sorted(rows, key=lambda r: (r["frames"], r["method"], r["dataset"]))


def _check_options(datasets: List[str], reported: Optional[pd.DataFrame], metric: str,
                   ci: Optional[str], published: Published = ONEVISION_TABLE) -> None:
    if reported is not None and datasets != list(published.datasets):
        raise LeaderboardError(
            "the paper's AVG is over its eight datasets; leave out --datasets when comparing "
            "with reported numbers" if published.datasets == PAPER_DATASETS else
            f"the {published.title} numbers are over {', '.join(published.datasets)}; leave "
            "out --datasets when comparing with reported numbers")
    if metric not in stats.VIEWS:
        raise LeaderboardError(f"unknown metric {metric!r}; use one of {', '.join(stats.VIEWS)}")
    if reported is not None and stats.VIEWS[metric].metric != "top1":
        raise LeaderboardError(f"the paper reports top-1 only; leave out --reported to show "
                               f"{metric}")
    if ci not in (None, *stats.INTERVALS):
        raise LeaderboardError(f"unknown interval {ci!r}; use one of {', '.join(stats.INTERVALS)}")


def stat_notes(cells: Dict[CellKey, stats.Cell], metric: str, ci: Optional[str],
               resamples: int) -> List[str]:
    """Footnotes saying what the cells hold: the metric, the interval, seeds, what is missing."""
    view = stats.VIEWS[metric]
    notes = [] if view.metric == "top1" else [
        f"cells: {stats.METRICS[view.metric].title} (%), from each record's metrics or, where "
        "a record has none, from its per-clip predictions"]
    notes += [f"{DISPLAY_NAMES.get(name, name)}: {stats.DERIVED[name].title}, the "
              f"{' and '.join(stats.DERIVED[name].parts)} runs' clips matched by id; not in AVG"
              for name in view.derived]
    notes += _interval_notes(view, ci, resamples) if ci else []
    notes += _exact_notes(cells, ci) if ci else []
    if any(len(c.seeds) > 1 for c in cells.values()):
        notes.append("(n seeds): the mean over runs that differ only in config.seed"
                     + ("; sd: their sample standard deviation" if ci else ""))
    return notes + _missing_notes(cells, view.metric, ci)


def _interval_notes(view: stats.View, ci: str, resamples: int) -> List[str]:
    boot = (f"bootstrap percentile interval over the validation clips ({resamples:,} resamples "
            f"with replacement, seed {stats.SEED})")
    level = (f"±: half the width of the {stats.LEVEL:.0%} interval (+a/-b where its sides differ "
             f"by more than {ASYMMETRY:.0%}; bounds in --format csv)")
    if ci == "exact":
        first = (f"{level}; exact Clopper-Pearson binomial interval for single-run "
                 f"{'/'.join(n for n, m in stats.METRICS.items() if m.proportion)} cells; "
                 f"for AVG and every other cell a {boot}")
    else:
        first = f"{level}: {boot}"
    notes = [first + "; AVG: each dataset resampled on its own, the resampled values averaged"]
    if stats.METRICS[view.metric].centred:
        notes.append(f"{view.metric} intervals: the bootstrap replicates are re-centred on the "
                     "value (a resample's duplicated clips lift AP; see eval_encoder/stats/intervals.py)")
    return notes


def _exact_notes(cells: Dict[CellKey, stats.Cell], ci: str) -> List[str]:
    """The note on cells marked ᵉ: which method, and under --ci bootstrap, why."""
    small = sorted({k[-1] for k, c in cells.items() if c.small})
    if ci == "exact":
        text = "ᵉ: exact Clopper-Pearson interval; unmarked intervals are bootstrap ones"
    elif small:
        text = "ᵉ: exact Clopper-Pearson interval, not the bootstrap"
    else:
        return []
    if small:
        text += (f"; a single run's share of clips with fewer than {stats.MINORITY} clips right "
                 f"or fewer than {stats.MINORITY} wrong gets it whatever --ci says (there the "
                 "bootstrap interval is too narrow, of zero width at 0% or 100%), and in AVG "
                 "its resampled values are draws of Beta(k+1/2, n-k+1/2): "
                 + ", ".join(small))
    return [text]


def _missing_notes(cells: Dict[CellKey, stats.Cell], metric: str, ci: Optional[str]
                   ) -> List[str]:
    def datasets(note: str, empty: bool) -> List[str]:
        return sorted({k[-1] for k, c in cells.items()
                       if c.note == note and math.isnan(c.value) == empty})

    notes = []
    if datasets("undeclared", True):
        notes.append(f"empty: {metric} is not among the metrics declared for "
                     f"{', '.join(datasets('undeclared', True))} (by their dataset cards)")
    if datasets("no_predictions", True):
        notes.append(f"empty: no per-clip predictions to compute {metric} from (records "
                     "written before they were kept, or kept without what it needs): "
                     f"{', '.join(datasets('no_predictions', True))}")
    if ci and datasets("no_predictions", False):
        notes.append("no interval: records without per-clip predictions (written before they "
                     "were kept, or their reported head was scored before a resume): "
                     f"{', '.join(datasets('no_predictions', False))}")
    if ci and datasets("clips_differ", False) + datasets("clips_differ", True):
        notes.append("no interval: runs of one cell scored different clips (see the log)")
    return notes


def _add_counts(rep: pd.DataFrame, datasets: Sequence[str]) -> None:
    cells = rep[list(datasets)]
    rep["n_done"] = cells.notna().sum(axis=1).astype(int)
    rep["n_datasets"] = len(datasets)
    rep["complete"] = rep["n_done"] == len(datasets)
    rep["failed"] = ""


def delta_rows(measured: pd.DataFrame, reported: pd.DataFrame, datasets: Sequence[str],
               pair_on: Sequence[str] = ("frames", "method")) -> pd.DataFrame:
    """measured - reported per cell and for AVG, for rows matched on ``pair_on`` ((frames,
    method) for the OneVision paper) that followed the protocol that reproduces the
    published code (a clean run is not compared with the paper's numbers)."""
    pair = measured.merge(reported, on=[*pair_on, "protocol"], suffixes=("", "_rep"))
    delta = pair[ROW_KEYS].copy()
    for col in [*datasets, "avg"]:
        delta[col] = pair[col].astype(float) - pair[f"{col}_rep"].astype(float)
    delta["source"] = "delta"
    for col in ("n_done", "n_datasets", "complete", "failed"):
        delta[col] = pair[col]
    return delta


def _order(table: pd.DataFrame, reported: Optional[pd.DataFrame],
           pair_on: Sequence[str] = ("frames", "method")) -> pd.DataFrame:
    paper = {} if reported is None else {
        _pair_key(r, pair_on): int(r["order"]) for r in reported.to_dict("records")}
    rank = [paper.get(_pair_key(r, pair_on), len(paper)) for r in table.to_dict("records")]
    source_rank = table["source"].map({s: i for i, s in enumerate(SOURCES)})
    table = table.assign(_rank=rank, _src=source_rank)
    table = table.sort_values(["frames", "_rank", "method", "protocol", "arch", "res", "_src"],
                              kind="stable")
    return table.drop(columns=["_rank", "_src"]).reset_index(drop=True)


def _pair_key(row: Dict[str, Any], pair_on: Sequence[str]) -> tuple:
    """A row's pairing key, frames as an integer."""
    return tuple(int(row[k]) if k == "frames" else row[k] for k in pair_on)
