"""Run records -> leaderboard tables (md / csv / tex) and a plot, beside the paper's numbers.

The table has the paper's layout: a block per frame count, a row per method, columns Arch,
Res, AVG and the benchmark datasets (default: the paper's eight). Each cell is the score a
record reports (``record["reported"]["top1"]``) of the latest *complete* record for that
(frames, method, arch, res, dataset); a dataset whose latest attempt failed and that has no
complete record shows ``fail``. AVG is the mean over the benchmark datasets and is given only
for rows that have all of them; a partial row shows ``partial (n/N)`` instead.

With ``reported=True`` the paper's numbers (``results/paper_attentive_probe.csv``) stand
under the measured ones with a delta row (measured - paper). A reported AVG that is not the
mean of its own printed cells, rounded half-up to the one decimal the paper prints, is
flagged (see :func:`check_reported_avgs` for why that rounding).

Runs of one configuration that differ only by ``config.seed`` share a cell, which shows their
mean and "(n seeds)". ``metric`` (``--metric``) picks what the cells show (top-1 by default;
top5, mean_class_acc, map; ``action`` adds an EPIC-Kitchens action column), read from each
record's ``metrics`` or computed from its per-clip predictions; a metric a dataset does not
declare leaves its cell empty, with a footnote. ``ci`` (``--ci [bootstrap|exact]``) adds a
95% interval to every cell and AVG (``52.3 ±1.1``; ``_lo``/``_hi`` columns in csv; error bars
in the plot) and the spread across seeds; records without a predictions file get none, said
once in a footnote. The statistics are in :mod:`eval_encoder.stats`.

Usage: ``python -m eval_encoder leaderboard [--runs DIR] [--reported] [--format md|csv|tex]
[--plot FILE.png] [--metric NAME] [--ci [bootstrap|exact]] [--resamples N] [--gflops]
[--plot_compute FILE.png]``.

Compute: ``--gflops`` adds a GFLOPs/clip column, the encoder's GFLOPs per clip (one view) that
the records' ``compute`` block holds (a dash where they hold none, and for the paper's rows);
``--plot_compute`` plots each measured row's score against it on a log axis, the paper's case
for codec input being accuracy per token. Plot colours are fixed per method
(:func:`method_colour`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from eval_encoder import resources, stats
from eval_encoder.logs import setup_logging
from eval_encoder.protocol import REPORTED, UNSTATED
from eval_encoder.record import SCHEMA, SCHEMA_VERSION, config_hash, read_record

log = logging.getLogger(__name__)

PAPER_DATASETS: Tuple[str, ...] = ("ssv2", "diving48", "perception_test", "charadesego",
                                   "epic_verb", "epic_noun", "k400", "hmdb51")
DISPLAY_NAMES: Dict[str, str] = {
    "ssv2": "SSV2", "diving48": "Diving48", "perception_test": "Perce. Test",
    "charadesego": "CharEgo", "epic_verb": "Epic Verb", "epic_noun": "Epic Noun",
    "k400": "K400", "hmdb51": "HMDB51", "epic_action": "Epic Action",
}
REPORTED_CSV = resources.reported_csv()
DEFAULT_RUNS = "results/runs"
ROW_KEYS = ["frames", "method", "arch", "res", "protocol"]
RECORD_COLUMNS = [*ROW_KEYS, "token_budget", "dataset", "status", "top1", "created", "run_id",
                  "config_hash", "path", "seed", "base_hash", "ref", "gflops"]
SOURCES = ("measured", "reported", "delta")
FORMATS = ("md", "csv", "tex")
ASYMMETRY = 0.2  # an interval whose sides differ by more than this share shows both (+a/-b)
# plot colours: one per method of the paper's table, fixed so that every plot agrees
METHOD_COLOURS: Dict[str, str] = {
    "OneVision Encoder": "#d62728", "OneVision Encoder-Codec": "#ff7f0e",
    "SigLIP2": "#1f77b4", "AIMv2": "#2ca02c", "MetaCLIP2": "#9467bd", "DINOv3": "#8c564b",
}
# any other method: one of these, chosen by a hash of its name (none is in the table above)
OTHER_COLOURS: Tuple[str, ...] = (
    "#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#393b79", "#637939", "#7b4173", "#e7ba52",
    "#5254a3", "#de9ed6", "#1b9e77", "#222222")
PERCENT_RANGE = (0.0, 100.0)  # every metric the cells show is a percentage

# schema_version -> function upgrading a record dict of that version to the next one. Empty:
# version 1 is the first schema; add an entry here when the schema moves on, so old records
# stay readable instead of being refused.
UPGRADERS: Dict[int, Callable[[Dict[str, Any]], Dict[str, Any]]] = {}


class LeaderboardError(ValueError):
    """A record, reported-numbers file or option the leaderboard cannot use, with the reason."""


# ----------------------------------------------------------------------------- records
def load_record(path: Path) -> Dict[str, Any]:
    """Read one run record; older schema versions go through :data:`UPGRADERS` or are refused."""
    try:
        record = read_record(str(path))
    except ValueError:
        record = _upgrade_old(path)
        if record is None:
            raise
    _check_fields(record, path)
    record["_path"] = str(path)
    return record


def _upgrade_old(path: Path) -> Optional[Dict[str, Any]]:
    """An older-version record brought up to the current schema, or None when none applies."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if data.get("schema") != SCHEMA or not isinstance(version, int) or version >= SCHEMA_VERSION:
        return None
    while version < SCHEMA_VERSION:
        if version not in UPGRADERS:
            raise LeaderboardError(
                f"{path}: record schema version {version} is older than this version of "
                f"eval_encoder reads ({SCHEMA_VERSION}) and no upgrade from it is known; "
                "rerun that dataset to write a current record")
        data = UPGRADERS[version](data)
        version += 1
        data["schema_version"] = version
    return data


