"""What reporting the maximum over a grid of head snapshots is worth, by simulation, and what
choosing on held-out clips (``--select_on heldout``) leaves of it.

**The model.** Every snapshot (head h of H, evaluation epoch e of E) has the same true
accuracy p: each validation clip is right with probability p. Snapshots share errors:

- *heads* share a clip's outcome with probability ``1 - head_fresh``: a clip's outcome for
  head h is the clip's common outcome (one draw per clip, shared by every head), else the
  head's own draw;
- *epochs* of one head share it with probability ``1 - epoch_fresh``: at epoch e a clip keeps
  the head's outcome, else it is drawn afresh for that snapshot.

Two epochs of a head then agree on a clip's outcome beyond chance with correlation
(1 - epoch_fresh)^2, two heads' snapshots with (1 - epoch_fresh)^2 (1 - head_fresh)^2; every
snapshot's accuracy is still p in expectation. The defaults (``epoch_fresh`` 0.1,
``head_fresh`` 0.3) make successive epochs of a head share 81% of their outcomes beyond
chance, and heads of other learning rates and decays 40%.

Only counts matter, so each replicate is drawn exactly from binomial and hypergeometric
counts (no per-clip arrays): S ~ Bin(n, p) common rights; head h keeps n - J_h ~ n -
Bin(n, head_fresh) clips, of which Hypergeom(S, n - S, n - J_h) are right, plus Bin(J_h, p)
own rights: R_h; snapshot (h, e) keeps n - K ~ n - Bin(n, epoch_fresh) clips of the head's,
Hypergeom(R_h, n - R_h, n - K) right, plus Bin(K, p).

**Held-out choice.** The same model on m held-out clips (other clips, so independent of the
validation draws given the snapshot): the snapshot with the best held-out accuracy is chosen
and its validation accuracy reported. With equal true accuracies that is any snapshot's
accuracy, so its expectation is p: the simulation shows the max's optimism and the held-out
choice's absence of it side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from eval_encoder.stats.selection import Estimate

EPOCH_FRESH = 0.1  # share of a head's clip outcomes drawn afresh at each epoch
HEAD_FRESH = 0.3  # share of a clip's outcome that is a head's own, not the common one


@dataclass(frozen=True)
class GridOptimism:
    """Points gained over p (the true accuracy) by the grid's val maximum (``val_max``) and
    by the held-out choice's validation score (``heldout``), by simulation."""

    heads: int
    epochs: int
    clips: int
    heldout_clips: int
    p: float
    epoch_fresh: float
    head_fresh: float
    replicates: int
    seed: int
    val_max: Estimate
    heldout: Estimate


def snapshot_accuracies(rng: np.random.Generator, size: int, clips: int, heads: int,
                        epochs: int, p: float, epoch_fresh: float = EPOCH_FRESH,
                        head_fresh: float = HEAD_FRESH) -> np.ndarray:
    """[size, heads, epochs] accuracies (shares) of every snapshot on ``clips`` clips."""
    common = rng.binomial(clips, p, size=(size, 1))
    own = rng.binomial(clips, head_fresh, size=(size, heads))
    base = _hyper(rng, common, clips - common, clips - own) + rng.binomial(own, p)
    fresh = rng.binomial(clips, epoch_fresh, size=(size, heads, epochs))
    kept = _hyper(rng, base[..., None], clips - base[..., None], clips - fresh)
    return (kept + rng.binomial(fresh, p)) / clips


def _hyper(rng: np.random.Generator, good, bad, sample) -> np.ndarray:
    """Hypergeometric draws with broadcast arguments (numpy wants equal shapes)."""
    good, bad, sample = np.broadcast_arrays(good, bad, sample)
    return rng.hypergeometric(good, bad, sample)


def _replicates(rng: np.random.Generator, size: int, clips: int, heldout_clips: int,
                heads: int, epochs: int, p: float, epoch_fresh: float, head_fresh: float
                ) -> Tuple[np.ndarray, np.ndarray]:
    """(val maximum, val accuracy of the held-out choice) of ``size`` replicates."""
    val = snapshot_accuracies(rng, size, clips, heads, epochs, p, epoch_fresh, head_fresh)
    held = snapshot_accuracies(rng, size, heldout_clips, heads, epochs, p, epoch_fresh,
                               head_fresh)
    val, held = val.reshape(size, -1), held.reshape(size, -1)
    chosen = np.take_along_axis(val, held.argmax(axis=1)[:, None], axis=1)[:, 0]
    return val.max(axis=1), chosen


def simulate_grid(heads: int, epochs: int, clips: int, heldout_clips: int, p: float = 0.6,
                  replicates: int = 20_000, epoch_fresh: float = EPOCH_FRESH,
                  head_fresh: float = HEAD_FRESH, seed: int = 0, chunk: int = 2_000
                  ) -> GridOptimism:
    """The optimism (points) of the val maximum over ``heads`` x ``epochs`` snapshots of
    equal true accuracy ``p`` on ``clips`` validation clips, and of the held-out choice made
    on ``heldout_clips``; reproducible for a given ``seed``."""
    rng = np.random.default_rng(seed)
    parts = [_replicates(rng, min(chunk, replicates - start), clips, heldout_clips, heads,
                         epochs, p, epoch_fresh, head_fresh)
             for start in range(0, replicates, chunk)]
    best, chosen = (np.concatenate(x) for x in zip(*parts))
    return GridOptimism(heads, epochs, clips, heldout_clips, p, epoch_fresh, head_fresh,
                        replicates, seed, Estimate.of(100.0 * (best - p)),
                        Estimate.of(100.0 * (chosen - p)))
