"""Compute in the record: analytic encoder FLOPs against torch's counter, arch labels, the
loader clock, peak memory, weight digests with their cache, and the record's config block."""
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch

from eval_encoder import compute
from eval_encoder import record as rec
from eval_encoder.config import ProbeConfig
from eval_encoder.probe.args import parse_config
from eval_encoder.encoders import baselines as bl
from eval_encoder.encoders import weights
from eval_encoder.encoders.base import EncoderSpec, VideoEncoder
from eval_encoder.encoders.codec import CodecEncoder, codec_spec
from eval_encoder.encoders.onevision import OneVisionEncoder, OneVisionConfig
from eval_encoder.encoders.sampling import SamplingEncoder, sampling_spec

RECIPES = Path(__file__).resolve().parents[1] / "probes"


def _onevision(use_head=True):
    config = OneVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=2, patch_size=8, image_size=32, use_head=use_head)
    torch.manual_seed(0)
    return OneVisionEncoder(config)


def _counted(encoder, batch):
    return compute.count_flops(lambda: encoder(batch))


@pytest.mark.parametrize("use_head", [True, False])
def test_sampling_flops_equal_the_counter(use_head):
    model = _onevision(use_head)
    cfg = ProbeConfig(model_family="sampling", model_name="x", input_size=32)
    enc = SamplingEncoder(model, sampling_spec(cfg, model.config)).freeze()
    t = 3
    batch = {"pixel_values": torch.randn(2, 3, t, 32, 32),
             "frame_indices": torch.arange(t).expand(2, t), "total_frames": torch.tensor([t, t])}
    cost = compute.encoder_cost(enc, t, t * 16)
    assert cost.method == "analytic" and cost.tokens == t * 16 and cost.sequences == 1
    assert ("pooling_head" in cost.flops) == use_head
    # the counter sees a batch of two clips
    assert 2 * sum(cost.flops.values()) == _counted(enc, batch)


def test_codec_flops_count_only_the_visible_patches():
    model = _onevision()
    cfg = ProbeConfig(model_family="codec", model_name="x", input_size=32)
    cfg.codec.patch_size = 8
    enc = CodecEncoder(model, codec_spec(cfg, model)).freeze()
    k = 37
    batch = {"pixel_values": torch.randn(1, 3, 64, 32, 32),
             "visible_indices": torch.randperm(64 * 16)[:k][None]}
    cost = compute.encoder_cost(enc, 64, k)
    assert cost.tokens == k
    assert sum(cost.flops.values()) == _counted(enc, batch)
    dense = compute.vit_flops(compute.onevision_shape(model.config), 64 * 16)
    assert cost.flops["attention"] < dense["attention"] / 100  # K^2, not (T*h*w)^2


@pytest.mark.parametrize("name", ["clip_vit_base_patch16", "dinov3_base", "siglip2_base",
                                  "aimv2_large_patch14_native_ap", "dinov2_base"])
def test_timm_flops_equal_the_counter(name):
    """CLS (CLIP, DINOv2 whose head drops it), CLS + 4 registers (DINOv3, timm's Eva), a gated
    MLP (AIMv2), no prefix (SigLIP 2)."""
    entry = bl.MODELS.get(name)
    size = 2 * entry.patch_size
    cfg = ProbeConfig(model_family=entry.family, model_name=name, model_weight="random",
                      input_size=size)
    enc = bl.build_baseline(entry.family, cfg, depth=2, embed_dim=64, num_heads=2)
    t = 3
    cost = compute.encoder_cost(enc, t, 0)
    assert cost.method == "analytic" and cost.sequences == t
    assert cost.tokens == t * (4 + entry.num_prefix_tokens)
    clip = {"pixel_values": torch.randn(1, 3, t, size, size)}
    assert sum(cost.flops.values()) == _counted(enc, clip)


def test_hf_flops_are_counted_on_one_frame(tmp_path):
    transformers = pytest.importorskip("transformers")
    from eval_encoder.encoders.hf_backend import build_hf

    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, patch_size=8, image_size=32)
    transformers.Dinov2Model(config).save_pretrained(tmp_path / "tiny")
    cfg = ProbeConfig(model_family="hf", model_name=str(tmp_path / "tiny"), mean=[0.5] * 3,
                      std=[0.5] * 3)
    enc = build_hf(cfg)
    cost = compute.encoder_cost(enc, 3, 3 * 16)
    assert cost.method == "counter" and cost.tokens == 3 * 17  # CLS is encoded, then dropped
    assert sum(cost.flops.values()) == _counted(enc, {"pixel_values": torch.randn(1, 3, 3, 32, 32)})


