"""The attentive-probe run: resolve the config, build data and encoder, train, score, record.

This is the one long driver; it only wires the units together.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from eval_encoder import distributed as dist
from eval_encoder import checkpoint as ckpt
from eval_encoder import compute
from eval_encoder import protocol
from eval_encoder import record as rec
from eval_encoder.config import ConfigError, ProbeConfig, build_parser, parse_config, require
from eval_encoder.encoders import build_encoder
from eval_encoder.logs import setup_logging
from eval_encoder.probe.head import head_grid
from eval_encoder.probe.predictions import PredictionStore, Scored, needs_probs
from eval_encoder.probe.predictions import compute as compute_metrics
from eval_encoder.probe.trainer import ProbeTrainer, RunFailed, accuracy, check_scored_once, make_heads
from eval_encoder.resources import MissingData
from eval_encoder.registry import CLIP_SOURCES, ENCODERS, RegistryError, check_names, method_label
from eval_encoder.video.dataset import ClipDataset
from eval_encoder.video.loader import make_loader, pick_backend, val_order
from eval_encoder.video.steps import StepPlan, StepPlanError, chunk, make_plan, train_batches
from eval_encoder.video.manifest import (DatasetCard, ManifestError, file_sha256, load_card,
                                         read_manifest, split_paths)
from eval_encoder.video.transforms import TransformSpec

log = logging.getLogger("eval_encoder.run")


@dataclass
class Splits:
    card: DatasetCard
    video_root: str
    train_csv: str
    val_csv: str
    train: ClipDataset
    val: ClipDataset


def resolve_dataset(cfg: ProbeConfig) -> DatasetCard:
    """Fill class count, epochs and batch size from the dataset card where not given."""
    card = load_card(cfg.dataset)
    require(cfg.num_classes in (0, card.num_classes),
            f"--num_classes {cfg.num_classes} disagrees with datasets/{card.name}.yaml "
            f"({card.num_classes} classes)")
    cfg.num_classes = card.num_classes
    for name, value in (("batch_size", card.default_batch_size), ("default_epoch", card.default_epochs)):
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)
            cfg.sources[name] = f"dataset card {card.path}"
    require(cfg.batch_size > 0, f"--batch_size must be positive, got {cfg.batch_size}")
    require(cfg.default_epoch > 0, f"--default_epoch must be positive, got {cfg.default_epoch}")
    return card


def check_encoder_flags(cfg: ProbeConfig, spec) -> None:
    """Upstream flags that describe the encoder must agree with what the encoder declares."""
    require(cfg.tubelet_size == 1, f"--tubelet_size {cfg.tubelet_size}: the encoders here embed "
            "single frames (tubelet 1); other sizes are not supported")
    require(cfg.embedding_size in (None, spec.embed_dim),
            f"--embedding_size {cfg.embedding_size} but {cfg.model_name} returns {spec.embed_dim}-wide tokens")
    # upstream's --frames_token_num is the patch grid; prefix tokens (class, registers) come on top
    require(cfg.frames_token_num in (None, spec.tokens_per_frame) or spec.tokens_per_frame is None,
            f"--frames_token_num {cfg.frames_token_num} but {cfg.model_name} at {spec.input_size}px "
            f"gives {spec.tokens_per_frame} patch tokens per frame (plus {spec.prefix_tokens} "
            "prefix tokens given to the head)")
    require(cfg.num_temporal_crops >= 1 and cfg.num_spatial_crops >= 1, "crop counts must be >= 1")
    require(cfg.probe_size == 1, f"--probe_size {cfg.probe_size}: the published head has one "
            "attention-pooling block (the published scripts parse --probe_size and ignore it)")
    for name in ("print_freq", "eval_freq", "num_frames"):
        require(getattr(cfg, name) >= 1, f"--{name} must be >= 1, got {getattr(cfg, name)}")
    require(0 <= cfg.max_skip_fraction < 1, "--max_skip_fraction must be in [0, 1)")
    cfg.embedding_size, cfg.input_size = spec.embed_dim, spec.input_size
    cfg.mean, cfg.std = list(spec.mean), list(spec.std)
    if spec.tokens_per_frame is not None:
        cfg.frames_token_num = spec.tokens_per_frame


@dataclass
class Manifests:
    root: str
    train_csv: str
    val_csv: str
    train: list
    val: list


def read_manifests(cfg: ProbeConfig, card: DatasetCard) -> Manifests:
    """Read and check both manifests before anything heavy (encoder weights) is loaded."""
    require(cfg.data_root is not None, "--data_root is required (the folder holding "
            f"{card.name}/{card.train_manifest})")
    root, train_csv, val_csv = split_paths(card, cfg.data_root, cfg.train_data_csv_path,
                                           cfg.val_data_csv_path)
    out = Manifests(root, train_csv, val_csv, read_manifest(train_csv, card.num_classes),
                    read_manifest(val_csv, card.num_classes))
    from eval_encoder.video import preflight

    splits = {"train": out.train, "val": out.val}
    # every clip opens with a video stream? (cached; each rank checks a share, as torchrun set)
    failed = preflight.failures_by_split(
        {name: [os.path.join(root, e.path) for e in entries] for name, entries in splits.items()},
        cache=preflight.cache_file(cfg.save_report, card.name),
        shard=(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))),
        gather=dist.all_gather_objects)
    try:
        for name, entries in splits.items():
            check_files_exist(entries, root, name, cfg.max_skip_fraction, failed[name])
    except RunFailed as exc:  # the failed record says how many clips each split has
        for name, entries in splits.items():
            exc.samples.setdefault(name, {})["expected"] = len(entries)
        raise
    return out


def build_splits(cfg: ProbeConfig, card: DatasetCard, m: Manifests, spec) -> Splits:
    """The train and val datasets, fed by the clip source the encoder declares."""
    source_cls = CLIP_SOURCES.get(spec.clip_source)
    source = source_cls(num_frames=spec.num_frames or cfg.num_frames,
                        decode_threads=cfg.decord_num_threads, cfg=cfg, spec=spec)
    train = ClipDataset(m.train, m.root, source, train=True, seed=cfg.seed)
    val = ClipDataset(m.val, m.root, source, train=False, seed=cfg.seed,
                      temporal_views=cfg.num_temporal_crops, spatial_views=cfg.num_spatial_crops)
    return Splits(card, m.root, m.train_csv, m.val_csv, train, val)


def build_loaders(cfg: ProbeConfig, splits: Splits, spec, env):
    """Train and val loaders over this rank's batches (video/steps.py, video/loader.py), the
    step plan, and the backend."""
    tspec = transform_spec(cfg, spec)
    require(cfg.drop_last is not None, "drop_last is unset: the protocol was not resolved "
            "(it fills drop_last from --protocol)")
    backend = pick_backend(cfg.loader, env.device)
    cfg.sources.setdefault("loader_backend", backend)
    extras = list(getattr(splits.train.source, "extras_keys", ()))  # declared by the source
    n_train, n_val, views = len(splits.train), len(splits.val.entries), splits.val.views
    try:
        plan = make_plan(cfg.global_batch_size, cfg.batch_size, env.world_size, cfg.drop_last)
        plan.steps(n_train)  # fail before training
    except StepPlanError as exc:
        raise ConfigError(str(exc)) from None
    for warning in batch_warnings(plan, n_train, n_val * views):
        log.warning("%s", warning)
    if cfg.global_batch_size is None:
        log.info("global batch %d = --batch_size %d x %d processes: results depend on the world "
                 "size (--global_batch_size makes them independent of it)", plan.global_batch,
                 cfg.batch_size, env.world_size)

    def train_batches_of(epoch):  # validation never drops: every clip is scored once
        return train_batches(n_train, epoch, env.rank, plan, cfg.seed)

    def val_batches(_epoch):
        return chunk(val_order(n_val, views, env.rank, env.world_size), cfg.batch_size)

    common = dict(batch_size=cfg.batch_size, tspec=tspec, backend=backend, device=env.device,
                  workers=cfg.dali_py_num_workers, dali_threads=cfg.dali_num_threads,
                  seed=cfg.seed, extras_keys=extras)
    return (make_loader(splits.train, train_batches_of, **common),
            make_loader(splits.val, val_batches, **common)), plan, backend


def batch_warnings(plan: StepPlan, n_train: int, n_val: int) -> List[str]:
    """What a batch larger than a split means: the training steps an epoch then has, and
    that validation runs in one batch per process (``n_val``: clips x views)."""
    out = []
    if plan.global_batch > n_train:
        out.append(f"the global batch {plan.global_batch} ({plan.world} processes x "
                   f"{plan.accumulation} micro-batches of --batch_size {plan.micro}) is larger "
                   f"than the {n_train} training clips: {plan.steps(n_train)} optimiser "
                   f"step(s) per epoch, of {n_train} clips")
    per_rank = -(-n_val // plan.world)
    if plan.micro > per_rank:
        out.append(f"--batch_size {plan.micro} is larger than the {per_rank} validation "
                   f"clip views per process ({n_val} over {plan.world}): 1 validation batch "
                   "per process")
    return out


def check_files_exist(entries, root: str, split: str, limit: float,
                      failed: Optional[Dict[str, str]] = None) -> None:
    """Fail before any training when more clips cannot be read than the run may skip.

    ``failed`` ({path: reason}, from the preflight) defaults to the clips whose file is
    missing. The error names the first few; ``exc.samples[split]["skipped"]`` lists all,
    for the failed record.
    """
    from eval_encoder.video.manifest import invisible_note
    from eval_encoder.video.preflight import limit_message

    paths = [os.path.join(root, e.path) for e in entries]
    if failed is None:
        failed = {p: f"file not found{invisible_note(p)}" for p in paths if not os.path.isfile(p)}
    listed = [{"clip": i, "line": e.line, "path": p, "reason": failed[p]}
              for i, (e, p) in enumerate(zip(entries, paths)) if p in failed]
    if len(listed) > limit * len(entries):
        exc = RunFailed(limit_message(split, len(listed), len(entries), limit, listed))
        exc.samples = {split: {"expected": len(entries), "skipped": listed}}
        raise exc
    if listed:
        log.warning("%d %s clips cannot be read (first: %s: %s); they will be skipped and "
                    "listed in the record", len(listed), split, listed[0]["path"],
                    listed[0]["reason"])


def transform_spec(cfg: ProbeConfig, spec) -> TransformSpec:
    """The encoder's crop and normalisation, with the protocol's pixel rounding and brightness."""
    short = cfg.short_side_size or spec.input_size
    require(short >= spec.input_size, f"--short_side_size {short} is smaller than the crop {spec.input_size}")
    for name in ("round_pixels", "brightness_mode"):
        require(getattr(cfg, name) is not None, f"{name} is unset: the protocol was not resolved "
                f"(it fills {name} from --protocol)")
    return TransformSpec(input_size=spec.input_size, short_side=short,
                         mean=tuple(spec.mean), std=tuple(spec.std),
                         round_pixels=cfg.round_pixels, brightness_mode=cfg.brightness_mode)


def _skip_check(trainer: ProbeTrainer, split: str, clips: int, views: int, limit: float) -> None:
    """Fail (on every rank) once a split has more unreadable clips than allowed."""
    merged = {}
    for part in dist.all_gather_objects(trainer.counters.skipped[split]):
        merged.update(part)
    trainer.counters.skipped[split] = merged
    lost = {index // views for index in merged}  # one failed view loses its whole clip
    if len(lost) > limit * clips:
        from eval_encoder.video.preflight import limit_message

        listed = [dict(v, clip=k // views) for k, v in sorted(merged.items())]
        exc = RunFailed(limit_message(split, len(lost), clips, limit, listed))
        exc.samples = {split: {"expected": clips, "skipped": listed}}  # all, for the record
        raise exc


def eval_epochs(cfg: ProbeConfig) -> List[int]:
    """Epochs after which the heads are scored: every eval_freq-th and always the last."""
    last = cfg.default_epoch - 1
    return [e for e in range(cfg.default_epoch) if e % cfg.eval_freq == 0 or e == last]


def score_val(cfg: ProbeConfig, trainer: ProbeTrainer, val_loader, splits: Splits,
              modules: List, desc: str) -> Scored:
    """One pass over the validation split scoring ``modules``; checks exactly-once."""
    val_loader.set_epoch(0)
    keep = needs_probs(splits.card.metrics)
    scored = trainer.evaluate(val_loader, splits.val.views, modules, desc, keep_probs=keep)
    _skip_check(trainer, "val", len(splits.val.entries), splits.val.views, cfg.max_skip_fraction)
    skipped_clips = {k // splits.val.views for k in trainer.counters.skipped["val"]}
    check_scored_once(scored, len(splits.val.entries), skipped_clips)
    trainer.scored_val = len(scored)
    return scored


def log_epoch(trainer: ProbeTrainer, epoch: int, epochs: int, losses: Dict) -> None:
    """One line per epoch: the best head's loss, its learning rate, clips/s and the ETA."""
    live = [h for h in trainer.heads if losses.get(h.name) is not None]
    if not live:
        return
    best = min(live, key=lambda h: losses[h.name])
    seconds, clips = trainer.last_epoch["seconds"], trainer.last_epoch["clips"]
    eta = seconds * (epochs - epoch - 1)
    log.info("epoch %d (%d of %d): loss %.4f (head %s, lr %.2e), %.1f clips/s, ETA %dm%02ds",
             epoch, epoch + 1, epochs, losses[best.name], best.name,
             best.optimizer.param_groups[0]["lr"],
             clips / max(seconds, 1e-9), eta // 60, eta % 60)


@dataclass
class Training:
    """What the training loop works on: the trainer, its loaders and step plan, the head
    copies kept for ``--eval_mode end``, and the checkpointer (None: no checkpoints)."""

    trainer: ProbeTrainer
    loaders: tuple
    plan: StepPlan
    splits: Splits
    checkpointer: Optional[ckpt.Checkpointer] = None
    snapshots: List = field(default_factory=list)  # (epoch, head index, frozen copy)
    predictions: PredictionStore = field(default_factory=PredictionStore)
    start: ckpt.Position = ckpt.Position(0, 0)

    def state(self) -> Dict:
        """Everything a checkpoint holds besides the position (see eval_encoder/checkpoint.py)."""
        state = self.trainer.run_state()
        state["snapshots"] = [{"epoch": e, "head": i, "state": m.state_dict()}
                              for e, i, m in self.snapshots]
        state["rng"] = ckpt.rng_state()
        return state

    def restore(self, state: Dict, rank: int) -> None:
        """Continue from a checkpoint's state (``per_rank`` still encoded)."""
        state = dict(state, per_rank=[ckpt.decode(p) for p in json.loads(state["per_rank"])])
        self.trainer.restore(state, rank)
        for snap in state["snapshots"]:
            module = copy.deepcopy(self.trainer.heads[snap["head"]].module).cpu()
            module.load_state_dict(snap["state"])
            self.snapshots.append((snap["epoch"], snap["head"], module))
        ckpt.set_rng_state(state["rng"])
        self.start = ckpt.Position(*state["position"])

    def save(self, position: ckpt.Position) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(self.state(), position)

    def after_step(self, epoch: int, step: int) -> None:
        """A checkpoint inside the epoch when one is due (the epoch's end saves anyway)."""
        steps = self.plan.steps(len(self.splits.train))
        if self.checkpointer is not None and step < steps and self.checkpointer.due():
            self.save(ckpt.Position(epoch, step))


def train_and_score(cfg: ProbeConfig, run: Training) -> None:
    """Train every head; score each head after every evaluation epoch.

    ``--eval_mode end`` (default) keeps a copy of each live head at every evaluation epoch
    and scores all copies in one validation pass at the end: the validation clips are
    decoded and encoded once per run instead of once per evaluation, with the same numbers.
    ``--eval_mode epoch`` scores after each evaluation epoch, as upstream did. A resumed run
    starts at its checkpoint's position.
    """
    trainer, splits = run.trainer, run.splits
    train_loader, val_loader = run.loaders
    due = set(eval_epochs(cfg))
    mode = snapshot_budget(cfg, trainer, len(due))
    for epoch in range(run.start.epoch, cfg.default_epoch):
        first = run.start.step if epoch == run.start.epoch else 0
        train_loader.set_epoch(epoch, first * run.plan.accumulation)
        losses = trainer.train_epoch(train_loader, epoch, first, run.after_step)
        _skip_check(trainer, "train", len(splits.train.entries), 1, cfg.max_skip_fraction)
        for h in trainer.heads:
            h.history.append({"epoch": epoch, "train_loss": losses[h.name]})
        log_epoch(trainer, epoch, cfg.default_epoch, losses)
        live = [i for i, h in enumerate(trainer.heads) if h.alive]
        if epoch in due and live and mode == "epoch":
            modules = [trainer.heads[i].module for i in live]
            scored = score_val(cfg, trainer, val_loader, splits, modules, f"val {epoch}")
            _record_scores(run, scored, [(epoch, i) for i in live])
        elif epoch in due and live:
            run.snapshots += [(epoch, i, copy.deepcopy(trainer.heads[i].module).cpu())
                              for i in live]
        run.save(ckpt.Position(epoch + 1, 0))
    if run.snapshots:
        modules = [m.to(trainer.env.device) for _, _, m in run.snapshots]
        scored = score_val(cfg, trainer, val_loader, splits, modules,
                           f"val ({len(modules)} head snapshots)")
        _record_scores(run, scored, [(e, i) for e, i, _ in run.snapshots])


SNAPSHOT_BYTES = 2 << 30  # head copies kept for one validation pass at the end


def snapshot_budget(cfg: ProbeConfig, trainer: ProbeTrainer, evals: int) -> str:
    """``cfg.eval_mode``, unless keeping every head copy would exceed SNAPSHOT_BYTES."""
    if cfg.eval_mode != "end":
        return cfg.eval_mode
    per_head = sum(p.numel() * p.element_size() for p in trainer.heads[0].module.parameters())
    need = per_head * len(trainer.heads) * evals
    if need > SNAPSHOT_BYTES:
        log.warning("%d heads x %d evaluations would keep %.1f GiB of head copies; scoring "
                    "after each epoch instead (--eval_mode epoch)", len(trainer.heads), evals,
                    need / 2**30)
        cfg.sources["eval_mode"] = "fallback: head copies over the memory budget"
        cfg.eval_mode = "epoch"
    return cfg.eval_mode


def _record_scores(run: Training, scored: Scored, owners) -> None:
    """Put module j's accuracy into the history of head ``owners[j] = (epoch, head)``, and
    keep its per-clip predictions for the run's prediction file."""
    trainer = run.trainer
    run.predictions.add(scored, owners)
    for j, (epoch, i) in enumerate(owners):
        trainer.heads[i].history[epoch].update(accuracy(scored, j))
    for epoch in sorted({e for e, _ in owners}):
        best = max(trainer.heads[i].history[epoch]["top1"] for e, i in owners if e == epoch)
        log.info("epoch %d: best head top-1 %.2f%% over %d clips", epoch, best, len(scored))


def summarise_heads(trainer: ProbeTrainer, select: str):
    """Per-head best/last scores, and the reported head with how it was chosen."""
    rows = []
    for h in trainer.heads:
        evals = [e for e in h.history if e.get("top1") is not None and math.isfinite(e["top1"])]
        best = max(evals, key=lambda e: e["top1"], default=None)
        last = evals[-1] if evals and h.alive else None
        rows.append({
            "name": h.name, "lr": h.lr, "weight_decay": h.weight_decay, "status": h.status,
            "best_top1": best and best["top1"], "best_top5": best and best["top5"],
            "best_epoch": best and best["epoch"], "last_top1": last and last["top1"],
            "last_top5": last and last["top5"], "history": h.history})
    prefix = "best" if select == "best_val" else "last"
    candidates = [r for r in rows if r["status"] == "ok" and r[f"{prefix}_top1"] is not None]
    if not candidates:
        raise RunFailed("no head finished with a finite score: " +
                        "; ".join(f"{r['name']}: {r['status']}" for r in rows))
    chosen = max(candidates, key=lambda r: r[f"{prefix}_top1"])
    reported = {
        "head": chosen["name"], "top1": chosen[f"{prefix}_top1"], "top5": chosen[f"{prefix}_top5"],
        "epoch": chosen["best_epoch"] if prefix == "best" else chosen["history"][-1]["epoch"],
        "selection": select, "chosen_on": "val",
        "note": ("best epoch and best head chosen on the validation split that is reported "
                 "(the upstream protocol; optimistic by the selection)") if prefix == "best" else
                "last epoch; the head is chosen on the validation split that is reported",
    }
    return rows, reported


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


def fill_record(record: Dict, cfg: ProbeConfig, splits: Splits, encoder, trainer: ProbeTrainer) -> None:
    """Everything a reader needs to trust and reproduce the number."""
    spec = encoder.spec
    card = splits.card
    record["dataset"] = {
        "name": card.name, "version": card.version, "num_classes": card.num_classes,
        "train_manifest": splits.train_csv, "val_manifest": splits.val_csv,
        "train_manifest_sha256": file_sha256(splits.train_csv),
        "val_manifest_sha256": file_sha256(splits.val_csv)}
    frames = spec.num_frames or cfg.num_frames
    budget = (cfg.codec.K_keep if spec.tokens_per_frame is None
              else frames * (spec.tokens_per_frame + spec.prefix_tokens))
    cost = compute.encoder_cost(encoder, frames, budget)
    record["encoder"] = {"family": ENCODERS.canonical(cfg.model_family), "model_name": cfg.model_name,
                         "model_weight": cfg.model_weight,
                         # what the encoder says it loaded (not what was asked for)
                         "weights": str(getattr(encoder, "weights", None)
                                        or "not reported by the encoder"),
                         "parameters": compute.parameter_count(encoder),
                         "spec": spec.to_dict()}
    record.update({
        "method": cfg.method_label or f"{record['encoder']['family']}/{cfg.model_name}",
        "arch": cfg.arch_label or (cost.arch if cost else ""), "res": spec.input_size,
        "frames": frames, "token_budget": budget})
    c = trainer.counters
    views = splits.val.views
    record["samples"] = {
        "train": {"expected": len(splits.train.entries), "skipped": list(c.skipped["train"].values()),
                  "flags": trainer.flag_counts("train"),
                  "truncated": trainer.truncated_clips("train", splits.train)},
        "val": {"expected": len(splits.val.entries), "scored": getattr(trainer, "scored_val", 0),
                "views_per_clip": views,
                "skipped": [dict(v, clip=k // views) for k, v in sorted(c.skipped["val"].items())],
                "flags": trainer.flag_counts("val"),
                "truncated": trainer.truncated_clips("val", splits.val)}}
    # summed over ranks: encoder passes per batch is the figure that matters
    parts = dist.all_gather_objects((c.encoder_passes, c.batches))
    record["encoder_passes"] = {k: sum(p[0][k] for p in parts) for k in c.encoder_passes}
    record["batches"] = {k: sum(p[1][k] for p in parts) for k in c.batches}
    record["compute"] = compute_block(trainer, cost, budget, splits.val.views)
    record["config"] = rec.config_block(cfg, codec=spec.clip_source == "codec")
    record["sources"] = dict(cfg.sources)


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
    return {"tokens_per_clip": tokens, "encoder": encoder,
            "val_views_per_clip": views,
            "gflops_per_val_clip": round(gflops * views, 4) if gflops is not None else None,
            "train": compute.throughput(clocks, "train"),
            "val": compute.throughput(clocks, "val", views),
            "memory": compute.max_over([p[1] for p in parts])}


def weights_identity(encoder, cfg: ProbeConfig) -> Dict:
    """``weights_path`` (absolute), ``weights_sha256`` and ``weight_files`` of what the encoder
    loaded; digests are remembered by file identity under ``<save_report>/cache``."""
    found = rec.describe_weights(getattr(encoder, "weights", None),
                                 rec.weight_hash_cache(cfg.save_report))
    out = {"weights_path": found["path"], "weights_sha256": found["sha256"],
           "weight_files": found["files"]}
    if "note" in found:
        out["weights_note"] = found["note"]
    return out


def write_outputs(record: Dict, cfg: ProbeConfig) -> None:
    """The JSON record, plus upstream's one-line report for old tooling."""
    path = rec.write_record(record, cfg.save_report)
    log.info("run record: %s", path)
    if record["status"] == "complete":
        weight = os.path.basename(os.path.normpath(cfg.model_weight))
        txt = os.path.join(cfg.save_report, f"report_attentive_probe_{weight}.txt")
        os.makedirs(cfg.save_report, exist_ok=True)
        with open(txt, "a", encoding="utf-8") as fh:
            fh.write(f"{cfg.dataset} {record['reported']['top1']}\n")


def prepare_training(cfg: ProbeConfig, card: DatasetCard, manifests: Manifests, encoder, env,
                     config_hash: str) -> Training:
    """Data, loaders, step plan, heads, trainer and checkpointer of a run."""
    spec = encoder.spec
    splits = build_splits(cfg, card, manifests, spec)
    loaders, plan, backend = build_loaders(cfg, splits, spec, env)
    steps = plan.steps(len(splits.train))
    heads = make_heads(head_grid(cfg.default_lr_list, cfg.default_weight_decay), spec.embed_dim,
                       card.num_classes, steps * cfg.default_epoch, cfg.default_min_lr,
                       env.device, cfg.seed)
    trainer = ProbeTrainer(encoder, heads, env, cfg.smoothing, cfg.clip_grad, card.num_classes,
                           cfg.num_tokens, cfg.print_freq, accumulation=plan.accumulation)
    log.info("%s on %s: %d train / %d val clips, %d heads, %d steps/epoch x %d epochs (global "
             "batch %d: %d processes x %d micro-batches of %d), %s loader", cfg.model_name,
             card.name, len(splits.train.entries), len(splits.val.entries), len(heads), steps,
             cfg.default_epoch, plan.global_batch, env.world_size, plan.accumulation, plan.micro,
             backend)
    folder = (Path(cfg.checkpoint_dir) / card.name / config_hash if cfg.checkpoint_dir
              else ckpt.default_dir(cfg.save_report, card.name, config_hash))
    saver = ckpt.Checkpointer(folder, cfg.checkpoint_every_min, config_hash,
                              semantic_config(cfg), env)
    return Training(trainer, loaders, plan, splits, saver)


def semantic_config(cfg: ProbeConfig) -> Dict:
    """The options that change results (those the config hash covers), for checkpoints."""
    return {k: v for k, v in cfg.to_dict().items() if k not in rec.RUNTIME_KEYS}


def resume(cfg: ProbeConfig, training: Training, env, config_hash: str) -> Optional[Dict]:
    """Load ``--resume_checkpoint`` or the newest usable checkpoint of this configuration;
    returns where the run continues from (None: from the start)."""
    if cfg.resume_checkpoint:
        path = Path(cfg.resume_checkpoint)
        found = (path, ckpt.load(path))
    else:
        found = ckpt.newest_usable(training.checkpointer.folder)
    if found is None:
        return None
    path, state = found
    ckpt.check_matches(state, path, config_hash, semantic_config(cfg), env.world_size)
    training.restore(state, env.rank)
    log.info("resuming from %s: epoch %d, step %d", path, *state["position"])
    return {"path": str(path), "epoch": training.start.epoch, "step": training.start.step}


def remove_checkpoints(checkpointer: Optional[ckpt.Checkpointer]) -> None:
    """A complete run's record is written: its checkpoints are no longer needed."""
    if checkpointer is None:
        return
    for path in ckpt.find(checkpointer.folder):
        path.unlink(missing_ok=True)


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
    trainer, splits = training.trainer, training.splits
    names = [h.name for h in trainer.heads]
    owner = (record["reported"]["epoch"], names.index(record["reported"]["head"]))
    if owner not in training.predictions.by_owner:  # scored before a resume: not kept
        record["predictions"], record["metrics"] = None, None
        return
    folder = rec.records_dir(cfg.save_report, splits.card.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.predictions.npz"
    name, digest = training.predictions.write(str(path), owner, splits.val.entries, names)
    chosen = training.predictions.by_owner[owner]
    record["predictions"] = {"file": name, "sha256": digest, "head": record["reported"]["head"],
                             "epoch": owner[0], "clips": len(chosen)}
    record["metrics"] = compute_metrics(chosen, splits.card.metrics)


def train_run(cfg: ProbeConfig, env, record: Dict, requested_hash: str,
              progress: Progress) -> None:
    """Build, train, score and fill the record of one run (see :func:`run`)."""
    card = resolve_dataset(cfg)
    progress.manifests = read_manifests(cfg, card)
    encoder = build_encoder(cfg).to(env.device)
    check_encoder_flags(cfg, encoder.spec)
    training = prepare_training(cfg, card, progress.manifests, encoder, env, requested_hash)
    progress.training = training
    record["resumed_from"] = resume(cfg, training, env, requested_hash)
    train_and_score(cfg, training)
    fill_record(record, cfg, training.splits, encoder, training.trainer)
    record["batch"] = training.plan.describe()
    record["checkpoints"] = training.checkpointer.describe()
    record["heads"], record["reported"] = summarise_heads(training.trainer, cfg.select)
    if env.is_main:
        attach_predictions(record, cfg, training)
        record["encoder"].update(weights_identity(encoder, cfg))
    record["status"] = "complete"


def run(cfg: ProbeConfig, requested_hash: str) -> Dict:
    """Run one probe configuration end to end; returns the record (rank 0 writes it)."""
    start = time.time()
    env = dist.init(cfg.device)
    record = base_record(cfg, requested_hash, env, start)
    progress = Progress()
    try:
        train_run(cfg, env, record, requested_hash, progress)
    except Exception as exc:  # any failure still leaves a record saying why, then re-raises
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["wall_time_s"] = round(time.time() - start, 2)
        failure_samples(record, progress, exc)
        if env.is_main:
            write_outputs(record, cfg)
        else:  # rank 0 may only see the broken connection: say here what broke
            log.error("rank %d failed: %s", env.rank, record["error"])
        raise
    record["wall_time_s"] = round(time.time() - start, 2)
    if env.is_main:
        write_outputs(record, cfg)
        remove_checkpoints(progress.training.checkpointer)
        r = record["reported"]
        log.info("%s %s: top-1 %.2f%% top-5 %.2f%% (head %s, epoch %s, chosen on %s)", cfg.dataset,
                 cfg.model_name, r["top1"], r["top5"], r["head"], r["epoch"], r["chosen_on"])
    return record


def main(argv: Optional[Sequence[str]] = None, prog: str = "attentive_probe.py",
         base: Optional[Dict] = None) -> int:
    """Command-line entry: parse, run, exit non-zero with a one-line reason on failure."""
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv and not base:  # nothing asked for: say how, rather than run the defaults
        build_parser(prog).print_usage()
        print(f"{prog}: give at least --dataset and --data_root (--help lists every flag)")
        return 2
    try:
        cfg = parse_config(argv, prog=prog, base=base)
        setup_logging()  # with the level -v/-q asked for
        load_card(cfg.dataset)  # a misspelt dataset leaves no record under its misspelt name
        check_names(cfg)  # nor does a misspelt family or model name
    except (ConfigError, ManifestError, RegistryError, MissingData) as exc:
        log.error("%s", exc)
        return 2
    requested = rec.config_hash(cfg.to_dict())
    try:
        run(cfg, requested)
    except (RunFailed, ConfigError, ValueError, RuntimeError, KeyError, OSError) as exc:
        log.error("run failed: %s", exc)
        return 1
    finally:
        dist.shutdown()
    return 0
