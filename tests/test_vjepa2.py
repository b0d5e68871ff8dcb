"""The vjepa2 family: transformers' VJEPA2Model on whole clips, tubelets of 2 frames.

Tiny random models built from a VJEPA2Config (2 layers, 64 wide, 2 heads, patch 16, tubelet 2,
32 px, 4 frames); no weights are downloaded, and the big sizes are checked from their configs."""
from __future__ import annotations

import json
import re

import pytest
import torch

from eval_encoder import compute, listing
from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.encoders import check_names, check_weights
from eval_encoder.encoders.base import EncoderSpec
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.records import token_budget
from eval_encoder.probe.run import check_encoder_flags
from eval_encoder.registry import ENCODERS

transformers = pytest.importorskip("transformers")
vj = pytest.importorskip("eval_encoder.encoders.vjepa2")

TINY = "vjepa2_tiny"
LARGE = "vjepa2_large_patch16_256"
STATS = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny V-JEPA 2 checkpoint folder as transformers saves one, with its video processor
    (mean/std unlike the defaults, so that the test sees where they came from)."""
    out = tmp_path_factory.mktemp("vjepa2") / "tiny"
    torch.manual_seed(0)
    config = transformers.VJEPA2Config(**vj.SIZES[TINY].config_values())
    transformers.VJEPA2Model(config).save_pretrained(out)
    transformers.VJEPA2VideoProcessor(crop_size=32, **STATS).save_pretrained(out)
    return out


def _build(weight, **values):
    cfg = ProbeConfig(model_family="vjepa2", model_name=values.pop("model_name", TINY),
                      model_weight=str(weight), num_frames=values.pop("num_frames", 4), **values)
    return ENCODERS.get("vjepa2")(cfg)


def _clip(frames=4, size=32, batch=2):
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1))


def test_tokens_are_transformers_own_last_hidden_state(folder):
    """Exactly VJEPA2Model(...).last_hidden_state on the same pixels ([B, T, C, H, W] there)."""
    enc = _build(folder)
    video = _clip()
    out = enc({"pixel_values": video})
    reference = transformers.VJEPA2Model.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        want = reference(pixel_values_videos=video.transpose(1, 2)).last_hidden_state
    assert out.shape == (2, 4 // 2 * (32 // 16) ** 2, 64) == want.shape  # no prefix tokens
    assert torch.equal(out, want) and not out.requires_grad
    assert not any("predictor" in name for name, _ in enc.named_parameters())  # never run
    assert enc.weights == str(folder)


def test_the_spec_is_the_processors(folder):
    spec = _build(folder).spec
    assert (spec.family, spec.embed_dim, spec.patch_size, spec.input_size) == ("vjepa2", 64, 16, 32)
    assert (spec.tubelet_size, spec.tokens_per_frame, spec.prefix_tokens) == (2, 4, 0)
    assert spec.mean == tuple(STATS["image_mean"]) and spec.std == tuple(STATS["image_std"])
    assert spec.short_side == int(32 * 256 / 224) and spec.overrides == {}
    assert spec.origins["mean"] == f"VJEPA2VideoProcessor config in {folder}"
    assert "shorter side 36 for crop 32 (bilinear" in spec.origins["short_side"]


def test_another_input_size_moves_the_rope_grid(folder):
    """transformers takes the RoPE grid from config.crop_size: at 64 px the family builds the
    model at 64 (the tokens of a model left at 32 would sit at wrong positions)."""
    enc = _build(folder, input_size=64)
    video = _clip(size=64, batch=1)
    out = enc({"pixel_values": video})
    with torch.no_grad():
        kept = transformers.VJEPA2Model.from_pretrained(folder).eval()
        moved = transformers.VJEPA2Model.from_pretrained(folder, crop_size=64).eval()
        right = moved(pixel_values_videos=video.transpose(1, 2)).last_hidden_state
        wrong = kept(pixel_values_videos=video.transpose(1, 2)).last_hidden_state
    assert torch.equal(out, right) and not torch.allclose(out, wrong)
    spec = enc.spec
    assert (spec.input_size, spec.tokens_per_frame, spec.short_side) == (64, 16, int(64 * 256 / 224))
    assert spec.overrides["input_size"] == "command line (family default 32)"


def test_vit_l_gives_2048_tokens_for_16_frames_at_256():
    """8 tubelets x 16 x 16 patches per segment, from the config alone (no weights: the model is
    built on the meta device, where nothing is allocated or computed)."""
    entry = vj.SIZES[LARGE]
    assert entry.tokens_per_clip(16) == 8 * 16 * 16 == 2048
    config = transformers.VJEPA2Config(**{**entry.config_values(), "frames_per_clip": 16})
    embeddings = transformers.models.vjepa2.modeling_vjepa2.VJEPA2PatchEmbeddings3D
    assert embeddings.num_patches(config) == 2048
    with torch.device("meta"):
        model = transformers.VJEPA2Model(config)
        out = model.encoder(pixel_values_videos=torch.empty(1, 16, 3, 256, 256)).last_hidden_state
    assert tuple(out.shape) == (1, 2048, 1024)
    assert vj.SIZES["vjepa2_giant_patch16_384"].tokens_per_clip(16) == 8 * 24 * 24


@pytest.mark.parametrize("frames", [3, 5, 1])
def test_a_frame_count_the_model_cannot_take_is_an_error(folder, frames):
    said = re.escape(f"vjepa2/{TINY} takes clips of a multiple of 2 frames (tubelets of 2), "
                     f"not {frames} frames: give --num_frames such as {frames + 2 - frames % 2}")
    with pytest.raises(ConfigError, match=said):
        _build(folder, num_frames=frames)
    enc = _build(folder)
    with pytest.raises(ConfigError, match=said):
        enc({"pixel_values": _clip(frames=frames)})


def test_random_weights_from_a_size_name(folder):
    first, again = _build("random"), _build("random")
    assert first.weights == "random (seed 1)" and first.spec.origins["mean"].startswith(
        "transformers ") and first.spec.mean == (0.485, 0.456, 0.406)
    for a, b in zip(first.parameters(), again.parameters()):
        assert torch.equal(a, b)  # seeded: every rank builds the same
    assert first({"pixel_values": _clip()}).shape == (2, 8, 64)


def test_weights_that_do_not_fit_are_refused(folder, tmp_path):
    """A single file, another model's folder, a folder missing encoder weights: each a
    ConfigError that says which."""
    from safetensors.torch import load_file, save_file

    with pytest.raises(ConfigError, match="a V-JEPA 2 checkpoint is a folder"):
        _build(folder / "model.safetensors")
    other = tmp_path / "dinov2"
    transformers.Dinov2Model(transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        patch_size=8, image_size=32)).save_pretrained(other)
    with pytest.raises(ConfigError, match="describes a 'dinov2' model, not V-JEPA 2"):
        _build(other)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((folder / "config.json").read_bytes())
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("encoder.layer.1.mlp.")},
              str(partial / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"does not hold every encoder weight \(4 missing"):
        _build(partial)


def test_names_are_checked_with_suggestions():
    check_names(ProbeConfig(model_family="vjepa2", model_name=LARGE))
    with pytest.raises(ConfigError, match=f"--model_name {LARGE}"):
        check_names(ProbeConfig(model_family="vjepa2", model_name="facebook/vjepa2-vitl-fpc64-256"))
    with pytest.raises(ConfigError, match="Did you mean 'vjepa2_giant_patch16_384'"):
        check_names(ProbeConfig(model_family="vjepa2", model_name="vjepa2_giant_patch16_348"))


def test_weights_are_never_fetched_without_allow_download(tmp_path, monkeypatch):
    """The default weight is the size's hub id, looked up in the local cache only."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    asked = []

    def snapshot(repo_id, cache_dir=None, local_files_only=False, **kw):
        asked.append((repo_id, local_files_only))
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    cfg = ProbeConfig(model_family="vjepa2", model_name=LARGE, num_frames=16)
    for step in (check_weights, ENCODERS.get("vjepa2")):
        with pytest.raises(ConfigError, match="not in the local Hugging Face cache and "
                                              "--allow_download is off"):
            step(cfg)
    assert asked == [("facebook/vjepa2-vitl-fpc64-256", True)] * 2
    cfg.allow_download = True
    check_weights(cfg)  # may be fetched by the run; the check itself never downloads
    assert asked[-1] == ("facebook/vjepa2-vitl-fpc64-256", True)
    with pytest.raises(ConfigError, match="no published weights"):
        check_weights(ProbeConfig(model_family="vjepa2", model_name=TINY))


