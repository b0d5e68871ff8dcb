"""Codec-style patch selection for one clip, with the on-disk cache around it."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from eval_encoder.codec import cache as _cache
from eval_encoder.codec.motion import motion_field
from eval_encoder.codec.options import CodecOptionError, CodecOptions, check_options, make_options
from eval_encoder.codec.saliency import saliency
from eval_encoder.codec.select import (FLAG_CACHE_RECOMPUTED, FLAG_SHORT_CLIP, Selection, choose,
                                       patch_scores)
from eval_encoder.video.decode import ClipDecodeError, decode_clip

log = logging.getLogger("eval_encoder.codec")


def select_from_frames(frames: np.ndarray, K: int, patch_size: int, input_size: int,
                       opts: CodecOptions, short_side: Optional[int] = None) -> Selection:
    """Select K patches of the T x (input_size/patch_size)^2 grid from uint8 frames [T,H,W,3]."""
    field = motion_field(frames)
    inter, maps = saliency(field, opts)
    per_frame = (input_size // patch_size) ** 2
    scores = np.zeros((frames.shape[0], per_frame))  # intra frames score 0
    if inter.size:
        scores[inter] = patch_scores(maps, short_side or input_size, input_size,
                                     patch_size).reshape(inter.size, per_frame)
    scores *= 255.0  # the static-clip thresholds are on upstream's 0..255 map scale
    return choose(scores.reshape(-1), K, per_frame, opts)


@dataclass
class Selector:
    """Selection with fixed parameters, reading and filling the cache when it has a folder."""

    num_frames: int
    input_size: int
    opts: CodecOptions
    short_side: Optional[int] = None

    def __post_init__(self) -> None:
        check_options(self.opts)
        p = self.opts.patch_size
        if self.input_size % p:
            raise CodecOptionError(f"input_size {self.input_size} is not a multiple of the "
                                   f"codec patch_size {p}")
        if self.short_side is not None and self.short_side < self.input_size:
            raise CodecOptionError(f"short_side_size {self.short_side} is smaller than "
                                   f"input_size {self.input_size}")
        self.grid = self.num_frames * (self.input_size // p) ** 2
        self.params = _cache.selection_params(self.num_frames, self.opts.K_keep, p,
                                              self.input_size, self.short_side or self.input_size,
                                              self.opts)

    def compute(self, frames: np.ndarray, path: str = "<frames>") -> Selection:
        """Select from decoded frames [num_frames, H, W, 3]; ``path`` names them in errors."""
        import av

        if frames.shape[0] != self.num_frames:
            raise ValueError(f"{path}: expected {self.num_frames} frames, got {frames.shape[0]}")
        try:
            return select_from_frames(frames, self.opts.K_keep, self.opts.patch_size,
                                      self.input_size, self.opts, self.short_side)
        except av.error.FFmpegError as exc:  # e.g. frames too small for the canonical encoder
            raise ClipDecodeError(f"{path}: codec re-encode failed ({exc})") from exc

    def lookup(self, path: str) -> Tuple[Optional[Selection], Optional[str], bool]:
        """(cached selection or None, cache file or None, whether a damaged file was found)."""
        if not self.opts.cache_dir:
            return None, None, False
        file = _cache.cache_path(self.opts.cache_dir, _cache.cache_key(path, self.params))
        try:
            return _cache.read_entry(file, self.opts.K_keep, self.grid), file, False
        except _cache.CacheDamaged as exc:
            log.warning("damaged codec cache entry %s for %s (%s); recomputing", file, path, exc)
            return None, file, True

    def _fresh(self, path: str, frames: np.ndarray, file: Optional[str]) -> Selection:
        sel = self.compute(frames, path)
        if file is not None:
            _cache.write_entry(file, sel)
        return sel

    def _flags(self, sel: Selection, damaged: bool, total_frames: int) -> int:
        """Stored flags plus the per-load ones (damaged entry replaced, short clip)."""
        flags = sel.flags | (FLAG_CACHE_RECOMPUTED if damaged else 0)
        return flags | (FLAG_SHORT_CLIP if total_frames < self.num_frames else 0)

    def select(self, path: str, frames: np.ndarray, total_frames: int) -> Selection:
        """Selection for ``frames`` decoded from ``path`` (cached when a cache folder is set)."""
        sel, file, damaged = self.lookup(path)
        if sel is None:
            sel = self._fresh(path, frames, file)
        return Selection(sel.indices, self._flags(sel, damaged, total_frames))

    def precompute(self, path: str, threads: int = 1) -> Tuple[str, int]:
        """Give ``path`` a valid cache entry: ("hit" | "computed" | "recomputed", flags).
        A hit does not decode the video."""
        if not self.opts.cache_dir:
            raise CodecOptionError("precomputing needs a cache folder (--cache_dir)")
        sel, file, damaged = self.lookup(path)
        if sel is not None:
            return "hit", sel.flags
        frames, _, total = decode_clip(path, self.num_frames, False, None, threads, uniform=True)
        sel = self._fresh(path, frames, file)
        return ("recomputed" if damaged else "computed"), self._flags(sel, False, total)

    def load(self, path: str, threads: int = 1) -> Tuple[np.ndarray, np.ndarray, int, Selection]:
        """Decode the ``num_frames`` uniform frames of ``path`` and select patches:
        (frames uint8 [T, H, W, 3], frame indices [T], total frames, selection)."""
        frames, idx, total = decode_clip(path, self.num_frames, False, None, threads, uniform=True)
        return frames, idx, total, self.select(path, frames, total)


def select_patches(video_path: str, num_frames: int = 64, K: int = 2048, patch_size: int = 14,
                   input_size: int = 224, **options) -> np.ndarray:
    """Indices (int64, sorted) of the K most informative patches of the
    ``num_frames x (input_size/patch_size)^2`` grid of ``video_path``'s uniformly sampled,
    resized and centre-cropped frames.

    ``options`` are CodecOptions fields (``mv_compensate``, ``center_prior``, ...,
    ``cache_dir``) plus ``short_side_size`` (resize size before the crop; default
    ``input_size``) and ``decode_threads``. Unreadable videos raise ClipDecodeError.
    """
    if "K_keep" in options:
        raise CodecOptionError("select_patches: give the budget as K=, not K_keep=")
    short_side = options.pop("short_side_size", None)
    threads = options.pop("decode_threads", 1)
    opts = make_options(K_keep=K, patch_size=patch_size, **options)
    return Selector(num_frames, input_size, opts, short_side).load(video_path, threads)[3].indices
