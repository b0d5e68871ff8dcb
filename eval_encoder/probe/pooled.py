"""Pooled features of a split, and the kNN heads fitted on the train split's.

:func:`pooled_features` is the one way a run obtains one vector per clip of a whole split; a
feature cache (``eval_encoder/features/cache.py``) answers there, before any clip is decoded.
Without one, it costs one encoder pass over the split, in the evaluation view (see
``data.eval_view_loader``), every clip on one rank; the ranks' vectors are gathered whole and
put in clip order, so every rank holds the same [N, D] numbers whatever the world size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch

from eval_encoder import distributed as dist
from eval_encoder.config import ProbeConfig
from eval_encoder.features.pool import TokenLayout, pooled_vectors
from eval_encoder.probe.data import Splits, eval_view_loader, skip_check
from eval_encoder.probe.trainer import HeadState, ProbeTrainer, RunFailed, to_device

log = logging.getLogger("eval_encoder.run")
FEATURE_SPLIT = "knn_train"  # how the counters and the record name the train-feature pass


@dataclass
class PooledSplit:
    """One pooled vector per readable clip of a split, in clip order."""

    clips: torch.Tensor  # int64 [N]: the clip's index in the split's manifest
    features: torch.Tensor  # float32 [N, D]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.clips.numel())


def pooled_features(cfg: ProbeConfig, splits: Splits, split: str, trainer: ProbeTrainer,
                    spec, pooling: Tuple[str, TokenLayout]) -> PooledSplit:
    """The pooled vectors of every clip of ``split`` ("train"), in the evaluation view, with
    ``pooling`` = (how, layout) as ``pool_tokens`` takes them. A collective
    call: every rank gets the same PooledSplit. The feature cache plugs in here."""
    if split != "train":
        raise ValueError(f"pooled features of split {split!r}: only 'train' is read this way "
                         "(validation clips are pooled in the scoring pass itself)")
    loader = eval_view_loader(cfg, splits, spec, trainer.env)
    local = _encode(trainer, loader, pooling)
    skip_check(trainer, FEATURE_SPLIT, len(splits.train.entries), 1, cfg.max_skip_fraction)
    return _gathered(dist.all_gather_objects(local))


@torch.no_grad()
def _encode(trainer: ProbeTrainer, loader, pooling) -> Dict[int, Tuple[np.ndarray, int]]:
    """This rank's clips: clip index -> (float32 vector, label)."""
    loader.set_epoch(0)
    out: Dict[int, Tuple[np.ndarray, int]] = {}
    for batch in trainer.clock.timed(loader, FEATURE_SPLIT):
        trainer.note_batch(batch, FEATURE_SPLIT)
        if "labels" not in batch:
            continue
        batch = to_device(batch, trainer.env.device)
        vectors = pooled_vectors(trainer.tokens(batch, FEATURE_SPLIT), *pooling).cpu().numpy()
        for row, (clip, label) in enumerate(zip(batch["clip_index"].tolist(),
                                                batch["labels"].tolist())):
            out[int(clip)] = (vectors[row], int(label))
    return out


def _gathered(parts: List[Dict[int, Tuple[np.ndarray, int]]]) -> PooledSplit:
    """The ranks' parts as one PooledSplit in clip order (a clip on two ranks is a bug)."""
    merged: Dict[int, Tuple[np.ndarray, int]] = {}
    for part in parts:
        if merged.keys() & part.keys():
            raise RunFailed("a train clip was pooled on two ranks")
        merged.update(part)
    if not merged:
        raise RunFailed("no train clip could be pooled for the knn heads")
    clips = sorted(merged)
    return PooledSplit(torch.tensor(clips, dtype=torch.long),
                       torch.from_numpy(np.stack([merged[c][0] for c in clips])),
                       torch.tensor([merged[c][1] for c in clips], dtype=torch.long))


def fit_untrained(cfg: ProbeConfig, splits: Splits, trainer: ProbeTrainer, spec,
                  heads: List[HeadState]) -> None:
    """Give every head that trains nothing (knn) the train split's pooled vectors: one
    :func:`pooled_features` per pooling (all of a run's pool alike)."""
    fitted: Dict[Tuple, PooledSplit] = {}
    for h in heads:
        pooling = h.module.pooling
        if pooling not in fitted:
            fitted[pooling] = pooled_features(cfg, splits, "train", trainer, spec, pooling)
            log.info("knn: %d train clips pooled (%s) in the evaluation view",
                     len(fitted[pooling]), pooling[0])
        h.module.fit(fitted[pooling].features.to(trainer.env.device),
                     fitted[pooling].labels.to(trainer.env.device))
