"""Head kinds as a registry: building, users' own kinds, the bank of mixed kinds on one pass,
and the flags that choose a kind and its options."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from eval_encoder import record as rec
from eval_encoder.config import ConfigError
from eval_encoder.distributed import DistEnv
from eval_encoder.encoders.base import EncoderSpec
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.heads import (HEADS, HeadOptionError, bank_groups, bank_logits,
                                      build_head, register_head)
from eval_encoder.probe.heads.ov import ClassificationHead
from eval_encoder.probe.heads.vjepa2 import AttentiveClassifier
from eval_encoder.probe.run import check_encoder_flags
from eval_encoder.probe.trainer import ProbeTrainer, make_heads
from eval_encoder.registry import RegistryError

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


class MeanLinear(nn.Module):
    def __init__(self, dim, num_classes):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, tokens):
        return self.fc(tokens.mean(1))


@pytest.fixture
def user_kind():
    @register_head("mean_linear", options={"scale": 1.0})
    def build(dim, num_classes, scale):
        """Mean of the tokens, then linear."""
        return MeanLinear(dim, num_classes)

    yield "mean_linear"
    HEADS.unregister("mean_linear")


def test_build_head_makes_each_kind_with_its_defaults():
    torch.manual_seed(0)
    ov = build_head("ov", 128, 7)
    assert isinstance(ov, ClassificationHead) and ov.pool.attention.num_heads == 2  # D / 64
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(ov.state_dict().values(),
                                                  ClassificationHead(128, 7).state_dict().values()))
    vj = build_head("vjepa2", 64, 5)
    assert isinstance(vj, AttentiveClassifier) and len(vj.pooler.blocks) == 3  # depth 4
    assert vj.pooler.blocks[0].attn.num_heads == 16
    assert build_head("vjepa2", 64, 5, depth=2, num_heads=4).pooler.blocks[0].attn.num_heads == 4
    assert (ov.head_kind, vj.head_kind) == ("ov", "vjepa2")


def test_unknown_kinds_and_options_are_refused_clearly():
    with pytest.raises(RegistryError, match="Did you mean 'vjepa2'"):
        build_head("vjepa", 64, 5)
    with pytest.raises(HeadOptionError, match="takes depth 1 only, not 2"):
        build_head("ov", 64, 5, depth=2)
    with pytest.raises(HeadOptionError, match="takes no option dropout"):
        build_head("vjepa2", 64, 5, dropout=0.1)
    with pytest.raises(HeadOptionError, match="dividing the token width 64, not 12"):
        build_head("vjepa2", 64, 5, num_heads=12)


def test_a_users_kind_is_built_and_banked_beside_the_published_ones(user_kind):
    torch.manual_seed(0)
    modules = [build_head("ov", 64, 3), build_head(user_kind, 64, 3),
               build_head("vjepa2", 64, 3, num_heads=4, depth=2), build_head("ov", 64, 3)]
    groups = bank_groups(modules)
    # the two ov heads fuse into one group; the others run alone
    assert sorted(members for members, _ in groups) == [[0, 3], [1], [2]]
    tokens = torch.randn(2, 11, 64)
    with torch.no_grad():
        want = torch.stack([m(tokens) for m in modules], dim=1)
        got = bank_logits(modules, tokens)
    assert got.shape == (2, 4, 3)
    assert torch.allclose(got, want, atol=1e-5)


def _batches(n=3, b=4, dim=32):
    g = torch.Generator().manual_seed(0)
    return [{"pixel_values": torch.randn(b, 6, dim, generator=g),
             "labels": torch.randint(0, 3, (b,), generator=g), "skipped": []} for _ in range(n)]


class Passes(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        return batch["pixel_values"]


def test_a_grid_of_vjepa2_heads_trains_on_one_encoder_pass_per_batch():
    heads = make_heads([(1e-3, 0.0), (1e-4, 0.05), (3e-4, 0.0)], 32, 3, steps=3, min_lr=1e-7,
                       device=ENV.device, seed=0, kind="vjepa2",
                       options={"depth": 2, "num_heads": 4})
    assert all(isinstance(h.module, AttentiveClassifier) for h in heads)
    reference = build_head("vjepa2", 32, 3, depth=2, num_heads=4)
    reference.load_state_dict(heads[1].module.state_dict())
    encoder = Passes()
    trainer = ProbeTrainer(encoder, heads, ENV, smoothing=0.0, clip_grad=0.0, num_classes=3)
    batch = _batches(1)[0]
    trainer.accumulate(batch)  # the gradients, before any step
    nn.CrossEntropyLoss()(reference(batch["pixel_values"]), batch["labels"]).backward()
    for p, q in zip(heads[1].module.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    trainer.finish_step(0, 0)
    for step, batch in enumerate(_batches()[1:], start=1):
        trainer.train_step(batch, 0, step)
    assert encoder.calls == 3 and all(h.alive for h in heads)


# ----------------------------------------------------------------------------- flags

def test_probe_head_flags_resolve_to_the_kinds_defaults():
    cfg = parse_config(["--probe_head", "vjepa2"])
    assert (cfg.probe_size, cfg.probe_num_heads) == (4, 16)
    assert cfg.sources["probe_size"] == cfg.sources["probe_num_heads"] == "head kind vjepa2"
    cfg = parse_config(["--probe_head", "vjepa2", "--probe_size", "1", "--probe_num_heads", "8"])
    assert (cfg.probe_size, cfg.probe_num_heads) == (1, 8)
    cfg = parse_config([])
    assert (cfg.probe_head, cfg.probe_size, cfg.probe_num_heads) == ("ov", 1, None)


def test_a_misspelt_kind_is_refused_at_parse_time_with_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'vjepa2'.*register_head"):
        parse_config(["--probe_head", "vjepa"])


def test_head_options_the_kind_cannot_take_name_the_flag(user_kind):
    spec = EncoderSpec("x", "y", embed_dim=64, patch_size=16, input_size=64)
    cfg = parse_config(["--probe_head", "vjepa2", "--probe_num_heads", "12"])
    with pytest.raises(ConfigError, match="--probe_num_heads 12: head kind 'vjepa2' needs"):
        check_encoder_flags(cfg, spec)
    with pytest.raises(ConfigError, match="--probe_size 3: head kind 'mean_linear' has no depth"):
        parse_config(["--probe_head", user_kind, "--probe_size", "3"])
    cfg = parse_config(["--probe_head", user_kind])
    assert cfg.probe_size == 1 and "probe_size" not in cfg.sources  # not its option: untouched


def test_head_flags_at_their_defaults_leave_the_hash_alone():
    plain = rec.config_hash(parse_config([]).to_dict())
    spelt = parse_config(["--probe_head", "ov", "--probe_size", "1"])
    assert rec.config_hash(spelt.to_dict()) == plain
    assert rec.config_hash(parse_config(["--probe_head", "vjepa2"]).to_dict()) != plain
