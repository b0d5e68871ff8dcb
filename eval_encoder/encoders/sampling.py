"""The "sampling" family: the OneVision Encoder on T sampled frames, dense tokens per frame.

Upstream's ``chunk_wise_sampling`` / ``llava_vit_sampling``: each sampled frame keeps all
its (input/patch)^2 patches, and the frame's temporal RoPE position is its source frame
index mapped onto the ``--target_frames`` grid (64), ``round(i / (n - 1) * 63)``, so a clip
of T frames sits on the same temporal scale the encoder was trained with.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Dict

import torch

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.compute import register_cost, sampling_cost
from eval_encoder.encoders.base import CLIP_MEAN, CLIP_STD, EncoderSpec, VideoEncoder
from eval_encoder.encoders.onevision import OneVisionEncoder
from eval_encoder.encoders.onevision_config import (ONEVISION_MODEL_NAMES, OneVisionConfig,
                                                    onevision_config)
from eval_encoder.encoders.weights import check_weight_source, resolve_weights
from eval_encoder.registry import ENCODERS
from eval_encoder.video.decode import to_rope_grid

logger = logging.getLogger(__name__)

# the probe runs at 224 although the published config.json says image_size 448
DEFAULT_INPUT_SIZE = 224


def build_onevision_model(cfg: ProbeConfig) -> OneVisionEncoder:
    """The OneVision model named by ``cfg`` (shared by the sampling and codec families).

    ``--model_weight random``: random init of ``onevision_config(cfg.model_name)``, seeded
    by ``cfg.seed`` so every rank builds the same weights. Otherwise the weight is resolved
    (folder, file or hub id); a folder brings its own config.json, a single file takes its
    architecture from the model name. The returned model's ``weights_source`` says where its weights came from (run record).
    """
    attn = cfg.attn_implementation
    if cfg.model_weight == "random":
        model = _random_model(onevision_config(cfg.model_name), cfg.seed, attn)
        model.weights_source = f"random (seed {cfg.seed})"
        return model
    path = resolve_weights(cfg.model_weight, allow_download=cfg.allow_download)
    if path.is_dir():
        model = OneVisionEncoder.from_pretrained(path, attn_implementation=attn)
        _compare_with_name(model.config, cfg.model_name, path)
    elif cfg.model_name not in ONEVISION_MODEL_NAMES and (path.parent / "config.json").is_file():
        model = OneVisionEncoder.from_pretrained(path, attn_implementation=attn)
    else:
        model = OneVisionEncoder.from_pretrained(path, attn_implementation=attn,
                                                 config=onevision_config(cfg.model_name))
    model.weights_source = str(path)
    return model


def check_onevision_weights(cfg: ProbeConfig) -> None:
    """The weight :func:`build_onevision_model` would load is there (nothing is read)."""
    if cfg.model_weight != "random":
        check_weight_source(cfg.model_weight, cfg.allow_download)


def _random_model(config: OneVisionConfig, seed: int, attn: str) -> OneVisionEncoder:
    # a private CPU generator state: same weights on every rank, caller's RNG untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OneVisionEncoder(config, attn_implementation=attn)
    logger.info("OneVision encoder with random weights (seed %d)", seed)
    return model


def _compare_with_name(config: OneVisionConfig, model_name: str, source) -> None:
    """Warn when config.json disagrees with the shape the model name promises."""
    if model_name not in ONEVISION_MODEL_NAMES:
        return
    named = onevision_config(model_name)
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")
    diff = {f: (getattr(named, f), getattr(config, f)) for f in fields
            if getattr(named, f) != getattr(config, f)}
    if diff:
        logger.warning("%s/config.json differs from --model_name %s (name, file): %s; using the "
                       "file", source, model_name, diff)


def sampled_patch_positions(rope_t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """RoPE positions [B, T*h*w, 3] for T frames at temporal positions ``rope_t`` [B, T]."""
    b, t = rope_t.shape
    hh = torch.arange(h, device=rope_t.device).repeat_interleave(w)
    ww = torch.arange(w, device=rope_t.device).repeat(h)
    tt = rope_t.long()[:, :, None].expand(b, t, h * w)
    spatial = torch.stack([hh, ww], dim=-1).expand(b, t, h * w, 2)
    return torch.cat([tt[..., None], spatial], dim=-1).reshape(b, t * h * w, 3)


class SamplingEncoder(VideoEncoder):
    """Frozen OneVision Encoder over sampled frames: tokens [B, T * tokens_per_frame, D]."""

    def __init__(self, model: OneVisionEncoder, spec: EncoderSpec, target_frames: int = 64):
        super().__init__()
        if target_frames < 1:
            raise ConfigError(f"--target_frames must be at least 1, got {target_frames}")
        self.model = model
        self.spec = spec
        self.target_frames = target_frames
        # where the weights came from (a resolved path or "random"), for the run record
        self.weights = getattr(model, "weights_source", "unknown")

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["pixel_values"]
        if pixels.dim() != 5:
            raise ValueError(f"pixel_values must be [B, C, T, H, W], got {tuple(pixels.shape)}")
        b, _, t, hgt, wid = pixels.shape
        if hgt != wid:
            raise ValueError(f"the sampling family takes square frames, got {hgt}x{wid}")
        indices = batch["frame_indices"]
        if tuple(indices.shape) != (b, t):
            raise ValueError(f"frame_indices shape {tuple(indices.shape)} does not match "
                             f"{t} frames for batch {b}")
        rope_t = to_rope_grid(indices, batch["total_frames"], self.target_frames).to(pixels.device)
        p = self.spec.patch_size
        positions = sampled_patch_positions(rope_t, hgt // p, wid // p)
        return self.model(pixels, patch_positions=positions).last_hidden_state


register_cost(SamplingEncoder)(sampling_cost)


def sampling_spec(cfg: ProbeConfig, config: OneVisionConfig) -> EncoderSpec:
    """The family's spec with the command line's mean/std/input_size applied and checked."""
    spec = EncoderSpec(family="sampling", model_name=cfg.model_name, embed_dim=config.hidden_size,
                       patch_size=config.patch_size, input_size=DEFAULT_INPUT_SIZE,
                       mean=CLIP_MEAN, std=CLIP_STD, clip_source="frames")
    spec = spec.with_overrides(cfg.sources, input_size=cfg.input_size,
                               mean=tuple(cfg.mean) if cfg.mean is not None else None,
                               std=tuple(cfg.std) if cfg.std is not None else None)
    size, patch = spec.input_size, spec.patch_size
    if size <= 0 or size % patch:
        raise ConfigError(f"--input_size {size} is not a positive multiple of the patch size "
                          f"{patch} of {cfg.model_name}")
    return replace(spec, tokens_per_frame=(size // patch) ** 2)


def build_sampling(cfg: ProbeConfig) -> SamplingEncoder:
    """Factory of the ``sampling`` family (aliases: llava_vit_sampling, chunk_wise_sampling)."""
    if cfg.tubelet_size != 1:
        raise ConfigError(f"--tubelet_size {cfg.tubelet_size}: the OneVision encoder embeds "
                          "single frames (tubelet 1)")
    model = build_onevision_model(cfg)
    spec = sampling_spec(cfg, model.config)
    return SamplingEncoder(model, spec, cfg.target_frames).freeze()


def describe_onevision(family: str, tokens: str = "") -> list:
    """Listing rows (``python -m eval_encoder ls``) for the OneVision model names; no model is built."""
    rows = []
    for name, note in ONEVISION_MODEL_NAMES.items():
        config = onevision_config(name)
        per_frame = (DEFAULT_INPUT_SIZE // config.patch_size) ** 2
        rows.append({"family": family, "model_name": name, "embed_dim": config.hidden_size,
                     "patch_size": config.patch_size, "input_size": DEFAULT_INPUT_SIZE,
                     "tokens_per_frame": tokens or per_frame, "mean": list(CLIP_MEAN),
                     "std": list(CLIP_STD), "note": note})
    return rows


def check_onevision_name(name: str) -> None:
    """Raise ConfigError with suggestions unless ``name`` is a OneVision size (``ls models``).
    Folder weights bring their own config.json, but the name must still be a known one: a
    misspelt name would otherwise label the record (registry.check_names)."""
    onevision_config(name)


build_sampling.check_model_name = check_onevision_name
build_sampling.check_weights = check_onevision_weights
build_sampling.describe_models = lambda: describe_onevision("sampling")
build_sampling.description = "OneVision Encoder on T uniformly sampled frames, all patches of each"

ENCODERS.register("sampling", build_sampling,
                  aliases=("llava_vit_sampling", "chunk_wise_sampling", "ov_encoder_sampling"))
