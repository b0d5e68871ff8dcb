"""Something to watch during a long run: after each epoch, every live head scores a fixed few
training clips (``--monitor_clips``, drawn once from the seed) in eval mode, the views of
validation. It is a progress estimate, optimistic since the heads train on those clips: it
goes into each head's history as ``monitor_top1`` and into one log line, and never into the
reported number or the choice of head or epoch.
"""
from __future__ import annotations

import logging
from typing import List

from eval_encoder.probe.trainer import ProbeTrainer, accuracy

log = logging.getLogger("eval_encoder.run")


def score_monitor(trainer: ProbeTrainer, loader, epoch: int) -> None:
    """Score the monitor clips with every live head after ``epoch`` (a collective call) and
    say how the heads do; nothing when the monitor is off."""
    live = trainer.training_heads()  # a knn head is fitted after the training only
    if loader is None or not live:
        return
    loader.set_epoch(0)
    scored = trainer.evaluate(loader, 1, [trainer.heads[i].module for i in live],
                              f"monitor {epoch}", split="monitor")
    for j, i in enumerate(live):
        trainer.heads[i].history[epoch]["monitor_top1"] = accuracy(scored, j)["top1"]
    log_monitor(trainer, live, epoch, len(scored))


def log_monitor(trainer: ProbeTrainer, live: List[int], epoch: int, clips: int) -> None:
    """One line: the first live head's monitor top-1 (a fixed head, named) and the best so
    far over heads and epochs, with its name."""
    fixed = trainer.heads[live[0]]
    best = max(((e["monitor_top1"], e["epoch"], h.name) for h in trainer.heads
                for e in h.history if e.get("monitor_top1") is not None))
    log.info("epoch %d monitor: top-1 %.1f%% (head %s) on %d training clips in eval mode; best "
             "so far %.1f%% (head %s, epoch %d); progress only, never the reported number",
             epoch, fixed.history[epoch]["monitor_top1"], fixed.name, clips, best[0], best[2],
             best[1])
