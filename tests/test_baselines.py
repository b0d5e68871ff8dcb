"""Image-encoder baselines (timm, per frame) and the hf backend: tables, contract, weights."""
import math
import sys

import pytest
import torch

import eval_encoder.encoders  # noqa: F401  (registers every family)
import eval_encoder.encoders.hf_backend  # noqa: F401  (the hf family)
from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.encoders import baselines as bl
from eval_encoder.encoders.base import CLIP_MEAN, HALF, IMAGENET_MEAN, VideoEncoder
from eval_encoder.registry import ENCODERS, RegistryError

TINY = dict(depth=1, embed_dim=64, num_heads=2)
NAMES = list(bl.MODELS)
# prefix tokens per frame the published scripts gave the head (transformers last_hidden_state;
# DINOv2's wrapper dropped CLS)
PUBLISHED_PREFIX = {"clip": 1, "metaclip": 1, "dinov3": 5, "dinov2": 0, "siglip": 0,
                    "siglip2": 0, "aimv2": 0}


def tiny(name, weight="random", frames_per_pass=64, **cfg_values):
    """A 1-block, 64-wide build of a table entry at two patches per side."""
    entry = bl.MODELS.get(name) if name in bl.MODELS else None
    family = cfg_values.pop("family", entry.family if entry else None)
    size = cfg_values.pop("input_size", 2 * entry.patch_size if entry else 32)
    cfg = ProbeConfig(model_family=family, model_name=name, model_weight=weight,
                      input_size=size, **cfg_values)
    return bl.build_baseline(family, cfg, frames_per_pass=frames_per_pass, **TINY)


def clips(encoder, batch=2, frames=2, seed=0):
    size = encoder.spec.input_size
    gen = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(batch, 3, frames, size, size, generator=gen)}


def test_every_family_is_registered_with_aliases():
    for family in ("clip", "metaclip", "siglip", "siglip2", "dinov2", "dinov3", "aimv2", "hf"):
        assert family in ENCODERS
    assert ENCODERS.canonical("dino_v2") == "dinov2"
    assert {m.family for _, m in bl.MODELS.items()} == set(bl.FAMILIES)
    assert len(NAMES) == 14


@pytest.mark.parametrize("name", NAMES)
def test_table_matches_the_timm_architecture(name):
    """Width, patch and tokens per frame as declared, checked on the meta device (no memory)."""
    import timm

    entry = bl.MODELS.get(name)
    with torch.device("meta"):
        model = timm.create_model(entry.arch, pretrained=False, num_classes=0,
                                  img_size=entry.input_size)
    assert model.embed_dim == entry.embed_dim
    assert model.patch_embed.patch_size[0] == entry.patch_size
    grid = model.patch_embed.grid_size
    assert grid[0] * grid[1] == entry.tokens_per_frame
    assert model.num_prefix_tokens == entry.num_prefix_tokens
    tag = entry.weights.split(".", 1)[1]
    assert timm.models.get_pretrained_cfg(f"{entry.arch}.{tag}").hf_hub_id == entry.weights


@pytest.mark.parametrize("name", NAMES)
def test_tiny_build_obeys_the_contract(name):
    enc = tiny(name)
    assert isinstance(enc, VideoEncoder) and not enc.training
    assert not any(p.requires_grad for p in enc.parameters())
    spec = enc.spec
    assert spec.family == bl.MODELS.get(name).family and spec.model_name == name
    assert spec.embed_dim == 64 and spec.tokens_per_frame == 4 and spec.clip_source == "frames"
    keep = PUBLISHED_PREFIX[spec.family]
    assert spec.prefix_tokens == keep
    n = 4 + keep
    batch = clips(enc)
    out = enc(batch)
    assert out.shape == (2, 2 * n, 64) and not out.requires_grad
    # every frame's tokens are the image model's kept prefix and patch tokens plus that
    # frame's encoding
    model, pe = enc.model, bl.temporal_encoding(2, 64)
    for t in range(2):
        with torch.no_grad():
            ref = model.forward_features(batch["pixel_values"][:, :, t])
        ref = ref[:, model.num_prefix_tokens - keep:]
        torch.testing.assert_close(out[:, n * t:n * (t + 1)], ref + pe[t], rtol=1e-5, atol=1e-5)


