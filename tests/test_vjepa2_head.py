"""The ``vjepa2`` head is V-JEPA 2's published probe: names, shapes, logits and initialisation.

The files under ``tests/data/vjepa2/`` were made by running the published code, never part of
this project: ``src/models/attentive_pooler.py``, ``src/models/utils/modules.py`` and
``src/utils/tensors.py`` of facebookresearch/vjepa2 (commit c2963a4) extracted into a scratch
folder outside it, then

* ``vjepa2_init_d32_h4_depth4_c10_seed0.safetensors``: ``torch.manual_seed(0);
  AttentiveClassifier(embed_dim=32, num_heads=4, depth=4, num_classes=10).state_dict()``;
* ``vjepa2_probe_d64_h4_depth4_c10.safetensors``: ``torch.manual_seed(0);
  AttentiveClassifier(embed_dim=64, num_heads=4, depth=4, num_classes=10)``, every parameter
  then moved by ``0.05 * randn`` (generator seed 1) so that norms and biases count;
* ``vjepa2_probe_d64_h4_depth4_c10_io.safetensors``: ``input`` = randn(3, 20, 64) (generator
  seed 2) and ``logits``, the published module's output on it in eval mode (torch 2.14, CPU).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eval_encoder.probe.heads import build_head

DATA = Path(__file__).parent / "data" / "vjepa2"


def _published_keys(depth: int):
    """The published AttentiveClassifier's state_dict keys, in order."""
    norm = ["weight", "bias"]
    cross = [f"pooler.cross_attention_block.{m}.{p}" for m in
             ("norm1", "xattn.q", "xattn.kv", "norm2", "mlp.fc1", "mlp.fc2") for p in norm]
    blocks = [f"pooler.blocks.{i}.{m}.{p}" for i in range(depth - 1) for m in
              ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2") for p in norm]
    return ["pooler.query_tokens", *cross, *blocks, "linear.weight", "linear.bias"]


def test_parameter_names_order_and_shapes_are_the_published_ones():
    head = build_head("vjepa2", 64, 10, num_heads=4)
    state = head.state_dict()
    published = load_file(str(DATA / "vjepa2_probe_d64_h4_depth4_c10.safetensors"))
    assert list(state) == _published_keys(4)
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: tuple(v.shape) for k, v in published.items()}
    assert state["pooler.query_tokens"].shape == (1, 1, 64)
    assert state["pooler.cross_attention_block.xattn.kv.weight"].shape == (128, 64)
    assert state["pooler.blocks.2.attn.qkv.weight"].shape == (192, 64)
    one_block = build_head("vjepa2", 64, 10, num_heads=4, depth=1).state_dict()
    assert list(one_block) == _published_keys(1)  # depth 1: the query's block alone


def test_logits_equal_the_published_probe():
    head = build_head("vjepa2", 64, 10, num_heads=4).eval()
    head.load_state_dict(load_file(str(DATA / "vjepa2_probe_d64_h4_depth4_c10.safetensors")),
                         strict=True)
    io = load_file(str(DATA / "vjepa2_probe_d64_h4_depth4_c10_io.safetensors"))
    with torch.no_grad():
        logits = head(io["input"])
    assert logits.shape == io["logits"].shape == (3, 10)
    assert (logits - io["logits"]).abs().max().item() <= 1e-6  # 0.0 on the machine that made it


def test_initialisation_is_the_published_draw_for_a_seed():
    published = load_file(str(DATA / "vjepa2_init_d32_h4_depth4_c10_seed0.safetensors"))
    torch.manual_seed(0)
    state = build_head("vjepa2", 32, 10, num_heads=4).state_dict()
    assert set(state) == set(published)
    for name, value in published.items():
        assert torch.equal(state[name], value), name


# Per-parameter std of the published init at ViT-B width (AttentiveClassifier(embed_dim=768,
# num_heads=16, depth=4, num_classes=174)), the mean over seeds 100, 101, 102, computed by
# running the published code (see the module docstring): truncated-normal(0.02) weights, the
# residual branches' last layers divided by sqrt(2 i) (the query's block like the last block),
# the classifier at PyTorch's default (std 1 / sqrt(3 x 768)). Biases and LayerNorm biases are
# 0, LayerNorm weights 1 (std 0).
PUBLISHED_STD_D768 = {
    "pooler.query_tokens": 0.0198577,
    "pooler.cross_attention_block.xattn.q.weight": 0.0200145,
    "pooler.cross_attention_block.xattn.kv.weight": 0.0199992,
    "pooler.cross_attention_block.mlp.fc1.weight": 0.0200207,
    "pooler.cross_attention_block.mlp.fc2.weight": 0.00816369,
    "pooler.blocks.0.attn.qkv.weight": 0.02001, "pooler.blocks.0.attn.proj.weight": 0.0141506,
    "pooler.blocks.0.mlp.fc1.weight": 0.0200179, "pooler.blocks.0.mlp.fc2.weight": 0.0141539,
    "pooler.blocks.1.attn.qkv.weight": 0.0199968, "pooler.blocks.1.attn.proj.weight": 0.0100292,
    "pooler.blocks.1.mlp.fc1.weight": 0.0199961, "pooler.blocks.1.mlp.fc2.weight": 0.0100017,
    "pooler.blocks.2.attn.qkv.weight": 0.0199884, "pooler.blocks.2.attn.proj.weight": 0.00816636,
    "pooler.blocks.2.mlp.fc1.weight": 0.019998, "pooler.blocks.2.mlp.fc2.weight": 0.0081673,
    "linear.weight": 0.0208225, "linear.bias": 0.020859,
}


def test_initialisation_statistics_match_the_published_at_vit_b_width():
    torch.manual_seed(7)  # another seed than the published draws: the law, not the numbers
    state = build_head("vjepa2", 768, 174).state_dict()
    for name, value in state.items():
        want = PUBLISHED_STD_D768.get(name, 0.0)
        if want == 0.0 and name.endswith(("norm1.weight", "norm2.weight")):
            assert torch.equal(value, torch.ones_like(value)), name
        elif want == 0.0:
            assert torch.count_nonzero(value) == 0, name
        else:  # the std of n draws errs by about 1 / sqrt(2 n) (relative): 4 of those, +2%
            rel = 4 / math.sqrt(2 * value.numel()) + 0.02
            assert float(value.std()) == pytest.approx(want, rel=rel), name
            assert abs(float(value.mean())) < want * 0.1, name
    # and the exact laws behind those numbers
    assert PUBLISHED_STD_D768["pooler.blocks.1.attn.proj.weight"] == pytest.approx(
        0.02 / math.sqrt(4), rel=0.01)
    assert PUBLISHED_STD_D768["linear.weight"] == pytest.approx(1 / math.sqrt(3 * 768), rel=0.01)


def test_the_head_is_a_function_of_the_token_set():
    """Neither the self-attention blocks nor the pooling have positions of their own."""
    torch.manual_seed(0)
    head = build_head("vjepa2", 64, 5, num_heads=4, depth=2).eval()
    tokens = torch.randn(2, 9, 64)
    with torch.no_grad():
        assert torch.allclose(head(tokens), head(tokens[:, torch.randperm(9)]), atol=1e-5)
