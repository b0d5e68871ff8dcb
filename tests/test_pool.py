"""Pooling tokens to one vector per clip: the patch-token mean without any prefix token, the
class token of the clip or of each frame, and errors that name what is wrong."""
from types import SimpleNamespace

import pytest
import torch

from eval_encoder.features.pool import TokenLayout, pool_tokens, resolve_pool


def _spec(**kw):
    base = dict(tokens_per_frame=2, prefix_tokens=0, clip_prefix_tokens=0, tubelet_size=1,
                num_frames=None)
    return SimpleNamespace(**{**base, **kw})


def test_frame_prefix_tokens_per_frame_and_segment():
    """Two segments of two frames, each frame a class token then 2 patches (CLIP per frame)."""
    layout = TokenLayout.of(_spec(prefix_tokens=1), frames=2, segments=2)
    assert layout == TokenLayout(segments=2, clip_prefix=0, steps=2, prefix=1)
    values = [100, 1, 3, 200, 5, 7, 300, 9, 11, 400, 13, 15]
    tokens = torch.tensor(values, dtype=torch.float32).reshape(1, 12, 1)
    assert pool_tokens(tokens, "mean", layout).item() == 8.0  # 1, 3, 5, ..., 15
    assert pool_tokens(tokens, "cls", layout).item() == 250.0
    assert pool_tokens(tokens, "auto", layout).item() == 250.0


def test_a_clip_class_token_once_per_segment():
    """TimeSformer-like: one class token per segment, then 2 tubelet steps of 2 patches."""
    layout = TokenLayout.of(_spec(clip_prefix_tokens=1, tubelet_size=2), frames=4, segments=1)
    assert layout == TokenLayout(1, 1, 2, 0)
    tokens = torch.tensor([50.0, 1, 2, 3, 4]).reshape(1, 5, 1)
    assert pool_tokens(tokens, "cls", layout).item() == 50.0
    assert pool_tokens(tokens, "mean", layout).item() == 2.5


def test_no_class_token_pools_the_mean_and_codec_tokens_are_one_step():
    layout = TokenLayout.of(_spec(tokens_per_frame=None), frames=64)
    tokens = torch.arange(6.0).reshape(1, 6, 1)
    assert pool_tokens(tokens, "auto", layout).item() == 2.5


def test_mistakes_are_named():
    with pytest.raises(ValueError, match="no class token"):
        resolve_pool("cls", TokenLayout())
    with pytest.raises(ValueError, match="choose one of auto, mean, cls"):
        resolve_pool("max", TokenLayout())
    with pytest.raises(ValueError, match="5 tokens do not split into 2 segment"):
        pool_tokens(torch.zeros(1, 5, 3), "mean", TokenLayout(segments=2))
