"""``--refit``: the head chosen on the held-out clips, trained again on every training clip.

After ``--select_on heldout`` has chosen the reported kind's (head, epoch), the chosen
(lr, wd) of that kind is trained again from a fresh head (the seed the grid gave that head:
``--seed`` + its place among the run's heads) on the WHOLE training manifest, held-out clips
included, for the chosen number of epochs (chosen epoch + 1), with the run's schedules over
those epochs' steps, then scored once on the validation split; that score is reported (as
CLIP_benchmark and DINOv2's linear evaluation do). The record keeps the selection and the
grid snapshot's validation score beside it (``reported.refit``, ``reported.grid_snapshot``).

Only trained kinds are refit: a run whose reported kind is knn is refused. The refit phase
keeps no checkpoint of its own: a run killed in it resumes the grid at its last checkpoint
(the end of its training) and trains the refit head again from its start, to the same numbers
(the head's seed, the batches' order and the clips' draws depend on the seed and the epoch
only).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Dict, List, Optional

from eval_encoder import distributed as dist
from eval_encoder.config import ProbeConfig, require
from eval_encoder.probe.data import skip_check, transform_spec
from eval_encoder.probe.heads.options import head_options, kinds_of
from eval_encoder.probe.heldout import HELDOUT
from eval_encoder.probe.schedules import plan_of
from eval_encoder.probe.trainer import HeadState, ProbeTrainer, RunFailed, accuracy, make_heads
from eval_encoder.probe.training import Training, new_trainer, score_val
from eval_encoder.video.dataset import ClipDataset
from eval_encoder.video.loader import make_loader, pick_backend
from eval_encoder.video.steps import train_batches

log = logging.getLogger("eval_encoder.run")
REFIT = "refit"


def check_flags(cfg: ProbeConfig) -> None:
    """``--refit`` retrains a head chosen on held-out clips: only with --select_on heldout,
    and only for a reported kind that trains (not knn)."""
    if not cfg.refit:
        return
    require(cfg.select_on == HELDOUT, "--refit trains the head chosen on the held-out clips "
            "again on the whole train split: it needs --select_on heldout (with --select_on "
            "val no clip is held out to give back)")
    first = kinds_of(cfg)[0]
    require(first.trains, f"--refit: the reported kind {first.name} trains nothing, so there "
            "is nothing to refit; put a trained kind (ov, vjepa2, linear) first in --probe_head")


# ----------------------------------------------------------------------------- its parts

def whole_train(cfg: ProbeConfig, entries: list, run: Training) -> ClipDataset:
    """Every clip of the training manifest (held-out ones included), in manifest order,
    with the training view and augmentation of the grid's training split."""
    return ClipDataset(list(entries), run.splits.video_root, run.splits.train.source,
                       train=True, seed=cfg.seed, augment=cfg.train_augment or "ov")


def refit_loader(cfg: ProbeConfig, data: ClipDataset, run: Training):
    """This rank's training batches of ``data`` under the run's step plan (the grid's
    batches, over all the clips)."""
    env, spec = run.trainer.env, run.trainer.encoder.spec

    def batches(epoch):
        return train_batches(len(data), epoch, env.rank, run.plan, cfg.seed)

    backend = cfg.sources.get("loader_backend") or pick_backend(cfg.loader, env.device)
    return make_loader(data, batches, batch_size=cfg.batch_size,
                       tspec=transform_spec(cfg, spec), backend=backend, device=env.device,
                       workers=cfg.dali_py_num_workers, dali_threads=cfg.dali_num_threads,
                       seed=cfg.seed,
                       extras_keys=list(getattr(data.source, "extras_keys", ())))


def fresh_head(cfg: ProbeConfig, run: Training, index: int, steps: int,
               epochs: int) -> HeadState:
    """A new head of grid head ``index``'s kind and (lr, wd), initialised as the grid
    initialised it (seed ``cfg.seed + index``), its schedules over ``epochs`` x ``steps``."""
    grid, spec = run.trainer.heads[index], run.trainer.encoder.spec
    kinds = kinds_of(cfg)
    kind = next(k for k in kinds if k.name == grid.kind)
    plan = dataclasses.replace(plan_of(cfg, steps), total=steps * epochs)
    (head,) = make_heads([(grid.lr, grid.weight_decay)], spec.embed_dim,
                         run.splits.card.num_classes, steps * epochs, cfg.default_min_lr,
                         run.trainer.env.device, cfg.seed + index, kind=kind.name,
                         options=head_options(cfg, kind, spec), plan=plan,
                         named=len(kinds) > 1)
    head.name = f"{REFIT} {grid.name}"
    return head


# ----------------------------------------------------------------------------- the phase

