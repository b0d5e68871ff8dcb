"""The probe head is the published one: parameter names, forward maths and initialisation.

Every expectation here is written from the published description (OneVision-Encoder
``ClassificationHead`` with ``Siglip2MultiheadAttentionPoolingHead``), not from our module:
the forward pass is recomputed by hand, and the initialisation is replayed step by step in
the order the published modules draw their random numbers.
"""
import math

import pytest
import torch
from torch import nn

from eval_encoder.probe.heads.ov import ClassificationHead

PUBLISHED_KEYS = [
    "pool.probe", "pool.attention.in_proj_weight", "pool.attention.in_proj_bias",
    "pool.attention.out_proj.weight", "pool.attention.out_proj.bias", "pool.norm.weight",
    "pool.mlp.fc1.weight", "pool.mlp.fc1.bias", "pool.mlp.fc2.weight", "pool.mlp.fc2.bias",
    "norm.weight", "norm.bias", "fc.weight", "fc.bias",
]


def test_parameter_names_and_shapes_are_the_published_ones():
    head = ClassificationHead(128, 7)
    state = head.state_dict()
    assert list(state) == PUBLISHED_KEYS
    assert state["pool.attention.in_proj_weight"].shape == (3 * 128, 128)
    assert state["pool.mlp.fc1.weight"].shape == (4 * 128, 128)
    assert state["fc.weight"].shape == (7, 128)
    assert head.pool.attention.num_heads == 2  # D // 64


def _reference_logits(state, x, heads):
    """The published head's forward, written out: MHA with one query, RMSNorm (no bias, eps of
    float32), exact-erf GELU MLP with a residual, LayerNorm (eps 1e-5), linear."""
    d = x.shape[-1]
    dh = d // heads
    w_q, w_k, w_v = state["pool.attention.in_proj_weight"].split(d)
    b_q, b_k, b_v = state["pool.attention.in_proj_bias"].split(d)
    q = state["pool.probe"][0] @ w_q.T + b_q  # [1, D]
    k, v = x @ w_k.T + b_k, x @ w_v.T + b_v  # [B, N, D]
    outs = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        att = torch.softmax(q[:, sl] @ k[..., sl].transpose(1, 2) / math.sqrt(dh), dim=-1)
        outs.append(att @ v[..., sl])  # [B, 1, dh]
    pooled = torch.cat(outs, -1)[:, 0] @ state["pool.attention.out_proj.weight"].T \
        + state["pool.attention.out_proj.bias"]
    eps = torch.finfo(torch.float32).eps
    normed = pooled / torch.sqrt((pooled ** 2).mean(-1, keepdim=True) + eps) * state["pool.norm.weight"]
    hidden = normed @ state["pool.mlp.fc1.weight"].T + state["pool.mlp.fc1.bias"]
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    pooled = pooled + hidden @ state["pool.mlp.fc2.weight"].T + state["pool.mlp.fc2.bias"]
    mu, var = pooled.mean(-1, keepdim=True), pooled.var(-1, unbiased=False, keepdim=True)
    normed = (pooled - mu) / torch.sqrt(var + 1e-5) * state["norm.weight"] + state["norm.bias"]
    return normed @ state["fc.weight"].T + state["fc.bias"]


def test_forward_is_the_published_maths():
    torch.manual_seed(3)
    head = ClassificationHead(128, 5)
    with torch.no_grad():  # give every parameter a non-trivial value
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(4, 9, 128)
    ref = _reference_logits(head.state_dict(), x, heads=2)
    assert torch.allclose(head(x), ref, atol=1e-5, rtol=1e-5)


def test_gelu_is_exact_and_rmsnorm_has_no_bias():
    head = ClassificationHead(64, 3)
    assert not hasattr(head.pool.norm, "bias") or head.pool.norm.bias is None
    assert head.pool.norm.eps is None  # the input dtype's machine epsilon, as published
    x = torch.linspace(-3, 3, 101)
    mlp = head.pool.mlp
    with torch.no_grad():
        mlp.fc1.weight.copy_(torch.eye(64 * 4, 64))
        mlp.fc1.bias.zero_()
        mlp.fc2.weight.copy_(torch.eye(64, 64 * 4))
        mlp.fc2.bias.zero_()
        out = mlp(torch.stack([x] + [torch.zeros(101)] * 63, -1))[:, 0]
    exact = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    tanh = nn.functional.gelu(x, approximate="tanh")
    assert torch.allclose(out, exact, atol=1e-6)
    assert (out - tanh).abs().max() > 1e-4  # the approximation would be caught


def _replay_published_init(seed: int, d: int, classes: int):
    """Draw the published head's initial weights in the published order: probe; attention
    (out-projection Linear init, then Xavier in-projection); MLP Linears; head LayerNorm and
    fc; then ``apply(_init_weights)`` re-draws every Linear weight trunc_normal(0.02) in
    module order (attention out-projection, fc1, fc2, fc), zeroes biases, scales fc by 1e-3."""
    torch.manual_seed(seed)
    out = {"pool.probe": torch.randn(1, 1, d)}

    def linear(n_out, n_in):  # nn.Linear's own reset: kaiming-uniform weight, uniform bias
        w = torch.empty(n_out, n_in)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        nn.init.uniform_(torch.empty(n_out), -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))
        return w

    linear(d, d)  # attention out-projection, re-drawn below
    in_proj = torch.empty(3 * d, d)
    nn.init.xavier_uniform_(in_proj)
    out["pool.attention.in_proj_weight"] = in_proj
    linear(4 * d, d), linear(d, 4 * d), linear(classes, d)  # fc1, fc2, fc: re-drawn below
    for name, shape in (("pool.attention.out_proj.weight", (d, d)),
                        ("pool.mlp.fc1.weight", (4 * d, d)), ("pool.mlp.fc2.weight", (d, 4 * d)),
                        ("fc.weight", (classes, d))):
        out[name] = nn.init.trunc_normal_(torch.empty(shape), std=0.02)
    out["fc.weight"] *= 1e-3
    return out


def test_initialisation_replays_the_published_draws():
    expected = _replay_published_init(seed=11, d=128, classes=6)
    torch.manual_seed(11)
    state = ClassificationHead(128, 6).state_dict()
    for name, value in expected.items():
        assert torch.equal(state[name], value), name
    for name in ("pool.attention.in_proj_bias", "pool.attention.out_proj.bias",
                 "pool.mlp.fc1.bias", "pool.mlp.fc2.bias", "norm.bias", "fc.bias"):
        assert torch.count_nonzero(state[name]) == 0, name
    for name in ("pool.norm.weight", "norm.weight"):
        assert torch.equal(state[name], torch.ones(128)), name


def test_probe_size_other_than_one_is_refused():
    from eval_encoder.config import ConfigError
    from eval_encoder.probe.args import parse_config
    from eval_encoder.encoders.base import EncoderSpec
    from eval_encoder.probe.run import check_encoder_flags

    cfg = parse_config(["--probe_size", "2"])
    spec = EncoderSpec("x", "y", embed_dim=64, patch_size=16, input_size=64)
    with pytest.raises(ConfigError, match="probe_size 2"):
        check_encoder_flags(cfg, spec)