def test_temporal_encoding_is_upstreams_interleaved_sin_cos():
    pe = bl.temporal_encoding(3, 6)
    assert pe.shape == (3, 6)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 3))
    for i in range(3):
        freq = math.exp(-math.log(10000.0) * 2 * i / 6)
        assert pe[2, 2 * i].item() == pytest.approx(math.sin(2 * freq), abs=1e-6)
        assert pe[2, 2 * i + 1].item() == pytest.approx(math.cos(2 * freq), abs=1e-6)
    assert bl.temporal_encoding(2, 5).shape == (2, 5)  # odd width: truncated like upstream


def test_frame_chunks_do_not_change_the_result():
    one = tiny("dinov2_base", frames_per_pass=1)
    many = tiny("dinov2_base", frames_per_pass=64)
    many.load_state_dict(one.state_dict())
    batch = clips(one, batch=2, frames=3)
    torch.testing.assert_close(one(batch), many(batch), rtol=1e-5, atol=1e-5)


def test_overrides_are_recorded_and_defaults_are_the_familys():
    cfg = ProbeConfig(model_family="dinov2", model_name="dinov2_base", model_weight="random",
                      input_size=28, mean=[0.1, 0.2, 0.3], std=list(bl.FAMILIES["dinov2"].std))
    spec = bl.build_baseline("dinov2", cfg, **TINY).spec
    assert spec.mean == (0.1, 0.2, 0.3) and spec.input_size == 28
    assert set(spec.overrides) == {"mean", "input_size"}  # std equals the default: no override
    assert "family default 224" in spec.overrides["input_size"]
    assert tiny("siglip_base").spec.std == HALF
    assert tiny("aimv2_large_patch14_native_ap").spec.mean == CLIP_MEAN
    cfg = ProbeConfig(model_family="siglip2", model_name="siglip2_base", model_weight="random")
    default = bl.build_baseline("siglip2", cfg, **TINY).spec
    assert default.overrides == {} and default.input_size == 224 and default.tokens_per_frame == 196


def test_a_timm_name_runs_at_the_cards_input_size_and_says_so(caplog):
    """vit_small_patch14_dinov2 is built by timm for 518 px (1,369 tokens per frame); a run
    without --input_size takes the dataset card's 224 (256 tokens), notes the native size in
    the spec (which the record keeps) and warns once."""
    import logging

    from eval_encoder.probe.args import parse_config
    from eval_encoder.probe.data import resolve_dataset
    from eval_encoder.probe.run import say_input_size

    cfg = parse_config(["--dataset", "hmdb51", "--model_family", "dinov2", "--model_name",
                        "vit_small_patch14_dinov2", "--model_weight", "random"])
    assert bl.resolve_model("dinov2", cfg.model_name).input_size == 518
    card = resolve_dataset(cfg)
    assert cfg.input_size == card.input_size == 224
    assert cfg.sources["input_size"] == f"dataset card {card.path}"
    spec = bl.build_baseline("dinov2", cfg, **TINY).spec
    assert spec.input_size == 224 and spec.tokens_per_frame == 16 * 16
    assert spec.overrides["input_size"] == f"dataset card {card.path} (family default 518)"
    with caplog.at_level(logging.WARNING, logger="eval_encoder.run"):
        say_input_size(spec)
    said = [r.getMessage() for r in caplog.records if r.name == "eval_encoder.run"]
    assert len(said) == 1 and "runs at 224 px, not at its native size" in said[0]
    assert "family default 518" in said[0]


