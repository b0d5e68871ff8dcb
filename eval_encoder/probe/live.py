"""A training run's live log (see eval_encoder/livelog/): what the trainer has, as the
LiveLog takes it, at the global optimiser step.

The global step counts optimiser steps from 1: step ``s`` of epoch ``e`` (``s`` steps done
in it) is ``e x steps per epoch + s``, so the run's last step is its number of optimiser
steps and a resumed run continues the count. A head's loss at a step is its mean over the
step's clips (all ranks); its lr the one the step ran at. Evaluations and the epoch's
clips/s and loader wait share sit at the step that ends their epoch, ``(e + 1) x steps per
epoch``, on the same axis as the training curves (``--eval_mode end`` scores every epoch's
head copies at the end: each is logged at its own epoch's step). Rank 0 only; the figures of
an epoch are rank 0's clock (clips/s: the clips of all ranks over rank 0's time).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from eval_encoder.config import ProbeConfig
from eval_encoder.livelog import LiveLog, LogPlace, backend_names, open_live_log


class RunLog:
    """The trainer's side of a LiveLog: heads, losses, rates and clocks turned into calls."""

    def __init__(self, live: LiveLog, trainer=None, steps_per_epoch: int = 1):
        self.live, self.trainer, self.steps = live, trainer, max(steps_per_epoch, 1)
        self.lrs = self.rates() if live.active else {}
        self.clock = self.train_clock() if live.active else (0.0, 0.0)

    @classmethod
    def off(cls) -> "RunLog":
        return cls(LiveLog())

    def finish(self, record: Dict) -> None:
        self.live.finish(record)

    def close(self) -> None:
        """A failed run: flush and close what was logged."""
        self.live.close(ok=False)

    def global_step(self, epoch: int, step: int) -> int:
        return epoch * self.steps + step

    def rates(self) -> Dict[str, float]:
        """The lr each training head's next step runs at."""
        return {h.name: h.optimizer.param_groups[0]["lr"] for h in self.trainer.heads
                if h.alive and h.trains}

    def train_clock(self) -> Tuple[float, float]:
        clock = self.trainer.clock.splits.get("train")
        return (clock.seconds, clock.wait_s) if clock is not None else (0.0, 0.0)

    def step(self, epoch: int, step: int) -> None:
        """After optimiser step ``step`` of ``epoch`` (``step`` steps done in it)."""
        if not self.live.active:
            return
        loss, ran = self.trainer.last_step
        losses = {h.name: float(loss[i] / ran[i]) for i, h in enumerate(self.trainer.heads)
                  if ran[i] > 0}
        self.live.step(self.global_step(epoch, step), losses,
                       {h: lr for h, lr in self.lrs.items() if h in losses})
        self.lrs = self.rates()

    def epoch(self, epoch: int) -> None:
        """After epoch ``epoch`` trained: its clips/s and loader wait share."""
        if not self.live.active:
            return
        seconds, wait = self.train_clock()
        spent, waited = seconds - self.clock[0], wait - self.clock[1]
        self.clock = (seconds, wait)
        last = self.trainer.last_epoch
        self.live.epoch(self.global_step(epoch + 1, 0), last["clips"] / max(last["seconds"], 1e-9),
                        waited / spent if spent > 0 else None)

    def evaluation(self, owners: List[Tuple[int, int]], scores: List[Dict[str, float]]) -> None:
        """Scores of head ``owners[j] = (epoch, head)``, one call per epoch."""
        if not self.live.active:
            return
        for epoch in sorted({e for e, _ in owners}):
            self.live.evaluation(self.global_step(epoch + 1, 0),
                                 {self.trainer.heads[i].name: s
                                  for (e, i), s in zip(owners, scores) if e == epoch})


def log_folder(cfg: ProbeConfig, run_id: str) -> Path:
    """``<save_report>/logs/<dataset>/<run id>``."""
    return Path(cfg.save_report) / "logs" / cfg.dataset / run_id


def open_run_log(cfg: ProbeConfig, env, record: Dict, training, run_id: Optional[str]
                 ) -> RunLog:
    """Rank 0's live log of a training run, named ``run_id`` (a resumed run's: the id of the
    run that started the logs, kept in its checkpoint), else the record's run id; the record
    names its folders under ``live_logs``. Other ranks, and ``--report_to none``: no-op."""
    if not env.is_main or not backend_names(cfg.report_to):
        return RunLog.off()
    steps = training.plan.steps(len(training.splits.train))
    start = training.start.epoch * steps + training.start.step + 1
    place = LogPlace(log_folder(cfg, run_id or record["run_id"]), run_id or record["run_id"],
                     cfg.wandb_project, dict(record.get("config") or {}), start)
    live = open_live_log(cfg.report_to, place)
    record["live_logs"] = live.paths
    return RunLog(live, training.trainer, steps)
