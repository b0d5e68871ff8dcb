"""Head kind ``vjepa2``: V-JEPA 2's frozen-evaluation probe (``AttentiveClassifier``).

Written from the published description (facebookresearch/vjepa2 ``src/models/
attentive_pooler.py`` and ``src/models/utils/modules.py``), with its parameter names and
shapes, so its state_dicts load either way (``tests/data/vjepa2_*``, made by running the
published code, check names, logits and initialisation):

  x = tokens [B, N, D]
  depth - 1 pre-norm self-attention blocks:  x += Attn(LN(x));  x += MLP(LN(x))
  one cross-attention block from a learned query q [1, 1, D]:
      q += CrossAttn(q, LN(x))   (q and kv projections, no output projection)
      q += MLP(LN(q))
  logits = linear(q)

Attention has ``num_heads`` heads (16 in every published config), biases on q, k and v, and
the scaled-dot-product softmax; MLPs are width ``mlp_ratio`` x D with the exact (erf) GELU;
LayerNorms have eps 1e-5. Initialisation, in the published order (one seed gives the published
draws): every Linear of the pooler truncated-normal(0.02) with zero bias, the query too, the
LayerNorms ones and zeros; then each self-attention block ``i`` (from 1) divides its attention
output projection and its second MLP layer by sqrt(2 i), and the cross-attention block's second
MLP layer is divided like the last block's (sqrt(2 max(1, depth - 1))); the classifier
``linear`` keeps PyTorch's default Linear initialisation (the published classifier applies no
init of its own to it).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from eval_encoder.probe.heads.base import MLP, register_head

INIT_STD = 0.02


def trunc_normal_(tensor: torch.Tensor, std: float = INIT_STD, a: float = -2.0,
                  b: float = 2.0) -> torch.Tensor:
    """Normal(0, std) truncated to [a, b] by the inverse-CDF method the published code uses:
    one uniform draw per value, mapped through erfinv. (``nn.init.trunc_normal_`` of recent
    torch draws by rejection instead: the same law, other numbers for a seed.)"""
    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    with torch.no_grad():
        tensor.uniform_(2 * cdf(a / std) - 1, 2 * cdf(b / std) - 1)
        tensor.erfinv_().mul_(std * math.sqrt(2.0))
        return tensor.clamp_(min=a, max=b)


def _heads_first(x: torch.Tensor, parts: int, heads: int) -> torch.Tensor:
    """[B, N, parts * D] -> [parts, B, heads, N, D / heads]: the published column layout
    (part, head, channel)."""
    return x.unflatten(-1, (parts, heads, -1)).permute(2, 0, 3, 1, 4)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, d] -> [B, N, heads * d]."""
    return x.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one qkv projection and an output projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _heads_first(self.qkv(x), 3, self.num_heads)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class Block(nn.Module):
    """Pre-norm transformer block over all tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttention(nn.Module):
    """Queries attend over tokens: q and kv projections, no output projection (as published)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)

    def forward(self, queries: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        (q,) = _heads_first(self.q(queries), 1, self.num_heads)
        k, v = _heads_first(self.kv(x), 2, self.num_heads)
        return _merge_heads(F.scaled_dot_product_attention(q, k, v))


class CrossAttentionBlock(nn.Module):
    """The query's block: cross-attention over the normed tokens, then a pre-norm MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.xattn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """depth - 1 self-attention blocks, then one learned query's cross-attention block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, depth: int):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, dim))
        # the order modules are made in is the order their weights are drawn in
        self.cross_attention_block = CrossAttentionBlock(dim, num_heads, mlp_ratio)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth - 1))
        trunc_normal_(self.query_tokens)
        self.apply(_init_weights)
        self._rescale()

    def _rescale(self) -> None:
        """Divide each residual branch's last layer by sqrt(2 x its block number)."""
        with torch.no_grad():
            for i, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * i))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * i))
            last = max(1, len(self.blocks))
            self.cross_attention_block.mlp.fc2.weight.div_(math.sqrt(2.0 * last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, D] -> pooled [B, 1, D]."""
        for block in self.blocks:
            x = block(x)
        return self.cross_attention_block(self.query_tokens.expand(x.shape[0], -1, -1), x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class AttentiveClassifier(nn.Module):
    """The pooler, then a linear classifier on the pooled query."""

    head_kind = "vjepa2"

    def __init__(self, dim: int, num_classes: int, num_heads: int = 16, depth: int = 4,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.pooler = AttentivePooler(dim, num_heads, mlp_ratio, depth)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pooler(tokens)[:, 0])


@register_head("vjepa2", options={"depth": 4, "num_heads": 16, "mlp_ratio": 4})
def build(dim: int, num_classes: int, depth: int, num_heads: int,
          mlp_ratio: float) -> AttentiveClassifier:
    """V-JEPA 2's probe: depth-1 self-attention blocks, a query's cross-attention block, linear."""
    if depth < 1:
        raise ValueError(f"head kind 'vjepa2': depth must be >= 1, got {depth}")
    return AttentiveClassifier(dim, num_classes, num_heads, depth, mlp_ratio)
