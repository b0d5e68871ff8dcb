"""The OneVision Encoder: a ViT with 3D (t, h, w) rotary position embeddings, in plain PyTorch.

Parameter names and numerics follow the published Hugging Face checkpoints
(``OneVisionEncoderModel``, model_type ``onevision_encoder``), so their ``model.safetensors``
loads strictly without ``transformers``. What differs from a plain ViT:

* no learned position embeddings; every attention layer rotates q and k by a 3D RoPE whose
  half-dimension is split 4:6:6 between time, height and width, each part with its own
  inverse frequencies ``rope_theta ** (-i / part)``; the frequencies are concatenated
  ``[t, h, w]`` and then duplicated ``[f, f]``, and rotation pairs neighbouring channels
  ``(x0, x1) -> (-x1, x0)`` (the "interleaved" rotate-half of the release);
* a token may carry any (t, h, w) position (``patch_positions``), which is how sampled
  frames are placed on a 64-frame temporal grid, and only some patches may be encoded
  (``visible_indices``), which is how the codec family feeds its selected patches.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from eval_encoder.config import ConfigError
from eval_encoder.encoders import weights as weight_io
from eval_encoder.encoders.onevision_config import _ACTIVATIONS, OneVisionConfig
from eval_encoder.files import atomic_path

logger = logging.getLogger(__name__)

ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "flash")

try:  # optional fast path on CUDA; never required
    from flash_attn import flash_attn_func as _flash_attn_func
except ImportError:  # the package is absent (always on CPU-only installs)
    _flash_attn_func = None


class VideoRope3D(nn.Module):
    """3D rotary frequencies: head_dim/2 split 4:6:6 into t, h, w parts.

    The inverse frequencies are recomputed per call (three short vectors) instead of stored
    as buffers: the published checkpoints hold none, and this keeps meta-device loading and
    ``.to(device)`` free of special cases.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 32:
            raise ConfigError(f"head_dim {head_dim} must be a multiple of 32 for the 4:6:6 split")
        unit = head_dim // 2 // 16
        self.head_dim = head_dim
        self.theta = float(theta)
        self.sizes = (4 * unit, 6 * unit, 6 * unit)

    def inv_freqs(self, device=None) -> Tuple[torch.Tensor, ...]:
        """Inverse frequencies of the t, h and w parts (float32)."""
        return tuple(1.0 / (self.theta ** (torch.arange(n, dtype=torch.float32, device=device) / n))
                     for n in self.sizes)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``positions`` [..., 3] (t, h, w) -> angles [..., head_dim/2] (float32)."""
        pos = positions.to(torch.float32)
        parts = [pos[..., i, None] * inv for i, inv in enumerate(self.inv_freqs(positions.device))]
        return torch.cat(parts, dim=-1)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, split(t,h,w)={self.sizes}"


def grid_positions(t: int, h: int, w: int, device=None) -> torch.Tensor:
    """(t, h, w) of every patch of a T x h x w grid in raster order: long [t*h*w, 3]."""
    tt, hh, ww = torch.meshgrid(torch.arange(t, device=device), torch.arange(h, device=device),
                                torch.arange(w, device=device), indexing="ij")
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)


def index_positions(indices: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(t, h, w) of flat patch indices into a T x h x w grid: [..., 3] long."""
    indices = indices.long()
    return torch.stack([indices // (h * w), (indices // w) % h, indices % w], dim=-1)


def rotate_half_interleaved(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): rotation of neighbouring pairs."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [B, H, N, D] by angles given as float32 cos/sin [B, 1, N, D].

    Computed in float32 and cast back (as the later upstream releases do): in bf16 the
    angle error would grow with the position. Note that with the released frequency layout
    (``[f, f]`` duplicated, neighbouring channels paired) the two channels of a pair get
    different angles, so this is not an exact rotation; it is kept because the weights
    were trained with it.
    """
    xf = x.float()
    return (xf * cos + rotate_half_interleaved(xf) * sin).to(x.dtype)


def make_norm(config: OneVisionConfig) -> nn.Module:
    """LayerNorm or RMSNorm over the width, as ``layer_norm_type`` says."""
    if config.layer_norm_type == "rms_norm":
        return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class OneVisionMLP(nn.Module):
    """fc1 -> GELU (exact or tanh) -> fc2."""

    def __init__(self, config: OneVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = nn.GELU(approximate=_ACTIVATIONS[config.hidden_act])
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class OneVisionAttention(nn.Module):
    """Multi-head self-attention with 3D RoPE on q and k (SDPA, or flash-attn on CUDA)."""

    def __init__(self, config: OneVisionConfig, attn_implementation: str = "auto"):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        self.attn_implementation = attn_implementation
        dim = config.hidden_size
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        p = self.dropout if self.training else 0.0
        if self._use_flash(q):
            # flash-attn takes [B, N, H, D]
            out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                   dropout_p=p, softmax_scale=self.head_dim ** -0.5, causal=False)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p).transpose(1, 2)
        return self.out_proj(out.reshape(b, n, d))

    def _use_flash(self, q: torch.Tensor) -> bool:
        if self.attn_implementation == "sdpa":
            return False
        fits = _flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
        if self.attn_implementation == "flash" and not fits:
            raise RuntimeError(
                "attn_implementation='flash' needs the flash_attn package and CUDA fp16/bf16 "
                f"tensors; got flash_attn {'present' if _flash_attn_func else 'missing'}, "
                f"{q.device.type} {q.dtype}. Use --attn_implementation auto or sdpa.")
        return fits


class OneVisionEncoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: OneVisionConfig, attn_implementation: str = "auto"):
        super().__init__()
        self.layer_norm1 = make_norm(config)
        self.self_attn = OneVisionAttention(config, attn_implementation)
        self.layer_norm2 = make_norm(config)
        self.mlp = OneVisionMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), cos, sin)
        return x + self.mlp(self.layer_norm2(x))


class OneVisionTransformer(nn.Module):
    """The stack of layers; named ``encoder`` in the model so keys read ``encoder.layers.N``."""

    def __init__(self, config: OneVisionConfig, attn_implementation: str = "auto"):
        super().__init__()
        self.layers = nn.ModuleList(OneVisionEncoderLayer(config, attn_implementation)
                                    for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, cos, sin)
        return x


class OneVisionPoolingHead(nn.Module):
    """Attention pooling with one learned probe query (the checkpoint's ``head``)."""

    def __init__(self, config: OneVisionConfig):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.attention = nn.MultiheadAttention(config.hidden_size, config.num_attention_heads,
                                               batch_first=True)
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = OneVisionMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probe = self.probe.expand(x.shape[0], -1, -1)
        pooled, _ = self.attention(probe, x, x, need_weights=False)
        pooled = pooled + self.mlp(self.norm(pooled))
        return pooled[:, 0]


class OneVisionEmbeddings(nn.Module):
    """Per-frame patch embedding (a bias-free conv with stride = kernel = patch size)."""

    def __init__(self, config: OneVisionConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size,
                                         kernel_size=config.patch_size, stride=config.patch_size,
                                         bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, T*h*w, D], frames in order, patches in raster order."""
        b, c, t, hgt, wid = pixel_values.shape
        frames = pixel_values.transpose(1, 2).reshape(b * t, c, hgt, wid)
        out = self.patch_embedding(frames).flatten(2).transpose(1, 2)
        return out.reshape(b, -1, out.shape[-1])

    def embed_patches(self, pixel_values: torch.Tensor, visible_indices: torch.Tensor) -> torch.Tensor:
        """Embed only the patches at ``visible_indices`` [B, K] of the T x h x w grid.

        The patch conv is a linear map of each patch's pixels, so gathering the K patches
        and multiplying by the flattened kernel equals the full conv followed by a gather,
        at K/(T*h*w) of the cost.
        """
        b, c, t, hgt, wid = pixel_values.shape
        p = self.patch_size
        h, w = hgt // p, wid // p
        # a view [B, C, T, h, p, w, p]; advanced indexing below copies only the K patches
        grid = pixel_values.reshape(b, c, t, h, p, w, p)
        pos = index_positions(visible_indices, h, w)
        rows = torch.arange(b, device=pixel_values.device)[:, None]
        patches = grid[rows, :, pos[..., 0], pos[..., 1], :, pos[..., 2], :]  # [B, K, C, p, p]
        kernel = self.patch_embedding.weight.reshape(self.patch_embedding.out_channels, -1)
        return patches.reshape(b, visible_indices.shape[1], -1) @ kernel.t()


@dataclass
class OneVisionOutput:
    """``last_hidden_state`` [B, N, D]; ``pooler_output`` [B, D] or None without a head."""

    last_hidden_state: torch.Tensor
    pooler_output: Optional[torch.Tensor] = None


class OneVisionEncoder(nn.Module):
    """OneVision Encoder with the published checkpoints' parameter names."""

    def __init__(self, config: OneVisionConfig, attn_implementation: str = "auto"):
        super().__init__()
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ConfigError(f"attn_implementation {attn_implementation!r} is not one of "
                              f"{list(ATTN_IMPLEMENTATIONS)}")
        if attn_implementation == "flash" and _flash_attn_func is None:
            raise ConfigError("attn_implementation 'flash' was requested but flash_attn is not "
                              "installed (pip install flash-attn, CUDA only); use 'auto' or 'sdpa'")
        self.config = config
        self.attn_implementation = attn_implementation
        self.embeddings = OneVisionEmbeddings(config)
        self.layernorm_pre = make_norm(config)
        self.encoder = OneVisionTransformer(config, attn_implementation)
        self.video_rope = VideoRope3D(config.head_dim, config.rope_theta)
        self.layernorm_post = make_norm(config) if config.use_head else None
        self.head = OneVisionPoolingHead(config) if config.use_head else None
        if not self.layernorm_pre.weight.is_meta:  # meta: weights come from a checkpoint next
            self.init_weights()

    # -- weights ---------------------------------------------------------------------------

    def init_weights(self) -> "OneVisionEncoder":
        """Random init as upstream: N(0, initializer_range) linears/conv, zero bias, unit norms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        return self

    @classmethod
    def from_pretrained(cls, path: Union[str, os.PathLike], attn_implementation: str = "auto",
                        config: Optional[OneVisionConfig] = None,
                        dtype: Optional[torch.dtype] = torch.float32) -> "OneVisionEncoder":
        """Load a folder (config.json + model.safetensors / shards / pytorch_model.bin) or a
        single weight file (``config`` given, or a config.json beside it), strictly.

        Floating tensors are cast to ``dtype`` (None keeps the file's). Missing or unexpected
        keys and shape mismatches raise ConfigError naming the file and the keys.
        """
        path = Path(path)
        if config is None:
            config_path = path / "config.json" if path.is_dir() else path.parent / "config.json"
            if not config_path.is_file():
                raise ConfigError(f"{path}: no config.json found next to the weights; pass the "
                                  "architecture (a model name such as ov_encoder_large)")
            config = OneVisionConfig.from_json_file(config_path)
        state = weight_io.load_state_dict(path)
        with torch.device("meta"):
            model = cls(config, attn_implementation)
        model.load_checked(state, source=str(path), dtype=dtype)
        logger.info("loaded OneVision encoder (%d layers, width %d) from %s",
                    config.num_hidden_layers, config.hidden_size, path)
        return model

    def load_checked(self, state: Dict[str, torch.Tensor], source: str = "checkpoint",
                     dtype: Optional[torch.dtype] = torch.float32) -> None:
        """Strictly load ``state`` (assigning its tensors), with errors that name keys."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ConfigError(f"{source}: checkpoint does not match the OneVision architecture "
                              f"({self.config.num_hidden_layers} layers, width "
                              f"{self.config.hidden_size}): "
                              + weight_io.describe_key_mismatch(missing, unexpected))
        for key, ref in own.items():
            if tuple(state[key].shape) != tuple(ref.shape):
                raise ConfigError(f"{source}: {key} has shape {tuple(state[key].shape)}, the "
                                  f"architecture needs {tuple(ref.shape)}")
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        self.load_state_dict(state, strict=True, assign=True)

    def save_pretrained(self, folder: Union[str, os.PathLike]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the published layout)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / "config.json")
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(tensors, tmp, metadata={"format": "pt"})
        return folder

    # -- forward ---------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor, visible_indices: Optional[torch.Tensor] = None,
                patch_positions: Optional[torch.Tensor] = None) -> OneVisionOutput:
        """Encode a clip [B, C, T, H, W] (or an image [B, C, H, W]).

        * neither option: every patch, at its grid position t = 0..T-1;
        * ``patch_positions`` [B, N, 3] (t, h, w): every patch in order (or, with
          ``visible_indices``, the visible ones in that order) at these positions;
        * ``visible_indices`` [B, K]: only these patches of the T x h x w grid are embedded
          and encoded; without ``patch_positions`` they keep their grid positions.
        """
        if pixel_values.dim() == 4:
            pixel_values = pixel_values.unsqueeze(2)
        t, h, w = self._grid(pixel_values)
        pixel_values = pixel_values.to(self.embeddings.patch_embedding.weight.dtype)
        if visible_indices is None:
            tokens = self.embeddings(pixel_values)
            default_pos = grid_positions(t, h, w, pixel_values.device).unsqueeze(0)
        else:
            _check_indices(visible_indices, pixel_values.shape[0], t * h * w)
            tokens = self.embeddings.embed_patches(pixel_values, visible_indices)
            default_pos = index_positions(visible_indices, h, w)
        if patch_positions is None:
            positions = default_pos
        else:
            _check_positions(patch_positions, tokens.shape[:2])
            positions = patch_positions
        return self.encode_tokens(tokens, positions)

    def encode_tokens(self, tokens: torch.Tensor, positions: torch.Tensor) -> OneVisionOutput:
        """Run the transformer on embedded patches [B, N, D] at positions [B or 1, N, 3]."""
        angles = self.video_rope(positions)
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [B, 1, N, head_dim]
        x = self.layernorm_pre(tokens)
        cos, sin = angles.cos(), angles.sin()
        x = self.encoder(x, cos, sin)
        if self.layernorm_post is not None:
            x = self.layernorm_post(x)
        pooled = self.head(x) if self.head is not None else None
        return OneVisionOutput(last_hidden_state=x, pooler_output=pooled)

    def _grid(self, pixel_values: torch.Tensor) -> Tuple[int, int, int]:
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be [B, C, T, H, W] or [B, C, H, W], got shape "
                             f"{tuple(pixel_values.shape)}")
        _, c, t, hgt, wid = pixel_values.shape
        p = self.config.patch_size
        if c != self.config.num_channels or hgt % p or wid % p:
            raise ValueError(f"pixel_values shape {tuple(pixel_values.shape)}: needs "
                             f"{self.config.num_channels} channels and H, W divisible by the "
                             f"patch size {p}")
        return t, hgt // p, wid // p


def _check_indices(indices: torch.Tensor, batch: int, total: int) -> None:
    if indices.dim() != 2 or indices.shape[0] != batch or indices.dtype.is_floating_point:
        raise ValueError(f"visible_indices must be an integer tensor [B={batch}, K], got "
                         f"{indices.dtype} {tuple(indices.shape)}")
    # an out-of-range index would be a device-side assert on CUDA; say which instead
    if indices.numel() and bool(((indices < 0) | (indices >= total)).any()):
        lo, hi = int(indices.min()), int(indices.max())
        raise ValueError(f"visible_indices range [{lo}, {hi}] is outside the {total} patches "
                         "of the input grid")


def _check_positions(positions: torch.Tensor, tokens_shape: Tuple[int, int]) -> None:
    b, n = tokens_shape
    if positions.dim() != 3 or positions.shape[-1] != 3 or positions.shape[1] != n \
            or positions.shape[0] not in (1, b):
        raise ValueError(f"patch_positions must be [B={b}, N={n}, 3] (t, h, w), got "
                         f"{tuple(positions.shape)}")