def test_vit_flops_by_hand_and_arch_labels():
    shape = compute.ViTShape.plain(depth=24, width=1024, mlp=4096, patch=14)
    assert shape.arch == "ViT-L/14"
    assert compute.ViTShape.plain(2, 128, 256, 14).arch == "ViT-2x128/14"
    n = 2048
    flops = compute.vit_flops(shape, n)
    assert flops["projections"] == 2 * n * 4 * 1024 ** 2 * 24
    assert flops["attention"] == 4 * n * n * 1024 * 24
    assert flops["mlp"] == 2 * n * 2 * 1024 * 4096 * 24
    assert flops["patch_embed"] == 2 * n * 3 * 14 * 14 * 1024
    # the OneVision ViT-L at 8 x 256 tokens: about 1.66 TFLOPs per clip, attention a quarter
    assert 1600 < sum(flops.values()) / 1e9 < 1700


class _Mine(VideoEncoder):
    def __init__(self, own=False):
        super().__init__()
        self.spec = EncoderSpec(family="mine", model_name="m", embed_dim=4, patch_size=2,
                                input_size=4)
        if own:
            self.flops_per_clip = lambda frames, tokens: compute.EncoderCost(
                "mine", "analytic", tokens, frames, {"total": 10 * frames})


def test_other_encoders_count_themselves_or_are_not_counted():
    assert compute.encoder_cost(_Mine(), 8, 32) is None
    assert compute.encoder_cost(_Mine(own=True), 8, 32).flops == {"total": 80}
    with pytest.raises(ValueError, match="registered already"):
        compute.register_cost(_Mine)(lambda *a: None)
        compute.register_cost(_Mine)(lambda *a: None)
    compute.COST_MODELS.pop(_Mine)


def test_loader_clock_measures_the_wait_share():
    def slow_loader(n, delay):
        for _ in range(n):
            time.sleep(delay)
            yield {"labels": torch.zeros(4)}

    clock = compute.LoaderClock()
    for _ in clock.timed(slow_loader(5, 0.03), "train"):
        time.sleep(0.003)  # a fast step: the run waits on its loader
    for _ in clock.timed(slow_loader(5, 0.003), "val"):
        time.sleep(0.03)  # a slow step: the loader keeps up
    state = clock.state()["train"]
    assert state["batches"] == 5 and state["samples"] == 20
    assert state["wait_s"] / state["seconds"] > 0.6
    val = clock.state()["val"]
    assert val["wait_s"] / val["seconds"] < 0.4
    # two ranks: clips summed, time of the slower rank, waits over both ranks' loop time
    other = dict(state, seconds=state["seconds"] * 2, wait_s=0.0)
    out = compute.throughput([{"train": state}, {"train": other}], "train")
    assert out["clips"] == 40 and out["seconds"] == round(other["seconds"], 3)
    assert out["clips_per_s"] == round(40 / other["seconds"], 3)
    share = state["wait_s"] / (3 * state["seconds"])
    assert out["loader_wait_share"] == pytest.approx(share, abs=1e-3)
    assert compute.throughput([{}], "val") is None
    val = compute.throughput([{"val": dict(state)}], "val", views=2)
    assert val["clips"] == 10


def test_peak_memory_on_the_host():
    mem = compute.peak_memory(torch.device("cpu"))
    big = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB
    after = compute.peak_memory(torch.device("cpu"))
    assert after["host_peak_rss_mib"] >= mem["host_peak_rss_mib"] > 50
    assert after["device_peak_allocated_mib"] is None
    assert compute.max_over([{"a": 1.0, "b": None}, {"a": 3.0, "b": None}]) == {"a": 3.0, "b": None}
    del big


# ----------------------------------------------------------------------------- weights
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_weight_file_digest_is_cached_by_identity(tmp_path, monkeypatch):
    weight = tmp_path / "w.safetensors"
    weight.write_bytes(b"abc" * 100)
    cache = tmp_path / "cache" / "weight_sha256.json"
    first = weights.describe_weights(str(weight), cache)
    assert first["path"] == str(weight.resolve()) and first["sha256"] == _sha(b"abc" * 100)
    assert first["files"] == [{"name": "w.safetensors", "bytes": 300, "sha256": _sha(b"abc" * 100)}]
    stored = json.loads(cache.read_text())
    assert stored["files"][str(weight.resolve())]["inode"] == weight.stat().st_ino
    # unchanged file: read from the cache, never hashed again
    real = weights.file_sha256
    monkeypatch.setattr(weights, "file_sha256", lambda p: pytest.fail(f"rehashed {p}"))
    assert weights.describe_weights(str(weight), cache)["sha256"] == first["sha256"]
    # a changed file (same size, new mtime) is hashed again
    weight.write_bytes(b"abd" * 100)
    os.utime(weight, ns=(1, 1))
    monkeypatch.setattr(weights, "file_sha256", real)
    assert weights.describe_weights(str(weight), cache)["sha256"] == _sha(b"abd" * 100)


