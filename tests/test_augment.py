"""V-JEPA 2's training augmentation (``--train_augment vjepa2``): the laws of its draws, one
draw per segment, the same pixels for any worker, and the loaders that can run it.

The pixels were also compared with the published ``VideoTransform`` (facebookresearch/vjepa2
c2963a4) outside the project, each random call of both answered from the same scripted
values: 40 segments agreed to 7e-7 outside the erased boxes (whose noise comes from another
generator), RandAugment, random resized crop and erasing boxes included.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.video import augment
from eval_encoder.video.transforms import JitterParams, TransformSpec, transform_clip

SPEC = TransformSpec(32, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _frames(t=4, h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_each_segment_has_its_own_draws_and_a_sample_repeats_exactly():
    frames = np.concatenate([_frames(seed=1)] * 2)  # two identical segments
    aug = augment.draw_vjepa2(np.random.default_rng([1, 0, 5, 1]), segments=2)
    x = transform_clip(frames, SPEC, (0.5, 0.5), aug)
    assert x.shape == (3, 8, 32, 32) and x.dtype == torch.float32
    assert not torch.equal(x[:, :4], x[:, 4:])
    assert torch.equal(x, transform_clip(torch.from_numpy(frames), SPEC, (0.5, 0.5), aug))


def test_the_ov_augmentation_is_the_onevision_jitter():
    draw = augment.augment_drawer("ov")
    assert isinstance(draw(np.random.default_rng(0), 2), JitterParams)
    with pytest.raises(ValueError, match="choose one of ov, vjepa2"):
        augment.augment_drawer("timm")


def test_rand_augment_picks_four_ops_each_firing_half_the_time():
    rng = np.random.default_rng(0)
    fired = [len(augment.draw_rand_augment(rng)) for _ in range(4000)]
    assert abs(np.mean(fired) - 2.0) < 0.1  # 4 ops x p=0.5
    names = [n for _ in range(2000) for n, _ in augment.draw_rand_augment(rng)]
    counts = np.array([names.count(n) for n in augment.RAND_OPS])
    assert len(counts) == 15 and counts.min() > 0.75 * counts.mean()


def test_rand_augment_applies_the_same_op_to_every_frame():
    frames = np.concatenate([_frames(t=1, seed=3)] * 3)
    rng = np.random.default_rng(0)
    ops = [("Rotate", augment.RAND_OPS["Rotate"](7.0, rng))]
    out = augment.rand_augment(frames, ops)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    assert not np.array_equal(out[0], frames[0])


def test_solarize_add_and_posterize_levels():
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None].repeat(3, 2))
    out = np.asarray(augment.RAND_OPS["SolarizeAdd"](10.0, None)(img))[..., 0].reshape(-1)
    want = [min(255, i + 110) if i < 128 else i for i in range(256)]
    assert out.tolist() == want
    poster = np.asarray(augment.RAND_OPS["PosterizeIncreasing"](7.6, None)(img))
    assert sorted(set(poster.reshape(-1).tolist())) == [0, 128]  # 4 - int(3.04) = 1 bit
    black = np.asarray(augment.RAND_OPS["PosterizeIncreasing"](10.0, None)(img))
    assert black.shape == (16, 16, 3) and black.max() == 0  # level 10 keeps 4 - 4 = 0 bits


def test_random_resized_crop_boxes_follow_the_published_law():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        top, left, h, w = augment.crop_box(rng, 240, 427)
        assert 0 <= top <= 240 - h and 0 <= left <= 427 - w
        assert 0.08 * 240 * 427 * 0.9 <= h * w <= 240 * 427
        assert 0.74 <= w / h <= 1.36 or (h, w) == (240, 320)  # the centre-crop fallback
    assert augment.crop_box(np.random.default_rng(0), 10, 200)[2:] == (10, 13)


def test_random_erasing_fires_a_quarter_of_the_time_inside_the_clip():
    rng = np.random.default_rng(0)
    boxes = [augment.erase_box(rng, 32) for _ in range(4000)]
    hits = [b for b in boxes if b is not None]
    assert abs(len(hits) / 4000 - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 4000)
    for top, left, h, w in hits:
        assert h < 32 and w < 32 and top + h <= 32 and left + w <= 32


def test_erased_box_is_noise_through_every_frame():
    x = torch.zeros(3, 4, 16, 16)
    augment.erase(x, (2, 3, 5, 6), np.random.default_rng(0))
    assert (x[:, :, 2:7, 3:9] != 0).all() and int(torch.count_nonzero(x)) == 3 * 4 * 5 * 6
    assert not torch.equal(x[:, 0], x[:, 1])  # drawn per frame


def test_the_dataset_draws_one_augmentation_per_segment(tmp_path):
    from eval_encoder.demo import render_clip, write_video
    from eval_encoder.video.dataset import ClipDataset, FramesSource
    from eval_encoder.video.manifest import ManifestEntry

    path = tmp_path / "a.mp4"
    write_video(path, render_clip((1, 0), 24, 64, 48, np.random.default_rng(0)))
    cfg = SimpleNamespace(frame_step=2, num_segments=3, eval_window="centre")
    ds = ClipDataset([ManifestEntry(path.name, 0, 1)], str(tmp_path), FramesSource(4, cfg=cfg),
                     train=True, seed=1, augment="vjepa2")
    sample = ds.sample(0, epoch=2)
    assert sample.frames.shape[0] == 12 and len(sample.jitter.seeds) == 3
    assert ds.sample(0, epoch=2).jitter == sample.jitter != ds.sample(0, epoch=3).jitter


def test_dali_refuses_the_vjepa2_augmentation(monkeypatch):
    from eval_encoder.probe import data

    cfg = parse_config(["--protocol", "vjepa2", "--loader", "dali"])
    monkeypatch.setattr(data, "pick_backend", lambda requested, device: requested)
    spec = SimpleNamespace(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    env = SimpleNamespace(device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="--train_augment vjepa2 runs in the torch loader only"):
        data.build_loaders(cfg, None, spec, env)


def test_a_samples_pixels_do_not_depend_on_its_batch(tmp_path):
    """What any world size or worker count changes is which batch a sample lands in: its
    draws are keyed by (seed, epoch, sample) alone."""
    from eval_encoder.demo import render_clip, write_video
    from eval_encoder.video.dataset import ClipDataset, FramesSource
    from eval_encoder.video.loader import _Batched
    from eval_encoder.video.manifest import ManifestEntry

    entries = []
    for i in range(3):
        write_video(tmp_path / f"{i}.mp4", render_clip((1, i % 2), 20, 64, 48,
                                                       np.random.default_rng(i)))
        entries.append(ManifestEntry(f"{i}.mp4", i % 2, i + 1))
    cfg = SimpleNamespace(frame_step=2, num_segments=2, eval_window="random")
    ds = ClipDataset(entries, str(tmp_path), FramesSource(3, cfg=cfg), train=True, seed=4,
                     augment="vjepa2")
    whole = _Batched(ds, SPEC)[[(0, 2), (1, 2), (2, 2)]]["pixel_values"]
    alone = _Batched(ds, SPEC)[[(2, 2)]]["pixel_values"]
    assert whole.shape == (3, 3, 6, 32, 32) and torch.equal(whole[2], alone[0])
