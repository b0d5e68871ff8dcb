"""The suite's books: the complete record a dataset can reuse, the records a run left when it
ended, a failed record for a run that left none, each dataset's :class:`Outcome` and its line
in the suite state."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from eval_encoder import record as rec
from eval_encoder.files import file_sha256
from eval_encoder.launch import Ended, Entry, Job, Task
from eval_encoder.probe.args import parse_config
from eval_encoder.registry import method_label
from eval_encoder.video.manifest import load_card, split_paths

log = logging.getLogger(__name__)

DONE = ("complete", "skipped")


@dataclass
class Outcome:
    """What happened to one dataset of a suite run."""

    dataset: str
    status: str  # "skipped" (already complete) | "complete" | "failed" | "busy" (another
    # suite holds the dataset's lock and --no_wait_lock was given) | "submitted" (queued,
    # not waited for: --no_wait) | "running" (``suite collect``: not ended yet)
    record_path: Optional[Path] = None
    top1: Optional[float] = None
    wall_s: float = 0.0
    error: Optional[str] = None
    protocol: str = ""  # the protocol the dataset's run follows (part of its config hash)
    job: Optional[str] = None  # the launcher's job id and the run's log
    log: Optional[str] = None
    kinds: str = ""  # a run of several head kinds: " (ov head; linear 71.4%, knn 65.0%)"


def kinds_text(record: Dict[str, Any]) -> str:
    """What a run of several head kinds reports besides its first kind's top-1 (the suite's
    line names every kind); "" for a run of one kind."""
    by_kind = record.get("reported_by_kind") or {}
    if len(by_kind) < 2:
        return ""
    first, *others = by_kind
    said = ", ".join(f"{k} " + (f"{by_kind[k]['top1']:.2f}%" if by_kind[k].get("top1")
                                is not None else "failed") for k in others)
    return f" ({first} head; {said})"


def data_changed(record: Dict[str, Any], data_root: str) -> Optional[str]:
    """Why a finished record no longer describes the data under ``data_root`` (None: same).

    The config hash leaves the data root out (the same data may move), so the card version
    and the manifests' contents are compared here instead.
    """
    stored = record.get("dataset") or {}
    config = record.get("config") or {}
    card = load_card(stored.get("name", ""))
    if str(stored.get("version")) != card.version:
        return f"dataset card version {stored.get('version')} -> {card.version}"
    _, train_csv, val_csv = split_paths(card, data_root, config.get("train_data_csv_path"),
                                        config.get("val_data_csv_path"))
    for split, path in (("train", train_csv), ("val", val_csv)):
        current = file_sha256(path) if os.path.isfile(path) else None
        if current != stored.get(f"{split}_manifest_sha256"):
            return f"{split} manifest {path} differs from the one the record was made with"
    return None


def find_complete(save_report: str, dataset: str, config_hash: str, world_size: int,
                  data_root: Optional[str] = None) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest complete record of this dataset with this config hash and world size
    (and, given ``data_root``, made from the same card version and manifests)."""
    found = []
    for path in sorted(rec.records_dir(save_report, dataset).glob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        try:
            data = rec.read_record(str(path))
        except ValueError as exc:  # another schema: cannot be this run, say so and go on
            log.warning("ignoring %s when looking for finished runs: %s", path, exc)
            continue
        if data.get("status") == "complete" and data.get("config_hash") == config_hash:
            changed = data_changed(data, data_root) if data_root else None
            if changed:
                log.info("%s: same config but %s: not reused", path, changed)
            elif int(data.get("world_size") or 1) == world_size:
                found.append((str(data.get("created") or ""), path, data))
            else:
                log.info("%s: same config but world size %s (now %d): not reused", path,
                         data.get("world_size"), world_size)
    return max(found, key=lambda f: (f[0], f[1].name))[1:] if found else None


def records_since(save_report: str, dataset: str, config_hash: str,
                  before: set) -> List[Tuple[Path, Dict[str, Any]]]:
    """Records of this config written after ``before`` (a set of paths) was taken."""
    out = []
    for path in sorted(rec.records_dir(save_report, dataset).glob("*.json")):
        if path in before or path.name.startswith(".tmp-"):
            continue
        try:
            data = rec.read_record(str(path))
        except ValueError:
            continue
        if data.get("config_hash") == config_hash:
            out.append((path, data))
    return out


def failure_record(argv: Sequence[str], config_hash: str, message: str, wall_s: float,
                   world_size: int, launch: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A schema-v1 failed record for a run that ended without writing one.

    Row labels come from the config as the trainer makes them (it could not say more: the
    encoder was never built here), so the leaderboard can mark the cell as failed. ``launch``
    keeps what the launcher knows of the end (a SLURM job's id, state, exit code and log).
    """
    cfg = parse_config(list(argv))
    record = {
        "schema": rec.SCHEMA, "schema_version": rec.SCHEMA_VERSION,
        "run_id": rec.new_run_id(cfg.dataset), "status": "failed", "error": message,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": round(wall_s, 2),
        "dataset": {"name": cfg.dataset},
        "encoder": {"family": cfg.model_family, "model_name": cfg.model_name,
                    "model_weight": cfg.model_weight, "spec": None},
        "method": method_label(cfg),
        "arch": cfg.arch_label or "", "res": cfg.input_size, "frames": cfg.num_frames,
        "token_budget": None, "heads": [], "reported": None,
        "config": rec.config_block(cfg), "sources": dict(cfg.sources), "config_hash": config_hash,
        "versions": rec.software_versions(), "git_commit": rec.git_commit(),
        "world_size": world_size, "device": None,
    }
    if launch:
        record["launch"] = launch
    return record


def new_entry(task: Task, launcher: str, job: Job, data_root: str, save_report: str) -> Entry:
    """The state line of a task started as ``job`` (with the records it must not count)."""
    folder = rec.records_dir(save_report, task.dataset)
    before = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
    return Entry(task.dataset, launcher, job.id, job.log, task.config_hash,
                 task.topology.world_size, list(task.argv), str(data_root), str(save_report),
                 before, time.time())


def conclude(entry: Entry, ended: Ended, keeps_books: bool = True) -> Outcome:
    """What a run that has ended leaves: its complete record, the trainer's own failed
    record, or -- neither written -- a failed record by the suite saying how it ended.
    Only the suite that keeps the books (the first node's) writes records."""
    wall = time.time() - entry.started
    folder = rec.records_dir(entry.save_report, entry.dataset)
    new = records_since(entry.save_report, entry.dataset, entry.config_hash,
                        {folder / name for name in entry.before})
    complete = [(p, d) for p, d in new if d.get("status") == "complete"]
    if complete and ended.code in (0, None):
        path, data = complete[-1]
        return Outcome(entry.dataset, "complete", path, float(data["reported"]["top1"]), wall,
                       kinds=kinds_text(data))
    how = f" ({ended.what}; log {entry.log})" if ended.launch else ""
    if new:  # the trainer recorded its own failure (its error says why)
        path, data = new[-1]
        error = (data.get("error") or f"exit status {ended.code}") + how
        return Outcome(entry.dataset, "failed", path, None, wall, error)
    last = " | ".join(line.strip() for line in ended.tail.strip().splitlines()[-5:])
    message = (f"{ended.what} without writing a record (record written by the suite); full "
               f"output: {entry.log}; last lines: {last}")
    if not keeps_books:
        return Outcome(entry.dataset, "failed", None, None, wall, message.replace(
            "record written by the suite", "the first node's suite records it"))
    path = rec.write_record(failure_record(entry.argv, entry.config_hash, message, wall,
                                           entry.world_size, ended.launch), entry.save_report)
    return Outcome(entry.dataset, "failed", path, None, wall, message)
