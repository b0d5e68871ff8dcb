"""One vector per clip from an encoder's tokens, the way the linear and kNN probes and
``embed --pool`` read them.

Tokens are ``[B, N, D]``: a clip's segments side by side; within a segment, the clip's prefix
tokens (``EncoderSpec.clip_prefix_tokens``: TimeSformer's and ViViT's class token) come first,
then one group per frame or tubelet, each its own prefix tokens (``prefix_tokens``: a frame's
class token and registers, for image encoders run frame by frame) before its patches.
:class:`TokenLayout` says how many of each (``TokenLayout.of(spec, frames, segments)``).

* ``mean``: the mean of the patch tokens (every prefix token left out);
* ``cls``: the class token: the clip's where there is one, else each frame's, averaged over
  frames and segments; an error for an encoder without any;
* ``auto``: ``cls`` where the encoder has a class token, else ``mean``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

POOLS = ("auto", "mean", "cls")


@dataclass(frozen=True)
class TokenLayout:
    """Where the prefix tokens are among a clip's tokens (see the module docstring)."""

    segments: int = 1
    clip_prefix: int = 0  # per segment, before its frames
    steps: int = 1  # frames or tubelets per segment
    prefix: int = 0  # per step, before its patches

    @classmethod
    def of(cls, spec, frames: int, segments: int = 1) -> "TokenLayout":
        """The layout of an encoder spec's tokens for ``frames`` frames per segment (an
        encoder with no per-frame grid, the codec's, has one step of tokens)."""
        if spec.tokens_per_frame is None:
            return cls(segments, spec.clip_prefix_tokens, 1, 0)
        steps = (spec.num_frames or frames) // spec.tubelet_size
        return cls(segments, spec.clip_prefix_tokens, steps, spec.prefix_tokens)

    @property
    def has_cls(self) -> bool:
        return self.clip_prefix > 0 or self.prefix > 0

    def patch_mask(self, n: int) -> torch.Tensor:
        """Booleans over the ``n`` tokens of a clip: True for a patch token."""
        per_segment, rest = divmod(n, self.segments)
        per_step, left = divmod(per_segment - self.clip_prefix, self.steps)
        if rest or left or per_step <= self.prefix:
            raise ValueError(f"{n} tokens do not split into {self.segments} segment(s) of "
                             f"{self.clip_prefix} clip prefix + {self.steps} x ({self.prefix} "
                             f"prefix + patches) tokens")
        step = torch.arange(per_step) >= self.prefix
        segment = torch.cat([torch.zeros(self.clip_prefix, dtype=torch.bool),
                             step.repeat(self.steps)])
        return segment.repeat(self.segments)

    def cls_index(self, n: int) -> torch.Tensor:
        """The positions of the class tokens pooled by ``cls``: each segment's first clip
        prefix token, else each step's first prefix token."""
        per_segment = n // self.segments
        starts = torch.arange(self.segments) * per_segment
        if self.clip_prefix:
            return starts
        per_step = (per_segment - self.clip_prefix) // self.steps
        return (starts[:, None] + torch.arange(self.steps)[None] * per_step).flatten()


def resolve_pool(how: str, layout: TokenLayout) -> str:
    """``mean`` or ``cls`` for ``how`` (``auto``: cls where there is a class token)."""
    if how not in POOLS:
        raise ValueError(f"pool {how!r}: choose one of {', '.join(POOLS)}")
    if how == "auto":
        return "cls" if layout.has_cls else "mean"
    if how == "cls" and not layout.has_cls:
        raise ValueError("pool 'cls': this encoder gives no class token; use 'mean'")
    return how


def pooled_vectors(out: torch.Tensor, how: str, layout: TokenLayout) -> torch.Tensor:
    """[B, D] float32 of an encoder pass's output: tokens [B, N, D] pooled, or vectors [B, D]
    already pooled this way (a feature cache's) as they are."""
    return out.float() if out.dim() == 2 else pool_tokens(out.float(), how, layout)


def pool_tokens(tokens: torch.Tensor, how: str, layout: TokenLayout) -> torch.Tensor:
    """``[B, D]``: the clip's vector from its tokens ``[B, N, D]`` (see the module)."""
    n = tokens.shape[1]
    mask = layout.patch_mask(n).to(tokens.device)
    if resolve_pool(how, layout) == "cls":
        return tokens[:, layout.cls_index(n).to(tokens.device)].mean(dim=1)
    return tokens[:, mask].mean(dim=1)
