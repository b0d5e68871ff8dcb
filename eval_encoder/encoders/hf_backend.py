"""The ``hf`` family: any Hugging Face vision model id or folder, through transformers.

For checkpoints timm lacks (AIMv2 native resolution, MetaCLIP 2, ...)::

    --model_family hf --model_name apple/aimv2-large-patch14-native

``--model_weight`` (a folder or hub id), when given, is what is loaded and ``--model_name``
is then only the label; otherwise ``--model_name`` is loaded. The model is read with
``local_files_only`` unless ``--allow_download``, and never with ``trust_remote_code``.
``--model_weight random`` builds the architecture from its config with random weights.
transformers is an optional extra (``pip install 'eval-encoder[hf]'``), imported only here.

Frames run through the same per-frame adapter as the timm baselines (chunks of frames,
upstream temporal encoding added to every token). The prefix tokens (class, registers) are
whatever precedes the ``(size / patch)^2`` patch tokens of ``last_hidden_state``, counted
once at build time; ``--token_layout family`` keeps them as the published wrappers did
(``last_hidden_state`` whole; DINOv2 without its class token), ``patch`` drops them, ``all``
keeps them.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from eval_encoder.config import ConfigError
from eval_encoder.compute import hf_cost, register_cost
from eval_encoder.encoders.base import EncoderSpec
from eval_encoder.encoders.baselines import (NO_WEIGHT, PREFIX_KEPT, PerFrameEncoder,
                                             as_triple, check_per_frame_flags,
                                             check_patch_multiple)
from eval_encoder.encoders.weights import check_weight_source
from eval_encoder.registry import ENCODERS

logger = logging.getLogger(__name__)

EXTRA_HINT = "the hf family needs transformers: pip install 'eval-encoder[hf]'"
# the published wrappers gave the head last_hidden_state whole, except DINOv2's ([:, 1:]);
# keyed by transformers' model_type, "all" for every other type
PUBLISHED_LAYOUT = {"dinov2": "patch"}
# transformers model_type -> builder(cfg, transformers, source, config) of a clip-level video
# encoder, and the listing rows of those; filled by hf_video.py, which imports this module
VIDEO_BUILDERS: Dict[str, Callable] = {}
VIDEO_ROWS: List[Callable[[], list]] = []


def import_transformers():
    """transformers, or a ConfigError naming the ``[hf]`` extra when it is not installed."""
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(f"{EXTRA_HINT} ({exc})") from None
    return transformers


class HFFrameEncoder(PerFrameEncoder):
    """A transformers vision model applied frame by frame (tokens from last_hidden_state)."""

    def __init__(self, vision: nn.Module, spec: EncoderSpec, weights: str,
                 interpolate: bool = False):
        super().__init__(spec, num_prefix_tokens=None)
        self.vision = vision
        self.weights = weights
        self._kwargs = {"interpolate_pos_encoding": True} if interpolate else {}

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vision(pixel_values=images, **self._kwargs)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


register_cost(HFFrameEncoder)(hf_cost)


class HFFamily:
    """The ``hf`` family's ENCODERS factory."""

    description = ("any Hugging Face vision model id or folder (transformers, extra [hf]): image "
                   "models frame by frame; video models (VideoMAE, TimeSformer, ViViT, X-CLIP's "
                   "vision tower, V-JEPA 2) on whole clips at their own frame count")

    def __call__(self, cfg) -> nn.Module:
        return build_hf(cfg)

    def check_weights(self, cfg) -> None:
        """A ``--model_weight`` given is there: a file, a folder or a cached hub id (nothing
        is read; transformers finds the weight files of a folder itself)."""
        given = (cfg.model_weight or "").strip()
        if given != "random" and given not in NO_WEIGHT:
            check_weight_source(given, cfg.allow_download, weight_file=False)

    def describe_models(self) -> list:
        """No fixed table: ``--model_name`` is any vision model id or folder."""
        rows = [{"family": "hf", "model_name": "<hub id or folder>",
                 "note": "any transformers image model, frame by frame; width, size and "
                         "mean/std from its config and image processor"}]
        return rows + [row for rows_of in VIDEO_ROWS for row in rows_of()]


def build_hf(cfg) -> nn.Module:
    """Build the frozen encoder for a transformers model: a video model's config type goes to
    its clip-level builder (:data:`VIDEO_BUILDERS`), any other model runs frame by frame."""
    check_per_frame_flags(cfg)
    transformers = import_transformers()
    given = (cfg.model_weight or "").strip()
    random_init = given == "random"
    source = cfg.model_name if random_init or given in NO_WEIGHT else given
    local_only = not cfg.allow_download
    config = _read_config(transformers, source, local_only)
    video = VIDEO_BUILDERS.get(getattr(config, "model_type", ""))
    if video is not None:
        return video(cfg, transformers, source, config)
    model = _load_model(transformers, source, local_only, random_init)
    vision = getattr(model, "vision_model", model)
    vcfg = getattr(model.config, "vision_config", model.config)
    patch = _int_attr(vcfg, "patch_size", source)
    native = _int_attr(vcfg, "image_size", source)
    mean, std, proc_size = _processor_stats(transformers, source, local_only)
    size = check_patch_multiple(cfg.input_size or proc_size or native, patch)
    spec = _make_spec(cfg, source, int(vcfg.hidden_size), patch, proc_size or native, mean, std)
    spec = spec.with_overrides(cfg.sources, input_size=size if cfg.input_size else None)
    interpolate = size != native and "interpolate_pos_encoding" in inspect.signature(
        vision.forward).parameters
    encoder = HFFrameEncoder(vision, spec, "random" if random_init else source, interpolate)
    encoder.spec = token_spec(encoder, size, patch, vcfg, cfg.token_layout)
    logger.info("hf/%s: %s at %d px, %d prefix + %d patch tokens/frame", cfg.model_name,
                type(vision).__name__, size, encoder.spec.prefix_tokens,
                encoder.spec.tokens_per_frame)
    return encoder.freeze()


