"""Adding an encoder: the example of the README section "Adding an encoder".

A family is a factory ``build(cfg) -> VideoEncoder`` registered under a name. Put it in your
own module and load that module when you run the probe; the package stays untouched::

    torchrun --nproc_per_node 8 attentive_probe.py --encoder_module my_pkg.my_encoders \\
        --model_family my_patch_encoder --model_name tiny \\
        --model_weight /path/to/weights.safetensors --dataset ssv2

(``--encoder_module`` also takes a path: ``--encoder_module examples/my_encoders.py``; an
installed package can instead declare an ``eval_encoder.encoders`` entry point.)

The encoder declares its own preprocessing in its ``EncoderSpec`` and returns tokens
``[B, N, D]`` from ``batch["pixel_values"]`` ``[B, 3, T, H, W]``; the probe heads, data
pipeline and run record take everything else from the spec.
"""
from __future__ import annotations

from torch import nn

from eval_encoder.encoders.base import EncoderSpec, VideoEncoder
from eval_encoder.encoders.weights import load_state_dict, resolve_weights
from eval_encoder.registry import register_encoder


class FramePatchEncoder(VideoEncoder):
    """A toy encoder: one convolution turns each frame's 16x16 patches into tokens."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        self.spec = spec
        self.proj = nn.Conv2d(3, spec.embed_dim, spec.patch_size, stride=spec.patch_size)

    def forward(self, batch):
        video = batch["pixel_values"]  # [B, 3, T, H, W], already normalised with spec.mean/std
        b, c, t, h, w = video.shape
        tokens = self.proj(video.transpose(1, 2).reshape(b * t, c, h, w))  # [B*T, D, h', w']
        return tokens.flatten(2).transpose(1, 2).reshape(b, -1, self.spec.embed_dim)


@register_encoder("my_patch_encoder")
def build(cfg) -> FramePatchEncoder:
    """Family ``my_patch_encoder``: 64 px frames, 16 px patches, 32-wide tokens."""
    size = cfg.input_size or 64
    spec = EncoderSpec(family="my_patch_encoder", model_name=cfg.model_name, embed_dim=32,
                       patch_size=16, input_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                       tokens_per_frame=(size // 16) ** 2)
    spec = spec.with_overrides(input_size=cfg.input_size)  # the run record notes the change
    encoder = FramePatchEncoder(spec)
    if cfg.model_weight != "random":  # random weights only when asked for
        path = resolve_weights(cfg.model_weight, cfg.allow_download)
        encoder.load_state_dict(load_state_dict(path))
        encoder.weights = str(path)  # the run record says what was loaded
    return encoder
