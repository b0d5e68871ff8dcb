"""Training a probe run's heads: build the trainer and its checkpointer, continue from a
checkpoint, train every head on one encoder pass per batch, and score the heads on the
validation split at the evaluation epochs (in one pass at the end by default).
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from eval_encoder import checkpoint as ckpt
from eval_encoder import record as rec
from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.probe.cached import attach_cache
from eval_encoder.probe.data import (
    Manifests,
    Splits,
    build_loaders,
    build_splits,
    heldout_loader,
    skip_check,
)
from eval_encoder.probe.live import RunLog
from eval_encoder.probe.monitor import score_monitor
from eval_encoder.probe.heads.options import kind_names
from eval_encoder.probe.heldout import HELDOUT, chosen_snapshots, score_heldout
from eval_encoder.probe.kinds import make_run_heads, untrained
from eval_encoder.probe.pooled import fit_untrained
from eval_encoder.probe.predictions import PredictionStore, Scored, needs_probs
from eval_encoder.probe.sampling import PublishedSampling
from eval_encoder.probe.schedules import plan_of
from eval_encoder.probe.trainer import (
    ProbeTrainer,
    accuracy,
    check_scored_once,
)
from eval_encoder.video.manifest import (
    DatasetCard,
)
from eval_encoder.video.steps import StepPlan

log = logging.getLogger("eval_encoder.run")


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
    skip_check(trainer, "val", len(splits.val.entries), splits.val.views, cfg.max_skip_fraction)
    skipped_clips = {k // splits.val.views for k in trainer.counters.skipped["val"]}
    check_scored_once(scored, len(splits.val.entries), skipped_clips)
    trainer.scored_val = len(scored)
    return scored


def log_epoch(trainer: ProbeTrainer, epoch: int, epochs: int, losses: Dict) -> None:
    """One line per epoch: a fixed head's loss and learning rate (the first live head of the
    grid, named, so the line does not switch heads), the lowest loss over the heads with its
    head when there are several, clips/s and the ETA."""
    live = [h for h in trainer.heads if losses.get(h.name) is not None]
    if not live:
        return
    fixed, best = live[0], min(live, key=lambda h: losses[h.name])
    lowest = (f"; lowest of {len(live)} heads {losses[best.name]:.4f}, head {best.name}"
              if len(live) > 1 else "")
    seconds, clips = trainer.last_epoch["seconds"], trainer.last_epoch["clips"]
    eta = seconds * (epochs - epoch - 1)
    log.info("epoch %d (%d of %d): loss %.4f (head %s, lr %.2e%s), %.1f clips/s, ETA %dm%02ds",
             epoch, epoch + 1, epochs, losses[fixed.name], fixed.name,
             fixed.optimizer.param_groups[0]["lr"], lowest,
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
    published: Optional[PublishedSampling] = None  # --val_sampling published: its draw
    live: RunLog = field(default_factory=RunLog.off)  # --report_to (probe/live.py)
    live_id: Optional[str] = None  # the live logs' id: the run id of the run that began them
    heldout: Optional[object] = None  # --select_on heldout: the held-out clips' loader
    refit: Optional[object] = None  # --refit: the refit head (probe/refit.py), once scored

    def state(self) -> Dict:
        """Everything a checkpoint holds besides the position (see eval_encoder/checkpoint.py)."""
        state = self.trainer.run_state()
        state["snapshots"] = [{"epoch": e, "head": i, "state": m.state_dict()}
                              for e, i, m in self.snapshots]
        state["rng"] = ckpt.rng_state()
        state["live_log"] = self.live_id or ""
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
        self.live_id = state.get("live_log") or self.live_id
        self.start = ckpt.Position(*state["position"])

    def save(self, position: ckpt.Position) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(self.state(), position)

    def after_step(self, epoch: int, step: int) -> None:
        """A checkpoint inside the epoch when one is due (the epoch's end saves anyway)."""
        self.live.step(epoch, step)
        steps = self.plan.steps(len(self.splits.train))
        if self.checkpointer is not None and step < steps and self.checkpointer.due():
            self.save(ckpt.Position(epoch, step))


def train_and_score(cfg: ProbeConfig, run: Training) -> None:
    """Train every head; score each head after every evaluation epoch.

    ``--eval_mode end`` (default) keeps a copy of each live head at every evaluation epoch
    and scores all copies in one validation pass at the end: the validation clips are
    decoded and encoded once per run instead of once per evaluation, with the same numbers.
    ``--eval_mode epoch`` scores after each evaluation epoch, as upstream did. A resumed run
    starts at its checkpoint's position. Heads that train nothing (knn) are fitted after the
    training and scored once, in the last evaluation's pass, under the last epoch; a run of
    such heads only decodes no training batch.
    """
    trainer, splits = run.trainer, run.splits
    _, val_loader, monitor_loader = run.loaders
    due = set(eval_epochs(cfg))
    mode = snapshot_budget(cfg, trainer, len(due))
    last = cfg.default_epoch - 1
    epochs = cfg.default_epoch if any(h.trains for h in trainer.heads) else run.start.epoch
    for epoch in range(run.start.epoch, epochs):
        train_one_epoch(cfg, run, epoch)
        score_monitor(trainer, monitor_loader, epoch)
        live = trainer.training_heads()
        if epoch in due:
            _heldout(cfg, run, [(epoch, i) for i in live])
        if epoch in due and mode == "epoch" and (live or epoch == last):
            owners = [(epoch, i) for i in live] + (fitted(cfg, run, epoch) if epoch == last else [])
            _heldout(cfg, run, owners[len(live):])
            scored = score_val(cfg, trainer, val_loader, splits,
                               [trainer.heads[i].module for _, i in owners], f"val {epoch}")
            _record_scores(run, scored, owners)
        elif epoch in due and live:
            run.snapshots += [(epoch, i, copy.deepcopy(trainer.heads[i].module).cpu())
                              for i in live]
        run.save(ckpt.Position(epoch + 1, 0))
    extra = fitted(cfg, run, last) if mode != "epoch" or epochs <= run.start.epoch else []
    _heldout(cfg, run, extra)
    pairs = [((e, i), m) for e, i, m in run.snapshots]
    pairs += [((e, i), trainer.heads[i].module) for e, i in extra]
    pairs = on_val(cfg, trainer, pairs)
    if pairs:
        modules = [m.to(trainer.env.device) for _, m in pairs]
        scored = score_val(cfg, trainer, val_loader, splits, modules,
                           f"val ({len(modules)} head snapshots)")
        _record_scores(run, scored, [owner for owner, _ in pairs])


def train_one_epoch(cfg: ProbeConfig, run: Training, epoch: int) -> None:
    """Train every live head for ``epoch`` (from the checkpoint's step when resuming into it),
    then write each trained head's loss into its history and the epoch's log lines."""
    trainer, train_loader = run.trainer, run.loaders[0]
    first = run.start.step if epoch == run.start.epoch else 0
    train_loader.set_epoch(epoch, first * run.plan.accumulation)
    losses = trainer.train_epoch(train_loader, epoch, first, run.after_step)
    skip_check(trainer, "train", len(run.splits.train.entries), 1, cfg.max_skip_fraction)
    for h in trainer.heads:
        if h.trains:
            h.history.append({"epoch": epoch, "train_loss": losses[h.name]})
    log_epoch(trainer, epoch, cfg.default_epoch, losses)
    run.live.epoch(epoch)


def _heldout(cfg: ProbeConfig, run: Training, owners) -> None:
    """Score the held-out clips with ``owners`` (nothing unless --select_on heldout); too
    many unreadable ones fail the run, as for validation."""
    held = run.splits.heldout
    if run.heldout is not None and owners:
        score_heldout(run.trainer, run.heldout, held.views, owners)
        skip_check(run.trainer, HELDOUT, len(held.entries), held.views, cfg.max_skip_fraction)


def on_val(cfg: ProbeConfig, trainer: ProbeTrainer, pairs: List) -> List:
    """The (owner, module) pairs the end's validation pass scores: all, unless --select_on
    heldout without --heldout_val_max, which scores each kind's held-out choice only."""
    if cfg.select_on != HELDOUT or cfg.heldout_val_max:
        return pairs
    chosen = set(chosen_snapshots(trainer.heads, cfg.select))
    return [(owner, m) for owner, m in pairs if owner in chosen]


def fitted(cfg: ProbeConfig, run: Training, epoch: int) -> List:
    """(epoch, head) of every head that trains nothing, fitted now (one pass over the train
    split in the evaluation view, unless none: see probe/pooled.py)."""
    heads = untrained(run.trainer.heads)
    if heads:
        fit_untrained(cfg, run.splits, run.trainer, run.trainer.encoder.spec,
                      [run.trainer.heads[i] for i in heads])
    return [(epoch, i) for i in heads]


def check_knn_k(cfg: ProbeConfig, train_clips: int) -> None:
    """A k larger than the train split is refused before anything trains."""
    for k in cfg.knn_k if "knn" in kind_names(cfg) else ():
        if k > train_clips:
            raise ConfigError(f"--knn_k {k}: more neighbours than the {train_clips} train "
                              f"clips; give values of --knn_k up to {train_clips}")


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
    """Put module j's accuracy (and under ``--val_sampling published`` its published-sampled
    accuracy) into the history of head ``owners[j] = (epoch, head)``, and keep its per-clip
    predictions for the run's prediction file."""
    trainer = run.trainer
    run.predictions.add(scored, owners)
    scores = [accuracy(scored, j) for j in range(len(owners))]
    run.live.evaluation(owners, scores)
    for j, (epoch, i) in enumerate(owners):
        entry = history_at(trainer.heads[i], epoch)
        entry.update(scores[j])
        if run.published is not None:
            entry.update(run.published.scores(scored.module(j), epoch, i))
    for epoch in sorted({e for e, _ in owners}):
        best = max(history_at(trainer.heads[i], epoch)["top1"] for e, i in owners if e == epoch)
        log.info("epoch %d: best head top-1 %.2f%% over %d clips", epoch, best, len(scored))


def history_at(head, epoch: int) -> Dict:
    """A head's history entry of ``epoch`` (added for a head that trains nothing)."""
    for entry in head.history:
        if entry["epoch"] == epoch:
            return entry
    head.history.append({"epoch": epoch, "train_loss": None})
    return head.history[-1]


def prepare_training(cfg: ProbeConfig, card: DatasetCard, manifests: Manifests, encoder, env,
                     config_hash: str) -> Training:
    """Data, loaders, step plan, heads, trainer and checkpointer of a run."""
    spec = encoder.spec
    splits = build_splits(cfg, card, manifests, spec)
    loaders, plan, backend = build_loaders(cfg, splits, spec, env)
    steps = plan.steps(len(splits.train))
    heads = make_run_heads(cfg, spec, card.num_classes, steps * cfg.default_epoch, env.device,
                           plan_of(cfg, steps))
    trainer = new_trainer(cfg, encoder, heads, env, plan, card.num_classes)
    attach_cache(cfg, splits, trainer)
    log.info("%s on %s: %d train / %d val clips, %d heads, %d steps/epoch x %d epochs (global "
             "batch %d: %d processes x %d micro-batches of %d), %s loader", cfg.model_name,
             card.name, len(splits.train.entries), len(splits.val.entries), len(heads), steps,
             cfg.default_epoch, plan.global_batch, env.world_size, plan.accumulation, plan.micro,
             backend)
    root = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else Path(cfg.save_report)
    folder = (root / card.name / config_hash if cfg.checkpoint_dir
              else ckpt.default_dir(cfg.save_report, card.name, config_hash))
    saver = ckpt.Checkpointer(folder, cfg.checkpoint_every_min, config_hash,
                              semantic_config(cfg), env, root=root)
    return Training(trainer, loaders, plan, splits, saver,
                    heldout=heldout_loader(cfg, splits, spec, env))


def new_trainer(cfg: ProbeConfig, encoder, heads: List, env, plan: StepPlan,
                num_classes: int) -> ProbeTrainer:
    """A trainer of ``heads`` on ``encoder`` with the run's loss, clipping, accumulation,
    segments and view fusion (the grid's, and --refit's one head: probe/refit.py)."""
    return ProbeTrainer(encoder, heads, env, cfg.smoothing, cfg.clip_grad, num_classes,
                        cfg.num_tokens, cfg.print_freq, accumulation=plan.accumulation,
                        tokens_from=cfg.sources.get("num_tokens", "--num_tokens"),
                        segments=cfg.num_segments or 1, fusion=cfg.view_fusion or "logits")


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
    training.checkpointer.adopt(path, state)
    log.info("resuming from %s: epoch %d, step %d", path, *state["position"])
    return {"path": str(path), "epoch": training.start.epoch, "step": training.start.step}


def remove_checkpoints(checkpointer: Optional[ckpt.Checkpointer]) -> None:
    """A complete run's record is written: its checkpoints, head copies and the checkpoint
    folders they leave empty are no longer needed."""
    if checkpointer is not None:
        checkpointer.remove()