def test_an_input_size_the_encoder_does_not_take_is_an_error_or_a_warning(caplog):
    """A family that keeps its own size (the README's example encoder): a size the run asked
    for is an error, the card's default a warning."""
    import logging

    from eval_encoder.encoders.base import EncoderSpec
    from eval_encoder.probe.args import parse_config
    from eval_encoder.probe.data import resolve_dataset
    from eval_encoder.probe.run import check_input_size

    spec = EncoderSpec(family="mine", model_name="m", embed_dim=8, patch_size=16, input_size=64)
    with pytest.raises(ConfigError, match=r"mine/m runs at 64 px, not at the 96 px from command "
                                          r"line: its family does not take --input_size"):
        check_input_size(parse_config(["--input_size", "96"]), spec)
    cfg = parse_config(["--dataset", "hmdb51"])
    resolve_dataset(cfg)
    with caplog.at_level(logging.WARNING, logger="eval_encoder.run"):
        check_input_size(cfg, spec)
    assert "not at the 224 px from dataset card" in caplog.text
    assert "frames are resized to 64 px" in caplog.text


def test_timm_architecture_inside_a_family_takes_the_familys_stats():
    enc = tiny("test_vit", family="dino_v2", input_size=32)
    assert enc.spec.family == "dinov2" and enc.spec.mean == IMAGENET_MEAN
    assert enc(clips(enc)).shape == (2, 2 * 4, 64)
    assert bl.resolve_model("clip", "vit_tiny_patch16_224").input_size == 224


def test_unknown_names_fail_with_suggestions():
    with pytest.raises(RegistryError, match="Did you mean 'clip_vit_base_patch16'"):
        bl.resolve_model("clip", "clip_vit_base_patch61")
    with pytest.raises(RegistryError, match="Did you mean 'siglip2'"):
        ENCODERS.get("siglp2")
    with pytest.raises(ConfigError, match="belongs to family 'siglip'"):
        bl.resolve_model("clip", "siglip_base")


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ConfigError, match="--input_size 40 is not a positive multiple of the patch"):
        tiny("clip_vit_base_patch16", input_size=40)
    enc = tiny("clip_vit_base_patch16")
    with pytest.raises(ValueError, match=r"must be \[B, 3, T, 32, 32\], got \(1, 3, 2, 48, 48\)"):
        enc({"pixel_values": torch.zeros(1, 3, 2, 48, 48)})


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
def test_saved_weights_load_back_to_identical_outputs(tmp_path, suffix):
    from safetensors.torch import save_file

    first = tiny("siglip2_large_patch16_256")
    state = {k: v.contiguous() for k, v in first.model.state_dict().items()}
    path = tmp_path / f"w.{suffix}"
    save_file(state, str(path)) if suffix == "safetensors" else torch.save({"model": state}, path)
    second = tiny("siglip2_large_patch16_256", weight=str(path))
    assert second.weights == str(path)
    batch = clips(first)
    assert torch.equal(first(batch), second(batch))


def test_clip_tokens_skip_the_final_norm_and_its_weights_still_load(tmp_path):
    from safetensors.torch import save_file

    first = tiny("clip_vit_base_patch16")
    assert isinstance(first.model.norm, torch.nn.Identity)
    import timm

    ref = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, **TINY)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "c.safetensors"))
    tiny("clip_vit_base_patch16", weight=str(tmp_path / "c.safetensors"))  # norm.* present: loads


def test_original_dinov2_checkpoint_at_518_loads_at_224(tmp_path):
    """Original-format DINOv2 (mask_token, 37x37 position grid) into a 224 px model."""
    import timm

    src = timm.create_model("vit_base_patch14_dinov2", num_classes=0, img_size=518,
                            depth=1, embed_dim=32, num_heads=2)
    state = dict(src.state_dict(), mask_token=torch.zeros(1, 32))
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 32)
    torch.save(state, tmp_path / "dinov2.pth")
    cfg = ProbeConfig(model_family="dinov2", model_name="dinov2_base",
                      model_weight=str(tmp_path / "dinov2.pth"), input_size=224)
    enc = bl.build_baseline("dinov2", cfg, depth=1, embed_dim=32, num_heads=2)
    assert enc.model.pos_embed.shape == (1, 1 + 16 * 16, 32)
    assert enc.spec.tokens_per_frame == 256
    assert enc(clips(enc, batch=1, frames=1)).shape == (1, 256, 32)


