"""``--val_sampling published``: the accuracy the published scripts' validation draw would
have measured, for every scored head snapshot, and the head and epoch it would have reported.

The run still scores every validation clip exactly once. Each snapshot's per-clip hits are
then weighted by how many times the published draw scores the clip at that snapshot's
evaluation (:mod:`eval_encoder.stats.selection`): no extra encoder pass. Evaluations are
numbered as upstream numbers them, learning rates outside and evaluations inside:
``e = l * E + k`` for the ``k``-th of the E evaluation epochs of head ``l``, where heads
count in this run's grid order (learning rate outer, weight decay inner). Upstream trains
one weight decay per process, so a grid of several weight decays is numbered as if its
(lr, wd) pairs had been the learning-rate list. A head stopped early (non-finite loss) is
numbered as if it had made all its evaluations; upstream's loop would have moved on sooner.

W is ``--published_world_size`` (8, the paper's GPUs); B is ``--published_batch_size``, by
default the per-GPU batch of the paper's run: ``global_batch_size / W`` where the recipe sets
the global batch (the paper's recipes do: 8 x the card's batch), else ``--batch_size``.
Clips this run could not read are left out of the draw's multiset (upstream would have
substituted another clip). The reported head and epoch are chosen on the published-sampled
accuracy (best epoch and head, as upstream), and the record keeps the exact-once accuracy
of that snapshot beside it (``val_sampling``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder.config import ConfigError, ProbeConfig, require
from eval_encoder.probe.predictions import Scored
from eval_encoder.probe.trainer import RunFailed
from eval_encoder.stats.selection import (
    VAL_SEED,
    draw_shape,
    evaluation_number,
    published_counts,
    seeds,
    weighted_accuracy,
)

FLAGS = ("published_world_size", "published_batch_size")


@dataclass(frozen=True)
class PublishedSampling:
    """The published validation draw of one run: N clips, W ranks, B per batch, and the
    evaluation epochs each head is scored at."""

    clips: int
    world: int
    batch: int
    epochs: Tuple[int, ...]
    batch_from: str

    def evaluation(self, epoch: int, head: int) -> int:
        return evaluation_number(head, self.epochs.index(epoch), len(self.epochs))

    def scores(self, one: Scored, epoch: int, head: int) -> Dict[str, float]:
        """Published-sampled top-1/top-5 (%) of one snapshot's Scored (M = 1)."""
        counts = published_counts(self.clips, self.world, self.batch,
                                  self.evaluation(epoch, head))[one.clips]
        right1 = (one.top5[:, 0, 0] == one.labels).astype(np.int64)
        right5 = (one.top5[:, 0, :] == one.labels[:, None]).any(axis=1).astype(np.int64)
        return {"published_top1": weighted_accuracy(right1, counts),
                "published_top5": weighted_accuracy(right5, counts),
                "published_items": int(counts.sum())}

    def describe(self) -> Dict:
        share, taken = draw_shape(self.clips, self.world, self.batch)
        return {"mode": "published", "world_size": self.world, "batch": self.batch,
                "batch_from": self.batch_from, "clips": self.clips, "per_rank_share": share,
                "items_per_evaluation": taken * self.world,
                "evaluations_per_head": len(self.epochs), "evaluation_epochs": list(self.epochs),
                "seeds": f"rank r at evaluation e: numpy default_rng({VAL_SEED} + r + e)",
                "evaluation": "e = head index in the (lr, wd) grid x evaluations per head + "
                              "the evaluation's index"}


def check_flags(cfg: ProbeConfig) -> None:
    """The published draw's flags act only with --val_sampling published."""
    given = [name for name in FLAGS if name in cfg.sources]
    require(cfg.val_sampling == "published" or not given,
            f"--{given[0] if given else ''} is read only with --val_sampling published")


def published_batch(cfg: ProbeConfig) -> Tuple[int, str]:
    """B and where it comes from (see the module's docstring)."""
    world = cfg.published_world_size
    if cfg.published_batch_size is not None:
        return cfg.published_batch_size, "--published_batch_size"
    if cfg.global_batch_size is None:
        return cfg.batch_size, "--batch_size"
    require(cfg.global_batch_size % world == 0, f"--global_batch_size {cfg.global_batch_size} "
            f"is not a multiple of --published_world_size {world}: give --published_batch_size")
    return cfg.global_batch_size // world, f"--global_batch_size {cfg.global_batch_size} / {world}"


def published_sampling(cfg: ProbeConfig, clips: int, epochs: Sequence[int]
                       ) -> Optional[PublishedSampling]:
    """The run's published draw (None under ``--val_sampling exact``); a draw that would
    score no clip is a ConfigError, before anything heavy loads."""
    check_flags(cfg)
    if cfg.val_sampling != "published":
        return None
    batch, origin = published_batch(cfg)
    if draw_shape(clips, cfg.published_world_size, batch)[1] == 0:
        raise ConfigError(f"--val_sampling published: {clips} validation clips over "
                          f"W={cfg.published_world_size} ranks in batches of B={batch} leave no "
                          "full batch on a rank, so the published draw scores nothing; lower "
                          "--published_world_size or --published_batch_size")
    return PublishedSampling(clips, cfg.published_world_size, batch, tuple(epochs), origin)


# ----------------------------------------------------------------------------- reporting

def _candidates(heads: List[Dict], select: str) -> List[Tuple[int, Dict, Dict]]:
    """(head index, head row, history entry) of the snapshots the reported one is chosen
    from, in grid and epoch order (the first of equal scores wins, as upstream)."""
    out = []
    for i, row in enumerate(heads):
        scored = [e for e in row["history"] if _finite(e.get("published_top1"))]
        if row["status"] == "ok" and scored:
            out += [(i, row, e) for e in (scored if select == "best_val" else scored[-1:])]
    return out


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def published_report(heads: List[Dict], select: str, published: PublishedSampling
                     ) -> Tuple[Dict, Dict]:
    """The record's ``reported`` chosen on published-sampled accuracy (``heads``: the
    record's head rows, whose history holds it), and its ``val_sampling`` block."""
    pairs = _candidates(heads, select)
    if not pairs:
        raise RunFailed("--val_sampling published: no head has a published-sampled score")
    i, row, entry = max(pairs, key=lambda pair: pair[2]["published_top1"])
    evaluation = published.evaluation(entry["epoch"], i)
    block = dict(published.describe(), reported={
        "head": row["name"], "epoch": entry["epoch"], "evaluation": evaluation,
        "seeds": list(seeds(published.world, evaluation)), "items": entry["published_items"],
        "published_top1": entry["published_top1"], "published_top5": entry["published_top5"],
        "exact_top1": entry["top1"], "exact_top5": entry["top5"]})
    return _reported(row["name"], entry, select, published), block


def _reported(head: str, entry: Dict, select: str, published: PublishedSampling) -> Dict:
    which = "best epoch and best head" if select == "best_val" else "last epoch; the head"
    return {
        "head": head, "top1": entry["published_top1"], "top5": entry["published_top5"],
        "epoch": entry["epoch"], "selection": select, "chosen_on": "val, published sampling",
        "note": (f"{which} chosen on the accuracy the published scripts' validation draw "
                 f"gives (W={published.world} ranks, B={published.batch}: clips scored 0..W "
                 "times), which is also the number reported, as in the paper; the exact-once "
                 "accuracy of this snapshot is val_sampling.reported.exact_top1")}
