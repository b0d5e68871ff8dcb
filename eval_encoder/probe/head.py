"""The attentive probe: a learned query attends over all tokens, then norm + linear classifier."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn


class AttentivePooling(nn.Module):
    """Multi-head attention pooling with a learned query (SigLIP2-style MAP head).

    One block: ``q' = MHA(q, x, x); out = q' + MLP(LayerNorm(q'))``. With ``depth > 1`` the
    pooled query attends to the tokens again through further blocks (upstream's probe_size).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4, depth: int = 1):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, dim))
        self.attention = nn.ModuleList(
            [nn.MultiheadAttention(dim, num_heads, batch_first=True) for _ in range(depth)])
        self.layernorm = nn.ModuleList([nn.LayerNorm(dim, eps=1e-6) for _ in range(depth)])
        self.mlp = nn.ModuleList([
            nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(approximate="tanh"),
                          nn.Linear(dim * mlp_ratio, dim)) for _ in range(depth)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        query = self.probe.expand(tokens.shape[0], -1, -1)
        for attn, norm, mlp in zip(self.attention, self.layernorm, self.mlp):
            query = attn(query, tokens, tokens, need_weights=False)[0]
            query = query + mlp(norm(query))
        return query[:, 0]


class ClassificationHead(nn.Module):
    """Attentive pooling -> LayerNorm -> Linear; the classifier starts scaled by ``init_scale``."""

    def __init__(self, dim: int, num_classes: int, depth: int = 1, init_scale: float = 1e-3):
        super().__init__()
        self.pool = AttentivePooling(dim, max(1, dim // 64), depth=depth)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)
        self.apply(_init_weights)
        with torch.no_grad():
            self.fc.weight.mul_(init_scale)
            self.fc.bias.mul_(init_scale)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.pool(tokens)))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def head_grid(lrs: Sequence[float], wds: Sequence[float]) -> List[Tuple[float, float]]:
    """Every (learning rate, weight decay) pair: one head each, all fed by one encoder pass."""
    return [(float(lr), float(wd)) for lr in lrs for wd in wds]


def head_name(lr: float, wd: float) -> str:
    return f"lr={lr:g},wd={wd:g}"
