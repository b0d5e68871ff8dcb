"""The ``codec`` clip source: 64 uniform frames plus the visible patch indices chosen from
the compressed stream, cached on disk (``--cache_dir``, by default ``<save_report>/codec_cache``)
so that the selection is computed once per clip, not once per epoch.

The selection is made on the centre crop of the whole clip, as upstream does, so every
training epoch and every view of a clip sees the same frames and patches; several spatial
or temporal views would therefore be identical, and are refused instead of computed.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, Tuple

import numpy as np

from eval_encoder.codec.pipeline import Selector
from eval_encoder.config import ConfigError
from eval_encoder.codec.select import FLAG_NAMES, FLAG_WARNINGS
from eval_encoder.registry import CLIP_SOURCES
from eval_encoder.video import dataset as _ds
from eval_encoder.video.dataset import ClipRequest

_ds.FLAG_NAMES.update(FLAG_NAMES)
_ds.FLAG_WARNINGS.update(FLAG_WARNINGS)
log = logging.getLogger("eval_encoder.codec")


class CodecSource:
    """Clip source for encoders whose ``spec.clip_source`` is ``"codec"``."""

    extras_keys = ("visible_indices", "flags")

    def __init__(self, num_frames: int, decode_threads: int = 1, cfg=None, spec=None, **_):
        if cfg is None or spec is None:
            raise ConfigError("the codec clip source needs the run config and the encoder spec")
        for flag in ("num_spatial_crops", "num_temporal_crops"):
            if getattr(cfg, flag, 1) != 1:
                raise ConfigError(f"--{flag} {getattr(cfg, flag)}: the codec family selects "
                                  "patches on the centre crop of 64 uniform frames, so every "
                                  "view would be the same; use 1")
        for flag, one in (("num_segments", 1), ("frame_step", 0)):
            if getattr(cfg, flag, None) not in (None, one):
                raise ConfigError(f"--{flag} {getattr(cfg, flag)}: the codec family selects "
                                  f"patches from 64 uniform frames of the whole clip; use {one}")
        input_size = cfg.input_size or spec.input_size
        self.decode_threads = decode_threads
        opts = cfg.codec
        if not opts.cache_dir:
            # the selection does not change between epochs; recomputing it every epoch would
            # cost 2-3 decodes per clip per epoch
            opts = dataclasses.replace(opts, cache_dir=os.path.join(cfg.save_report, "codec_cache"))
            log.info("codec selections are cached in %s (--cache_dir to choose)", opts.cache_dir)
        self.selector = Selector(num_frames, input_size, opts, cfg.short_side_size)
        if opts.codec_pixels == "reencoded":
            log.info("frames are decoded from HEVC copies made as the published step 2 does, "
                     "once per clip, into %s (--codec_pixels reencoded)",
                     os.path.join(opts.cache_dir, "hevc"))

    def load(self, req: ClipRequest) -> Tuple[np.ndarray, np.ndarray, int, Dict[str, np.ndarray]]:
        """(frames uint8 [T,H,W,3], frame indices [T], total frames, extras) for one clip."""
        frames, idx, total, sel = self.selector.load(req.path, self.decode_threads, req.segment)
        extras = {"visible_indices": sel.indices,
                  "flags": np.array([sel.flags], dtype=np.int64)}
        return frames, idx, total, extras


CLIP_SOURCES.register("codec", CodecSource)