def test_flops_equal_torchs_counter(folder):
    """Analytic (3D patch embedding over 2 frames, projections, attention, MLP) against
    torch.utils.flop_counter: equal to the FLOP (tolerance 0; rotary embeddings are
    element-wise and left out by both)."""
    for size, frames in ((32, 4), (64, 6)):
        enc = _build(folder, input_size=size, num_frames=frames)
        cost = compute.encoder_cost(enc, frames, 0)
        assert cost.method == "analytic" and cost.sequences == 1
        assert cost.tokens == frames // 2 * (size // 16) ** 2
        clip = {"pixel_values": _clip(frames, size, batch=1)}
        assert sum(cost.flops.values()) == compute.count_flops(lambda: enc(clip))


def test_vit_l_flops_by_hand():
    class Encoder:  # the cost model reads only the spec and the config
        spec = EncoderSpec("vjepa2", LARGE, 1024, 16, 256, tubelet_size=2)
        config = transformers.VJEPA2Config(**vj.SIZES[LARGE].config_values())

    cost = compute.vjepa2_cost(Encoder(), 16, 2048)
    assert cost.arch == "ViT-L/16" and cost.tokens == 2048
    assert cost.flops["patch_embed"] == 2 * 2048 * (3 * 2 * 16 * 16) * 1024
    assert cost.flops["mlp"] == 2 * 2048 * 2 * 1024 * 4096 * 24
    assert 1650 < cost.gflops < 1660  # about 1.66 TFLOPs per 16-frame clip