def test_missing_or_mismatched_weights_are_errors_not_random_init(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="no such file"):
        tiny("dinov3_base", weight=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ConfigError, match="default checkpoint timm/vit_base_patch16_dinov3.lvd1"):
        tiny("dinov3_base", weight="NULL")  # default checkpoint, not in the (empty) cache
    from safetensors.torch import save_file

    clip_state = tiny("clip_vit_base_patch16").model.state_dict()
    save_file({k: v.contiguous() for k, v in clip_state.items()}, str(tmp_path / "clip.safetensors"))
    with pytest.raises(ConfigError, match="does not fit timm vit_base_patch16_siglip_224"):
        tiny("siglip_base", weight=str(tmp_path / "clip.safetensors"))
    save_file({"vision_model.embeddings.patch_embedding.weight": torch.zeros(1)},
              str(tmp_path / "hf.safetensors"))
    with pytest.raises(ConfigError, match="--model_family hf"):
        tiny("siglip_base", weight=str(tmp_path / "hf.safetensors"))


def test_registry_factory_builds_through_the_family(tmp_path):
    cfg = ProbeConfig(model_family="openai_clip", model_name="test_vit", model_weight="random",
                      input_size=32)
    enc = ENCODERS.get(cfg.model_family)(cfg)
    assert enc.spec.family == "clip" and enc.spec.mean == CLIP_MEAN and enc.weights == "random"


def test_hf_without_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    cfg = ProbeConfig(model_family="hf", model_name="facebook/dinov2-base", model_weight="random")
    with pytest.raises(ConfigError, match=r"eval-encoder\[hf\]"):
        ENCODERS.get("hf")(cfg)


def test_hf_backend_with_a_tiny_local_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, patch_size=8, image_size=32)
    torch.manual_seed(0)
    transformers.Dinov2Model(config).save_pretrained(tmp_path / "tiny_dinov2")
    cfg = ProbeConfig(model_family="hf", model_name=str(tmp_path / "tiny_dinov2"))
    with pytest.raises(ConfigError, match="pass --mean and --std"):
        ENCODERS.get("hf")(cfg)
    cfg.mean, cfg.std = [0.5] * 3, [0.5] * 3
    enc = ENCODERS.get("hf")(cfg)
    assert enc.spec.tokens_per_frame == 16 and enc.spec.embed_dim == 32
    assert set(enc.spec.overrides) == {"mean", "std"}
    batch = clips(enc)
    out = enc(batch)
    assert out.shape == (2, 2 * 16, 32) and not out.requires_grad
    with torch.no_grad():
        ref = enc.vision(pixel_values=batch["pixel_values"][:, :, 1]).last_hidden_state[:, 1:]
    torch.testing.assert_close(out[:, 16:], ref + bl.temporal_encoding(2, 32)[1], rtol=1e-5,
                               atol=1e-5)


# --------------------------------------------------------------------------- token layouts

PUBLISHED_TOKENS = {"clip_vit_base_patch16": 197, "clip_vit_large_patch14": 257,
                    "metaclip2_large14": 257, "dinov3_large": 201, "dinov2_large": 256,
                    "siglip2_large_patch16_256": 256, "aimv2_large_patch14_native_ap": 256}


def full_size(name, **cfg_values):
    """A tiny-width build of a table entry at its published input size (full token grid)."""
    return tiny(name, input_size=bl.MODELS.get(name).input_size, **cfg_values)


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOKENS))
def test_published_tokens_per_frame(name):
    enc = full_size(name)
    spec = enc.spec
    assert spec.tokens_per_frame + spec.prefix_tokens == PUBLISHED_TOKENS[name]
    assert enc(clips(enc, batch=1, frames=2)).shape == (1, 2 * PUBLISHED_TOKENS[name], 64)
    row = bl.describe(bl.MODELS.get(name))  # the listing says the same without building
    assert row["tokens_per_frame"] + row["prefix_tokens"] == PUBLISHED_TOKENS[name]


@pytest.mark.parametrize("layout, clip_tokens, dinov3_tokens, dinov2_tokens",
                         [("patch", 4, 4, 4), ("all", 5, 9, 5)])
