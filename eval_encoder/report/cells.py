"""From the records frame to cells: the latest complete record per (row, dataset), the seeds
of its configuration averaged, each cell's value under a metric with its interval and spread
(:mod:`eval_encoder.stats`), derived columns (epic_action), and the wide measured table with
AVG over the benchmark datasets.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from eval_encoder import stats
from eval_encoder.report.names import ROW_KEYS

log = logging.getLogger(__name__)

CellKey = Tuple[Any, ...]  # (*ROW_KEYS values, dataset)
STAT_COLUMNS = {"lo": "lo", "hi": "hi", "ci": "ci", "sd": "sd", "seeds": "n_seeds"}  # suffix -> picked column


def pick_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (row, dataset): the latest complete record, else the latest failed one.

    The runs of the latest complete record's configuration that differ from it only by
    ``config.seed`` stay with it, the latest per seed: the line's ``top1`` is their mean,
    ``n_seeds`` their number and ``refs`` their positions in the records. Older complete
    records of the same cell and seed are superseded (logged, never averaged in); complete
    records of another configuration mark the cell ``mixed``.
    """
    keys = [*ROW_KEYS, "dataset"]
    frame = frame.sort_values(["created", "run_id"], kind="stable")
    done = frame[frame["status"] == "complete"]
    latest = done.groupby(keys, dropna=False)["base_hash"].transform("last")
    kept = done[done["base_hash"] == latest].drop_duplicates([*keys, "seed"], keep="last")
    superseded = len(done) - len(kept)
    if superseded:
        log.info("%d older complete record(s) superseded by a later run of the same cell",
                 superseded)
    configs = done.groupby(keys, dropna=False)["base_hash"].nunique()
    mixed = set(configs[configs > 1].index)
    if mixed:
        log.warning("%d cell(s) hold complete runs of different configurations; the latest is "
                    "shown and marked *", len(mixed))
    done = _seed_cells(kept, keys)
    done = done.assign(mixed=[tuple(k) in mixed for k in done[keys].itertuples(index=False)])
    failed = frame[frame["status"] != "complete"].drop_duplicates(keys, keep="last")
    done_keys = set(map(tuple, done[keys].itertuples(index=False)))
    failed = failed[pd.Series([tuple(k) not in done_keys
                               for k in failed[keys].itertuples(index=False)],
                              index=failed.index, dtype=bool)]
    failed = failed.assign(n_seeds=0, refs=[(ref,) for ref in failed["ref"]])
    return pd.concat([done, failed], ignore_index=True)


def _seed_cells(kept: pd.DataFrame, keys: List[str]) -> pd.DataFrame:
    """One line per cell (its latest record's), with the mean top-1 over its seeds."""
    cells = kept.drop_duplicates(keys, keep="last").reset_index(drop=True)
    grouped = kept.groupby(keys, dropna=False, sort=False)
    index = pd.MultiIndex.from_frame(cells[keys])
    cells["top1"] = grouped["top1"].mean().reindex(index).to_numpy()
    cells["n_seeds"] = grouped.size().reindex(index).to_numpy()
    cells["refs"] = grouped["ref"].agg(tuple).reindex(index).to_numpy()
    return cells


def _cell_key(line: Dict[str, Any]) -> CellKey:
    return (*[line[k] for k in ROW_KEYS], line["dataset"])


def score_cells(picked: pd.DataFrame, records: Sequence[Dict[str, Any]], metric: str = "top1",
                ci: Optional[str] = None, resamples: int = stats.RESAMPLES
                ) -> Tuple[pd.DataFrame, Dict[CellKey, stats.Cell]]:
    """Each complete cell's value under ``metric`` (a :data:`stats.VIEWS` name): the mean
    over its seeds, their standard deviation and, with ``ci``, its interval; lines for the
    view's derived columns (epic_action) are added. Returns picked with ``value``, ``lo``,
    ``hi``, ``ci`` (the interval's method) and ``sd`` columns, and the cells."""
    view = stats.view(metric)
    cells: Dict[CellKey, stats.Cell] = {}
    for line in picked[picked["status"] == "complete"].to_dict("records"):
        runs = [records[i] for i in line["refs"]]
        cells[_cell_key(line)] = _cell(runs, line["dataset"], view.metric, ci, resamples)
    lines = [picked]
    for name in view.derived:
        extra, found = _derived_cells(picked, records, name, ci, resamples)
        lines.append(extra)
        cells.update(found)
    picked = pd.concat(lines, ignore_index=True)
    return picked.assign(**_cell_columns(picked, cells)), cells


def _cell(runs: List[Dict[str, Any]], dataset: str, metric: str, ci: Optional[str],
          resamples: int) -> stats.Cell:
    if not all(stats.declared(r, metric) for r in runs):
        return stats.Cell(math.nan, note="undeclared")
    return stats.cell_summary(runs, metric, dataset, ci, resamples)


def _cell_columns(picked: pd.DataFrame, cells: Dict[CellKey, stats.Cell]) -> Dict[str, list]:
    found = [cells.get(_cell_key(line)) for line in picked.to_dict("records")]
    interval = [c.interval if c is not None else None for c in found]
    return {"value": [c.value if c is not None else math.nan for c in found],
            "lo": [i.lo if i is not None else math.nan for i in interval],
            "hi": [i.hi if i is not None else math.nan for i in interval],
            "ci": [i.method if i is not None else "" for i in interval],
            "sd": [c.sd if c is not None else math.nan for c in found]}


