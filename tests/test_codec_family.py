"""The codec encoder family and its clip source, alone and through the shared trainer."""
import numpy as np
import pytest
import torch

import eval_encoder.encoders  # noqa: F401  (registers the families and the codec source)
from eval_encoder.codec.select import FLAG_NAMES, FLAG_SHORT_CLIP
from eval_encoder.codec.synthetic import moving_square, write_video
from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.encoders import build_encoder
from eval_encoder.encoders.onevision import index_positions
from eval_encoder.record import read_record
from eval_encoder.registry import CLIP_SOURCES, ENCODERS
from eval_encoder.video import dataset as ds
from eval_encoder.video.manifest import ManifestEntry

TINY = ["--model_name", "ov_encoder_tiny", "--model_weight", "random", "--input_size", "28",
        "--K_keep", "40"]


def _encoder(*extra):
    return build_encoder(parse_config(["--model_family", "codec", *TINY, *extra]))


def test_family_is_registered_under_upstream_names_with_a_codec_spec():
    for name in ("codec", "llava_vit_codec", "ov_encoder_codec"):
        assert ENCODERS.canonical(name) == "codec"
    spec = _encoder().spec
    assert (spec.family, spec.clip_source, spec.num_frames, spec.tokens_per_frame) == \
        ("codec", "codec", 64, None)
    assert (spec.patch_size, spec.input_size, spec.embed_dim) == (14, 28, 128)
    assert "codec" in CLIP_SOURCES
    for bit, name in FLAG_NAMES.items():
        assert ds.FLAG_NAMES[bit] == name


def test_forward_encodes_only_the_visible_patches_at_their_grid_positions():
    enc = _encoder()
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, 64, 28, 28, generator=gen)
    visible = torch.stack([torch.randperm(256, generator=gen)[:40].sort().values for _ in range(2)])
    tokens = enc({"pixel_values": pixels, "visible_indices": visible})
    assert tokens.shape == (2, 40, 128)
    # embedding only the selected patches == embedding whole frames, then gathering
    emb = enc.model.embeddings
    full = emb(pixels)  # [B, 64 * 4, D]
    gathered = torch.gather(full, 1, visible[..., None].expand(-1, -1, full.shape[-1]))
    assert torch.allclose(emb.embed_patches(pixels, visible), gathered, atol=1e-5)
    # and the encoder sees them at their (t, h, w) places on the 64-frame grid
    want = enc.model.encode_tokens(gathered, index_positions(visible, 2, 2)).last_hidden_state
    assert torch.allclose(tokens, want, atol=1e-5)


def test_family_refuses_inconsistent_flags():
    with pytest.raises(ConfigError, match="--patch_size 16"):
        _encoder("--patch_size", "16")
    with pytest.raises(ConfigError, match="--num_frames 16"):
        _encoder("--num_frames", "16")
    with pytest.raises(ConfigError, match="not a positive multiple"):
        _encoder("--input_size", "30")


def test_codec_source_gives_frames_and_visible_indices(tmp_path):
    path = write_video(str(tmp_path / "a.mp4"), moving_square(frames=40, height=60, width=80,
                                                              size=20).frames)
    cfg = parse_config(["--model_family", "codec", *TINY, "--save_report", str(tmp_path / "r")])
    spec = _encoder().spec
    source = CLIP_SOURCES.get("codec")(num_frames=64, decode_threads=1, cfg=cfg, spec=spec)
    dataset = ds.ClipDataset([ManifestEntry("a.mp4", 0, 1)], str(tmp_path), source, train=True,
                             seed=0)
    sample = dataset.sample(0, epoch=3)
    assert sample.error is None and sample.frames.shape == (64, 60, 80, 3)
    vis = sample.extras["visible_indices"]
    assert vis.dtype == np.int64 and vis.shape == (40,) and np.all(np.diff(vis) > 0)
    assert vis.max() < 64 * 4
    assert sample.extras["flags"].shape == (1,) and sample.extras["flags"][0] & FLAG_SHORT_CLIP
    # the selection belongs to the clip, not to the epoch or the random stream
    assert np.array_equal(dataset.sample(0, epoch=5).extras["visible_indices"], vis)
    with pytest.raises(ConfigError, match="num_spatial_crops 3"):
        CLIP_SOURCES.get("codec")(num_frames=64, decode_threads=1, spec=spec,
                                  cfg=parse_config([*TINY, "--num_spatial_crops", "3"]))


@pytest.mark.parametrize("protocol", ["paper", "clean"])
def test_upstream_codec_command_runs_through_the_shared_trainer(protocol, tmp_path, monkeypatch):
    from eval_encoder.demo import generate, save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cards = tmp_path / "cards"  # our own card for the generated demo clips
    cards.mkdir()
    (cards / "demo.yaml").write_text("name: demo\nnum_classes: 4\ntrain_manifest: train_new.csv\n"
                                     "val_manifest: val_new.csv\ndefault_epochs: 1\n"
                                     "default_batch_size: 4\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    data, weights = generate(tmp_path), save_tiny_encoder(tmp_path)
    report, cache = tmp_path / "report", tmp_path / "cache_residuals"
    # the command, scaled down: tiny encoder, 28 px crops, 64 of 4 x 16 patches kept
    argv = ["--eval_freq", "1", "--default_lr_list", "0.0001", "--batch_size", "4",
            "--default_weight_decay", "0", "--dali_py_num_workers", "0", "--model_family",
            "llava_vit_codec", "--dataset", "demo", "--num_frames", "64", "--model_weight",
            str(weights), "--model_name", "ov_encoder_tiny", "--embedding_size", "128",
            "--default_epoch", "1", "--data_root", str(data), "--cache_dir", str(cache),
            "--K_keep", "64", "--mv_compensate", "median", "--input_size", "28",
            "--save_report", str(report), "--protocol", protocol]
    assert probe_main(argv, prog="attentive_probe_codec.py",
                      base={"model_family": "codec", "num_frames": 64}) == 0
    (record,) = [read_record(p) for p in (report / "runs").rglob("*.json")]
    assert record["status"] == "complete" and record["encoder"]["family"] == "codec"
    assert record["protocol"]["name"] == protocol
    assert record["token_budget"] == 64 and record["frames"] == 64
    # a codec run keeps its codec options; the encoder embeds and encodes only the K patches
    assert record["config"]["codec"]["K_keep"] == 64 and "sources" not in record["config"]
    assert record["compute"]["encoder"]["tokens_encoded"] == 64
    assert record["compute"]["encoder"]["gflops_by_part"]["patch_embed"] == round(
        2 * 64 * 3 * 14 * 14 * 128 / 1e9, 4)
    val = record["samples"]["val"]
    assert val["scored"] == val["expected"] == 7 and val["skipped"] == []
    # demo clips have 12-20 frames: every one is flagged short, and was cached once
    assert val["flags"][FLAG_NAMES[FLAG_SHORT_CLIP]] == 7
    assert len(list(cache.rglob("*.npy"))) == 16 + 7
