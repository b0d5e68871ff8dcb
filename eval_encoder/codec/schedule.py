"""Which source frames the codec selection samples, and which of them get a zero map.

Frame ids: ``linspace(0, n - 1, T)`` truncated (``trunc``, as published) or rounded.

Zero maps, as a table of rules (``--zero_frames``):
  ``gop16``         as published. The published pipeline re-encodes every video to HEVC with
                    an intra frame every 16 source frames and reads the map of each sampled
                    frame from that stream. A sampled id on an intra frame (id % 16 == 0; the
                    first 8 such ids) has no vectors: its map is zero. Repeated ids (clips
                    shorter than T) fill only their last position; the others stay zero.
  ``unreferenced``  a frame without a predecessor (id 0) and every repeat of an id but its
                    first: they hold no motion of their own.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

GOP = 16  # the published re-encode's fixed GOP
MAX_GOP_ZEROS = 8  # the published loader zeroes at most this many intra positions


def frame_ids(total: int, num_frames: int, rounding: str) -> np.ndarray:
    """``num_frames`` ids spread from the first to the last of ``total`` frames."""
    if total <= 0:
        raise ValueError(f"a clip needs at least one frame, got {total}")
    spread = np.linspace(0, total - 1, num_frames)
    return (np.round(spread) if rounding == "round" else spread).astype(np.int64)


def _repeats(ids: np.ndarray, keep: str) -> np.ndarray:
    """Positions holding a repeated id, except its ``keep`` ("first" or "last") occurrence."""
    order = ids if keep == "first" else ids[::-1]
    _, first = np.unique(order, return_index=True)
    mask = np.ones(ids.size, dtype=bool)
    mask[first if keep == "first" else ids.size - 1 - first] = False
    return mask


def _gop16(ids: np.ndarray) -> np.ndarray:
    zero = _repeats(ids, keep="last")
    intra = [int(i) for i in np.unique(ids) if i % GOP == 0][:MAX_GOP_ZEROS]
    for fid in intra:
        zero[np.flatnonzero(ids == fid)[-1]] = True
    return zero


def _unreferenced(ids: np.ndarray) -> np.ndarray:
    return _repeats(ids, keep="first") | (ids == 0)


ZERO_RULES: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gop16": _gop16, "unreferenced": _unreferenced}


def zeroed(ids: np.ndarray, rule: str) -> np.ndarray:
    """bool [T]: positions of ``ids`` whose map is zero under ``rule`` (see module doc)."""
    return ZERO_RULES[rule](np.asarray(ids, dtype=np.int64))
