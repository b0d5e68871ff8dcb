"""One vector per clip from an encoder's tokens, the way the linear and kNN probes and
``embed --pool`` read them.

Tokens are ``[B, N, D]`` with ``N = segments x (prefix + patches)``: each segment's prefix
tokens (a class token, registers) come first, as ``EncoderSpec.prefix_tokens`` says.

* ``mean``: the mean of the patch tokens of every segment (prefix tokens left out);
* ``cls``: the class token (the first prefix token), averaged over segments; an error for a
  family without one;
* ``auto``: ``cls`` where the family has a prefix token, else ``mean``.
"""
from __future__ import annotations

import torch

POOLS = ("auto", "mean", "cls")


def resolve_pool(how: str, prefix_tokens: int) -> str:
    """``mean`` or ``cls`` for ``how`` (``auto``: cls where there is a prefix token)."""
    if how not in POOLS:
        raise ValueError(f"pool {how!r}: choose one of {', '.join(POOLS)}")
    if how == "auto":
        return "cls" if prefix_tokens > 0 else "mean"
    if how == "cls" and prefix_tokens < 1:
        raise ValueError("pool 'cls': this encoder gives no class token (prefix_tokens 0); "
                         "use 'mean'")
    return how


def by_segment(tokens: torch.Tensor, segments: int) -> torch.Tensor:
    """``[B, S * n, D]`` -> ``[B, S, n, D]``, with a clear error when N does not split."""
    b, n, d = tokens.shape
    if segments < 1 or n % segments:
        raise ValueError(f"{n} tokens do not split into {segments} segments")
    return tokens.reshape(b, segments, n // segments, d)


def pool_tokens(tokens: torch.Tensor, how: str, prefix_tokens: int,
                segments: int = 1) -> torch.Tensor:
    """``[B, D]``: the clip's vector from its tokens ``[B, N, D]`` (see the module)."""
    parts = by_segment(tokens, segments)
    if resolve_pool(how, prefix_tokens) == "cls":
        return parts[:, :, 0].mean(dim=1)
    return parts[:, :, prefix_tokens:].mean(dim=(1, 2))
