"""The probe head and the multi-head trainer (one encoder pass per batch)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from eval_encoder.distributed import DistEnv
from eval_encoder.probe.heads import head_grid
from eval_encoder.probe.heads.ov import AttentivePooling, ClassificationHead
from eval_encoder.probe.trainer import (ProbeTrainer, RunFailed, accuracy, check_scored_once,
                                        make_heads)

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def test_head_shapes_and_init():
    torch.manual_seed(0)
    head = ClassificationHead(128, 10)
    assert head.pool.attention.num_heads == 2  # width / 64
    assert head(torch.randn(3, 50, 128)).shape == (3, 10)
    # the classifier starts 1000x smaller than trunc_normal(0.02)
    assert head.fc.weight.std() < 1e-4 and head.fc.bias.abs().max() == 0


def test_pooling_attends_over_all_tokens():
    torch.manual_seed(0)
    pool = AttentivePooling(64, 1)
    tokens = torch.randn(1, 6, 64)
    moved = tokens.clone()
    moved[0, 5] += 10
    assert not torch.allclose(pool(tokens), pool(moved))
    # permutation invariant: attention pooling has no position of its own
    assert torch.allclose(pool(tokens), pool(tokens[:, torch.randperm(6)]), atol=1e-5)




class CountingEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.proj = nn.Linear(3, 64)

    def forward(self, batch):
        self.calls += 1
        return self.proj(batch["pixel_values"])


def _batches(n_batches=4, b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        labels = torch.randint(0, 3, (b,), generator=g)
        x = torch.randn(b, 7, 3, generator=g) + labels.view(-1, 1, 1).float()
        out.append({"pixel_values": x, "labels": labels, "clip_index": torch.arange(b) + i * b,
                    "skipped": []})
    return out


class ListLoader(list):
    def set_epoch(self, epoch):
        pass


def test_three_learning_rates_one_encoder_pass_per_batch():
    enc = CountingEncoder()
    heads = make_heads(head_grid([1e-3, 3e-4, 1e-4], [0.0]), 64, 3, steps=4, min_lr=1e-7,
                       device=ENV.device, seed=0)
    trainer = ProbeTrainer(enc, heads, ENV, smoothing=0.1, clip_grad=5.0, num_classes=3)
    loader = ListLoader(_batches())
    trainer.train_epoch(loader, 0)
    assert enc.calls == 4 == trainer.counters.batches["train"]
    scored = trainer.evaluate(loader, views=1, modules=[h.module for h in heads])
    assert enc.calls == 8 and len(scored) == 20
    assert scored.top5.shape == (20, 3, 3)  # clips x heads x min(5, classes)


def test_schedule_reaches_min_lr_and_heads_differ():
    heads = make_heads(head_grid([1e-3, 1e-4], [0.0, 0.05]), 64, 3, steps=4, min_lr=1e-6,
                       device=ENV.device, seed=0)
    assert [h.name for h in heads] == ["lr=0.001,wd=0", "lr=0.001,wd=0.05", "lr=0.0001,wd=0",
                                       "lr=0.0001,wd=0.05"]
    trainer = ProbeTrainer(CountingEncoder(), heads, ENV, 0.1, 5.0, 3)
    trainer.train_epoch(ListLoader(_batches()), 0)
    assert math.isclose(heads[0].optimizer.param_groups[0]["lr"], 1e-6, rel_tol=1e-6)


def test_sync_matches_plain_backward_on_one_process():
    torch.manual_seed(0)
    heads = make_heads([(1e-3, 0.0)], 64, 3, steps=1, min_lr=1e-3, device=ENV.device, seed=0)
    reference = ClassificationHead(64, 3)
    reference.load_state_dict(heads[0].module.state_dict())
    enc = CountingEncoder()
    trainer = ProbeTrainer(enc, heads, ENV, 0.0, 0.0, 3)
    batch = _batches(1)[0]
    trainer.train_step(batch, 0, 0)
    with torch.no_grad():
        feats = enc(batch)
    nn.CrossEntropyLoss()(reference(feats), batch["labels"]).backward()
    for p, q in zip(heads[0].module.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_nonfinite_loss_stops_that_head_only():
    heads = make_heads(head_grid([1e-3, 1e-4], [0.0]), 64, 3, steps=4, min_lr=1e-7,
                       device=ENV.device, seed=0)
    with torch.no_grad():
        heads[1].module.fc.bias.fill_(float("nan"))
    trainer = ProbeTrainer(CountingEncoder(), heads, ENV, 0.1, 5.0, 3)
    trainer.train_epoch(ListLoader(_batches()), 0)
    assert heads[0].alive
    assert heads[1].status.startswith("stopped: non-finite loss at epoch 0 step 0")


def test_empty_batch_after_skips_still_steps_in_lockstep():
    heads = make_heads([(1e-3, 0.0)], 64, 3, steps=2, min_lr=1e-7, device=ENV.device, seed=0)
    trainer = ProbeTrainer(CountingEncoder(), heads, ENV, 0.1, 5.0, 3)
    empty = {"skipped": [{"index": 3, "path": "x.mp4", "reason": "file not found"}]}
    before = [p.detach().clone() for p in heads[0].module.parameters()]
    n, _ = trainer.train_step(empty, 0, 0)
    assert n == 0 and trainer.counters.encoder_passes["train"] == 0
    # nothing to learn from: no optimiser step (AdamW would still decay and move the weights)
    assert all(torch.equal(a, b) for a, b in zip(before, heads[0].module.parameters()))
    assert heads[0].optimizer.param_groups[0]["lr"] == 1e-3


def _scored(clips, labels, top):
    from eval_encoder.probe.predictions import Scored

    top = np.asarray(top, dtype=np.int16)[:, None, :]
    return Scored(np.asarray(clips), np.asarray(labels), top, np.zeros(top.shape, np.float32))


def test_accuracy_and_exactly_once_checks():
    scored = _scored([0, 1], [1, 2], [[1, 0, 2], [0, 2, 1]])
    assert accuracy(scored, 0) == {"top1": 50.0, "top5": 100.0}
    check_scored_once(scored, 3, skipped_clips={2})
    with pytest.raises(RunFailed, match="neither scored nor skipped"):
        check_scored_once(scored, 3, skipped_clips=set())
    twice = _scored([0, 1, 0], [1, 2, 1], [[1, 0, 2], [0, 2, 1], [1, 0, 2]])
    with pytest.raises(RunFailed, match="more than once"):
        check_scored_once(twice, 2, set())


def test_head_bank_equals_each_head_in_logits_and_gradients():
    """The folded bank (scores from folded queries, values projected after pooling) against
    every head's own forward: logits and every parameter's gradient within round-off."""
    from eval_encoder.probe.heads import bank_logits

    torch.manual_seed(0)
    heads = [ClassificationHead(128, 7) for _ in range(3)]
    with torch.no_grad():
        for h in heads:
            for p in h.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    tokens = torch.randn(4, 50, 128)
    reference = torch.stack([h(tokens) for h in heads], dim=1)
    reference.square().sum().backward()
    want = [[p.grad.clone() for p in h.parameters()] for h in heads]
    for h in heads:
        h.zero_grad(set_to_none=True)
    folded = bank_logits(heads, tokens)
    assert torch.allclose(folded, reference, atol=1e-5)
    folded.square().sum().backward()
    for h, grads in zip(heads, want):
        for (name, p), g in zip(h.named_parameters(), grads):
            got = p.grad if p.grad is not None else torch.zeros_like(p)
            assert torch.allclose(got, g, atol=1e-4, rtol=1e-4), name
