"""Head kind ``ov``: the OneVision probe as published: a learned query attends over all tokens,
then norm + linear.

The head is the probe's definition, so both OneVision protocols use it unchanged. It follows the
published ``ClassificationHead`` (OneVision-Encoder ``eval_encoder/attentive_probe.py``) and its
pooling block (``Siglip2MultiheadAttentionPoolingHead``):

  pooled = MHA(q, x, x);  pooled = pooled + MLP(RMSNorm(pooled));  logits = fc(LayerNorm(pooled))

with an RMSNorm without bias (eps from the input's dtype), an MLP of width 4D with the exact
(erf) GELU, D // 64 attention heads, and the published parameter names, so head weights load
either way. Modules are created in the published order, so one seed gives the published
initialisation: probe ~ N(0, 1); attention in-projection Xavier-uniform with zero bias; every
Linear (the attention's out-projection included) truncated-normal(0.02) with zero bias; the
classifier then scaled by 1e-3. Options: ``num_heads`` (default D // 64, as published),
``mlp_ratio`` (4) and ``depth``, which is 1 only (one pooling block, as published).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from eval_encoder.probe.heads.base import MLP, register_head


class AttentivePooling(nn.Module):
    """Multi-head attention pooling with one learned query (a MAP head), as published."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, dim))
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.RMSNorm(dim)
        self.mlp = MLP(dim, dim * mlp_ratio)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, D] -> pooled [B, D]."""
        query = self.probe.expand(tokens.shape[0], -1, -1)
        pooled = self.attention(query, tokens, tokens, need_weights=False)[0]
        pooled = pooled + self.mlp(self.norm(pooled))
        return pooled[:, 0]


class ClassificationHead(nn.Module):
    """Attentive pooling -> LayerNorm -> Linear; the classifier starts scaled by ``init_scale``."""

    head_kind = "ov"  # what the bank fuses it with (eval_encoder.probe.heads.base.bank_groups)

    def __init__(self, dim: int, num_classes: int, init_scale: float = 1e-3,
                 num_heads: Optional[int] = None, mlp_ratio: int = 4):
        super().__init__()
        self.pool = AttentivePooling(dim, num_heads or max(1, dim // 64), mlp_ratio)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)
        self.apply(_init_weights)
        with torch.no_grad():
            self.fc.weight.mul_(init_scale)
            self.fc.bias.mul_(init_scale)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.pool(tokens)))


def _init_weights(module: nn.Module) -> None:
    """The published init, applied to every submodule (RMSNorm keeps its ones)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------- the head bank

def folded_queries(pool: AttentivePooling) -> torch.Tensor:
    """[H, D]: the pooling query pushed through the key projection, per attention head, and
    scaled by 1/sqrt(d_head): a token's attention score is its dot product with it. (The key
    bias adds the same number to every token's score, so it cancels in the softmax.)"""
    attn = pool.attention
    d, heads = attn.embed_dim, attn.num_heads
    w_q, w_k, _ = attn.in_proj_weight.split(d)
    b_q = attn.in_proj_bias[:d]
    q = (pool.probe.reshape(1, d) @ w_q.t() + b_q).reshape(heads, d // heads)
    keys = w_k.reshape(heads, d // heads, d)
    return torch.einsum("he,hed->hd", q, keys) / math.sqrt(d // heads)


def _after_pooling(pool: AttentivePooling, mixed: torch.Tensor) -> torch.Tensor:
    """[B, H, D] attention-weighted token means -> pooled [B, D]: the value projection per
    attention head (the value bias passes through, the weights sum to one), the output
    projection, then the RMSNorm-MLP residual."""
    attn = pool.attention
    d, heads = attn.embed_dim, attn.num_heads
    _, _, w_v = attn.in_proj_weight.split(d)
    b_v = attn.in_proj_bias[2 * d:]
    values = torch.einsum("bhd,hed->bhe", mixed, w_v.reshape(heads, d // heads, d))
    pooled = attn.out_proj(values.reshape(mixed.shape[0], d) + b_v)
    return pooled + pool.mlp(pool.norm(pooled))


def fused_logits(heads: Sequence["ClassificationHead"], tokens: torch.Tensor) -> torch.Tensor:
    """Logits [B, len(heads), C] of every head on the same tokens [B, N, D], exactly the
    heads' own ``forward`` up to float round-off, at the cost of about one head.

    No token is projected to keys or values: the scores of every attention head of every
    probe head come from one matrix product of the tokens with the stacked folded queries,
    and the attention-weighted token means from one more; projections then act on [B, D]
    vectors only. Gradients flow to every parameter as in the unfolded head (the key bias,
    which cancels in the softmax, gets none in either)."""
    queries = [folded_queries(h.pool) for h in heads]
    split = [q.shape[0] for q in queries]
    scores = tokens @ torch.cat(queries).t()  # [B, N, sum H]
    weights = scores.softmax(dim=1).transpose(1, 2)  # [B, sum H, N]
    mixed = (weights @ tokens).split(split, dim=1)  # per head [B, H, D]
    return torch.stack([h.fc(h.norm(_after_pooling(h.pool, m))) for h, m in zip(heads, mixed)],
                       dim=1)


ONE_BLOCK = "the published head has one attention-pooling block (the published scripts parse " \
            "--probe_size and ignore it)"


@register_head("ov", options={"depth": 1, "num_heads": None, "mlp_ratio": 4},
               fixed={"depth": (1, ONE_BLOCK)}, bank=fused_logits)
def build(dim: int, num_classes: int, depth: int, num_heads: Optional[int],
          mlp_ratio: int) -> ClassificationHead:
    """OneVision's published head: one query, MHA (D/64 heads), RMSNorm-MLP, LayerNorm, linear."""
    return ClassificationHead(dim, num_classes, num_heads=num_heads, mlp_ratio=mlp_ratio)
