"""Codec-style patch selection: keep the K most informative patches of 64 frames, found the
way a video codec finds them (motion vectors and motion-compensated residuals).

``select_patches(video_path, ...)`` is the one-call API; :class:`Selector` is what the
``codec`` clip source and ``python -m eval_encoder codec precompute`` use.
"""
from eval_encoder.codec.options import CodecOptionError, CodecOptions, make_options
from eval_encoder.codec.pipeline import Selector, select_from_frames, select_patches

__all__ = ["CodecOptionError", "CodecOptions", "Selector", "make_options", "select_from_frames",
           "select_patches"]
