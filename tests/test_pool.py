"""Pooling tokens to one vector per clip: patch-token mean without prefix tokens, the class
token averaged over segments, and errors that name what is wrong."""
import pytest
import torch

from eval_encoder.features.pool import pool_tokens, resolve_pool


def test_mean_leaves_prefix_tokens_out_and_spans_segments():
    seg = [torch.tensor([[100.0], [1.0], [3.0]]), torch.tensor([[200.0], [5.0], [7.0]])]
    tokens = torch.cat(seg).unsqueeze(0)  # [1, 6, 1]: two segments of cls + 2 patches
    assert pool_tokens(tokens, "mean", prefix_tokens=1, segments=2).item() == 4.0
    assert pool_tokens(tokens, "cls", prefix_tokens=1, segments=2).item() == 150.0
    assert pool_tokens(tokens, "auto", prefix_tokens=1, segments=2).item() == 150.0
    assert pool_tokens(tokens, "auto", prefix_tokens=0, segments=1).item() == pytest.approx(
        316 / 6)


def test_mistakes_are_named():
    with pytest.raises(ValueError, match="no class token"):
        resolve_pool("cls", 0)
    with pytest.raises(ValueError, match="choose one of auto, mean, cls"):
        resolve_pool("max", 0)
    with pytest.raises(ValueError, match="5 tokens do not split into 2 segments"):
        pool_tokens(torch.zeros(1, 5, 3), "mean", 0, segments=2)