def test_token_layout_overrides_the_familys(layout, clip_tokens, dinov3_tokens, dinov2_tokens):
    for name, want in (("clip_vit_base_patch16", clip_tokens), ("dinov3_base", dinov3_tokens),
                       ("dinov2_base", dinov2_tokens), ("siglip_base", 4)):
        enc = tiny(name, token_layout=layout)
        assert enc.spec.tokens_per_frame == 4 and enc.spec.prefix_tokens == want - 4
        batch = clips(enc, batch=1, frames=2)
        with torch.no_grad():
            ref = enc.model.forward_features(batch["pixel_values"][:, :, 1])[:, -want:]
        torch.testing.assert_close(enc(batch)[:, want:], ref + bl.temporal_encoding(2, 64)[1],
                                   rtol=1e-5, atol=1e-5)
    assert "family default 1" in tiny("clip_vit_base_patch16", token_layout="patch") \
        .spec.overrides["prefix_tokens"]
    assert "prefix_tokens" not in tiny("clip_vit_base_patch16", token_layout="all").spec.overrides


def test_timm_architecture_names_take_the_familys_layout():
    assert tiny("test_vit", family="clip", input_size=32).spec.prefix_tokens == 1
    assert tiny("test_vit", family="dinov2", input_size=32).spec.prefix_tokens == 0
    enc = tiny("test_vit", family="dinov2", input_size=32, token_layout="all")
    assert enc(clips(enc)).shape == (2, 2 * 5, 64)
    with pytest.raises(ConfigError, match="--token_layout 'cls'"):
        tiny("clip_vit_base_patch16", token_layout="cls")


def test_temporal_encoding_reaches_the_prefix_tokens():
    """Upstream adds the frame's encoding to every token of the frame, CLS and registers too."""
    enc = tiny("dinov3_base")
    batch = clips(enc, batch=1, frames=3)
    out, pe = enc(batch), bl.temporal_encoding(3, 64)
    for t in range(3):
        with torch.no_grad():
            prefix = enc.model.forward_features(batch["pixel_values"][:, :, t])[:, :5]
        torch.testing.assert_close(out[:, 9 * t:9 * t + 5], prefix + pe[t], rtol=1e-5, atol=1e-5)


def test_clip_tokens_are_the_residual_stream_before_the_final_norm():
    """transformers' CLIPVisionModel applies post_layernorm to the pooled token only, so its
    last_hidden_state (CLS included) is the last block's output."""
    import timm

    enc = tiny("clip_vit_base_patch16")
    ref = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32,
                            **TINY).eval()
    ref.load_state_dict(enc.model.state_dict(), strict=False)  # all but the final norm
    image = clips(enc, batch=1, frames=1)["pixel_values"][:, :, 0]
    with torch.no_grad():
        stream = ref.blocks(ref.norm_pre(ref._pos_embed(ref.patch_embed(image))))
        tokens = enc({"pixel_values": image[:, :, None]})
    torch.testing.assert_close(tokens, stream + bl.temporal_encoding(1, 64)[0])
    assert not torch.allclose(tokens, ref.norm(stream) + bl.temporal_encoding(1, 64)[0])


def hf_dinov2_table(table: torch.Tensor, grid: int) -> torch.Tensor:
    """Reference: transformers 4.57.3 Dinov2Embeddings.interpolate_pos_encoding, written out
    (CLS entry kept; patch entries bicubic to ``grid``, align_corners=False, float32)."""
    side = int((table.shape[1] - 1) ** 0.5)
    patches = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = torch.nn.functional.interpolate(patches.to(torch.float32), size=(grid, grid),
                                              mode="bicubic", align_corners=False)
    patches = patches.to(table.dtype).permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([table[:, :1], patches], dim=1)


def dinov2_checkpoint(tmp_path, original_format: bool):
    """A random 37x37-grid DINOv2 checkpoint (original format has a mask_token)."""
    torch.manual_seed(0)
    table = torch.randn(1, 1 + 37 * 37, 32)
    import timm

    src = timm.create_model("vit_base_patch14_dinov2", num_classes=0, img_size=518,
                            depth=1, embed_dim=32, num_heads=2)
    state = dict(src.state_dict(), pos_embed=table)
    if original_format:
        state["mask_token"] = torch.zeros(1, 32)
    torch.save(state, tmp_path / "dinov2.pth")
    return table, str(tmp_path / "dinov2.pth")


