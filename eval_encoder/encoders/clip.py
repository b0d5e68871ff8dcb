"""Clip mode of the encoder contract: a module that maps a whole clip to tokens.

A clip module takes ``[B, T, 3, H, W]`` (frames already normalised with its mean/std) and
returns tokens ``[B, N, D]``. It declares, in a :class:`ClipLayout`, the clip it was built for
(T frames of ``input_size`` px, its mean/std) and the tokens it gives: ``clip_prefix_tokens``
once per clip (a class token), then per frame or per tubelet of ``tubelet_size`` frames
``prefix_tokens`` + ``tokens_per_frame`` patch tokens. :class:`ClipModuleEncoder` turns it
into a suite encoder: it moves the suite's ``[B, 3, T, H, W]`` to the module's layout, checks
the frames and the tokens of every batch, and its FLOPs are counted on one blank clip.

Users register theirs with :func:`register_clip_encoder` (``examples/my_clip_encoder.py``);
the ``hf`` family's video models (``hf_video.py``) use the same adapter.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from eval_encoder.compute import clip_counted_cost, register_cost
from eval_encoder.config import ConfigError
from eval_encoder.encoders.base import EncoderSpec, VideoEncoder
from eval_encoder.encoders.baselines import as_triple
from eval_encoder.protocol import ORIGIN_PREFIX
from eval_encoder.registry import register_encoder

logger = logging.getLogger(__name__)

# how a run's sources name a --num_frames it did not ask for (the protocol's, the card's):
# such a default yields to the clip module's own frame count
DEFAULT_ORIGINS = (ORIGIN_PREFIX, "dataset card")


@dataclass(frozen=True)
class ClipLayout:
    """The clip a module takes and the tokens it gives (module docstring)."""

    num_frames: int
    input_size: int
    patch_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    tubelet_size: int = 1
    prefix_tokens: int = 0  # per frame or tubelet
    clip_prefix_tokens: int = 0  # once per clip, first
    tokens_per_frame: Optional[int] = None  # None: (input_size / patch_size)^2
    short_side: Optional[int] = None  # resize before the centre crop; None: the crop
    origins: Dict[str, str] = field(default_factory=dict)

    @property
    def grid(self) -> int:
        return self.tokens_per_frame or (self.input_size // self.patch_size) ** 2

    @property
    def tokens(self) -> int:
        """Tokens per clip: the clip's prefix, then per step its prefix and patch tokens."""
        steps = self.num_frames // self.tubelet_size
        return self.clip_prefix_tokens + steps * (self.grid + self.prefix_tokens)


class ClipModuleEncoder(VideoEncoder):
    """A clip module as a suite encoder: ``[B, 3, T, S, S]`` -> module -> ``[B, N, D]``."""

    def __init__(self, module: nn.Module, spec: EncoderSpec, weights: str, depth: int = 0):
        super().__init__()
        self.module = module
        self.spec = spec
        self.weights = weights  # what was loaded, for the run record
        self.depth = depth  # the module's layers, for the cost's arch label (0: not known)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        video = self._check_input(batch.get("pixel_values"))
        tokens = self.module(video.transpose(1, 2))  # the module takes [B, T, 3, S, S]
        return self._check_tokens(tokens, video.shape[0])

    def _name(self) -> str:
        return f"{self.spec.family}/{self.spec.model_name}"

    def _check_input(self, video: Optional[torch.Tensor]) -> torch.Tensor:
        size, frames = self.spec.input_size, self.spec.num_frames
        if video is None or video.dim() != 5 or video.shape[1] != 3 \
                or tuple(video.shape[-2:]) != (size, size):
            shape = None if video is None else tuple(video.shape)
            raise ValueError(f"{self._name()}: batch['pixel_values'] must be [B, 3, {frames}, "
                             f"{size}, {size}], got {shape}")
        if video.shape[2] != frames:
            raise ValueError(f"{self._name()} was built for clips of {frames} frames, got a clip "
                             f"of {video.shape[2]} frames: sample {frames} (--num_frames {frames})")
        return video

    def _check_tokens(self, tokens, rows: int) -> torch.Tensor:
        want = (rows, expected_tokens(self.spec), self.spec.embed_dim)
        if not torch.is_tensor(tokens) or tuple(tokens.shape) != want:
            got = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens).__name__
            raise ValueError(f"{self._name()}: the clip module returned {got}, its layout "
                             f"declares {want} (B, N, D)")
        return tokens