def refit(cfg: ProbeConfig, run: Training, entries: list, reported: Dict) -> Dict:
    """Train the ``reported`` head's (lr, wd) again on ``entries`` (the whole training
    manifest) for its chosen epochs, score it once on val; returns the record's parts."""
    start = time.perf_counter()
    index = [h.name for h in run.trainer.heads].index(reported["head"])
    epochs = reported["epoch"] + 1
    data = whole_train(cfg, entries, run)
    steps = run.plan.steps(len(data))
    trainer = new_trainer(cfg, run.trainer.encoder, [fresh_head(cfg, run, index, steps, epochs)],
                          run.trainer.env, run.plan, run.splits.card.num_classes)
    log.info("--refit: %s again on all %d training clips (%d held out before), %d epochs of "
             "%d steps", reported["head"], len(data.entries), len(run.splits.heldout.entries),
             epochs, steps)
    losses = train_refit(cfg, trainer, refit_loader(cfg, data, run), len(data.entries), epochs)
    head = trainer.heads[0]
    if not head.alive:
        raise RunFailed(f"--refit: the refit head {head.name} stopped: {head.status}")
    scored = score_val(cfg, trainer, run.loaders[1], run.splits, [head.module], "val (refit)")
    run.predictions.add(scored, [(reported["epoch"], len(run.trainer.heads))])
    run.refit = head
    return {"scores": accuracy(scored, 0), "scored": len(scored), "losses": losses,
            "train_clips": len(data.entries), "steps": steps * epochs, "epochs": epochs,
            "head": head, "trainer": trainer, "wall_s": time.perf_counter() - start}


def train_refit(cfg: ProbeConfig, trainer: ProbeTrainer, loader, clips: int,
                epochs: int) -> List[Optional[float]]:
    """``epochs`` epochs of the one refit head from its start; its loss per epoch."""
    losses = []
    for epoch in range(epochs):
        loader.set_epoch(epoch, 0)
        losses.append(trainer.train_epoch(loader, epoch)[trainer.heads[0].name])
        skip_check(trainer, "train", clips, 1, cfg.max_skip_fraction)
        log.info("refit epoch %d (%d of %d): loss %.4f", epoch, epoch + 1, epochs,
                 float("nan") if losses[-1] is None else losses[-1])
    return losses


# ----------------------------------------------------------------------------- the record

def refit_record(record: Dict, done: Dict, grid_trainer: ProbeTrainer) -> None:
    """The reported head becomes the refit one (the selection and the grid snapshot's
    validation score stay beside it); ``compute.refit``: what the phase cost."""
    old, head = record["reported"], done["head"]
    snapshot = {k: old.get(k) for k in ("head", "epoch", "top1", "top5")}
    record["reported"] = dict(
        old, **done["scores"], grid_snapshot=snapshot,
        refit={"lr": head.lr, "wd": head.weight_decay, "kind": head.kind,
               "epochs": done["epochs"], "train_clips": done["train_clips"],
               "steps": done["steps"], "train_loss": done["losses"]},
        note="head and epoch chosen on the held-out slice of the training manifest; that "
             "(lr, wd) then trained again from its initialisation on every training clip for "
             "the chosen epochs (--refit) and scored once on val: the reported number; "
             "grid_snapshot: the chosen grid snapshot's val score")
    if "selection" in record:
        record["selection"]["refit_top1"] = done["scores"]["top1"]
    if record.get("reported_by_kind"):
        record["reported_by_kind"][head.kind] = record["reported"]
    record["compute"]["refit"] = refit_cost(grid_trainer, done)


def refit_cost(grid: ProbeTrainer, done: Dict) -> Dict:
    """The refit phase's share of the run's loop work: clip views encoded and loop seconds
    (its training and validation passes against all passes of the run, summed over ranks),
    encoder passes (batches) and the phase's wall time on this rank."""
    trainer = done["trainer"]
    parts = dist.all_gather_objects((grid.clock.state(), trainer.clock.state(),
                                     trainer.counters.encoder_passes))
    mine = _sums([p[1] for p in parts])
    every = _sums([p[0] for p in parts] + [p[1] for p in parts])
    return {"clip_views_encoded": int(mine["samples"]),
            "encoder_passes": {k: sum(p[2].get(k, 0) for p in parts) for k in ("train", "val")},
            "seconds": round(mine["seconds"], 3), "wall_s": round(done["wall_s"], 3),
            "encoded_share": round(mine["samples"] / max(every["samples"], 1), 4),
            "time_share": round(mine["seconds"] / max(every["seconds"], 1e-9), 4),
            "note": "--refit: one head trained again over every training clip for the chosen "
                    "epochs, then one validation pass; shares are of all loop passes of the "
                    "run (grid and refit), summed over ranks"}


def _sums(clocks: List[Dict[str, Dict[str, float]]]) -> Dict[str, float]:
    """Samples and seconds over every split of ``clocks``."""
    return {key: sum(c[s][key] for c in clocks for s in c) for key in ("samples", "seconds")}