def _check_fields(record: Dict[str, Any], path: Path) -> None:
    """The status, dataset and score the leaderboard needs, present and of the right kind."""
    def bad(field: str, why: str) -> LeaderboardError:
        return LeaderboardError(f"{path}: field {field!r} {why} (value {record.get(field)!r})")

    if not isinstance(record.get("dataset"), dict) or not record["dataset"].get("name"):
        raise bad("dataset", "must be a mapping with a 'name'")
    if record.get("status") not in ("complete", "failed"):
        raise bad("status", "must be 'complete' or 'failed'")
    if record["status"] == "complete":
        top1 = (record.get("reported") or {}).get("top1")
        if not isinstance(top1, (int, float)) or isinstance(top1, bool) or not math.isfinite(top1):
            raise bad("reported", "of a complete run must hold a finite 'top1'")
        if not isinstance(record.get("method"), str) or not record["method"]:
            raise bad("method", "must be a non-empty string")
        if not isinstance(record.get("frames"), int):
            raise bad("frames", "must be an integer")
    elif "method" not in record and not isinstance(record.get("config"), dict):
        raise bad("config", "is needed to place a failed run that has no row labels")


def row_labels(record: Dict[str, Any]) -> Dict[str, Any]:
    """The leaderboard row of a record: frames (its frame block), method, arch, res and the
    protocol it followed (``paper``, ``clean``, with ``*`` when options of the protocol were
    changed on their own; ``unstated`` for records older than the protocol switch).

    A failed run that stopped before its encoder was built carries no labels; they come from
    its resolved config the way the trainer makes them (method_label or family/model_name,
    arch_label, input_size, num_frames). An encoder that returns a token budget instead of
    whole frames (``spec.tokens_per_frame`` is None, as codec) goes in the block of the frames
    that budget is worth, ``token_budget / (input_size / patch_size)**2``, the way the paper
    places its codec rows (2048 patches from 64 frames -> the 8-frame block).
    """
    if "method" not in record:
        cfg = record["config"]
        return {"frames": int(cfg.get("num_frames") or 0),
                "method": (cfg.get("method_label")
                           or f"{cfg.get('model_family')}/{cfg.get('model_name')}"),
                "arch": str(cfg.get("arch_label") or ""), "res": _res_text(cfg.get("input_size")),
                "protocol": protocol_label(record)}
    frames = int(record["frames"])
    spec = (record.get("encoder") or {}).get("spec") or {}
    budget = record.get("token_budget")
    if spec and spec.get("tokens_per_frame") is None and budget and spec.get("patch_size"):
        per_frame = (int(spec["input_size"]) // int(spec["patch_size"])) ** 2
        if per_frame and budget % per_frame == 0:
            frames = budget // per_frame
    return {"frames": frames, "method": record["method"], "arch": str(record.get("arch") or ""),
            "res": _res_text(record.get("res")), "protocol": protocol_label(record)}


def protocol_label(record: Dict[str, Any]) -> str:
    """The protocol a record followed, as the table shows it (see :func:`row_labels`)."""
    from eval_encoder.protocol import label

    text = label(record)
    return UNSTATED if text.startswith("?") else text


def find_records(runs_dir: Path) -> List[Path]:
    """Every record file under ``runs_dir`` (``<dataset>/<run_id>.json``), temp files left out."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith(".tmp-"))


def load_records(runs_dir: Path) -> List[Dict[str, Any]]:
    """All records under ``runs_dir``; a record that cannot be read is an error naming it."""
    return [load_record(p) for p in find_records(runs_dir)]


def records_frame(records: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """One line per record: its row labels, dataset, status and score, its seed, the hash of
    its configuration without the seed (``base_hash``) and its position in ``records``."""
    records = list(records)
    rows_of = _rows_by_identity([r for r in records if r["status"] == "complete"])
    rows = []
    for ref, rec in enumerate(records):
        complete = rec["status"] == "complete"
        labels = row_labels(rec) if complete else _failed_row(rec, rows_of)
        rows.append({
            **labels, "token_budget": rec.get("token_budget"),
            "dataset": rec["dataset"]["name"], "status": rec["status"],
            "top1": float(rec["reported"]["top1"]) if complete else math.nan,
            "created": str(rec.get("created") or ""), "run_id": rec.get("run_id", ""),
            "config_hash": rec.get("config_hash"), "path": rec.get("_path", ""),
            "seed": stats.seed_of(rec), "base_hash": _base_hash(rec), "ref": ref,
            "gflops": record_gflops(rec),
        })
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def record_gflops(record: Dict[str, Any]) -> float:
    """The encoder's GFLOPs per clip (one view) a record's ``compute`` holds; NaN without."""
    value = ((record.get("compute") or {}).get("encoder") or {}).get("gflops_per_clip")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else math.nan


def _base_hash(record: Dict[str, Any]) -> str:
    """The configuration without its seed: runs that differ only by ``config.seed`` share it
    (records without a seed in their config: the stored config_hash)."""
    cfg = record.get("config")
    if isinstance(cfg, dict) and "seed" in cfg:
        # a run whose encoder reads no codec selection records no codec options (older
        # records did): left out either way, so both kinds of record share a cell
        spec = (record.get("encoder") or {}).get("spec") or {}
        unused = {"seed", "sources"} | ({"codec"} if spec.get("clip_source", "codec") != "codec"
                                        else set())
        return config_hash({k: v for k, v in cfg.items() if k not in unused})
    return str(record.get("config_hash"))


# config options that tell one recipe (leaderboard row) from another across its datasets
ROW_IDENTITY = ("method_label", "model_family", "model_name", "model_weight", "num_frames",
                "protocol")


def _identity(record: Dict[str, Any]) -> Optional[Tuple[str, ...]]:
    cfg = record.get("config")
    if not isinstance(cfg, dict) or not cfg:
        return None
    budget = (cfg.get("codec") or {}).get("K_keep")
    return tuple(str(cfg.get(k)) for k in ROW_IDENTITY) + (str(budget),)


def _rows_by_identity(complete: List[Dict[str, Any]]) -> Dict[Tuple[str, ...], Dict[str, Any]]:
    """identity -> row labels, for identities whose complete records all share one row."""
    seen: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
    for rec in complete:
        key = _identity(rec)
        if key is not None:
            seen.setdefault(key, []).append(row_labels(rec))
    return {k: v[0] for k, v in seen.items() if all(x == v[0] for x in v)}


def _failed_row(record: Dict[str, Any],
                rows_of: Dict[Tuple[str, ...], Dict[str, Any]]) -> Dict[str, Any]:
    """A failed run goes in the row of complete runs of the same recipe when there is one:
    a run that dies before its encoder is built cannot know its resolution or frame block."""
    own = row_labels(record)
    key = _identity(record) or ()
    # a run that dies before its encoder is built still records the codec options, which
    # the complete runs of a family that reads no codec selection leave out
    match = rows_of.get(key) or rows_of.get(key[:-1] + ("None",) if key else ())
    size = (record.get("config") or {}).get("input_size")
    if match is None or (size is not None and _res_text(size) != match["res"]):
        return own
    return dict(match)


def _res_text(res: Any) -> str:
    if res is None or (isinstance(res, float) and math.isnan(res)):
        return ""
    return str(int(res)) if isinstance(res, (int, float)) else str(res)


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


# ----------------------------------------------------------------------------- cells
CellKey = Tuple[Any, ...]  # (*ROW_KEYS values, dataset)
STAT_COLUMNS = {"lo": "lo", "hi": "hi", "sd": "sd", "seeds": "n_seeds"}  # suffix -> picked column


def _cell_key(line: Dict[str, Any]) -> CellKey:
    return (*[line[k] for k in ROW_KEYS], line["dataset"])


def score_cells(picked: pd.DataFrame, records: Sequence[Dict[str, Any]], metric: str = "top1",
                ci: Optional[str] = None, resamples: int = stats.RESAMPLES
                ) -> Tuple[pd.DataFrame, Dict[CellKey, stats.Cell]]:
    """Each complete cell's value under ``metric`` (a :data:`stats.VIEWS` name): the mean
    over its seeds, their standard deviation and, with ``ci``, its interval; lines for the
    view's derived columns (epic_action) are added. Returns picked with ``value``, ``lo``,
    ``hi`` and ``sd`` columns, and the cells."""
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
    ``_sd`` and ``_seeds`` (with ``cells``: also for AVG).

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
    out: Dict[str, List[float]] = {"avg_lo": [], "avg_hi": [], "avg_sd": [], "avg_seeds": []}
    for line in table.to_dict("records"):
        found = [cells.get((*[line[k] for k in ROW_KEYS], d)) for d in datasets]
        ok = bool(line["complete"]) and all(c is not None for c in found)
        reps = [c.replicates for c in found] if ok else []
        interval = (stats.average_interval(reps) if reps and all(r is not None for r in reps)
                    else None)
        out["avg_lo"].append(interval.lo if interval else math.nan)
        out["avg_hi"].append(interval.hi if interval else math.nan)
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


# ----------------------------------------------------------------------------- reported numbers
def load_reported(path: Path = REPORTED_CSV) -> pd.DataFrame:
    """The paper's table as shipped: frames, method, arch, res, avg and the eight datasets.

    Every cell must be a number; an error names the file, line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"reported numbers not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    skipped = next(i for i, line in enumerate([*lines, ""]) if not line.startswith("#"))
    frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    expected = ["frames", "method", "arch", "res", "avg", *PAPER_DATASETS]
    if list(frame.columns) != expected:
        raise LeaderboardError(f"{path}: columns {list(frame.columns)}, expected {expected}")
    for col in ["frames", "res", "avg", *PAPER_DATASETS]:
        frame[col] = [_number(path, skipped + 2 + i, col, v) for i, v in enumerate(frame[col])]
    frame["frames"] = frame["frames"].astype(int)
    frame["res"] = frame["res"].map(_res_text)
    frame["protocol"] = REPORTED
    frame["source"] = "reported"
    frame["order"] = range(len(frame))
    return frame


def _number(path: Path, line: int, col: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LeaderboardError(f"{path}:{line}: column {col!r}: {text!r} is not a number")
    return value


def check_reported_avgs(reported: pd.DataFrame) -> pd.DataFrame:
    """Recompute each reported AVG from its own printed cells; add avg_mean and avg_flag.

    The paper prints one decimal, so the check is: mean of the printed cells, computed
    exactly (Decimal), rounded half-up to one decimal, equals the printed AVG. Half-up is how
    a table is normally rounded; half-even gives the same answer on the shipped CSV. A
    flagged AVG may still be the correctly rounded mean of the *unrounded* accuracies: each
    cell carries up to +-0.05 of rounding, so a gap up to 0.1 can come from that; the
    footnote gives the gap so a reader can judge.
    """
    out = reported.copy()
    means, flags = [], []
    for _, row in out.iterrows():
        cells = [Decimal(repr(float(row[d]))) for d in PAPER_DATASETS]
        mean = sum(cells) / len(cells)
        shown = mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        means.append(float(mean))
        flags.append(shown != Decimal(repr(float(row["avg"]))).quantize(Decimal("0.1")))
    out["avg_mean"] = means
    out["avg_flag"] = flags
    return out


# ----------------------------------------------------------------------------- combined table
@dataclass
class Board:
    """A built leaderboard: the long table and which dataset columns it shows."""

    table: pd.DataFrame  # a line per (row, source); see build_board
    datasets: List[str]  # benchmark columns: AVG is over these
    extras: List[str] = field(default_factory=list)  # other datasets found in the records
    metric: str = "top1"  # the view shown (stats.VIEWS)
    ci: Optional[str] = None  # the interval asked for: None, "bootstrap" or "exact"
    notes: List[str] = field(default_factory=list)  # footnotes on metric, intervals, seeds
    stat_suffixes: List[str] = field(default_factory=list)  # <col>_<suffix> columns held
    gflops: bool = False  # show the encoder's GFLOPs per clip (``--gflops``)
    # cells whose latest attempt failed, with the record's error (see failure_rows)
    failures: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> List[str]:
        return [*self.datasets, *self.extras]


def build_board(records: Sequence[Dict[str, Any]], datasets: Sequence[str] = PAPER_DATASETS,
                reported: Optional[pd.DataFrame] = None, metric: str = "top1",
                ci: Optional[str] = None, resamples: int = stats.RESAMPLES) -> Board:
    """The leaderboard: measured rows and, with ``reported``, paper rows and delta rows.

    Table columns: ROW_KEYS, source (measured | reported | delta), avg, one per dataset,
    n_done, n_datasets, complete, failed (datasets whose latest attempt failed), and for
    paper rows avg_mean (recomputed) and avg_flag; then ``<col>_lo`` and ``<col>_hi`` (the
    interval, with ``ci``) and ``<col>_sd`` and ``<col>_seeds`` (when a cell has several
    seeds) for AVG and every column. Cells show ``metric`` (a :data:`stats.VIEWS` name).
    Rows: frame blocks ascending, in a block the paper's order, then other methods by name;
    in a row measured, reported, delta.
    """
    datasets = list(datasets)
    _check_options(datasets, reported, metric, ci)
    parts, extras, cells, failures = [], [], {}, []
    if records:
        picked, cells = score_cells(pick_latest(records_frame(records)), records, metric, ci,
                                    resamples)
        failures = failure_rows(picked, records)
        extras = sorted(set(picked["dataset"]) - set(datasets))
        parts.append(measured_table(picked, datasets, cells))
    if reported is not None:
        rep = check_reported_avgs(reported)
        _add_counts(rep, datasets)
        parts.append(rep)
        if records:
            parts.append(delta_rows(parts[0], rep, datasets))
    if not parts:
        raise LeaderboardError("nothing to show: no run records and no reported numbers")
    table = pd.concat(parts, ignore_index=True)
    for col in ("avg_mean", "avg_flag"):
        if col not in table.columns:
            table[col] = math.nan
    table["avg_flag"] = table["avg_flag"].eq(True)
    table = _order(table, reported)
    fixed = [*ROW_KEYS, "source", "avg", *datasets, *extras]
    table["mixed"] = table["mixed"].fillna("") if "mixed" in table.columns else ""
    rest = ["n_done", "n_datasets", "complete", "failed", "mixed", "avg_mean", "avg_flag",
            "gflops"]
    suffixes = (["lo", "hi"] if ci else []) + (
        ["sd", "seeds"] if any(len(c.seeds) > 1 for c in cells.values()) else [])
    held = [f"{c}_{s}" for c in ["avg", *datasets, *extras] for s in suffixes]
    notes = stat_notes(cells, metric, ci, resamples) if records else []
    return Board(table.reindex(columns=fixed + rest + held), datasets, extras, metric, ci,
                 notes, suffixes, failures=failures)


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


def failures_markdown(board: Board) -> List[str]:
    """The "Failed runs" table below the board (empty when nothing failed)."""
    if not board.failures:
        return []
    out = ["", f"Failed runs ({len(board.failures)}; the latest attempt of each cell):", "",
           "| Method | Frames | Dataset | Error | Record |", "|:--|:-:|:--|:--|:--|"]
    for f in board.failures:
        error = f["error"].replace("|", "\\|")
        out.append(f"| {f['method']} | {f['frames']} | {f['dataset']} | {error} | {f['record']} |")
    return out


def _check_options(datasets: List[str], reported: Optional[pd.DataFrame], metric: str,
                   ci: Optional[str]) -> None:
    if reported is not None and datasets != list(PAPER_DATASETS):
        raise LeaderboardError("the paper's AVG is over its eight datasets; leave out --datasets "
                               "when comparing with reported numbers")
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
                     "value (a resample's duplicated clips lift AP; see eval_encoder/stats.py)")
    return notes


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


def delta_rows(measured: pd.DataFrame, reported: pd.DataFrame,
               datasets: Sequence[str]) -> pd.DataFrame:
    """measured - reported per cell and for AVG, for rows matched on (frames, method) that
    followed the paper's protocol (a clean run is not compared with the paper's numbers)."""
    pair = measured.merge(reported, on=["frames", "method", "protocol"], suffixes=("", "_rep"))
    delta = pair[ROW_KEYS].copy()
    for col in [*datasets, "avg"]:
        delta[col] = pair[col].astype(float) - pair[f"{col}_rep"].astype(float)
    delta["source"] = "delta"
    for col in ("n_done", "n_datasets", "complete", "failed"):
        delta[col] = pair[col]
    return delta


def _order(table: pd.DataFrame, reported: Optional[pd.DataFrame]) -> pd.DataFrame:
    paper = {} if reported is None else {
        (int(r.frames), r.method): int(r.order) for r in reported.itertuples()}
    rank = [paper.get((int(f), m), len(paper)) for f, m in zip(table["frames"], table["method"])]
    source_rank = table["source"].map({s: i for i, s in enumerate(SOURCES)})
    table = table.assign(_rank=rank, _src=source_rank)
    table = table.sort_values(["frames", "_rank", "method", "protocol", "arch", "res", "_src"],
                              kind="stable")
    return table.drop(columns=["_rank", "_src"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- text formats
def _num(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if signed:
        return f"{value:+.1f}".replace("-0.0", "+0.0")
    return f"{value:.1f}"


def display_rows(board: Board, style: str) -> Tuple[List[List[str]], List[str]]:
    """Cell texts, a list per line (block headers as ``["\\x00<title>"]``), and footnotes.

    ``style`` is "md" or "tex": only the markers of sub-rows differ.
    """
    sub = {"md": ("↳ paper", "↳ Δ", "–"),
           "tex": (r"\quad paper", r"\quad $\Delta$", "--")}[style]
    table = board.table
    mine = table[(table.source == "measured") & (table.protocol == REPORTED)]
    measured = {(f, m): (a, r) for f, m, a, r in zip(mine.frames, mine.method, mine.arch, mine.res)}
    lines, notes, block = [], {}, None
    for row in table.to_dict("records"):
        if row["frames"] != block:
            block = row["frames"]
            lines.append([f"\x00{block} Frames"])
        lines.append(_line(row, board, measured.get((row["frames"], row["method"])), sub, notes))
    return lines, list(notes.values()) + board.notes


def _line(row: Dict[str, Any], board: Board, paired: Optional[Tuple[str, str]],
          sub: Tuple[str, str, str], notes: Dict[str, str]) -> List[str]:
    """One table line; ``paired`` is the (arch, res) of the measured line of the same row;
    ``sub``: the labels of the paper and delta sub-rows, and the dash of an unknown value."""
    source, failed = row["source"], set(filter(None, row["failed"].split(",")))
    label = {"measured": row["method"], "reported": sub[0] if paired else row["method"],
             "delta": sub[1]}[source]
    arch, res = (row["arch"], row["res"]) if source != "delta" else ("", "")
    protocol = row["protocol"] if source != "delta" else ""
    if source == "reported" and paired and (arch, res) == paired:
        arch, res = "", ""  # same as the measured line above it
    if protocol.endswith("*"):
        notes["protocol*"] = ("paper*/clean*: a protocol with some of its options set on their "
                              "own (see the record's protocol.departures)")
    if protocol == UNSTATED:
        notes["unstated"] = ("unstated: a record written before the protocol switch existed "
                             "(its head and pixels follow neither protocol exactly)")
    avg = _text(row, "avg", source)
    if source == "measured" and not row["complete"]:
        avg = f"partial ({row['n_done']}/{row['n_datasets']})"
        notes["partial"] = (f"partial (n/{row['n_datasets']}): AVG is given only for rows with "
                            "every benchmark dataset")
    if source == "reported" and row["avg_flag"]:
        avg += " †"
        mean = Decimal(repr(row["avg_mean"])).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        notes[f"flag{row['frames']}{row['method']}"] = (
            f"† {row['frames']} frames, {row['method']}: reported AVG {row['avg']:.1f} but its "
            f"cells average {row['avg_mean']:.4f} ({mean} at one decimal); the gap of "
            f"{abs(row['avg'] - row['avg_mean']):.2f} is within the 0.10 that rounding of the "
            "cells can explain." if abs(row["avg"] - row["avg_mean"]) <= 0.1 + 1e-9 else
            f"† {row['frames']} frames, {row['method']}: reported AVG {row['avg']:.1f} but its "
            f"cells average {row['avg_mean']:.4f}: more than cell rounding can explain.")
    cells = []
    for col in board.columns:
        if source == "measured" and col in failed:
            cells.append("fail")
            notes["fail"] = "fail: the latest run of that dataset failed (see its record's error)"
        elif source == "measured" and col in set(filter(None, str(row.get("mixed") or "").split(","))):
            cells.append(_text(row, col, source) + " *")
            notes["mixed"] = ("*: complete runs of more than one configuration exist for this cell; "
                              "the latest is shown (compare config_hash in runs/)")
        else:
            cells.append(_text(row, col, source))
    compute = [gflops_text(row.get("gflops"), sub[2]) if source != "delta" else ""]
    return [label, arch, res, protocol, *(compute if board.gflops else []), avg, *cells]


def _text(row: Dict[str, Any], col: str, source: str) -> str:
    """A cell's text: deltas signed; a measured value with its interval and seeds, when the
    table holds them (``52.3 ±1.1``, ``12.0 +0.9/-0.8``, ``52.3 ±1.1 (sd 0.4, 3 seeds)``)."""
    text = _num(row.get(col), signed=source == "delta")
    if source != "measured" or not text:
        return text
    return text + _interval_text(row, col) + _seeds_text(row, col)


def _interval_text(row: Dict[str, Any], col: str) -> str:
    lo, hi, value = row.get(f"{col}_lo"), row.get(f"{col}_hi"), row.get(col)
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    up, down = hi - value, value - lo
    if abs(up - down) <= ASYMMETRY * max(up, down):
        return f" ±{(up + down) / 2:.1f}"
    return f" +{up:.1f}/-{down:.1f}"


def _seeds_text(row: Dict[str, Any], col: str) -> str:
    seeds, sd = row.get(f"{col}_seeds"), row.get(f"{col}_sd")
    if seeds is None or pd.isna(seeds) or seeds < 2:
        return ""
    return f" (sd {sd:.1f}, {int(seeds)} seeds)" if f"{col}_lo" in row else f" ({int(seeds)} seeds)"


def _header(board: Board) -> List[str]:
    return ["Method", "Arch.", "Res.", "Protocol", *(["GFLOPs/clip"] if board.gflops else []),
            "AVG", *[DISPLAY_NAMES.get(c, c) for c in board.columns]]


def gflops_text(value: Any, dash: str = "–") -> str:
    """GFLOPs with three significant figures or so (``1.83``, ``41.2``, ``1234``); ``dash``
    when unknown."""
    if value is None or pd.isna(value):
        return dash
    value = float(value)
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def to_markdown(board: Board) -> str:
    """GitHub markdown: one table, a bold line per frame block, footnotes below."""
    lines, notes = display_rows(board, "md")
    header = _header(board)
    out = ["| " + " | ".join(header) + " |",
           "|:--|" + "|".join([":-:"] * (len(header) - 1)) + "|"]
    for cells in lines:
        if cells[0].startswith("\x00"):
            cells = [f"**{cells[0][1:]}**"] + [""] * (len(header) - 1)
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- {n}" for n in notes] if notes else []
    out += failures_markdown(board)
    return "\n".join(out) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                "†": r"$^\dagger$", "±": r"$\pm$"}


def _tex(text: str) -> str:
    if text.startswith(r"\quad"):
        return text
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(board: Board) -> str:
    """A booktabs ``tabular``: a centred line per frame block, footnotes as a small paragraph."""
    lines, notes = display_rows(board, "tex")
    header = _header(board)
    ncol = len(header)
    out = [r"\begin{tabular}{l" + "c" * (ncol - 1) + "}", r"\toprule",
           " & ".join(_tex(h) for h in header) + r" \\"]
    for cells in lines:
        if cells[0].startswith("\x00"):
            out += [r"\midrule", rf"\multicolumn{{{ncol}}}{{c}}{{\textit{{{cells[0][1:]}}}}} \\",
                    r"\midrule"]
        else:
            out.append(" & ".join(_tex(c) for c in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    notes = notes + [f"failed: {f['method']}, {f['frames']} frames, {f['dataset']}: {f['error']}"
                     for f in board.failures]
    if notes:
        out.append(r"\par\footnotesize " + r" \\ ".join(_tex(n) for n in notes))
    return "\n".join(out) + "\n"


def to_csv(board: Board) -> str:
    """The long table as CSV: every number unformatted (rounded to 4 decimals), flags as columns
    (``gflops`` only with ``--gflops``)."""
    table = board.table.copy() if board.gflops else board.table.drop(columns=["gflops"])
    numeric = ["avg", *board.columns, "avg_mean",
               *[f"{c}_{s}" for c in ["avg", *board.columns] for s in board.stat_suffixes]]
    table[numeric] = table[numeric].astype(float).round(4)
    return table.to_csv(index=False, lineterminator="\n")


def render(board: Board, fmt: str) -> str:
    """The board in ``fmt`` (md, csv or tex)."""
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return {"md": to_markdown, "csv": to_csv, "tex": to_latex}[fmt](board)


# ----------------------------------------------------------------------------- plot
def _figure_class():
    """matplotlib's Figure and Agg canvas (no pyplot state); a clear error when absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise LeaderboardError("--plot needs matplotlib, an optional dependency: "
                               "pip install 'eval-encoder[plot]' (or matplotlib>=3.8)") from None
    return Figure, FigureCanvasAgg


def plot_board(board: Board, path: str):
    """Save a dot plot of the board to ``path``: a panel per dataset (AVG first), a row of
    panels per frame block, a line per method; filled dots are measured, rings the paper's
    numbers, a grey bar joins the two. Each column has its own x range (shared across blocks)
    so differences of a point stay visible, and the best value of each panel is bold. Returns
    the matplotlib Figure."""
    Figure, Canvas = _figure_class()
    table = board.table[board.table["source"] != "delta"]
    # a method run under another protocol than the paper's is its own line
    table = table.assign(method=[m if p == REPORTED else f"{m} ({p})"
                                 for m, p in zip(table["method"], table["protocol"])])
    blocks = sorted(table["frames"].unique())
    cols = ["avg", *board.columns]
    methods = {b: list(dict.fromkeys(table.loc[table.frames == b, "method"])) for b in blocks}
    palette = _palette(list(dict.fromkeys(table["method"])))
    heights = [max(len(methods[b]), 1) for b in blocks]
    fig = Figure(figsize=(1.55 * len(cols) + 2.2, 0.34 * sum(heights) + 0.9 * len(blocks) + 0.6))
    Canvas(fig)
    axes = fig.subplots(len(blocks), len(cols), squeeze=False, sharex="col",
                        gridspec_kw={"height_ratios": heights, "wspace": 0.08, "hspace": 0.25})
    for bi, block in enumerate(blocks):
        rows = table[table.frames == block]
        for ci, col in enumerate(cols):
            _panel(axes[bi][ci], rows, methods[block], col, palette, _xlim(table, col))
            axes[bi][ci].set_yticklabels(methods[block] if ci == 0 else [])
            if bi == 0:
                axes[bi][ci].set_title("AVG" if col == "avg" else DISPLAY_NAMES.get(col, col),
                                       fontsize=9, fontweight="bold")
        axes[bi][0].set_ylabel(f"{block} frames", fontsize=10, fontweight="bold")
    unit = f"{stats.METRICS[stats.VIEWS[board.metric].metric].title} (%)"
    for ax in axes[-1]:
        ax.set_xlabel(unit, fontsize=7.5, color="0.3")
    _legend(fig, {s: bool((table["source"] == s).any()) for s in ("measured", "reported")}, board)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _palette(methods: List[str]) -> Dict[str, Any]:
    return {m: method_colour(m) for m in methods}


def method_colour(method: str) -> str:
    """The method's colour in every plot: the paper's methods from a fixed table, any other
    from a hash of its name (so it does not change with which methods a plot holds)."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    digest = hashlib.sha256(method.encode("utf-8")).digest()
    return OTHER_COLOURS[int.from_bytes(digest[:4], "big") % len(OTHER_COLOURS)]


def _xlim(table: pd.DataFrame, col: str) -> Tuple[float, float]:
    held = [c for c in (col, f"{col}_lo", f"{col}_hi") if c in table.columns]
    values = pd.concat([table[c].astype(float) for c in held]).dropna()
    if values.empty:
        return 0.0, 100.0
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 2.0)
    # room on the right for the value labels, but never past 100% (labels near the right
    # edge go to the left of their dot instead)
    return (max(low - 0.12 * span, PERCENT_RANGE[0]),
            min(high + 0.45 * span, PERCENT_RANGE[1]))


def _panel(ax, rows: pd.DataFrame, methods: List[str], col: str, palette: Dict[str, Any],
           xlim: Tuple[float, float]) -> None:
    """One dataset column of one frame block."""
    n = len(methods)
    has_measured = (rows.source == "measured").any()
    label_source = "measured" if has_measured else "reported"
    best = rows.loc[rows.source == label_source, col].astype(float).max()
    for i, method in enumerate(methods):
        y = n - 1 - i
        mine = rows[rows.method == method]
        meas, rep = _value(mine, "measured", col), _value(mine, "reported", col)
        color = palette[method]
        if meas is not None and rep is not None:
            ax.plot([rep, meas], [y, y], color="0.75", lw=3, solid_capstyle="round", zorder=1)
        # clip_on=False: a dot at the 100% edge is drawn whole
        if rep is not None:
            ax.scatter([rep], [y], s=46, facecolors="white", edgecolors=color, linewidths=1.6,
                       zorder=2, clip_on=False)
        if meas is not None:
            _error_bar(ax, mine, col, meas, y, color)
            ax.scatter([meas], [y], s=46, color=color, zorder=3, clip_on=False)
        # the label is the measured value when the method was run, the paper's otherwise
        shown = meas if (mine.source == "measured").any() else rep
        if shown is not None:
            at = max(shown, rep or shown)
            left = at > xlim[1] - 0.25 * (xlim[1] - xlim[0])  # no room on the right
            ax.annotate(f"{shown:.1f}", (min(shown, rep or shown) if left else at, y),
                        xytext=(-6 if left else 6, 0), textcoords="offset points",
                        va="center", ha="right" if left else "left", fontsize=7.5,
                        fontweight="bold" if shown == best else "normal")
        else:
            text = _missing_text(mine, col)
            ax.annotate(text, (max(rep or xlim[0], xlim[0]), y), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=7, style="italic",
                        color="tab:red" if text == "fail" else "0.45")
    _style_axis(ax, n, xlim, highlight=col == "avg")


def _error_bar(ax, rows: pd.DataFrame, col: str, value: float, y: float, color: Any) -> None:
    """The measured value's interval, when the board holds one."""
    lo, hi = _value(rows, "measured", f"{col}_lo"), _value(rows, "measured", f"{col}_hi")
    if lo is not None and hi is not None:
        ax.errorbar([value], [y], xerr=[[value - lo], [hi - value]], fmt="none", ecolor=color,
                    elinewidth=1.3, capsize=2.5, zorder=2)


def _value(rows: pd.DataFrame, source: str, col: str) -> Optional[float]:
    if col not in rows.columns:
        return None
    sel = rows.loc[rows.source == source, col]
    if sel.empty or pd.isna(sel.iloc[0]):
        return None
    return float(sel.iloc[0])


def _missing_text(rows: pd.DataFrame, col: str) -> str:
    meas = rows[rows.source == "measured"]
    if meas.empty:
        return ""
    row = meas.iloc[0]
    if col == "avg":
        return f"partial {row['n_done']}/{row['n_datasets']}"
    return "fail" if col in row["failed"].split(",") else "not run"


def _style_axis(ax, n: int, xlim: Tuple[float, float], highlight: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(*xlim)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(range(n - 1, -1, -1))
    ax.tick_params(axis="y", length=0, labelsize=8.5)
    # every row shows its numbers (sharex would label only the bottom one)
    ax.tick_params(axis="x", labelsize=7, colors="0.4", labelbottom=True)
    ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.grid(axis="x", color="0.92", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color("0.7")
    if highlight:
        ax.set_facecolor("#fff4e8")


def _legend(fig, present: Dict[str, bool], board: Board) -> None:
    from matplotlib.lines import Line2D

    handles = []
    if present["measured"]:
        handles.append(Line2D([], [], marker="o", ls="", color="0.3", label="measured (this suite)"))
    if present["reported"]:
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="0.3", label="reported (paper)"))
    if board.ci and present["measured"]:
        handles.append(Line2D([], [], marker="|", markersize=9, color="0.3",
                              label=f"{stats.LEVEL:.0%} interval ({board.ci})"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               fontsize=8.5, bbox_to_anchor=(0.5, 1.0))
    title = stats.METRICS[stats.VIEWS[board.metric].metric].title
    fig.suptitle(f"Attentive-probe {title} (%)", fontsize=12, fontweight="bold", y=1.04)


# ----------------------------------------------------------------------------- accuracy vs compute
FRAME_MARKERS = ("o", "s", "^", "D", "v", "P")  # frame blocks in ascending order


def plot_compute(board: Board, path: str):
    """Save accuracy against encoder GFLOPs per clip (log x) to ``path``: a panel per column
    (AVG first, then each dataset with a value), a point per measured row (method, frames,
    arch, res, protocol) that has compute, a line joining a method's frame blocks; the
    paper's number of the same row as a ring at the measured row's GFLOPs. Returns the
    matplotlib Figure."""
    Figure, Canvas = _figure_class()
    points = _compute_points(board)
    cols = [c for c in ["avg", *board.columns] if points[c].notna().any()]
    if not cols:
        raise LeaderboardError("--plot_compute: no measured row has both a score and the "
                               "encoder's GFLOPs per clip (records written before compute was "
                               "recorded carry none)")
    ncols = min(3, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.3 * nrows + 0.6))
    Canvas(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"hspace": 0.5, "wspace": 0.3})
    markers = {f: FRAME_MARKERS[i % len(FRAME_MARKERS)]
               for i, f in enumerate(sorted(points["frames"].unique()))}
    unit = f"{stats.METRICS[stats.VIEWS[board.metric].metric].title} (%)"
    for ax, col in zip(axes.flat, cols):
        _compute_panel(ax, points, col, markers)
        ax.set_title("AVG" if col == "avg" else DISPLAY_NAMES.get(col, col), fontsize=10,
                     fontweight="bold")
        ax.set_xlabel("encoder GFLOPs per clip (log scale)", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
    for ax in list(axes.flat)[len(cols):]:
        ax.set_visible(False)
    _compute_legend(fig, points, markers)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _compute_points(board: Board) -> pd.DataFrame:
    """Measured rows with GFLOPs, each with its paper line's values (``rep_<col>``) where the
    row followed the paper's protocol and the paper has the row."""
    table = board.table
    measured = table[(table.source == "measured") & table["gflops"].notna()].copy()
    measured["label"] = [m if p == REPORTED else f"{m} ({p})"
                         for m, p in zip(measured["method"], measured["protocol"])]
    cols = ["avg", *board.columns]
    paper = table[table.source == "reported"][["frames", "method", *cols]]
    paper = paper.assign(protocol=REPORTED).rename(columns={c: f"rep_{c}" for c in cols})
    return measured.merge(paper, on=["frames", "method", "protocol"], how="left")


def _compute_panel(ax, points: pd.DataFrame, col: str, markers: Dict[Any, str]) -> None:
    """One column: each method's rows as a line over GFLOPs, paper rings beside them."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = points[points[col].notna()]
    for label, rows in shown.groupby("label", sort=True):
        rows = rows.sort_values("gflops")
        colour = method_colour(label)
        ax.plot(rows["gflops"], rows[col].astype(float), color=colour, lw=1.2, alpha=0.7,
                zorder=1)
        for row in rows.to_dict("records"):
            ax.scatter([row["gflops"]], [row[col]], marker=markers[row["frames"]], s=44,
                       color=colour, zorder=3, clip_on=False)
            if pd.notna(row.get(f"rep_{col}")):
                ax.scatter([row["gflops"]], [row[f"rep_{col}"]], marker=markers[row["frames"]],
                           s=44, facecolors="white", edgecolors=colour, linewidths=1.4, zorder=2,
                           clip_on=False)
    ax.set_xscale("log")
    # plain numbers at 1, 2 and 5 per decade (the default 4x10^2 labels collide)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    values = pd.concat([shown[col], shown.get(f"rep_{col}", pd.Series(dtype=float))]).astype(float)
    low, high = float(values.min()), float(values.max())
    pad = max(high - low, 2.0) * 0.15
    ax.set_ylim(max(low - pad, PERCENT_RANGE[0]), min(high + pad, PERCENT_RANGE[1]))
    ax.grid(color="0.92", lw=0.8, which="both")
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=7.5)


def _compute_legend(fig, points: pd.DataFrame, markers: Dict[Any, str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="-", color=method_colour(m), label=m)
               for m in sorted(points["label"].unique())]
    handles += [Line2D([], [], marker=mk, ls="", color="0.3", label=f"{f} frames")
                for f, mk in markers.items()]
    if any(c.startswith("rep_") and points[c].notna().any() for c in points.columns):
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="0.3", label="reported (paper)"))
    fig.legend(handles=handles, loc="center left", frameon=False, fontsize=8,
               bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Attentive-probe accuracy against encoder compute", fontsize=12,
                 fontweight="bold")


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval_encoder leaderboard",
        description="Build the attentive-probe leaderboard from run records.")
    parser.add_argument("--runs", default=DEFAULT_RUNS,
                        help="folder of run records, <runs>/<dataset>/*.json "
                             f"(default {DEFAULT_RUNS})")
    parser.add_argument("--reported", action="store_true",
                        help="show the paper's numbers beside the measured ones, with deltas")
    parser.add_argument("--reported_csv", default=str(REPORTED_CSV),
                        help="reported numbers "
                             "(default: the shipped results/paper_attentive_probe.csv)")
    parser.add_argument("--format", default="md", choices=FORMATS, help="table format (default md)")
    parser.add_argument("--out", help="write the table here instead of standard output")
    parser.add_argument("--plot", metavar="FILE.png", help="also save a plot (needs matplotlib)")
    parser.add_argument("--gflops", action="store_true",
                        help="add a GFLOPs/clip column: the encoder's GFLOPs per clip (one "
                             "view) from the records' compute; – where a record has none")
    parser.add_argument("--plot_compute", metavar="FILE.png",
                        help="also save accuracy against encoder GFLOPs per clip (log x), a "
                             "point per measured row (needs matplotlib)")
    parser.add_argument("--datasets", help="comma-separated benchmark columns that AVG is over "
                        "(default: the paper's eight)")
    parser.add_argument("--metric", default="top1", choices=list(stats.VIEWS),
                        help="what the cells show (default top1; action adds an epic_action "
                             "column, verb and noun both right, to the top-1 table)")
    parser.add_argument("--ci", nargs="?", const="bootstrap", choices=stats.INTERVALS,
                        help=f"show a {stats.LEVEL * 100:.0f}%% interval for every cell and AVG: "
                             "bootstrap over the clips (the default when --ci is given alone) "
                             "or exact (Clopper-Pearson for single-run top-1/top-5 cells)")
    parser.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                        help=f"bootstrap resamples (default {stats.RESAMPLES})")
    from eval_encoder.logs import add_verbosity_flags

    add_verbosity_flags(parser)  # -v/-q
    return parser


def make_board(runs: str, reported: bool = False, reported_csv: Path = REPORTED_CSV,
               datasets: Optional[Sequence[str]] = None, metric: str = "top1",
               ci: Optional[str] = None, resamples: int = stats.RESAMPLES) -> Board:
    """Load the records under ``runs`` (and the paper's numbers) and build the board."""
    records = load_records(Path(runs))
    if not records:
        log.warning("no run records under %s", runs)
    rep = load_reported(Path(reported_csv)) if reported else None
    return build_board(records, datasets or PAPER_DATASETS, rep, metric, ci, resamples)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder leaderboard``: print (or write) the table, optionally a plot."""
    args = build_parser().parse_args(argv)
    setup_logging()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    try:
        board = make_board(args.runs, args.reported, args.reported_csv, datasets, args.metric,
                           args.ci, args.resamples)
        board.gflops = args.gflops
        text = render(board, args.format)
        if args.plot:
            plot_board(board, args.plot)
        if args.plot_compute:
            plot_compute(board, args.plot_compute)
    except ValueError as exc:  # LeaderboardError and unreadable records (read_record)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    for written in (args.plot, args.plot_compute):
        if written:
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
