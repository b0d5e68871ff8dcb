"""Schedules as kinds: the default is today's LinearLR exactly; ``cosine`` learning rate and
weight decay compute what V-JEPA 2's published classes compute, step by step.

PUBLISHED values were obtained by running the published classes ``WarmupCosineLRSchedule`` and
``CosineWDSchedule`` of facebookresearch/vjepa2 ``evals/video_classification_frozen/eval.py``
(commit c2963a4; the two class definitions executed on their own, outside this project) on an
AdamW whose one param group carries the ``mc_*`` settings that eval.py's ``init_opt`` gives it,
with ``T_max = int(epochs x iterations per epoch)`` and ``mc_warmup_steps = int(warmup x
iterations per epoch)``; each value is the group's (lr, weight_decay) after the k-th
``step()`` of both, i.e. what the k-th training iteration runs at (eval.py steps the schedules
at the start of each iteration).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from eval_encoder import record as rec
from eval_encoder.config import ConfigError
from eval_encoder.distributed import DistEnv
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.schedules import Plan, cosine_wd, plan_of, warmup_cosine_lr
from eval_encoder.probe.trainer import ProbeTrainer, _head_state, _load_head, make_heads

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))

# case -> (settings, {step: (lr, weight decay)}) from the published classes (see above)
PUBLISHED = {
    "warmup": (dict(ipe=10, epochs=10, warmup=2.5, start_lr=1e-5, lr=1e-3, final_lr=1e-6,
                    wd=0.1, final_wd=0.01),
               {1: (4.96e-05, 0.09997779521645793), 2: (8.92e-05, 0.09991120277927222),
                12: (0.00048520000000000003, 0.09683994186497132),
                24: (0.0009604, 0.08780358823396352), 25: (0.001, 0.08681980515339464),
                26: (0.0009995618536343797, 0.08580461976679099),
                50: (0.0007502500000000002, 0.05500000000000001),
                99: (1.4381463656202375e-06, 0.010022204783542078), 100: (1e-06, 0.01)}),
    # V-JEPA 2's video configs: no warmup (start_lr = lr), cosine to 0; a rising weight decay
    "vjepa2_video": (dict(ipe=7, epochs=20, warmup=0.0, start_lr=0.005, lr=0.005, final_lr=0.0,
                          wd=0.01, final_wd=0.4),
                     {1: (0.004999370587356266, 0.010049094186211194),
                      2: (0.004997482666353287, 0.010196352024443633),
                      70: (0.0025, 0.20500000000000002),
                      139: (6.294126437336733e-07, 0.3999509058137888), 140: (0.0, 0.4)}),
}


@pytest.mark.parametrize("case", sorted(PUBLISHED))
def test_cosine_values_are_the_published_ones(case):
    c, values = PUBLISHED[case]
    total, warmup = c["ipe"] * c["epochs"], int(c["warmup"] * c["ipe"])
    for step, (lr, wd) in values.items():
        assert warmup_cosine_lr(step, total, warmup, c["start_lr"], c["lr"], c["final_lr"]) == lr
        assert cosine_wd(step, total, c["wd"], c["final_wd"]) == wd


def _cosine_cfg(c):
    return parse_config(["--lr_schedule", "cosine", "--wd_schedule", "cosine",
                         "--warmup", str(c["warmup"]), "--start_lr", str(c["start_lr"]),
                         "--final_lr", str(c["final_lr"]),
                         "--final_weight_decay", str(c["final_wd"]),
                         "--default_epoch", str(c["epochs"])])


class Tokens(nn.Module):
    def forward(self, batch):
        return batch["pixel_values"]


def _batch(step):
    g = torch.Generator().manual_seed(step)
    return {"pixel_values": torch.randn(2, 5, 64, generator=g),
            "labels": torch.randint(0, 3, (2,), generator=g), "skipped": []}


def _train(heads, steps, first=1):
    """(lr, weight decay) each optimiser step of the first head ran at, steps first..steps."""
    seen = []
    heads[0].optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append((opt.param_groups[0]["lr"],
                                               opt.param_groups[0]["weight_decay"])))
    trainer = ProbeTrainer(Tokens(), heads, ENV, 0.0, 0.0, 3)
    for step in range(first, steps + 1):
        trainer.train_step(_batch(step), 0, step)
    return seen


def test_the_trainer_steps_at_the_published_values_and_resumes_there():
    c, values = PUBLISHED["warmup"]
    plan = plan_of(_cosine_cfg(c), steps_per_epoch=c["ipe"])
    assert (plan.total, plan.warmup) == (100, 25)
    heads = make_heads([(c["lr"], c["wd"])], 64, 3, steps=100, min_lr=0.0, device=ENV.device,
                       seed=0, plan=plan)
    seen = _train(heads, 100)
    for step, want in values.items():
        assert seen[step - 1] == want, step
    # a checkpointed head continues at the step it stopped
    again = make_heads([(c["lr"], c["wd"])], 64, 3, steps=100, min_lr=0.0, device=ENV.device,
                       seed=0, plan=plan)
    _train(again, 30)
    resumed = make_heads([(c["lr"], c["wd"])], 64, 3, steps=100, min_lr=0.0,
                         device=ENV.device, seed=0, plan=plan)
    _load_head(resumed[0], _head_state(again[0]))
    assert _train(resumed, 100, first=31)[:20] == seen[30:50]


def test_the_default_is_linear_lr_as_before():
    heads = make_heads([(1e-3, 0.05)], 64, 3, steps=10, min_lr=1e-6, device=ENV.device, seed=0)
    reference = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3, weight_decay=0.05)
    linear = torch.optim.lr_scheduler.LinearLR(reference, 1.0, 1e-6 / 1e-3, total_iters=10)
    want = []
    for _ in range(10):
        want.append((reference.param_groups[0]["lr"], 0.05))
        reference.step()
        linear.step()
    assert _train(heads, 10) == want
    assert isinstance(heads[0].scheduler, torch.optim.lr_scheduler.LinearLR)
    assert heads[0].wd_scheduler is None
    assert make_heads([(1e-7, 0.0)], 64, 3, steps=10, min_lr=1e-6, device=ENV.device,
                      seed=0)[0].scheduler is None  # a rate at or under the floor stays put


def test_unset_start_and_final_weight_decay_follow_each_head():
    plan = Plan(total=10, lr="cosine", wd="cosine", warmup=4)
    heads = make_heads([(1e-3, 0.2)], 64, 3, steps=10, min_lr=0.0, device=ENV.device, seed=0,
                       plan=plan)
    seen = _train(heads, 10)
    assert seen[0][0] == 1e-3 and all(wd == 0.2 for _, wd in seen)  # start = lr, constant wd


def test_schedule_flags_are_checked_and_hash_neutral_at_their_defaults():
    with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
        parse_config(["--lr_schedule", "cosin"])
    with pytest.raises(ConfigError, match="--warmup 2.0 is read by --lr_schedule cosine only"):
        parse_config(["--warmup", "2"])
    with pytest.raises(ConfigError, match="--default_min_lr 0.0 is read by --lr_schedule linear"):
        parse_config(["--lr_schedule", "cosine", "--default_min_lr", "0"])
    with pytest.raises(ConfigError, match="--final_weight_decay 0.1 is read by --wd_schedule"):
        parse_config(["--final_weight_decay", "0.1"])
    plain = rec.config_hash(parse_config([]).to_dict())
    spelt = parse_config(["--lr_schedule", "linear", "--wd_schedule", "constant"])
    assert rec.config_hash(spelt.to_dict()) == plain
    assert rec.config_hash(parse_config(["--lr_schedule", "cosine"]).to_dict()) != plain