def test_tubelets_in_the_run_checks_and_the_token_budget():
    spec = EncoderSpec("vjepa2", LARGE, 1024, 16, 256, tokens_per_frame=256, tubelet_size=2)
    cfg = parse_config(["--model_family", "vjepa2", "--model_name", LARGE, "--num_frames", "16",
                        "--frames_token_num", "256"])
    assert token_budget(cfg, spec) == 2048
    check_encoder_flags(cfg, spec)  # an unset --tubelet_size takes the encoder's
    assert (cfg.tubelet_size, cfg.num_tokens) == (2, 2048)
    for argv, said in ((["--tubelet_size", "1"], "--tubelet_size 1 but .* tubelets of 2 frame"),
                       (["--num_frames", "15"], "--num_frames 15: vjepa2/.* multiple of 2"),
                       (["--frames_token_num", "128"], "256 patch tokens per tubelet of 2 frames")):
        with pytest.raises(ConfigError, match=said):
            check_encoder_flags(parse_config(["--num_frames", "16", *argv]), spec)
    # a per-frame family keeps its budget and takes an explicit --tubelet_size 1
    frame = EncoderSpec("clip", "m", 64, 16, 32, tokens_per_frame=4, prefix_tokens=1)
    cfg = parse_config(["--num_frames", "3", "--tubelet_size", "1"])
    check_encoder_flags(cfg, frame)
    assert (cfg.num_tokens, cfg.tubelet_size, cfg.short_side_size) == (15, 1, None)


def test_ls_lists_the_sizes(capsys):
    assert listing.main(["models", "--family", "vjepa2", "--json"]) == 0
    rows = {r["model_name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert set(rows) == {LARGE, "vjepa2_huge_patch16_256", "vjepa2_giant_patch16_256",
                         "vjepa2_giant_patch16_384", TINY}
    want = {LARGE: ("facebook/vjepa2-vitl-fpc64-256", 1024, 256, 2048),
            "vjepa2_huge_patch16_256": ("facebook/vjepa2-vith-fpc64-256", 1280, 256, 2048),
            "vjepa2_giant_patch16_256": ("facebook/vjepa2-vitg-fpc64-256", 1408, 256, 2048),
            "vjepa2_giant_patch16_384": ("facebook/vjepa2-vitg-fpc64-384", 1408, 384, 4608)}
    for name, (hub, width, size, tokens) in want.items():
        row = rows[name]
        assert (row["default_weights"], row["embed_dim"], row["input_size"]) == (hub, width, size)
        assert (row["patch_size"], row["tubelet_size"], row["tokens_per_clip_16f"]) == (16, 2, tokens)
    assert listing.main(["models", "--family", "vjepa2"]) == 0
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if l.startswith("vjepa2 ") and LARGE in l)
    assert line.split()[1:8] == [LARGE, "1024", "16", "256", "256", "2", "2048"]
    assert "facebook/vjepa2-vitg-fpc64-384 (torch.hub vjepa2_vit_giant_384)" in text


def test_a_probe_run_end_to_end(folder, tmp_path, monkeypatch):
    """The tiny model through the probe on demo data: the record holds the tubelet, the token
    budget, the processor's resize and the analytic GFLOPs."""
    from eval_encoder.demo import generate_dataset
    from eval_encoder.probe.run import main as probe_main
    from eval_encoder.record import read_record

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    generate_dataset(tmp_path / "data", "demo", train_per_class=2, val_clips=5, seed=0)
    report = tmp_path / "report"
    code = probe_main(["--model_family", "vjepa2", "--model_name", TINY, "--model_weight",
                       str(folder), "--dataset", "demo", "--data_root", str(tmp_path / "data"),
                       "--num_frames", "4", "--input_size", "32", "--default_epoch", "1",
                       "--default_lr_list", "1e-3", "--batch_size", "4", "--loader", "torch",
                       "--dali_py_num_workers", "0", "--save_report", str(report)])
    assert code == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["token_budget"] == 8
    assert record["encoder"]["spec"]["tubelet_size"] == 2
    assert record["config"]["tubelet_size"] == 2 and record["config"]["short_side_size"] == 36
    assert record["sources"]["short_side_size"].startswith("encoder spec: VJEPA2VideoProcessor")
    encoder = record["compute"]["encoder"]
    assert encoder["flops_method"] == "analytic" and encoder["tokens_encoded"] == 8
    assert record["samples"]["val"]["scored"] == 5