@pytest.mark.parametrize("original_format", [True, False])
@pytest.mark.parametrize("name, size", [("dinov2_base", 224), ("dinov2_base", 168),
                                        ("vit_base_patch14_dinov2", 224)])
def test_dinov2_position_table_is_the_one_transformers_computes(tmp_path, original_format,
                                                               name, size):
    table, path = dinov2_checkpoint(tmp_path, original_format)
    cfg = ProbeConfig(model_family="dinov2", model_name=name, model_weight=path, input_size=size)
    enc = bl.build_baseline("dinov2", cfg, depth=1, embed_dim=32, num_heads=2)
    want = hf_dinov2_table(table, size // 14)
    assert torch.equal(enc.model.pos_embed, want)
    assert torch.equal(enc.model.pos_embed[:, 0], table[:, 0])  # CLS entry unchanged
    from timm.layers import resample_abs_pos_embed

    smoothed = resample_abs_pos_embed(table, [size // 14] * 2, num_prefix_tokens=1)
    assert (smoothed - want).abs().max() > 0.1  # timm's antialiased default is not it


def test_other_families_keep_timms_checkpoint_filter(tmp_path):
    assert bl.FAMILIES["clip"].checkpoint_filter_kwargs == ()
    model = tiny("clip_vit_base_patch16").model
    with pytest.raises(ConfigError, match="takes no"):
        bl.checkpoint_filter(model, no_such_argument=1)


def test_frames_token_num_is_the_patch_grid():
    """The published shells pass 256 for CLIP L/14: the patch grid, the CLS token on top."""
    from eval_encoder.probe.run import check_encoder_flags

    spec = full_size("clip_vit_large_patch14").spec
    cfg = ProbeConfig(model_family="clip", model_name="clip_vit_large_patch14",
                      frames_token_num=256)
    check_encoder_flags(cfg, spec)
    assert (spec.tokens_per_frame, spec.prefix_tokens) == (256, 1)
    with pytest.raises(ConfigError, match="gives 256 patch tokens per frame"):
        check_encoder_flags(ProbeConfig(model_family="clip", model_name="clip_vit_large_patch14",
                                        frames_token_num=257), spec)


def test_hf_backend_keeps_the_published_token_layout(tmp_path):
    """transformers' last_hidden_state as the published wrappers gave it: whole for CLIP (CLS
    kept), without CLS for DINOv2; ``--token_layout`` overrides it."""
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPVisionConfig(hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64,
                                           patch_size=8, image_size=32)
    torch.manual_seed(0)
    transformers.CLIPVisionModel(config).save_pretrained(tmp_path / "tiny_clip")
    stats = dict(mean=[0.5] * 3, std=[0.5] * 3)
    cfg = ProbeConfig(model_family="hf", model_name=str(tmp_path / "tiny_clip"), **stats)
    enc = ENCODERS.get("hf")(cfg)
    assert (enc.spec.tokens_per_frame, enc.spec.prefix_tokens) == (16, 1)
    batch = clips(enc)
    out = enc(batch)
    assert out.shape == (2, 2 * 17, 32)
    with torch.no_grad():
        ref = enc.vision(pixel_values=batch["pixel_values"][:, :, 0]).last_hidden_state
    assert torch.allclose(out[:, :17] - bl.temporal_encoding(2, 32)[0], ref, atol=1e-5)
    cfg.token_layout = "patch"
    assert ENCODERS.get("hf")(cfg).spec.prefix_tokens == 0


def test_random_weights_are_the_seeds():
    """--model_weight random builds the same encoder for a seed, run after run (records and
    the feature cache name the weights by their parameters), another for another seed."""
    name = NAMES[0]
    same = [tiny(name, seed=3).state_dict() for _ in range(2)]
    other = tiny(name, seed=4).state_dict()
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])
    assert any(not torch.equal(same[0][k], other[k]) for k in same[0])
