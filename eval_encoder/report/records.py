"""Run records for the leaderboard: find and load them (upgrading older schema versions or
refusing them), check the fields a table needs, place each record in its row (frames, method,
arch, res, protocol) and make the one-line-per-record frame the board is built from.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd

from eval_encoder import stats
from eval_encoder.config import DEFAULT_RESULTS, RESULTS_ENV
from eval_encoder.protocol import DEFAULT, PUBLISHED, UNSTATED, label, published_of
from eval_encoder.record import SCHEMA, SCHEMA_VERSION, config_hash, read_record, runs_dir
from eval_encoder.report.names import ROW_KEYS, LeaderboardError

RECORD_COLUMNS = [*ROW_KEYS, "token_budget", "dataset", "status", "top1", "created", "run_id",
                  "config_hash", "path", "seed", "base_hash", "ref", "gflops"]



def add_runs_flag(parser: argparse.ArgumentParser) -> None:
    """``--runs``: the folder of records, by default the results root's ``runs`` (where probe,
    suite and demo runs write theirs unless given another ``--save_report``)."""
    parser.add_argument("--runs", default=str(runs_dir()),
                        help="folder of run records, <runs>/<dataset>/*.json (default "
                             f"<results root>/runs, the root being ${RESULTS_ENV}, else "
                             f"{DEFAULT_RESULTS}: now {runs_dir()})")


# schema_version -> function upgrading a record dict of that version to the next one. Empty:
# version 1 is the first schema; add an entry here when the schema moves on, so old records
# stay readable instead of being refused.
UPGRADERS: Dict[int, Callable[[Dict[str, Any]], Dict[str, Any]]] = {}


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
                "arch": str(cfg.get("arch_label") or ""), "res": res_text(cfg.get("input_size")),
                "protocol": protocol_label(record)}
    frames = int(record["frames"])
    spec = (record.get("encoder") or {}).get("spec") or {}
    budget = record.get("token_budget")
    if spec and spec.get("tokens_per_frame") is None and budget and spec.get("patch_size"):
        per_frame = (int(spec["input_size"]) // int(spec["patch_size"])) ** 2
        if per_frame and budget % per_frame == 0:
            frames = budget // per_frame
    return {"frames": frames, "method": record["method"], "arch": str(record.get("arch") or ""),
            "res": res_text(record.get("res")), "protocol": protocol_label(record)}


def protocol_label(record: Dict[str, Any]) -> str:
    """The protocol a record followed, as the table shows it (see :func:`row_labels`)."""
    text = label(record)
    return UNSTATED if text.startswith("?") else text


def protocol_name(record: Dict[str, Any]) -> str:
    """The protocol a record followed, without the departures' star (``unstated``: none)."""
    return protocol_label(record).rstrip("*")


def records_by_table(records: Sequence[Dict[str, Any]], protocol: Optional[str] = None
                     ) -> Dict[str, List[Dict[str, Any]]]:
    """{published code: its records} in :data:`PUBLISHED` order: a table per published code
    the records' protocols follow (a record of no known protocol: the default's), or with
    ``protocol`` one table, of that protocol's records (none: the default's table)."""
    if protocol is not None:
        return {published_of(protocol).name: [r for r in records
                                              if protocol_name(r) == protocol]}
    found: Dict[str, List[Dict[str, Any]]] = {name: [] for name in PUBLISHED}
    for record in records:
        found[published_of(protocol_name(record)).name].append(record)
    held = {name: recs for name, recs in found.items() if recs}
    return held or {published_of(DEFAULT).name: []}


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
    if match is None or (size is not None and res_text(size) != match["res"]):
        return own
    return dict(match)


def res_text(res: Any) -> str:
    """A resolution as the table shows it (``224``); empty when unknown."""
    if res is None or (isinstance(res, float) and math.isnan(res)):
        return ""
    return str(int(res)) if isinstance(res, (int, float)) else str(res)
