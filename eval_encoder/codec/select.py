"""From saliency maps to the K kept patches of the T x (S/p)^2 grid of the transformed clip.

The maps are resized and centre-cropped exactly like the pixels (the pixel transform's
cubic resampling of the shorter side, then its S x S centre crop), averaged per patch, and
the top K patch indices are kept, sorted. Near-static clips (upstream's thresholds on the
per-patch mean of the 0..255 map) take a few uniformly spaced frames whole and fill the
remaining budget by score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from eval_encoder.codec.options import CodecOptions
from eval_encoder.video.transforms import crop_start, resample_weights, resize_plan

# bits of the per-clip "flags" extra (names registered in eval_encoder.video.dataset.FLAG_NAMES)
FLAG_STATIC_FALLBACK = 1 << 0
FLAG_SHORT_CLIP = 1 << 1
FLAG_K_CLIPPED = 1 << 2
FLAG_CACHE_RECOMPUTED = 1 << 3
FLAG_NAMES = {
    FLAG_STATIC_FALLBACK: "codec_static_fallback",
    FLAG_SHORT_CLIP: "codec_clip_shorter_than_frames",
    FLAG_K_CLIPPED: "codec_K_larger_than_grid",
    FLAG_CACHE_RECOMPUTED: "codec_damaged_cache_recomputed",
}
# what a flag means for the number (registered beside FLAG_NAMES, for the run's warnings)
FLAG_WARNINGS = {
    "codec_clip_shorter_than_frames": "are shorter than the frames the codec selection "
                                      "samples: frame ids repeat",
    "codec_K_larger_than_grid": "have fewer patches than K_keep: every patch is kept",
    "codec_damaged_cache_recomputed": "had a damaged cached selection, computed again",
}


@dataclass
class Selection:
    """Kept patch indices (int64, sorted, unique) and the flag bits that explain them."""

    indices: np.ndarray
    flags: int = 0


def _axis_pooling(in_size: int, in_short: int, short_side: int, crop: int,
                  patch: int) -> np.ndarray:
    """[crop/patch, in_size]: row j averages the ``patch`` output pixels of patch j of the
    resized (shorter side to ``short_side``) and centre-cropped axis, in input pixels."""
    out, origin, step = resize_plan(in_size, in_short, short_side)
    start = crop_start(out, crop, 0.5)
    rows = resample_weights(in_size, out, origin, step)[start:start + crop]
    return rows.reshape(crop // patch, patch, in_size).mean(axis=1).astype(np.float32)


def patch_scores(maps: np.ndarray, short_side: int, crop: int, patch: int) -> np.ndarray:
    """Mean saliency of every patch of the resized, centre-cropped maps [T, H, W], flattened
    in (t, row, col) order: float64 [T * (crop/patch)^2].

    Resize (the pixel transform's own cubic weights), crop and patch averaging are all
    linear, so they collapse into one [g, H] and one [g, W] matrix and the resized map is
    never built. (Upstream stored the resized map as uint8, clipping bicubic overshoot; a
    patch mean of the unclipped map is the faithful average and differs only at sharp edges.)
    """
    t, h, w = maps.shape
    if crop % patch:
        raise ValueError(f"crop {crop} is not a multiple of the patch size {patch}")
    ay = _axis_pooling(h, min(h, w), short_side, crop, patch)
    ax = _axis_pooling(w, min(h, w), short_side, crop, patch)
    cols = np.matmul(maps.astype(np.float32, copy=False).reshape(t * h, w), ax.T)  # one GEMM
    return np.matmul(ay, cols.reshape(t, h, -1)).reshape(-1).astype(np.float64)


def _rank(n: int, q: float):
    """numpy's linear-method rank of the q-th percentile of n values: (lo, hi, fraction)."""
    rank = (n - 1) * (np.float64(q) / np.float64(100))
    lo = int(np.floor(rank))
    return lo, min(lo + 1, n - 1), float(rank - lo)


def _interpolate(below: np.float32, above: np.float32, frac: float) -> float:
    """numpy 1.26's lerp between two float32 neighbours: difference rounded to float32,
    the rest in float64."""
    diff = np.float64(np.subtract(above, below, dtype=np.float32))
    if frac >= 0.5:
        return float(np.float64(above) - diff * (1.0 - frac))
    return float(np.float64(below) + diff * frac)


def percentile_f32(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear) of float32 values as numpy 1.26 computes it, the
    published environment's, whatever numpy runs: the two neighbours are float32, their
    difference is rounded to float32, the interpolation is done in float64. (numpy 2 does it
    in float32, which can move the result by an ulp.)"""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    lo, hi, frac = _rank(flat.size, q)
    part = np.partition(flat, [lo, hi] if hi != lo else lo)
    return _interpolate(part[lo], part[hi], frac)


def percentile_f32_levels(levels: np.ndarray, q: float, step: float = 1.0) -> float:
    """:func:`percentile_f32` of the float32 values ``levels * step``, for non-negative
    integer ``levels`` (step a power of two, so every value is exact): the two neighbours
    come from a histogram instead of a partition, the same numbers for less work."""
    cum = np.bincount(levels.reshape(-1)).cumsum()
    lo, hi, frac = _rank(int(cum[-1]), q)
    at = np.searchsorted(cum, [lo, hi], side="right")  # the lo-th and hi-th smallest levels
    return _interpolate(np.float32(at[0] * step), np.float32(at[1] * step), frac)


def is_static(scores: np.ndarray, opts: CodecOptions, area: float = 1.0) -> bool:
    """The published near-static test on per-patch mean map values (0..255): a low 95th
    percentile, or a lowish and flat distribution. ``scores / area`` are those means."""
    means = scores.astype(np.float32) / np.float32(area)
    p95, p50 = percentile_f32(means, 95.0), percentile_f32(means, 50.0)
    flatness = (p95 - p50) / max(p95, 1e-6)
    return bool(p95 < opts.static_abs_thresh
                or (p95 < 2 * opts.static_abs_thresh and flatness < opts.static_rel_thresh))


def _partition(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argpartition(scores, -k)[-k:]


def _stable(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores.astype(np.float64), kind="stable")[:k]


# --topk_ties: which k of the scores are kept when some are equal
TOP_K = {"partition": _partition, "stable": _stable}


def top_k(scores: np.ndarray, k: int, ties: str = "stable",
          exclude: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the k best scores (all finite ones if fewer), excluding ``exclude``."""
    s = scores.astype(np.float64)
    if exclude is not None and exclude.size:
        s[exclude] = -np.inf
    finite = np.flatnonzero(np.isfinite(s))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return finite if k >= finite.size else TOP_K[ties](s, k)


def _fill(picked: list, count: int, wanted: int) -> list:
    """Deduplicate ``picked`` in order, then add the smallest unused values below ``count``."""
    picked = list(dict.fromkeys(picked))
    spare = (v for v in range(count) if v not in set(picked))
    return picked + [next(spare) for _ in range(max(0, wanted - len(picked)))]


def uniform_frames(frames: int, n_frames: int) -> list:
    """The fallback's frames: ``linspace(0, T-1, n)`` truncated, deduplicated, filled."""
    n = max(1, min(frames, n_frames))
    if n >= frames:
        return list(range(frames))
    return _fill(np.linspace(0, frames - 1, n).astype(np.int64).tolist(), frames, n)


def _spread(per_frame: int, k: int) -> list:
    """``k`` positions spread over a frame: round(i * per_frame / k), filled if they collide."""
    if k >= per_frame:
        return list(range(per_frame))
    step = float(per_frame) / float(k)
    return _fill([min(per_frame - 1, int(round(i * step))) for i in range(k)], per_frame, k)


def uniform_frame_patches(frames: int, per_frame: int, n_frames: int, budget: int) -> np.ndarray:
    """Patches of ``n_frames`` evenly spaced frames: whole frames if the budget allows,
    otherwise the budget split evenly over them and spread evenly within each frame."""
    picked = uniform_frames(frames, n_frames)
    if budget >= len(picked) * per_frame:
        shares = [per_frame] * len(picked)
    else:
        shares = [budget // len(picked) + (j < budget % len(picked)) for j in range(len(picked))]
    out = [t * per_frame + np.asarray(_spread(per_frame, n), dtype=np.int64)
           for t, n in zip(picked, shares) if n > 0]
    return (np.concatenate(out) if out else np.zeros(0, dtype=np.int64))[:budget]


def _with_fallback(scores: np.ndarray, k: int, per_frame: int, opts: CodecOptions) -> np.ndarray:
    """Uniform frames first, the rest of the budget by score; exactly k distinct indices."""
    base = uniform_frame_patches(scores.size // per_frame, per_frame,
                                 opts.static_uniform_frames, k)
    if base.size >= k:
        return base
    rest = top_k(scores, k - base.size, opts.topk_ties, exclude=base)
    chosen = np.unique(np.concatenate([base, rest]))[:k]
    if chosen.size < k:
        spare = np.setdiff1d(np.arange(scores.size), chosen)[: k - chosen.size]
        chosen = np.concatenate([chosen, spare])
    return chosen


def choose(scores: np.ndarray, k: int, per_frame: int, opts: CodecOptions,
           area: float = 1.0) -> Selection:
    """Top-k of per-patch scores [T * per_frame] (patch means are ``scores / area``), with the
    static fallback and K clipping, ties broken by ``opts.topk_ties``."""
    flags = 0
    if k > scores.size:
        k, flags = scores.size, flags | FLAG_K_CLIPPED
    if opts.static_fallback and is_static(scores, opts, area):
        flags |= FLAG_STATIC_FALLBACK
        chosen = _with_fallback(scores, k, per_frame, opts)
    else:
        chosen = TOP_K[opts.topk_ties](scores, k) if k < scores.size else np.arange(scores.size)
    return Selection(np.sort(chosen).astype(np.int64), flags)
