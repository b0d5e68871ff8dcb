"""Head kinds on one pooled vector per clip: ``linear`` (trained) and ``knn`` (no training).

Both read the clip's tokens [B, N, D] like every head and pool them first with
``eval_encoder.features.pool.pool_tokens`` (option ``pool``: ``auto`` is the class token where
the encoder has one, else the mean of the patch tokens; where the prefix tokens are, the
options ``segments``, ``clip_prefix``, ``steps`` and ``prefix`` of a ``TokenLayout``, comes
from the encoder's spec and the run, not from flags).

``linear``: LayerNorm without affine parameters on the pooled vector, then one Linear layer
(truncated-normal(0.01) weights, zero bias, as MAE's and DINO's linear probes start). The
normalisation plays the part of MAE/VideoMAE's BatchNorm without affine (features of any scale
meet one learning-rate grid) but uses no batch statistics, so a head gives the same numbers
whatever the batch split or world size and has no running state to checkpoint; the affine
part would fold into the linear layer. A grid of linear heads runs as one batched product.

``knn``: DINO's weighted k-nearest-neighbour classifier. Train and query vectors are
L2-normalised; a query's k most cosine-similar train clips vote for their labels with weight
exp(cosine / T); a class's score is its share of the votes (DINO's vote sums divided by their
total: the same ranking; computed after subtracting the best cosine, so a small T cannot
overflow). Among train clips of equal similarity the lower train index comes first, so the
neighbours do not depend on ``topk``'s order. k larger than the train clips is an error. The
head's "logits" are the log vote shares (a view fusion of ``softmax`` averages the shares).
It trains nothing: ``fit`` gives it the train split's vectors (see probe/pooled.py). Several
k share one similarity product (the ``knn`` bank).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from eval_encoder.features.pool import TokenLayout, pooled_vectors, resolve_pool
from eval_encoder.probe.heads.base import HeadOptionError, register_head

POOLING = {"pool": "auto", "segments": 1, "clip_prefix": 0, "steps": 1, "prefix": 0}
SHARE_FLOOR = 1e-30  # log of a class without votes (every real share is far above it)


class Pooled(nn.Module):
    """A head that reads one vector per clip: the pooling its tokens go through."""

    def __init__(self, pool: str, layout: TokenLayout):
        super().__init__()
        try:
            resolve_pool(pool, layout)
        except ValueError as exc:
            raise HeadOptionError(f"--probe_pool {pool}: {exc}") from None
        self.pooling = (pool, layout)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, D] float32: the clip vector of tokens [B, N, D]; a [B, D] input is taken as
        already pooled this way (the run's feature cache, probe/cached.py)."""
        return pooled_vectors(tokens, *self.pooling)


class LinearHead(Pooled):
    """LayerNorm (no affine) on the pooled vector, then Linear."""

    head_kind = "linear"

    def __init__(self, dim: int, num_classes: int, pool: str = "auto",
                 layout: TokenLayout = TokenLayout()):
        super().__init__(pool, layout)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.pooled(tokens)
        return F.layer_norm(x, x.shape[-1:])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(tokens))


def linear_logits(heads: Sequence[LinearHead], tokens: torch.Tensor) -> torch.Tensor:
    """Logits [B, M, C] of M linear heads, pooled once, in one batched product."""
    _same_pooling(heads)
    x = heads[0].features(tokens)
    weights = torch.stack([h.fc.weight for h in heads])  # [M, C, D]
    biases = torch.stack([h.fc.bias for h in heads])  # [M, C]
    return torch.einsum("bd,mcd->bmc", x, weights) + biases


def _same_pooling(heads: Sequence[Pooled]) -> None:
    if len({h.pooling for h in heads}) > 1:
        raise ValueError("heads of one bank pool their tokens differently: "
                         f"{sorted({h.pooling for h in heads})}")


# ----------------------------------------------------------------------------- kNN

def neighbours(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Bool [B, N]: each row's k most similar train clips, ties to the lower train index."""
    n = sim.shape[1]
    if k > n:
        raise ValueError(f"--knn_k {k}: more neighbours than the {n} train clips")
    threshold = sim.topk(k, dim=1).values[:, -1:]
    above = sim > threshold
    tied = sim == threshold
    room = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=1) <= room))


def vote_shares(sim: torch.Tensor, labels: torch.Tensor, k: int, temperature: float,
                num_classes: int) -> torch.Tensor:
    """[B, C]: each class's share of the exp(cosine / T) votes of the k neighbours."""
    chosen = neighbours(sim, k)
    best = sim.max(dim=1, keepdim=True).values
    weights = torch.where(chosen, ((sim - best) / temperature).exp(), torch.zeros_like(sim))
    votes = torch.zeros(sim.shape[0], num_classes, dtype=sim.dtype, device=sim.device)
    votes.scatter_add_(1, labels.expand(sim.shape[0], -1), weights)
    return votes / votes.sum(dim=1, keepdim=True)


class KnnHead(Pooled):
    """k-nearest neighbours of the L2-normalised pooled vector among the train split's."""

    head_kind = "knn"

    def __init__(self, dim: int, num_classes: int, k: int = 20, temperature: float = 0.07,
                 pool: str = "auto", layout: TokenLayout = TokenLayout()):
        super().__init__(pool, layout)
        self.k, self.temperature, self.num_classes = int(k), float(temperature), num_classes
        # the train split's vectors: given by fit, never in the state_dict (nothing learnt)
        self.train_features: Optional[torch.Tensor] = None
        self.train_labels: Optional[torch.Tensor] = None

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooled(tokens), dim=-1)

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep the train vectors [N, D] (normalised here) and their labels [N]."""
        if self.k > features.shape[0]:
            raise ValueError(f"--knn_k {self.k}: more neighbours than the "
                             f"{features.shape[0]} train clips")
        self.train_features = F.normalize(features.float(), dim=-1)
        self.train_labels = labels.long().reshape(1, -1)

    def shares(self, sim: torch.Tensor) -> torch.Tensor:
        labels = self.train_labels.to(sim.device)
        return vote_shares(sim, labels, self.k, self.temperature, self.num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return knn_logits([self], tokens)[:, 0]


def knn_logits(heads: Sequence[KnnHead], tokens: torch.Tensor) -> torch.Tensor:
    """Log vote shares [B, M, C] of M kNN heads; one similarity product for the heads that
    share their train vectors (every k of a run)."""
    _same_pooling(heads)
    if any(h.train_features is None for h in heads):
        raise RuntimeError("a knn head scored before fit(): it has no train vectors")
    query = heads[0].features(tokens)
    sims = {}
    out = []
    for h in heads:
        key = id(h.train_features)
        if key not in sims:
            sims[key] = query @ h.train_features.to(query.device).t()
        out.append(h.shares(sims[key]).clamp_min(SHARE_FLOOR).log())
    return torch.stack(out, dim=1)


@register_head("linear", options=dict(POOLING), bank=linear_logits)
def build_linear(dim: int, num_classes: int, pool: str, **layout: int) -> LinearHead:
    """A linear classifier on the pooled, normalised clip vector (one per lr x wd)."""
    return LinearHead(dim, num_classes, pool, TokenLayout(**layout))


@register_head("knn", options={"k": 20, "temperature": 0.07, **POOLING}, bank=knn_logits,
               trains=False, sweep="k")
def build_knn(dim: int, num_classes: int, k: int, temperature: float, pool: str,
              **layout: int) -> KnnHead:
    """Weighted k-nearest neighbours (DINO's) of the pooled clip vector; no training."""
    return KnnHead(dim, num_classes, k, temperature, pool, TokenLayout(**layout))
