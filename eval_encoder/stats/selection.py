"""The published scripts' validation draw, and what reporting the best of its evaluations is
worth.

**The draw.** The published attentive-probe scripts (both loaders) score validation
evaluation number ``e`` on W ranks with a per-rank batch B like this: with N clips in the
manifest's (file) order, S = N // W and F = S // B, rank r scores the clips
``perm[r*S : r*S + F*B]`` of ``perm = np.random.default_rng(1024 + r + e).permutation(N)``.
``e`` counts every evaluation the process makes, from 0: the learning rates are looped
outside and each one's evaluations inside, and the same loader serves them all, so the
``l``-th learning rate's ``k``-th evaluation is ``e = l * E + k`` (:func:`evaluation_number`).
Within a rank no clip repeats; across ranks the slices are independent, so a clip is scored
0..W times (at W = 8 about (7/8)^8 = 34% of the clips are not scored in a given evaluation),
and the accuracy is the micro-average over the W*F*B scored items, a repeated clip counted
each time. :func:`published_counts` gives how many times each clip is scored, and an
accuracy under the draw is a reweighting of per-clip hits (:func:`weighted_accuracy`): no
encoder pass is needed to know it.

**The optimism.** The paper reports the best of those evaluations. Even a head that never
changed would gain from that choice, since each evaluation scores another multiset of clips.
:func:`simulate_optimism` measures the gain by Monte Carlo under two stated models:

- *same head* (``unstable=0``): a fixed set of round(p*N) right clips, at random places, is
  the head at every evaluation. The gain is the best published-sampled accuracy minus the
  exact-once accuracy (which is p): pure sampling noise, selected.
- *epoch noise* (``unstable=u``): the right/wrong of a share u of the clips, drawn afresh at
  each evaluation (Bernoulli(p)), while the others keep theirs. Then the exact-once accuracy
  moves too; the best published-sampled accuracy is compared with the best exact-once one
  (what this suite's ``best_val`` reports for the same run) and with p.

Both models keep every evaluation's expected accuracy at p: heads that still improve from
epoch to epoch leave fewer evaluations in contention and so a smaller gain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Tuple

import numpy as np

VAL_SEED = 1024  # the seed the published scripts give their validation loader


def evaluation_number(experiment: int, index: int, per_experiment: int) -> int:
    """Upstream's running evaluation count: the ``index``-th evaluation of the
    ``experiment``-th learning rate, each making ``per_experiment`` evaluations."""
    return experiment * per_experiment + index


def draw_shape(clips: int, world: int, batch: int) -> Tuple[int, int]:
    """(S, F*B): each rank's share of the list and the clips it scores from its slice."""
    share = clips // world
    return share, (share // batch) * batch


def rank_draw(clips: int, world: int, batch: int, rank: int, evaluation: int) -> np.ndarray:
    """The clip indices rank ``rank`` scores at evaluation ``evaluation`` (upstream's order)."""
    share, taken = draw_shape(clips, world, batch)
    perm = np.random.default_rng(VAL_SEED + rank + evaluation).permutation(clips)
    return perm[rank * share: rank * share + taken]


def published_counts(clips: int, world: int, batch: int, evaluation: int) -> np.ndarray:
    """How many times each clip (int64 [clips]) is scored at evaluation ``evaluation``."""
    drawn = [rank_draw(clips, world, batch, r, evaluation) for r in range(world)]
    return np.bincount(np.concatenate(drawn), minlength=clips).astype(np.int64)


def counts_matrix(clips: int, world: int, batch: int, evaluations: Iterable[int]) -> np.ndarray:
    """:func:`published_counts` of several evaluations, one row each (int64 [E, clips])."""
    return np.stack([published_counts(clips, world, batch, e) for e in evaluations])


def seeds(world: int, evaluation: int) -> Tuple[int, ...]:
    """The generator seeds of the W ranks at ``evaluation``."""
    return tuple(VAL_SEED + r + evaluation for r in range(world))


def weighted_accuracy(hits: np.ndarray, counts: np.ndarray) -> float:
    """Accuracy (%) over the multiset ``counts`` of clips whose ``hits`` are 0/1; NaN when
    the multiset is empty."""
    total = int(counts.sum())
    return 100.0 * float(np.dot(counts, hits)) / total if total else math.nan


# ----------------------------------------------------------------------------- simulation

@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo mean (points) and its standard error."""

    mean: float
    error: float

    @classmethod
    def of(cls, values: np.ndarray) -> "Estimate":
        return cls(float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size)))


@dataclass(frozen=True)
class Optimism:
    """What the best of E published-sampled evaluations gains (points), by simulation.

    ``published``: best published-sampled accuracy minus best exact-once accuracy (under the
    same-head model: minus p itself); ``exact``: best exact-once accuracy minus p (0 under the
    same-head model); ``total``: best published-sampled accuracy minus p."""

    clips: int
    p: float
    world: int
    batch: int
    evals: int
    replicates: int
    unstable: float
    seed: int
    published: Estimate
    exact: Estimate
    total: Estimate


def simulate_optimism(clips: int, p: float, world: int, batch: int, evals: int,
                      replicates: int = 2000, unstable: float = 0.0, seed: int = 0,
                      chunk: int = 200) -> Optimism:
    """The gain of reporting the best of ``evals`` evaluations (e = 0..evals-1, one learning
    rate) drawn as published, for ``clips`` validation clips at accuracy ``p`` (a share);
    ``unstable``: the share of clips whose right/wrong is redrawn at each evaluation (see
    the module's docstring). Reproducible for a given ``seed``."""
    weights = _weights(clips, world, batch, evals)
    rng = np.random.default_rng(seed)
    parts = [_replicates(rng, weights, p, size, unstable) for size in _sizes(replicates, chunk)]
    best_pub, best_exact, truth = (np.concatenate(x) * 100.0 for x in zip(*parts))
    return Optimism(clips, p, world, batch, evals, replicates, unstable, seed,
                    Estimate.of(best_pub - best_exact), Estimate.of(best_exact - truth),
                    Estimate.of(best_pub - truth))


def _weights(clips: int, world: int, batch: int, evals: int) -> np.ndarray:
    """Each evaluation's multiset as weights summing to 1 (float64 [E, clips])."""
    counts = counts_matrix(clips, world, batch, range(evals)).astype(np.float64)
    if not counts.sum(axis=1).all():
        raise ValueError(f"the published draw scores no clip of {clips} at W={world}, "
                         f"B={batch}")
    return counts / counts.sum(axis=1, keepdims=True)


def _sizes(total: int, chunk: int) -> Iterator[int]:
    for start in range(0, total, chunk):
        yield min(chunk, total - start)


def _fixed_set(rng: np.random.Generator, size: int, clips: int, p: float) -> np.ndarray:
    """``size`` rows of exactly round(p * clips) right clips at random places (float64)."""
    right = np.arange(clips) < round(p * clips)
    return rng.permuted(np.broadcast_to(right, (size, clips)), axis=1).astype(np.float64)


def _replicates(rng: np.random.Generator, weights: np.ndarray, p: float, size: int,
                unstable: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best published-sampled, best exact-once, true) accuracy of ``size`` replicates."""
    clips = weights.shape[1]
    base = _fixed_set(rng, size, clips, p)
    if not unstable:
        exact = base.mean(axis=1)
        return (base @ weights.T).max(axis=1), exact, exact
    moving = rng.random((size, clips)) < unstable
    best_pub, best_exact = np.full(size, -np.inf), np.full(size, -np.inf)
    for row in weights:
        hits = np.where(moving, rng.random((size, clips)) < p, base)
        best_pub = np.maximum(best_pub, hits @ row)
        best_exact = np.maximum(best_exact, hits.mean(axis=1))
    return best_pub, best_exact, np.full(size, p)
