"""A clip's segments through the encoder, and a clip's views into one score.

Segments (``--num_segments``, V-JEPA 2's multi-clip input): the loader delivers a clip of S
segments of T frames as one sample, frames segment after segment ([B, C, S*T, H, W]).
:func:`fold_segments` turns it into S samples of T frames for the encoder, whose contract
stays ``[B, C, T, H, W] -> [B, N, D]`` whatever its family; :func:`unfold_tokens` puts each
clip's S token sets back side by side, segment after segment ([B, S*N, D]), as V-JEPA 2's
``ClipAggregation`` concatenates them for the probe.

Views (``--view_fusion``): the scores of a validation clip's spatial and temporal views are
averaged as logits (the OneVision scripts) or as softmax probabilities (V-JEPA 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

import torch

# batch keys split along their time axis (dim) when a clip's segments are folded into the
# batch; every other tensor with a row per clip is repeated once per segment
TIME_AXIS = {"pixel_values": 2, "frame_indices": 1}


def fold_segments(batch: Dict, segments: int) -> Dict:
    """The batch with each clip's ``segments`` segments as samples of their own (clip b's
    segment s at row b * segments + s)."""
    if segments == 1:
        return batch
    if "visible_indices" in batch:
        raise ValueError("visible patch indices (codec) cover a whole clip: they cannot be "
                         "split into segments")
    rows = batch["pixel_values"].shape[0]
    return {key: _fold(key, value, rows, segments) for key, value in batch.items()}


def _fold(key: str, value, rows: int, segments: int):
    if not torch.is_tensor(value) or value.dim() == 0 or value.shape[0] != rows:
        return value
    if key not in TIME_AXIS:
        return value.repeat_interleave(segments, dim=0)
    axis = TIME_AXIS[key]
    length = value.shape[axis]
    if length % segments:
        raise ValueError(f"{key} has {length} frames, not a multiple of {segments} segments")
    shape = value.shape[:axis] + (segments, length // segments) + value.shape[axis + 1:]
    split = value.reshape(shape).movedim(axis, 1)  # [B, S, ...]
    return split.reshape((rows * segments,) + split.shape[2:])


def unfold_tokens(tokens: torch.Tensor, segments: int) -> torch.Tensor:
    """[B*S, N, D] tokens of folded segments -> [B, S*N, D], each clip's segments in order."""
    if segments == 1:
        return tokens
    rows, n, width = tokens.shape
    if rows % segments:
        raise ValueError(f"{rows} token sets are not whole clips of {segments} segments")
    return tokens.reshape(rows // segments, segments * n, width)


@dataclass(frozen=True)
class ViewFusion:
    """How views combine: each view's logits are mapped by ``per_view``, averaged, and the
    average mapped back by ``to_logits`` (whose softmax is then the clip's probabilities)."""

    name: str
    per_view: Callable[[torch.Tensor], torch.Tensor]
    to_logits: Callable[[torch.Tensor], torch.Tensor]


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


VIEW_FUSIONS: Dict[str, ViewFusion] = {
    "logits": ViewFusion("logits", _same, _same),
    # the log of the mean probability: its softmax is that mean exactly
    "softmax": ViewFusion("softmax", lambda x: x.float().softmax(dim=-1), torch.log),
}


def view_fusion(name: str) -> ViewFusion:
    """The fusion named ``name`` (``--view_fusion``); ValueError naming the choices."""
    if name not in VIEW_FUSIONS:
        raise ValueError(f"--view_fusion {name!r}: choose one of {', '.join(VIEW_FUSIONS)}")
    return VIEW_FUSIONS[name]
