"""The encoder contract shared by every family.

An encoder is an ``nn.Module`` with a :class:`EncoderSpec` that declares its own
preprocessing and what it reads from the batch. ``forward(batch) -> tokens [B, N, D]``.
The trainer never branches on the family: a family that needs frame indices or visible
patch indices reads them from the batch, and the data pipeline learns from
``spec.clip_source`` which clip source produces them.

Batch keys (all tensors on the encoder's device):
  ``pixel_values``    float [B, C, T, H, W], already normalised with ``spec.mean``/``spec.std``
  ``frame_indices``   long  [B, T], frame numbers in the source video
  ``total_frames``    long  [B], frames in the source video
  ``visible_indices`` long  [B, K], patch indices into the T x (H/p) x (W/p) grid (codec)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Optional, Tuple

import torch
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder needs and gives: preprocessing, token layout, input kind."""

    family: str
    model_name: str
    embed_dim: int
    patch_size: int
    input_size: int
    mean: Tuple[float, float, float] = CLIP_MEAN
    std: Tuple[float, float, float] = CLIP_STD
    # "frames": T frames at segment points (sampling family, image baselines);
    # "codec": 64 uniform frames plus visible patch indices chosen from the compressed stream.
    clip_source: str = "frames"
    # frames the clip source must deliver; None means the run's --num_frames
    num_frames: Optional[int] = None
    # patch tokens per frame, the patch grid (None when the encoder returns a token budget
    # instead, as codec does); upstream's --frames_token_num describes this number. With
    # tubelet_size > 1 it is the grid of one tubelet (one temporal step), not of one frame
    tokens_per_frame: Optional[int] = None
    # prefix tokens (class, register) per frame given to the head ahead of that frame's patch
    # tokens; a frame gives the head tokens_per_frame + prefix_tokens tokens
    prefix_tokens: int = 0
    # prefix tokens (a class token) once per clip, ahead of every frame's or tubelet's tokens
    # (TimeSformer's and ViViT's class token); a clip gives the head clip_prefix_tokens +
    # frames / tubelet_size x (tokens_per_frame + prefix_tokens) tokens
    clip_prefix_tokens: int = 0
    # where each value came from when it was overridden on the command line
    overrides: Dict[str, str] = field(default_factory=dict)
    # frames per temporal patch: an encoder that embeds tubelets of k frames (V-JEPA 2: 2)
    # gives tokens per tubelet, so a clip holds a multiple of k frames and gives
    # frames / k x (tokens_per_frame + prefix_tokens) tokens; 1 for frame-by-frame encoders
    tubelet_size: int = 1
    # the shorter side frames are resized to before the centre crop, as the model's own
    # processor does (V-JEPA 2: 256/224 of the crop); None: the crop size. --short_side_size wins
    short_side: Optional[int] = None
    # where the family read values it does not fix in code (a processor config file, a
    # library class's defaults), by field name, for the record
    origins: Dict[str, str] = field(default_factory=dict)

    def with_overrides(self, sources: Optional[Dict[str, str]] = None,
                       **values) -> "EncoderSpec":
        """Return a copy with the run's values applied and noted in ``overrides``, each with
        where it came from (``sources``, a config's; the command line when not named)."""
        changed = {k: v for k, v in values.items() if v is not None and getattr(self, k) != v}
        notes = dict(self.overrides)
        notes.update({k: f"{(sources or {}).get(k, 'command line')} (family default "
                         f"{getattr(self, k)!r})" for k in changed})
        return replace(self, **changed, overrides=notes)

    def to_dict(self) -> dict:
        return asdict(self)


class VideoEncoder(nn.Module):
    """Base class: a frozen encoder that maps a batch to tokens ``[B, N, D]``."""

    spec: EncoderSpec

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def freeze(self) -> "VideoEncoder":
        """Put the encoder in eval mode with gradients off; returns self."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