def _derived_cells(picked: pd.DataFrame, records: Sequence[Dict[str, Any]], name: str,
                   ci: Optional[str], resamples: int
                   ) -> Tuple[pd.DataFrame, Dict[CellKey, stats.Cell]]:
    """Lines and cells of a derived column for every row that has both of its parts."""
    first, second = stats.DERIVED[name].parts
    done = picked[picked["status"] == "complete"]
    by_row = {(tuple(line[k] for k in ROW_KEYS), line["dataset"]): line
              for line in done.to_dict("records")}
    lines, cells = [], {}
    for (row, dataset), line in by_row.items():
        other = by_row.get((row, second))
        if dataset != first or other is None:
            continue
        pairs = stats.seed_pairs([records[i] for i in line["refs"]],
                                 [records[i] for i in other["refs"]])
        lines.append({**line, "dataset": name, "refs": line["refs"] + other["refs"],
                      "n_seeds": len(pairs), "mixed": bool(line["mixed"] or other["mixed"])})
        cells[(*row, name)] = stats.derived_summary(name, pairs, ci, resamples)
    return pd.DataFrame(lines, columns=picked.columns), cells


def measured_table(picked: pd.DataFrame, datasets: Sequence[str],
                   cells: Optional[Dict[CellKey, stats.Cell]] = None) -> pd.DataFrame:
    """Wide table, a line per row: scores per dataset, AVG (complete rows only), n_done, failed;
    from ``value`` (else ``top1``) of picked, and for each column ``<col>_lo``, ``_hi``,
    ``_ci``, ``_sd`` and ``_seeds`` (with ``cells``: also for AVG).

    Datasets found in the records but outside ``datasets`` become extra columns after them,
    never part of AVG.
    """
    extras = sorted(set(picked["dataset"]) - set(datasets))
    table = picked[ROW_KEYS].drop_duplicates().set_index(ROW_KEYS)
    done = picked[picked["status"] == "complete"]
    scores = done.pivot(index=ROW_KEYS, columns="dataset",
                        values="value" if "value" in done.columns else "top1")
    table = table.join(scores).reindex(columns=[*datasets, *extras])
    for suffix, column in STAT_COLUMNS.items():
        if column in done.columns:
            part = done.pivot(index=ROW_KEYS, columns="dataset", values=column)
            table = table.join(part.reindex(columns=[*datasets, *extras]).add_suffix(f"_{suffix}"))
    fails = picked[picked["status"] != "complete"].groupby(ROW_KEYS)["dataset"].agg(
        lambda s: ",".join(sorted(s)))
    table["failed"] = fails.reindex(table.index).fillna("")
    mixed = (done[done["mixed"].astype(bool)].groupby(ROW_KEYS)["dataset"].agg(
        lambda s: ",".join(sorted(s))) if len(done) else ())  # every run failed: no scores
    table["mixed"] = mixed.reindex(table.index).fillna("") if len(mixed) else ""
    table["gflops"] = _row_gflops(done).reindex(table.index) if len(done) else math.nan
    table = table.reset_index()
    _add_average(table, datasets)
    if cells is not None:
        _add_average_stats(table, datasets, cells)
    table["source"] = "measured"
    return table


def _row_gflops(done: pd.DataFrame) -> pd.Series:
    """GFLOPs per clip of each row, from its complete records (the same encoder and input
    for every dataset; where records of a row disagree the largest is shown, and logged)."""
    def one(values: pd.Series) -> float:
        found = sorted(set(values.dropna().round(4)))
        if len(found) > 1:
            log.warning("records of one row give GFLOPs/clip %s; showing the largest", found)
        return found[-1] if found else math.nan

    return done.groupby(ROW_KEYS)["gflops"].agg(one)


def _add_average(table: pd.DataFrame, datasets: Sequence[str]) -> None:
    """AVG over ``datasets`` for rows that have every one of them; NaN (partial) otherwise."""
    cells = table[list(datasets)].astype(float)
    table["n_done"] = cells.notna().sum(axis=1).astype(int)
    table["n_datasets"] = len(datasets)
    table["complete"] = table["n_done"] == len(datasets)
    table["avg"] = cells.mean(axis=1).where(table["complete"])


def _add_average_stats(table: pd.DataFrame, datasets: Sequence[str],
                       cells: Dict[CellKey, stats.Cell]) -> None:
    """AVG's interval (each dataset's replicates averaged) and its spread across seeds (when
    every dataset of the row has the same two or more seeds)."""
    out: Dict[str, list] = {"avg_lo": [], "avg_hi": [], "avg_ci": [], "avg_sd": [],
                            "avg_seeds": []}
    for line in table.to_dict("records"):
        found = [cells.get((*[line[k] for k in ROW_KEYS], d)) for d in datasets]
        ok = bool(line["complete"]) and all(c is not None for c in found)
        reps = [c.replicates for c in found] if ok else []
        interval = (stats.average_interval(reps) if reps and all(r is not None for r in reps)
                    else None)
        out["avg_lo"].append(interval.lo if interval else math.nan)
        out["avg_hi"].append(interval.hi if interval else math.nan)
        out["avg_ci"].append(interval.method if interval else "")
        sd, seeds = _average_spread(found) if ok else (math.nan, math.nan)
        out["avg_sd"].append(sd)
        out["avg_seeds"].append(seeds)
    for column, values in out.items():
        table[column] = values


def _average_spread(found: List[stats.Cell]) -> Tuple[float, float]:
    """(sd across seeds of each seed's AVG, number of seeds) when every cell has the same
    two or more seeds; else (NaN, NaN)."""
    by_seed = [dict(zip(map(str, c.seeds), c.values)) for c in found]
    seeds = sorted(by_seed[0])
    if len(seeds) < 2 or any(sorted(d) != seeds or len(d) != len(c.values)
                             for d, c in zip(by_seed, found)):
        return math.nan, math.nan
    per_seed = [np.mean([d[s] for d in by_seed]) for s in seeds]
    return float(np.std(per_seed, ddof=1)), float(len(seeds))