register_cost(ClipModuleEncoder)(clip_counted_cost)


def expected_tokens(spec: EncoderSpec) -> int:
    steps = spec.num_frames // spec.tubelet_size
    return spec.clip_prefix_tokens + steps * (spec.tokens_per_frame + spec.prefix_tokens)


def clip_spec(family: str, model_name: str, layout: ClipLayout, embed_dim: int) -> EncoderSpec:
    """The encoder spec a clip layout gives."""
    return EncoderSpec(family=family, model_name=model_name, embed_dim=embed_dim,
                       patch_size=layout.patch_size, input_size=layout.input_size,
                       mean=tuple(layout.mean), std=tuple(layout.std),
                       num_frames=layout.num_frames, tokens_per_frame=layout.grid,
                       prefix_tokens=layout.prefix_tokens, tubelet_size=layout.tubelet_size,
                       clip_prefix_tokens=layout.clip_prefix_tokens,
                       short_side=layout.short_side, origins=dict(layout.origins))


def blank_tokens(module: nn.Module, layout: ClipLayout, name: str) -> Tuple[int, int]:
    """(N, D) the module gives for one blank clip; an error when N is not what it declares."""
    clip = torch.zeros(1, layout.num_frames, 3, layout.input_size, layout.input_size)
    with torch.no_grad():
        out = module(clip)
    if not torch.is_tensor(out) or out.dim() != 3 or out.shape[1] != layout.tokens:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ConfigError(f"{name}: a clip of {layout.num_frames} frames at {layout.input_size} "
                          f"px gives {got}, but its layout declares [1, {layout.tokens}, D] "
                          f"({layout.clip_prefix_tokens} clip prefix + {layout.num_frames} / "
                          f"{layout.tubelet_size} x ({layout.grid} patch + "
                          f"{layout.prefix_tokens} prefix)); fix the declared layout")
    return int(out.shape[1]), int(out.shape[2])


def check_asked_frames(cfg, frames: int, name: str) -> None:
    """A --num_frames the run asked for (command line, recipe) must be the module's own;
    a protocol's or card's default yields to it (the run then samples ``frames``)."""
    origin = (getattr(cfg, "sources", None) or {}).get("num_frames")
    if cfg.num_frames == frames:
        return
    if origin is None or origin.startswith(DEFAULT_ORIGINS):
        logger.info("%s takes clips of %d frames (the default --num_frames %d yields)", name,
                    frames, cfg.num_frames)
        return
    raise ConfigError(f"{name} was built for clips of {frames} frames, but --num_frames "
                      f"{cfg.num_frames} ({origin}) asks for {cfg.num_frames}: its positions do "
                      f"not interpolate over time; pass --num_frames {frames} or leave it out")


def build_clip_encoder(family: str, cfg, module: nn.Module, layout: ClipLayout,
                       weights: Optional[str] = None, depth: int = 0) -> ClipModuleEncoder:
    """A frozen suite encoder of a clip module: the frames asked checked, the declared tokens
    checked on a blank clip, --mean/--std applied over the declared ones."""
    name = f"{family}/{cfg.model_name}"
    check_asked_frames(cfg, layout.num_frames, name)
    module.eval()
    _, width = blank_tokens(module, layout, name)
    spec = clip_spec(family, cfg.model_name, layout, width)
    spec = spec.with_overrides(cfg.sources, mean=as_triple(cfg.mean, "mean"),
                               std=as_triple(cfg.std, "std"))
    weights = weights or str(getattr(module, "weights", None) or "not reported by the module")
    return ClipModuleEncoder(module, spec, weights, depth).freeze()


def register_clip_encoder(name: str, aliases: Iterable[str] = (), **layout) -> Callable:
    """Register ``factory(cfg) -> nn.Module`` (a clip module) as the encoder family ``name``;
    ``layout`` are :class:`ClipLayout`'s fields (num_frames, input_size, patch_size, mean,
    std, and optionally tubelet_size, prefix_tokens, clip_prefix_tokens, tokens_per_frame)."""
    declared = ClipLayout(**layout)

    def wrap(factory: Callable) -> Callable:
        def build(cfg) -> ClipModuleEncoder:
            return build_clip_encoder(name, cfg, factory(cfg), declared)

        build.layout = declared
        build.__doc__ = factory.__doc__
        register_encoder(name, aliases)(build)
        return factory

    return wrap
