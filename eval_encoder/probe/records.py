"""A probe run's record: what it starts with (the requested configuration, row labels,
versions), what the finished run fills in (dataset, encoder, samples, compute, heads, the
reported head and its per-clip predictions), and what a failed run keeps.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from eval_encoder import compute, protocol
from eval_encoder import distributed as dist
from eval_encoder import record as rec
from eval_encoder.config import ProbeConfig
from eval_encoder.files import file_sha256
from eval_encoder.logs import result
from eval_encoder.probe.data import Manifests, Splits
from eval_encoder.probe.heldout import HELDOUT, heldout_cost, heldout_report
from eval_encoder.probe.kinds import rows_of_kind
from eval_encoder.probe.predictions import compute as compute_metrics
from eval_encoder.probe.trainer import (
    ProbeTrainer,
    RunFailed,
)
from eval_encoder.probe.training import Training
from eval_encoder.registry import ENCODERS, method_label
from eval_encoder.video.dataset import FLAG_WARNINGS

log = logging.getLogger("eval_encoder.run")


def summarise_heads(trainer: ProbeTrainer, select: str, select_on: str = "val"):
    """Per-head best/last scores, and the reported head with how it was chosen: among the
    heads of the run's first kind (each kind's: :func:`reported_by_kind`)."""
    rows = [head_row(h) for h in trainer.heads]
    return rows, report_of(rows_of_kind(rows, rows[0]["kind"]) if rows else rows, select,
                           select_on)


def report_of(rows: List[Dict], select: str, select_on: str) -> Dict:
    """The reported head of one kind's ``rows``, chosen on the validation split or, under
    --select_on heldout, on the held-out clips (with the grid's val maximum and the gap)."""
    if select_on != HELDOUT:
        return choose(rows, select)
    reported, block = heldout_report(rows, select)
    return dict(reported, val_max=block["val_max"], gap_top1=block["gap_top1"])


def selection_of(rows: List[Dict], select: str) -> Dict:
    """The record's ``selection`` block of a --select_on heldout run (its first kind's)."""
    return heldout_report(rows_of_kind(rows, rows[0]["kind"]), select)[1]


def head_row(h) -> Dict:
    """One head's row: its kind, grid values, status, best and last scores, history."""
    evals = [e for e in h.history if e.get("top1") is not None and math.isfinite(e["top1"])]
    best = max(evals, key=lambda e: e["top1"], default=None)
    last = evals[-1] if evals and h.alive else None
    return {
        "name": h.name, "kind": h.kind, "lr": h.lr, "weight_decay": h.weight_decay,
        "status": h.status, "best_top1": best and best["top1"],
        "best_top5": best and best["top5"], "best_epoch": best and best["epoch"],
        "last_top1": last and last["top1"], "last_top5": last and last["top5"],
        "history": h.history}


def choose(rows: List[Dict], select: str) -> Dict:
    """The reported head among ``rows`` (best, or last, epoch's top-1 on val)."""
    prefix = "best" if select == "best_val" else "last"
    candidates = [r for r in rows if r["status"] == "ok" and r[f"{prefix}_top1"] is not None]
    if not candidates:
        raise RunFailed("no head finished with a finite score: " +
                        "; ".join(f"{r['name']}: {r['status']}" for r in rows))
    chosen = max(candidates, key=lambda r: r[f"{prefix}_top1"])
    return {
        "head": chosen["name"], "top1": chosen[f"{prefix}_top1"], "top5": chosen[f"{prefix}_top5"],
        "epoch": chosen["best_epoch"] if prefix == "best" else chosen["history"][-1]["epoch"],
        "selection": select, "chosen_on": "val",
        "note": ("best epoch and best head chosen on the validation split that is reported "
                 "(the upstream protocol; optimistic by the selection)") if prefix == "best" else
                "last epoch; the head is chosen on the validation split that is reported",
    }


def reported_by_kind(rows: List[Dict], select: str, select_on: str = "val"
                     ) -> Optional[Dict[str, Dict]]:
    """Each kind's reported head, chosen among its own heads (None: a run of one kind, whose
    ``reported`` says it). A kind with no finite head is reported as failed."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    if len(kinds) < 2:
        return None
    out: Dict[str, Dict] = {}
    for kind in kinds:
        try:
            out[kind] = report_of(rows_of_kind(rows, kind), select, select_on)
        except RunFailed as exc:
            out[kind] = {"head": None, "top1": None, "top5": None, "error": str(exc)}
    return out


def base_record(cfg: ProbeConfig, requested_hash: str, env, wall_start: float) -> Dict:
    return {
        "schema": rec.SCHEMA, "schema_version": rec.SCHEMA_VERSION,
        "run_id": rec.new_run_id(cfg.dataset), "status": "failed", "error": None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": round(time.time() - wall_start, 2),
        "dataset": {"name": cfg.dataset}, "config_hash": requested_hash,
        # row labels as requested, so a failed run still lands in the right leaderboard row
        "method": method_label(cfg),
        "arch": cfg.arch_label or "", "res": cfg.input_size, "frames": cfg.num_frames,
        # the codec options stay until the encoder says whether it reads them (fill_record)
        "protocol": protocol.describe(cfg), "config": rec.config_block(cfg),
        "sources": dict(cfg.sources),
        "versions": rec.software_versions(), "git_commit": rec.git_commit(),
        "world_size": env.world_size if env else int(os.environ.get("WORLD_SIZE", "1")),
        "device": str(env.device) if env else None,
        # every node's host name and processes (a collective: every rank builds this record)
        "nodes": dist.nodes() if env else None,
    }


def token_budget(cfg: ProbeConfig, spec) -> int:
    """The tokens per clip the encoder declares it gives the head: the codec's K, else frames
    / tubelet size x (patch + prefix tokens per frame or tubelet); a clip of several segments
    gives that per segment."""
    return segments_of(cfg) * segment_budget(cfg, spec)


def segments_of(cfg: ProbeConfig) -> int:
    """The segments a clip is encoded in (each on its own, tokens concatenated)."""
    return cfg.num_segments or 1


def segment_budget(cfg: ProbeConfig, spec) -> int:
    """The tokens the encoder gives for one segment (the whole clip, with one segment)."""
    if spec.tokens_per_frame is None:
        return cfg.codec.K_keep
    steps = (spec.num_frames or cfg.num_frames) // spec.tubelet_size
    return spec.clip_prefix_tokens + steps * (spec.tokens_per_frame + spec.prefix_tokens)


def budget_text(cfg: ProbeConfig, spec) -> str:
    """How :func:`token_budget` was reached, for messages and the run's sources."""
    each = "" if segments_of(cfg) == 1 else f"{segments_of(cfg)} segments x "
    if spec.tokens_per_frame is None:
        return f"the encoder spec: {each}K_keep {cfg.codec.K_keep} selected patches"
    frames = f"{spec.num_frames or cfg.num_frames} frames"
    if spec.tubelet_size > 1:
        frames += f" / tubelets of {spec.tubelet_size}"
    clip = f"{spec.clip_prefix_tokens} clip prefix + " if spec.clip_prefix_tokens else ""
    return (f"the encoder spec: {each}{clip}{frames} x ({spec.tokens_per_frame} patch + "
            f"{spec.prefix_tokens} prefix tokens)")


def fill_record(record: Dict, cfg: ProbeConfig, splits: Splits, encoder, trainer: ProbeTrainer) -> None:
    """Everything a reader needs to trust and reproduce the number."""
    spec = encoder.spec
    record["dataset"] = dataset_block(splits)
    frames = spec.num_frames or cfg.num_frames
    budget = token_budget(cfg, spec)
    cost = compute.repeated(compute.encoder_cost(encoder, frames, segment_budget(cfg, spec)),
                            segments_of(cfg))
    record["encoder"] = encoder_block(cfg, encoder)
    record.update({
        "method": cfg.method_label or f"{record['encoder']['family']}/{cfg.model_name}",
        "arch": cfg.arch_label or (cost.arch if cost else ""), "res": spec.input_size,
        "frames": frames, "token_budget": budget})
    record["samples"] = samples_block(splits, trainer)
    if trainer.env.is_main:
        warn_flags(record["samples"])
    if splits.monitor is not None:
        record["monitor"] = {"clips": len(splits.monitor.entries), "split": "train",
                             "note": "heads' monitor_top1: progress only, never reported"}
    record.update(passes_block(trainer))
    record["compute"] = compute_block(trainer, cost, budget, splits.val.views)
    record["config"] = rec.config_block(cfg, codec=spec.clip_source == "codec")
    record["sources"] = dict(cfg.sources)


def dataset_block(splits: Splits) -> Dict:
    """The record's ``dataset``: the card and both manifests with their digests."""
    card = splits.card
    return {"name": card.name, "version": card.version, "num_classes": card.num_classes,
            "train_manifest": splits.train_csv, "val_manifest": splits.val_csv,
            "train_manifest_sha256": file_sha256(splits.train_csv),
            "val_manifest_sha256": file_sha256(splits.val_csv)}


def encoder_block(cfg: ProbeConfig, encoder) -> Dict:
    """The record's ``encoder``: what was asked for, what it says it loaded, its spec."""
    return {"family": ENCODERS.canonical(cfg.model_family), "model_name": cfg.model_name,
            "model_weight": cfg.model_weight,
            # what the encoder says it loaded (not what was asked for)
            "weights": str(getattr(encoder, "weights", None) or "not reported by the encoder"),
            "parameters": compute.parameter_count(encoder), "spec": encoder.spec.to_dict()}


def _skipped(skipped: Dict[int, Dict], views: int) -> List[Dict]:
    return [dict(v, clip=k // views) for k, v in sorted(skipped.items())]


def samples_block(splits: Splits, trainer: ProbeTrainer) -> Dict:
    """The record's ``samples``: each split's clips expected, scored, skipped and flagged
    (collective: the flags and truncated clips are gathered over ranks)."""
    c, views = trainer.counters, splits.val.views
    out = {
        "train": {"expected": len(splits.train.entries), "skipped": list(c.skipped["train"].values()),
                  "flags": trainer.flag_counts("train"),
                  "truncated": trainer.truncated_clips("train", splits.train)},
        "val": {"expected": len(splits.val.entries), "scored": getattr(trainer, "scored_val", 0),
                "views_per_clip": views, "skipped": _skipped(c.skipped["val"], views),
                "flags": trainer.flag_counts("val"),
                "truncated": trainer.truncated_clips("val", splits.val)}}
    if splits.heldout is not None:
        out["heldout"] = {
            "expected": len(splits.heldout.entries), "split": "train manifest",
            "scored": getattr(trainer, "scored_heldout", 0), "views_per_clip": views,
            "skipped": _skipped(c.skipped.get(HELDOUT, {}), views), "flags": {}}
    return out


def passes_block(trainer: ProbeTrainer) -> Dict:
    """Encoder passes and batches per split summed over ranks (encoder passes per batch is
    the figure that matters), and what the feature cache answered (collective)."""
    c = trainer.counters
    parts = dist.all_gather_objects((c.encoder_passes, c.batches))
    out = {"encoder_passes": {k: sum(p[0][k] for p in parts) for k in c.encoder_passes},
           "batches": {k: sum(p[1][k] for p in parts) for k in c.batches}}
    source = trainer.pooled_source
    if source is not None:
        cached = dist.all_gather_objects(c.cached)
        out["feature_cache"] = {
            "folder": str(source.cache.folder), "passes": list(source.splits),
            "cached_batches": {k: sum(p.get(k, 0) for p in cached) for k in source.splits}}
    return out


def warn_flags(samples: Dict) -> None:
    """One warning per flag that changes what a number means (``FLAG_WARNINGS``) with how many
    samples of a split carried it; the record's ``samples.<split>.flags`` has every count."""
    for split, part in samples.items():
        for name, count in sorted(part["flags"].items()):
            if count and name in FLAG_WARNINGS:
                log.warning("%d %s samples (of %d clips) %s (record: samples.%s.flags.%s)", count,
                            split, part["expected"], FLAG_WARNINGS[name], split, name)


def compute_block(trainer: ProbeTrainer, cost, tokens: int, views: int) -> Dict:
    """The record's ``compute`` (see eval_encoder/record.py): the encoder's tokens and FLOPs
    per clip, clips/s and loader wait per split over all ranks, peak memory (the largest
    rank's). A collective call."""
    mine = (trainer.clock.state(), compute.peak_memory(trainer.env.device))
    parts = dist.all_gather_objects(mine)
    clocks = [p[0] for p in parts]
    encoder = cost.to_dict() if cost is not None else {
        "flops_method": None, "gflops_per_clip": None,
        "note": f"no FLOP count known for {type(trainer.encoder).__name__} (see "
                "eval_encoder/compute.py)"}
    gflops = encoder["gflops_per_clip"]
    held = heldout_cost(clocks, views)
    return {"tokens_per_clip": tokens, "encoder": encoder, **({"heldout": held} if held else {}),
            "val_views_per_clip": views,
            "gflops_per_val_clip": round(gflops * views, 4) if gflops is not None else None,
            "train": compute.throughput(clocks, "train"),
            "val": compute.throughput(clocks, "val", views),
            "memory": compute.max_over([p[1] for p in parts])}


def write_outputs(record: Dict, cfg: ProbeConfig) -> Path:
    """The JSON record, plus upstream's one-line report for old tooling; the record's path
    (a complete run says it with its result: :func:`say_result`)."""
    path = rec.write_record(record, cfg.save_report)
    if record["status"] != "complete":
        log.info("run record: %s", path)
    else:
        weight = os.path.basename(os.path.normpath(cfg.model_weight))
        txt = os.path.join(cfg.save_report, f"report_attentive_probe_{weight}.txt")
        os.makedirs(cfg.save_report, exist_ok=True)
        with open(txt, "a", encoding="utf-8") as fh:
            fh.write(f"{cfg.dataset} {record['reported']['top1']}\n")
    return path


def say_result(record: Dict, cfg: ProbeConfig, path: Path) -> None:
    """A complete run's last lines, on standard output at any verbosity short of -qq: the
    reported score, the record's path and the leaderboard command that shows it."""
    r, val = record["reported"], record["samples"]["val"]
    when = "no training" if r["epoch"] is None else f"epoch {r['epoch']}"
    if "refit" in r:
        when += f", refit on all {r['refit']['train_clips']} train clips"
    result(f"{cfg.dataset} {cfg.model_name}: top-1 {r['top1']:.2f}% top-5 {r['top5']:.2f}% "
           f"(head {r['head']}, {when}, chosen on {r['chosen_on']}; "
           f"{val['scored']}/{val['expected']} val clips scored, {record['wall_time_s']:.1f} s)")
    exact = (record.get("metrics") or {}).get("top1")
    if record.get("val_sampling") and exact is not None:
        result(f"  (top-1 above on the published validation draw; every clip once, as "
               f"leaderboard tables it: {exact:.2f}%)")
    result(f"run record: {path}")
    result(f"show it: {rec.leaderboard_command(cfg.save_report)}")


@dataclass
class Progress:
    """What a run has built so far: a failure record keeps what is known from it."""

    manifests: Optional[Manifests] = None
    training: Optional[Training] = None


def failure_samples(record: Dict, progress: Progress, exc: Exception) -> None:
    """``record["samples"]`` for a run that broke before :func:`fill_record`: expected counts,
    clips skipped so far, and every clip the error lists (not only the few it names)."""
    if "samples" in record:
        return
    m, t = progress.manifests, progress.training
    samples = rec.samples_at_failure(
        {name: len(getattr(m, name)) for name in ("train", "val")} if m else {},
        t.trainer.counters.skipped if t else {}, getattr(exc, "samples", {}))
    if samples:
        record["samples"] = samples


def attach_predictions(record: Dict, cfg: ProbeConfig, training: Training) -> None:
    """Write the reported head's per-clip predictions beside the record, and its metrics
    (the dataset card's) into it."""
    record["predictions"], record["metrics"] = write_predictions(
        record, cfg, training, record["reported"], "predictions")
    val_max = record["reported"].get("val_max")
    if val_max:  # --select_on heldout: the val-max head's too, in a file of its own
        record["predictions_val_max"], record["metrics_val_max"] = write_predictions(
            record, cfg, training, val_max, "val_max.predictions")
    for kind, reported in list((record.get("reported_by_kind") or {}).items())[1:]:
        attach_kind_predictions(record, cfg, training, kind, reported)


def attach_kind_predictions(record: Dict, cfg: ProbeConfig, training: Training, kind: str,
                            reported: Dict) -> None:
    """A later kind's reported head (and its val maximum) get files of their own
    (``<run_id>.<kind>.predictions.npz``), their entries and metrics inside ``reported``, so
    that intervals, ``compare`` and the report read every kind of a run of several."""
    for entry, suffix in ((reported, "predictions"), (reported.get("val_max"),
                                                      "val_max.predictions")):
        if entry and entry.get("head") is not None:
            entry["predictions"], entry["metrics"] = write_predictions(
                record, cfg, training, entry, f"{kind}.{suffix}")


def write_predictions(record: Dict, cfg: ProbeConfig, training: Training, reported: Dict,
                      suffix: str):
    """The predictions file of the snapshot ``reported`` names (``<run_id>.<suffix>.npz``):
    its record entry and metrics (None, None: scored before a resume, not kept)."""
    trainer, splits = training.trainer, training.splits
    names = [h.name for h in trainer.heads] + ([training.refit.name] if training.refit else [])
    owner = (reported["epoch"], len(trainer.heads) if "refit" in reported
             else names.index(reported["head"]))
    if owner not in training.predictions.by_owner:
        return None, None
    folder = rec.records_dir(cfg.save_report, splits.card.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.{suffix}.npz"
    name, digest = training.predictions.write(str(path), owner, splits.val.entries, names)
    chosen = training.predictions.by_owner[owner]
    return ({"file": name, "sha256": digest, "head": reported["head"], "epoch": owner[0],
             "clips": len(chosen)}, compute_metrics(chosen, splits.card.metrics))