def test_weight_folder_digest_is_over_its_weight_files_in_order(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.safetensors").write_bytes(b"b")
    (folder / "sub" / "a.bin").write_bytes(b"a")
    (folder / "config.json").write_text("{}")  # not a weight file
    monkeypatch.chdir(tmp_path)
    out = weights.describe_weights("model", None)  # relative to the working directory
    assert out["path"] == str(folder.resolve())
    assert [f["name"] for f in out["files"]] == ["b.safetensors", "sub/a.bin"]
    lines = f"b.safetensors {_sha(b'b')}\nsub/a.bin {_sha(b'a')}\n"
    assert out["sha256"] == _sha(lines.encode())
    for nothing in ("random", "random (seed 3)", None):
        assert weights.describe_weights(nothing, None)["path"] is None
    assert weights.describe_weights("no/such/place.safetensors", None)["sha256"] is None


# ----------------------------------------------------------------------------- config block
def test_config_block_keeps_sources_once_and_codec_only_for_codec_runs():
    cfg = parse_config(["--dataset", "demo", "--model_family", "sampling"])
    full = cfg.to_dict()
    block = rec.config_block(cfg, codec=False)
    assert "sources" not in block and "codec" not in block
    assert rec.config_block(cfg)["codec"] == full["codec"]
    assert rec.config_hash(full) == rec.config_hash(cfg.to_dict())  # the hash sees it all


# config_hash of every shipped recipe (dataset ssv2), as computed before the record changed:
# a change here re-runs every finished dataset of a suite. An option that does not change
# results belongs in record.RUNTIME_KEYS; update these only for a change that must re-run.
RECIPE_HASHES = {
    "aimv2_large_patch14_224_16f": "1596c8c376c97c9b",
    "aimv2_large_patch14_224_8f": "04c0f6bdae0e1950",
    "dinov3_large_16f": "a5339ef9e99e0880",
    "dinov3_large_8f": "923cfba5450a86d1",
    "metaclip2_large14_16f": "c291e9df9b62484f",
    "metaclip2_large14_8f": "c6073a0bf185fc47",
    "ov_encoder_large_16f": "e270525d124de8c9",
    "ov_encoder_large_8f": "5f0d86db702ccc8f",
    # the codec rows now follow one published version (codec_version 2026-01-18) instead of
    # a mix of two: a change of settings that must re-run (was f64f3694e21590ca, 5887a324f478e3c1)
    "ov_encoder_large_codec_2k": "b1fb9328d9e12314",
    "ov_encoder_large_codec_4k": "a600f4668bdc41cb",
    "siglip2_large_patch16_256_16f": "a200fa5032f9754e",
    "siglip2_large_patch16_256_8f": "6b8d86e52f248e43",
}


def _recipe_hash(name, tmp_path, *extra):
    """The hash the suite expects for the recipe's ssv2 run (the trainer computes the same)."""
    from eval_encoder.suite.plan import trainer_argv
    from eval_encoder.suite.recipes import load_recipe, write_probe_yaml

    recipe = load_recipe(str(RECIPES / f"{name}.yaml"))
    config = write_probe_yaml(recipe, "ssv2", str(tmp_path))
    argv = trainer_argv(config, "ssv2", "/data", str(tmp_path), extra)
    return rec.config_hash(parse_config(argv).to_dict())


@pytest.mark.parametrize("name", sorted(RECIPE_HASHES))
def test_recipe_config_hashes_are_unchanged(name, tmp_path):
    assert _recipe_hash(name, tmp_path) == RECIPE_HASHES[name]
    # runtime options leave it alone
    assert _recipe_hash(name, tmp_path / "b", "--device", "cpu", "--print_freq", "3",
                        "--checkpoint_every_min", "1") == RECIPE_HASHES[name]


def test_a_later_option_keeps_earlier_hashes_only_at_its_earlier_behaviour(tmp_path):
    """codec.map_resolution came after records existed: 'source' (what they measured, and
    what `paper` resolves to) leaves the hash alone; 'map' is a new configuration."""
    name = "ov_encoder_large_codec_2k"
    assert _recipe_hash(name, tmp_path / "a", "--map_resolution", "source") == RECIPE_HASHES[name]
    assert _recipe_hash(name, tmp_path / "b", "--map_resolution", "map") != RECIPE_HASHES[name]
