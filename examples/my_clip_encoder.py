"""A clip-level encoder of your own: the example of the README section "Clip-level encoders".

A clip module maps a whole clip ``[B, T, 3, H, W]`` (normalised with the mean/std it declares)
to tokens ``[B, N, D]``. ``@register_clip_encoder`` registers its factory as an encoder family
and declares the clip it takes and the tokens it gives; the suite samples T frames, resizes
them to the input size, normalises them, checks the tokens of every batch against the
declaration and counts the FLOPs on one blank clip::

    python -m eval_encoder probe --encoder_module examples/my_clip_encoder.py \\
        --model_family my_clip_encoder --model_name tiny --model_weight random --dataset demo

Here: 8 frames of 64 px, tubelets of 2 frames x 16 x 16 px (4 x 16 patch tokens) and one
class token for the whole clip, first: N = 1 + 8 / 2 x 16 = 65.
"""
from __future__ import annotations

import torch
from torch import nn

from eval_encoder.encoders.clip import register_clip_encoder
from eval_encoder.encoders.weights import load_state_dict, resolve_weights


class TubeletEncoder(nn.Module):
    """A toy clip encoder: a 3D convolution over tubelets, a class token, one attention layer."""

    def __init__(self, width: int = 32, tubelet: int = 2, patch: int = 16):
        super().__init__()
        self.embed = nn.Conv3d(3, width, (tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.block = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=2 * width,
                                                batch_first=True)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """``clip`` [B, T, 3, H, W] -> tokens [B, 1 + T/2 * (H/16) * (W/16), D]."""
        tokens = self.embed(clip.transpose(1, 2)).flatten(2).transpose(1, 2)  # frame-major
        cls = self.cls.expand(clip.shape[0], -1, -1)
        return self.block(torch.cat([cls, tokens], dim=1))


@register_clip_encoder("my_clip_encoder", num_frames=8, input_size=64, patch_size=16,
                       tubelet_size=2, clip_prefix_tokens=1,
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
def build(cfg) -> TubeletEncoder:
    """Family ``my_clip_encoder``: the module, with its weights unless ``random`` is asked."""
    torch.manual_seed(cfg.seed)
    module = TubeletEncoder()
    if cfg.model_weight != "random":
        path = resolve_weights(cfg.model_weight, cfg.allow_download)
        module.load_state_dict(load_state_dict(path))
        module.weights = str(path)  # the run record says what was loaded
    return module
