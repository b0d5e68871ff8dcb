"""The "codec" family: the OneVision Encoder on the K most informative patches of 64 frames.

Upstream's ``ov_encoder_codec`` / ``llava_vit_codec``: the clip source (``clip_source =
"codec"``, see :mod:`eval_encoder.codec.source`) delivers 64 uniformly sampled frames and
the indices of the K patches chosen from the compressed stream; the frames go through the
normal transforms, and only the chosen patches are embedded and encoded, each at its
(t, h, w) position on the 64-frame grid. Tokens: [B, K, D].
"""
from __future__ import annotations

from typing import Dict

import torch

import eval_encoder.codec.source  # noqa: F401  (registers the "codec" clip source)
from eval_encoder.compute import codec_cost, register_cost
from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.encoders.base import CLIP_MEAN, CLIP_STD, EncoderSpec, VideoEncoder
from eval_encoder.encoders.onevision import OneVisionEncoder
from eval_encoder.encoders.sampling import (DEFAULT_INPUT_SIZE, build_onevision_model,
                                            check_onevision_name, check_onevision_weights,
                                            describe_onevision)
from eval_encoder.registry import ENCODERS

CODEC_FRAMES = 64  # the temporal grid the encoder was trained on; upstream requires exactly 64


class CodecEncoder(VideoEncoder):
    """Frozen OneVision Encoder over selected patches: tokens [B, K, D]."""

    def __init__(self, model: OneVisionEncoder, spec: EncoderSpec):
        super().__init__()
        self.model = model
        self.spec = spec
        self.weights = getattr(model, "weights_source", None)  # for the run record

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        pixels, visible = batch["pixel_values"], batch["visible_indices"]
        if pixels.dim() != 5 or pixels.shape[2] != self.spec.num_frames:
            raise ValueError(f"the codec family takes pixel_values [B, C, {self.spec.num_frames}, "
                             f"H, W], got {tuple(pixels.shape)}")
        if visible.dim() != 2 or visible.shape[0] != pixels.shape[0]:
            raise ValueError(f"visible_indices must be [B={pixels.shape[0]}, K], got "
                             f"{tuple(visible.shape)}")
        # the indices already address the 64 x h x w grid, so each patch keeps its own
        # (t, h, w) RoPE position; only these K patches are embedded
        return self.model(pixels, visible_indices=visible.long()).last_hidden_state


register_cost(CodecEncoder)(codec_cost)


def codec_spec(cfg: ProbeConfig, model: OneVisionEncoder) -> EncoderSpec:
    """The family's spec (64 frames, codec clip source) with command-line overrides, checked
    against the codec selection options."""
    config = model.config
    spec = EncoderSpec(family="codec", model_name=cfg.model_name, embed_dim=config.hidden_size,
                       patch_size=config.patch_size, input_size=DEFAULT_INPUT_SIZE,
                       mean=CLIP_MEAN, std=CLIP_STD, clip_source="codec",
                       num_frames=CODEC_FRAMES, tokens_per_frame=None)
    spec = spec.with_overrides(cfg.sources, input_size=cfg.input_size,
                               mean=tuple(cfg.mean) if cfg.mean is not None else None,
                               std=tuple(cfg.std) if cfg.std is not None else None)
    _check(cfg, spec)
    return spec


def _check(cfg: ProbeConfig, spec: EncoderSpec) -> None:
    if cfg.codec.patch_size != spec.patch_size:
        raise ConfigError(f"--patch_size {cfg.codec.patch_size} (codec selection grid) differs "
                          f"from the patch size {spec.patch_size} of {cfg.model_name}; they "
                          "must match")
    if spec.input_size <= 0 or spec.input_size % spec.patch_size:
        raise ConfigError(f"--input_size {spec.input_size} is not a positive multiple of the patch "
                          f"size {spec.patch_size}")
    if cfg.num_frames != CODEC_FRAMES and "num_frames" in cfg.sources:
        raise ConfigError(f"--num_frames {cfg.num_frames}: the codec family always reads "
                          f"{CODEC_FRAMES} uniformly sampled frames; drop the flag or pass "
                          f"{CODEC_FRAMES}")
    if cfg.target_frames != CODEC_FRAMES:
        raise ConfigError(f"--target_frames {cfg.target_frames}: the codec family places patches "
                          f"on the {CODEC_FRAMES}-frame grid it samples; leave it at {CODEC_FRAMES}")
    if cfg.tubelet_size != 1:
        raise ConfigError(f"--tubelet_size {cfg.tubelet_size}: the OneVision encoder embeds "
                          "single frames (tubelet 1)")


def build_codec(cfg: ProbeConfig) -> CodecEncoder:
    """Factory of the ``codec`` family (aliases: llava_vit_codec, ov_encoder_codec)."""
    model = build_onevision_model(cfg)
    return CodecEncoder(model, codec_spec(cfg, model)).freeze()


build_codec.check_model_name = check_onevision_name
build_codec.check_weights = check_onevision_weights
build_codec.describe_models = lambda: describe_onevision("codec", tokens="K (--K_keep)")
build_codec.description = ("OneVision Encoder on the K most informative patches of 64 frames, "
                           "chosen from motion vectors and residuals")

ENCODERS.register("codec", build_codec, aliases=("llava_vit_codec", "ov_encoder_codec"))
