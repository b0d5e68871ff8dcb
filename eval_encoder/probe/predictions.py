"""Per-clip validation predictions: what every scored head said about every clip, the
metrics computed from them, and the per-clip file written beside each run record.

The file (``<run_id>.predictions.npz``, ``np.savez_compressed``, no object arrays, read with
``allow_pickle=False``) holds, for every scored clip: ``id`` (the manifest path, with
``@<start>-<end>`` for a segment of a long video), ``line`` (manifest line), ``clip`` (index in
the manifest), ``label``; for the reported head at its reported epoch ``top5`` (int16 [n, 5],
best first) and ``top5_prob`` (float32 softmax probabilities); ``all_top1`` (int16 [n, M]) and
``all_names`` (``"<head>@<epoch>"``) for every scored head snapshot; and ``prob`` (float16
[n, C]) when the dataset card's metrics need every class's score (mAP).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # torch is imported where scores are made only
    import torch

from eval_encoder.files import atomic_open, file_sha256
from eval_encoder.stats.clips import average_precision


@dataclass
class Scored:
    """Every scored clip (sorted by clip index) and what each of M modules said about it."""

    clips: np.ndarray  # int64 [n]
    labels: np.ndarray  # int64 [n]
    top5: np.ndarray  # int16 [n, M, k]
    prob5: np.ndarray  # float32 [n, M, k]
    probs: Optional[np.ndarray] = None  # float16 [n, M, C], when kept

    def __len__(self) -> int:
        return int(self.clips.size)

    def module(self, j: int) -> "Scored":
        """Module ``j`` alone (M = 1)."""
        probs = None if self.probs is None else self.probs[:, j:j + 1]
        return Scored(self.clips, self.labels, self.top5[:, j:j + 1], self.prob5[:, j:j + 1], probs)


def score_clips(sums: Dict[int, "torch.Tensor"], labels: Dict[int, int], keep_probs: bool,
                k: int) -> Scored:
    """A Scored of this rank's clips from their view-summed logits [M, C]."""
    import torch

    clips = sorted(sums)
    if not clips:
        return empty(0, 0, k, keep_probs)
    probs = torch.stack([sums[c] for c in clips]).float().softmax(dim=-1)  # [n, M, C]
    values, indices = probs.topk(k, dim=-1)
    return Scored(np.asarray(clips, dtype=np.int64), np.asarray([labels[c] for c in clips]),
                  indices.numpy().astype(np.int16), values.numpy().astype(np.float32),
                  probs.numpy().astype(np.float16) if keep_probs else None)


def empty(modules: int, classes: int, k: int, keep_probs: bool) -> Scored:
    return Scored(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, modules, k), np.int16),
                  np.zeros((0, modules, k), np.float32),
                  np.zeros((0, modules, classes), np.float16) if keep_probs else None)


def merge(parts: Sequence[Scored]) -> Scored:
    """The ranks' Scored parts as one, sorted by clip."""
    parts = [p for p in parts if len(p)] or list(parts[:1])
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    merged = Scored(cat("clips"), cat("labels"), cat("top5"), cat("prob5"),
                    cat("probs") if parts[0].probs is not None else None)
    order = np.argsort(merged.clips, kind="stable")
    return Scored(merged.clips[order], merged.labels[order], merged.top5[order],
                  merged.prob5[order], None if merged.probs is None else merged.probs[order])


# ----------------------------------------------------------------------------- metrics

def top1(s: Scored) -> float:
    return float(100.0 * np.mean(s.top5[:, 0, 0] == s.labels)) if len(s) else float("nan")


def top5(s: Scored) -> float:
    hit = (s.top5[:, 0, :] == s.labels[:, None]).any(axis=1)
    return float(100.0 * np.mean(hit)) if len(s) else float("nan")


def mean_class_acc(s: Scored) -> float:
    """Mean over the classes present of each class's top-1 accuracy (recall), in percent."""
    classes = np.unique(s.labels)
    right = s.top5[:, 0, 0] == s.labels
    return float(100.0 * np.mean([right[s.labels == c].mean() for c in classes])) \
        if classes.size else float("nan")


def mean_ap(s: Scored) -> float:
    """mAP (percent) over the classes with at least one positive clip, from every class's
    probability (needs the probabilities kept)."""
    if s.probs is None:
        raise ValueError("mAP needs every class's probability (keep_probs)")
    probs = s.probs[:, 0, :]
    classes = np.unique(s.labels)
    return float(100.0 * np.mean([average_precision(probs[:, c], s.labels == c)
                                  for c in classes]))


# metric name -> (function of a one-module Scored, needs every class's probability)
METRICS: Dict[str, Tuple[Callable[[Scored], float], bool]] = {
    "top1": (top1, False), "top5": (top5, False), "mean_class_acc": (mean_class_acc, False),
    "map": (mean_ap, True),
}


def needs_probs(metrics: Sequence[str]) -> bool:
    return any(METRICS[m][1] for m in metrics if m in METRICS)


def compute(s: Scored, metrics: Sequence[str]) -> Dict[str, float]:
    """The named metrics of a one-module Scored (names a run cannot compute are skipped)."""
    return {m: METRICS[m][0](s) for m in metrics if m in METRICS}


# ----------------------------------------------------------------------------- the store

class PredictionStore:
    """What every (epoch, head) snapshot said, kept until the reported one is known."""

    def __init__(self):
        self.by_owner: Dict[Tuple[int, int], Scored] = {}

    def add(self, scored: Scored, owners: Sequence[Tuple[int, int]]) -> None:
        for j, owner in enumerate(owners):
            self.by_owner[owner] = scored.module(j)

    def write(self, path: str, owner: Tuple[int, int], entries: Sequence, names: List[str]
              ) -> Tuple[str, str]:
        """Write the file for the reported ``owner`` = (epoch, head index); ``entries`` are the
        validation manifest's, ``names`` the heads'. Returns (file name, sha256)."""
        chosen = self.by_owner[owner]
        owners = sorted(self.by_owner)
        arrays = {
            "id": np.asarray([entries[c].id for c in chosen.clips]),
            "line": np.asarray([entries[c].line for c in chosen.clips], dtype=np.int64),
            "clip": chosen.clips, "label": chosen.labels,
            "top5": chosen.top5[:, 0], "top5_prob": chosen.prob5[:, 0],
            "all_top1": np.stack([self._top1_on(o, chosen.clips) for o in owners], axis=1),
            "all_names": np.asarray([f"{names[i]}@{e}" for e, i in owners])}
        if chosen.probs is not None:
            arrays["prob"] = chosen.probs[:, 0]
        with atomic_open(path, "wb", prefix=".tmp-", suffix=".npz") as fh:
            np.savez_compressed(fh, **arrays)
        return os.path.basename(path), file_sha256(path)

    def _top1_on(self, owner: Tuple[int, int], clips: np.ndarray) -> np.ndarray:
        s = self.by_owner[owner]
        row = {int(c): int(t) for c, t in zip(s.clips, s.top5[:, 0, 0])}
        return np.asarray([row.get(int(c), -1) for c in clips], dtype=np.int16)
