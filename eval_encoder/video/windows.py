"""Which frames a clip is made of: one or several segments, each of ``num_frames`` frames,
either spread over its part of the clip (the OneVision scripts) or taken ``frame_step`` apart
in a window (V-JEPA 2).

A :class:`ClipPlan` holds the settings (``--num_frames``, ``--frame_step``,
``--num_segments``, ``--eval_window``); :meth:`ClipPlan.picker` gives the function that maps a
clip's frame count to its frame indices, segment after segment ([S * T]). One segment with
``frame_step`` 0 is :func:`~eval_encoder.video.decode.segment_indices` itself, draw for draw.

V-JEPA 2's windows follow ``VideoDataset.loadvideo_decord`` (facebookresearch/vjepa2
c2963a4, ``src/datasets/video_dataset.py``, with ``allow_clip_overlap=True`` as its frozen
evaluation passes it): the clip is cut into ``S`` equal partitions; where a partition is
longer than a window's span (``T x step`` frames), the window ends at a random frame in
``[span, partition)`` of it (``np.random.randint``: the partition's last frame is never an
end) and its frames are ``np.linspace(end - span, end, T)`` truncated, the last one held at
``end - 1``; otherwise every segment reads the same ``(min(span, n) - 1) // step`` spread
frames, padded with the last and held one frame short of it, shifted by
``(n - span) // (S - 1)`` per segment when the clip is longer than one span.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from eval_encoder.video.decode import segment_indices

Picker = Callable[[int], np.ndarray]
# --eval_window: at evaluation a segment's frames sit at the centre of the range they may
# take, or are drawn as in training (V-JEPA 2 never turns random_clip_sampling off)
EVAL_WINDOWS = ("centre", "random")


@dataclass(frozen=True)
class ClipPlan:
    """How a clip's frames are picked: ``segments`` x ``frames``, ``step`` apart (0: spread)."""

    frames: int
    step: int = 0
    segments: int = 1
    eval_window: str = "centre"

    def __post_init__(self):
        if self.frames < 1 or self.segments < 1 or self.step < 0:
            raise ValueError(f"ClipPlan: need frames >= 1, segments >= 1 and step >= 0, got "
                             f"{self.frames}, {self.segments}, {self.step}")
        if self.eval_window not in EVAL_WINDOWS:
            raise ValueError(f"ClipPlan: eval_window must be one of {EVAL_WINDOWS}, got "
                             f"{self.eval_window!r}")

    @property
    def frames_per_clip(self) -> int:
        return self.frames * self.segments

    def picker(self, train: bool, rng: Optional[np.random.Generator], view: int = 0,
               num_views: int = 1) -> Picker:
        """``total frames -> indices [segments * frames]`` for one sample; a training sample
        (or any, under ``eval_window`` random) draws from ``rng``."""
        drawn = train or self.eval_window == "random"
        if self.step == 0:
            return lambda n: spread_indices(n, self.frames, self.segments, drawn, rng, view,
                                            num_views)
        end = _random_end(rng) if drawn else _centre_end(view, num_views)
        return lambda n: np.concatenate(window_indices(n, self.frames, self.step,
                                                       self.segments, end))


def spread_indices(total: int, frames: int, segments: int, train: bool,
                   rng: Optional[np.random.Generator], view: int = 0,
                   num_views: int = 1) -> np.ndarray:
    """Each of ``segments`` equal parts of the clip sampled as :func:`segment_indices` samples
    a clip (one part: the whole clip); parts under one frame long all take the whole clip."""
    part, shift = total // segments, total // segments
    if part < 1:  # fewer frames than segments: every segment takes the whole clip
        part, shift = total, 0
    return np.concatenate([segment_indices(part, frames, train, rng, view, num_views) + s * shift
                           for s in range(segments)])


EndRule = Callable[[int, int], int]  # (span, partition) -> the window's end in the partition


def _random_end(rng: Optional[np.random.Generator]) -> EndRule:
    if rng is None:
        raise ValueError("a random window needs a random generator")
    return lambda span, part: int(rng.integers(span, part))


def _centre_end(view: int, num_views: int) -> EndRule:
    """The end that puts the window at ``(view + 0.5) / num_views`` of its possible starts."""
    return lambda span, part: span + int((part - span) * (view + 0.5) / num_views)


def window_indices(total: int, frames: int, step: int, segments: int,
                   end_of: EndRule) -> List[np.ndarray]:
    """V-JEPA 2's frame indices of each segment (see the module's text); ``end_of(span,
    partition)`` places a window in a partition longer than its span."""
    if total <= 0:
        raise ValueError(f"a clip needs at least one frame, got {total}")
    span, part = frames * step, total // segments
    if part > span:
        return [_window(end_of(span, part), span, frames) + s * part for s in range(segments)]
    base = _short_window(total, frames, step, span)
    shift = (total - span) // (segments - 1) if total > span else 0
    return [base + s * shift for s in range(segments)]


def _window(end: int, span: int, frames: int) -> np.ndarray:
    start = end - span
    return np.clip(np.linspace(start, end, num=frames), start, end - 1).astype(np.int64)


def _short_window(total: int, frames: int, step: int, span: int) -> np.ndarray:
    """The spread frames every segment of a clip with partitions no longer than a span reads
    (published: one frame fewer than the span's last is ever used; a one-frame clip: frame 0)."""
    last = min(span, total) - 1
    taken = last // step
    idx = np.concatenate([np.linspace(0, last, num=taken), np.full(frames - taken, last)])
    return np.clip(np.clip(idx, 0, last - 1), 0, total - 1).astype(np.int64)
