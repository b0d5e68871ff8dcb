"""The published pipeline's pixel and step behaviours, as data of the transforms and loaders.

round_pixels   8-bit levels after resize+crop and after every colour op (published: uint8 DALI ops)
brightness     "multiply": the U(-0.125, 0.125) draw is DALI's brightness *multiplier* (published);
               "shift": an additive shift of draw * 255 levels (ours)
drop_last      floor(floor(n/W)/B) full steps per epoch (published VideoExternalSource arithmetic)

Expected numbers come from those descriptions (hand arithmetic), not from our functions.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.probe.data import build_loaders, transform_spec
from eval_encoder.video.dataset import ClipDataset
from eval_encoder.video.loader import val_order
from eval_encoder.video.steps import StepPlanError, make_plan, train_batches
from eval_encoder.video.manifest import ManifestEntry
from eval_encoder.video.transforms import (JitterParams, TransformSpec, draw_jitter, to_levels,
                                           transform_clip)

LEVELS = dict(mean=(0, 0, 0), std=(1 / 255,) * 3)  # normalisation off: output in 0..255


def _spec(size=4, short=4, round_pixels=True, brightness_mode="multiply"):
    return TransformSpec(size, short, round_pixels=round_pixels, brightness_mode=brightness_mode,
                         **LEVELS)


def _edge(t=1, h=8, w=8, high_right=True):
    """Columns 0-1 at one level, 2-7 at the other: a sharp 0/255 edge."""
    row = np.where(np.arange(w) >= 2, 255, 0) if high_right else np.where(np.arange(w) >= 2, 0, 255)
    return np.broadcast_to(row.astype(np.uint8)[None, None, :, None], (t, h, w, 3)).copy()


# ---------------------------------------------------------------- 8-bit levels ----------------

def test_to_levels_rounds_half_up_and_saturates():
    x = torch.tensor([-0.6, -0.5, 0.49999997, 0.5, 1.5, 2.5, 100.5, 254.49, 254.5, 300.0])
    assert to_levels(x).tolist() == [0, 0, 0, 1, 2, 3, 101, 254, 255, 255]


@pytest.mark.parametrize("high_right, overshoot", [(True, 255 * 1.0703125), (False, -255 * 0.0703125)])
def test_cubic_overshoot_is_clipped_only_with_round_pixels(high_right, overshoot):
    # 8 -> 16 columns: output column 5 sits at input 2.25 with Keys (a=-0.5) taps
    # (-0.0703125, 0.8671875, 0.2265625, -0.0234375) on inputs 1..4, i.e. on (0, 255, 255, 255):
    # 255 * 1.0703125 = 272.93 (or, mirrored, 255 * -0.0703125 = -17.93)
    frames = _edge(high_right=high_right)
    floaty = transform_clip(frames, _spec(16, 16, round_pixels=False))
    levels = transform_clip(frames, _spec(16, 16, round_pixels=True))
    assert floaty[:, :, :, 5].flatten().tolist() == pytest.approx([overshoot] * 48, abs=1e-3)
    assert floaty.min() < -17 and floaty.max() > 272  # unclipped without rounding
    assert levels[:, :, :, 5].unique().tolist() == [255.0 if high_right else 0.0]
    assert levels.min() >= 0 and levels.max() <= 255
    assert torch.equal(levels, levels.round())  # integral before normalisation


def test_rounded_values_are_normalised_after_rounding():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    frames = _edge()
    spec = TransformSpec(16, 16, mean, std, round_pixels=True, brightness_mode="shift")
    levels = transform_clip(frames, _spec(16, 16, round_pixels=True))
    out = transform_clip(frames, spec)
    for c in range(3):
        expect = (levels[c] / 255 - mean[c]) / std[c]
        assert torch.allclose(out[c], expect, atol=1e-5)


# ---------------------------------------------------------------- brightness ------------------

def _bc(value, brightness, contrast=1.0, **kw):
    frames = np.full((1, 4, 4, 3), value, np.uint8)
    jitter = JitterParams(brightness_contrast=True, contrast=contrast, brightness=brightness)
    return transform_clip(frames, _spec(**kw), jitter=jitter)


@pytest.mark.parametrize("round_pixels", [True, False])
def test_multiplicative_brightness(round_pixels):
    assert torch.all(_bc(200, -0.1, round_pixels=round_pixels) == 0)  # black
    assert torch.all(_bc(200, 0.5, round_pixels=round_pixels) == 100)  # round(0.5 * 200)
    # 0.5 * (128 + 1.2 * (200 - 128)) = 107.2
    expect = 107.0 if round_pixels else 107.2
    assert torch.allclose(_bc(200, 0.5, 1.2, round_pixels=round_pixels), torch.tensor(expect), atol=1e-4)


def test_multiplicative_brightness_rounds_each_op():
    # 0.5 * 201 = 100.5 -> 101 with round_pixels (DALI's uint8 output), 100.5 without
    assert torch.all(_bc(201, 0.5, round_pixels=True) == 101)
    assert torch.allclose(_bc(201, 0.5, round_pixels=False), torch.tensor(100.5))


def test_shift_mode_is_unchanged_by_rounding():
    # 1.2 * (200 - 128) + 128 + 0.1 * 255 = 239.9 -> 240
    out = _bc(200, 0.1, 1.2, round_pixels=True, brightness_mode="shift")
    assert torch.all(out == 240)
    out = _bc(200, 0.1, 1.2, round_pixels=False, brightness_mode="shift")
    assert torch.allclose(out, torch.tensor(239.9), atol=1e-4)


def _black_fraction(mode: str, draws: int = 4000) -> float:
    rng = np.random.default_rng(0)
    # levels >= 40: for every contrast in [0.6, 1.4], 128 + c * (x - 128) > 0, so a negative
    # multiplier gives exactly 0 (darker pixels with c > 1 would land a few levels above 0)
    frames = rng.integers(40, 256, (2, 6, 6, 3), dtype=np.uint8)
    spec = _spec(4, 6, brightness_mode=mode)
    black = sum(bool(torch.all(transform_clip(frames, spec, jitter=draw_jitter(rng)) == 0))
                for _ in range(draws))
    return black / draws


def test_fraction_of_black_training_clips():
    # P(op on) * P(b < 0) = 0.8 * 0.5 = 0.4; plus 0.8 * P(0 <= b < ~0.5 / 200) ~ 0.008 where
    # the product rounds to 0. 4000 draws: sd ~ 0.008.
    frac = _black_fraction("multiply")
    print(f"black clips, multiplicative brightness: {frac:.4f}")
    assert abs(frac - 0.4) < 0.03
    assert _black_fraction("shift", 500) == 0.0


# ---------------------------------------------------------------- steps per epoch -------------

CASES = [(10, 3, 2), (11, 2, 5), (100, 8, 3), (37, 4, 4), (64, 8, 8), (9, 1, 4), (1000, 7, 13)]


@pytest.mark.parametrize("n, world, batch", CASES)
def test_drop_last_runs_floor_floor_steps_of_full_batches(n, world, batch):
    steps = (n // world) // batch  # VideoExternalSource: shard_size // batch_size
    plan = make_plan(None, batch, world, drop_last=True)
    if steps == 0:
        with pytest.raises(StepPlanError):
            plan.steps(n)
        return
    assert plan.steps(n) == steps
    per_epoch = []
    for epoch in range(4):
        orders = [train_batches(n, epoch, r, plan, seed=3) for r in range(world)]
        for o in orders:  # full batches, the same count on all ranks
            assert [len(b) for b in o] == [batch] * steps
        seen = [i for o in orders for b in o for i in b]
        assert len(seen) == len(set(seen)) == steps * batch * world  # no sample twice
        assert set(seen) <= set(range(n))
        per_epoch.append(frozenset(range(n)) - set(seen))
    if n - steps * batch * world > 0:
        assert len(set(per_epoch)) > 1  # the dropped samples change with the permutation


@pytest.mark.parametrize("n, world, batch", CASES)
def test_without_drop_last_every_sample_is_used(n, world, batch):
    steps = -(-(-(-n // world)) // batch)  # ceil(ceil(n / W) / B)
    plan = make_plan(None, batch, world, drop_last=False)
    assert plan.steps(n) == steps
    orders = [train_batches(n, 2, r, plan, seed=3) for r in range(world)]
    assert sorted(i for o in orders for b in o for i in b) == list(range(n))


def test_zero_steps_is_an_error_naming_the_clips_and_the_batch():
    with pytest.raises(StepPlanError,
                       match=r"5 training clips and a global batch of 6 \(2 processes"):
        make_plan(None, 3, 2, drop_last=True).steps(5)


# ---------------------------------------------------------------- through run.py --------------

class _FakeSource:
    """In-memory frames; no decoding."""

    extras_keys = ()

    def load(self, req):
        frames = req.rng.integers(0, 256, (2, 8, 10, 3), dtype=np.uint8)
        return frames, np.array([0, 1]), 2, {}


def _splits(n_train, n_val):
    entries = lambda n: [ManifestEntry(f"{i}.mp4", i % 3, i + 1) for i in range(n)]  # noqa: E731
    return SimpleNamespace(train=ClipDataset(entries(n_train), "/nowhere", _FakeSource(), True, 1),
                           val=ClipDataset(entries(n_val), "/nowhere", _FakeSource(), False, 1),
                           monitor=None)


def _cfg(**values):
    cfg = ProbeConfig()
    base = dict(loader="torch", batch_size=3, round_pixels=True, brightness_mode="multiply",
                drop_last=True, dali_py_num_workers=0, seed=2)
    for name, value in {**base, **values}.items():
        setattr(cfg, name, value)
    return cfg


ENCODER = SimpleNamespace(input_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _env(rank, world):
    return SimpleNamespace(rank=rank, world_size=world, device=torch.device("cpu"))


def test_run_passes_the_protocol_values_to_the_loaders():
    tspec = transform_spec(_cfg(), ENCODER)
    assert (tspec.round_pixels, tspec.brightness_mode) == (True, "multiply")
    world, splits = 2, _splits(n_train=17, n_val=7)
    steps, val_seen = (17 // 2) // 3, []
    for rank in range(world):
        (train, val, monitor), plan, _ = build_loaders(_cfg(), splits, ENCODER, _env(rank, world))
        assert monitor is None  # no monitor clips in these splits
        assert plan.steps(17) == steps
        batches = list(train)
        assert len(train) == len(batches) == steps
        assert [len(b["index"]) for b in batches] == [3] * steps
        val_seen += [i for b in val for i in b["index"].tolist()]
    assert sorted(val_seen) == list(range(7))  # validation: every clip exactly once


@pytest.mark.parametrize("name", ["round_pixels", "brightness_mode", "drop_last"])
def test_unresolved_protocol_values_are_config_errors(name):
    with pytest.raises(ConfigError, match=name):
        build_loaders(_cfg(**{name: None}), _splits(6, 2), ENCODER, _env(0, 1))


def test_run_fails_before_training_when_no_full_batch_fits():
    with pytest.raises(ConfigError, match=r"5 training clips and a global batch of 6 "
                                          r"\(2 processes x 1.*--drop_last false"):
        build_loaders(_cfg(), _splits(5, 2), ENCODER, _env(0, 2))


def test_validation_order_has_no_drop():
    for world in (1, 2, 3):
        seen = [i for r in range(world) for i in val_order(10, 2, r, world)]
        assert sorted(seen) == list(range(20))