def token_spec(encoder: HFFrameEncoder, size: int, patch: int, vcfg, layout: str) -> EncoderSpec:
    """The encoder's spec with its patch grid and the prefix tokens kept per frame (counted
    by encoding one blank frame): the published layout of its model type, or ``layout``."""
    with torch.no_grad():
        have = encoder.encode_images(torch.zeros(1, 3, size, size)).shape[1] - (size // patch) ** 2
    if have < 0:
        raise ConfigError(f"hf/{encoder.spec.model_name}: the model returns fewer tokens than "
                          f"its {(size // patch) ** 2} patches")
    published = PUBLISHED_LAYOUT.get(getattr(vcfg, "model_type", ""), "all")
    spec = replace(encoder.spec, tokens_per_frame=(size // patch) ** 2,
                   prefix_tokens=PREFIX_KEPT[published](have))
    if layout not in ("family", *PREFIX_KEPT):
        raise ConfigError(f"--token_layout {layout!r}: choose family, {', '.join(PREFIX_KEPT)}")
    return spec.with_overrides(prefix_tokens=PREFIX_KEPT[layout](have)
                               if layout in PREFIX_KEPT else None)


def _read_config(transformers, source: str, local_only: bool):
    """The checkpoint's config (never remote code; local files unless allowed)."""
    try:
        return transformers.AutoConfig.from_pretrained(source, local_files_only=local_only,
                                                       trust_remote_code=False)
    except (OSError, ValueError) as exc:
        how = "" if not local_only else " (only local files are read; --allow_download fetches)"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"hf: cannot read the config of {source!r}{how}: {reason}") from exc


def _load_model(transformers, source: str, local_only: bool, random_init: bool) -> nn.Module:
    """AutoModel from a folder or hub id; never remote code, local files unless allowed."""
    try:
        if random_init:
            config = transformers.AutoConfig.from_pretrained(
                source, local_files_only=local_only, trust_remote_code=False)
            logger.warning("hf/%s: random weights (--model_weight random)", source)
            return transformers.AutoModel.from_config(config, trust_remote_code=False)
        model, info = transformers.AutoModel.from_pretrained(
            source, local_files_only=local_only, trust_remote_code=False, output_loading_info=True)
    except (OSError, ValueError) as exc:
        how = "" if not local_only else " (only local files are read; --allow_download fetches)"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"hf: cannot load {source!r} with transformers AutoModel{how}: "
                          f"{reason}") from exc
    # transformers only warns about keys it had to initialise randomly; a probe of a
    # half-random model is not a measurement, so refuse it
    bad = [*info.get("missing_keys", []), *[str(k[0]) if isinstance(k, tuple) else str(k)
                                            for k in info.get("mismatched_keys", [])]]
    if bad:
        raise ConfigError(f"hf: {source!r} does not hold every weight of its model "
                          f"({len(bad)} missing or mismatched, e.g. {bad[:5]}); refusing a "
                          "partly random encoder")
    return model


def _int_attr(config, name: str, source: str) -> int:
    value = getattr(config, name, None)
    if isinstance(value, (list, tuple)):
        value = value[0]
    if not isinstance(value, int):
        raise ConfigError(f"hf: {source!r} config has no integer {name!r}; is it a vision model?")
    return value


def _processor_stats(transformers, source: str, local_only: bool
                     ) -> Tuple[Optional[tuple], Optional[tuple], Optional[int]]:
    """mean, std and crop size from the model's image processor (None where absent)."""
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(
            source, local_files_only=local_only, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        logger.info("hf: no image processor for %s (%s)", source, exc)
        return None, None, None
    mean = getattr(proc, "image_mean", None)
    std = getattr(proc, "image_std", None)
    size = getattr(proc, "crop_size", None) or getattr(proc, "size", None) or {}
    side = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else None
    return (tuple(mean) if mean else None, tuple(std) if std else None,
            int(side) if side else None)


def _make_spec(cfg, source: str, width: int, patch: int, size: int,
               mean: Optional[tuple], std: Optional[tuple]) -> EncoderSpec:
    """The spec with the processor's mean/std; without a processor both must be given."""
    cli_mean, cli_std = as_triple(cfg.mean, "mean"), as_triple(cfg.std, "std")
    if mean is None or std is None:
        if cli_mean is None or cli_std is None:
            raise ConfigError(f"hf: {source!r} has no image processor config with image_mean/"
                              "image_std; pass --mean and --std")
        note = "command line (the model has no image processor config)"
        return EncoderSpec(family="hf", model_name=cfg.model_name, embed_dim=width,
                           patch_size=patch, input_size=size, mean=cli_mean, std=cli_std,
                           overrides={"mean": note, "std": note})
    spec = EncoderSpec(family="hf", model_name=cfg.model_name, embed_dim=width,
                       patch_size=patch, input_size=size, mean=mean, std=std)
    return spec.with_overrides(mean=cli_mean, std=cli_std)


ENCODERS.register("hf", HFFamily(), aliases=("huggingface", "transformers"))
