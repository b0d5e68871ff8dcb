"""The native OneVision Encoder (RoPE, sparse paths, checkpoint I/O) and the sampling family."""
import json

import pytest
import torch
import torch.nn.functional as F

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.encoders.onevision import (OneVisionConfig, OneVisionEncoder, VideoRope3D,
                                             apply_rope, grid_positions, index_positions,
                                             rotate_half_interleaved)
from eval_encoder.encoders.onevision_config import ONEVISION_MODEL_NAMES, onevision_config
from eval_encoder.encoders.sampling import (build_onevision_model, build_sampling,
                                            sampled_patch_positions)
from eval_encoder.registry import ENCODERS

# tiny: width 128, 2 heads of 64, patch 14; 28x28 frames give a 2x2 patch grid
T, SIZE = 3, 28


def _model(use_head=True, seed=0, **over) -> OneVisionEncoder:
    values = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=2, patch_size=14, use_head=use_head, **over)
    torch.manual_seed(seed)
    model = OneVisionEncoder(OneVisionConfig(**values)).eval()
    with torch.no_grad():  # non-trivial norms so that mistakes in their use show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _clip(b=2, t=T, size=SIZE, seed=1):
    return torch.randn(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------- RoPE


def test_rope_split_is_4_6_6():
    assert VideoRope3D(64).sizes == (8, 12, 12)
    assert VideoRope3D(128).sizes == (16, 24, 24)
    with pytest.raises(ConfigError, match="multiple of 32"):
        VideoRope3D(80)
    rope = VideoRope3D(64, theta=10000.0)
    angles = rope(torch.tensor([[2.0, 3.0, 5.0]]))[0]
    inv_t, inv_h, inv_w = rope.inv_freqs()
    assert angles.shape == (32,)
    assert torch.allclose(angles, torch.cat([2 * inv_t, 3 * inv_h, 5 * inv_w]))
    assert inv_t[0] == 1.0 and torch.isclose(inv_t[1], torch.tensor(10000.0 ** (-1 / 8)))


def test_rotation_preserves_norms_and_pairs_neighbours():
    x = torch.randn(4, 2, 5, 64)
    assert torch.equal(rotate_half_interleaved(rotate_half_interleaved(x)), -x)
    assert torch.equal(rotate_half_interleaved(torch.tensor([1.0, 2.0, 3.0, 4.0])),
                       torch.tensor([-2.0, 1.0, -4.0, 3.0]))
    # with one angle per channel pair it is a rotation: norms are kept
    angles = torch.rand(1, 1, 5, 32).repeat_interleave(2, dim=-1) * 6.28
    y = apply_rope(x, angles.cos(), angles.sin())
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


# ------------------------------------------------------------------- forward vs. a reference


def _reference_forward(model, pixels, visible=None):
    """The released model's algorithm written out plainly (eager softmax attention, grid
    frequencies by outer product and index, conv over every frame, gather after pre-norm)."""
    cfg = model.config
    b, c, t, hgt, wid = pixels.shape
    h, w, p = hgt // cfg.patch_size, wid // cfg.patch_size, cfg.patch_size
    frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, c, hgt, wid)
    x = F.conv2d(frames, model.embeddings.patch_embedding.weight, stride=p)
    x = x.flatten(2).transpose(1, 2).reshape(b, t * h * w, -1)
    inv_t, inv_h, inv_w = model.video_rope.inv_freqs()
    ft, fh, fw = (torch.outer(torch.arange(n, dtype=torch.float32), inv)
                  for n, inv in ((t, inv_t), (h, inv_h), (w, inv_w)))
    t_ids = torch.arange(t).repeat_interleave(h * w)
    h_ids = torch.arange(h).repeat_interleave(w).repeat(t)
    w_ids = torch.arange(w).repeat(h).repeat(t)
    freqs = torch.cat([ft[t_ids], fh[h_ids], fw[w_ids]], dim=-1)
    freqs = freqs[visible] if visible is not None else freqs.expand(b, -1, -1)
    freqs = torch.cat([freqs, freqs], dim=-1)[:, None]
    x = model.layernorm_pre(x)
    if visible is not None:
        x = x.gather(1, visible[..., None].expand(-1, -1, x.shape[-1]))
    heads, hd = cfg.num_attention_heads, cfg.head_dim
    for layer in model.encoder.layers:
        att, y = layer.self_attn, layer.layer_norm1(x)
        q, k, v = (m(y).view(b, -1, heads, hd).transpose(1, 2)
                   for m in (att.q_proj, att.k_proj, att.v_proj))
        even_odd = lambda z: torch.stack((-z[..., 1::2], z[..., 0::2]), -1).flatten(-2)  # noqa
        q = q * freqs.cos() + even_odd(q) * freqs.sin()
        k = k * freqs.cos() + even_odd(k) * freqs.sin()
        weights = torch.softmax(q @ k.transpose(2, 3) * hd ** -0.5, dim=-1)
        x = x + att.out_proj((weights @ v).transpose(1, 2).reshape(b, -1, heads * hd))
        x = x + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.layer_norm2(x))))
    return model.layernorm_post(x) if model.layernorm_post is not None else x


@torch.no_grad()
def test_dense_forward_matches_reference():
    model, pixels = _model(), _clip()
    out = model(pixels)
    assert out.last_hidden_state.shape == (2, T * 4, 128) and out.pooler_output.shape == (2, 128)
    assert torch.allclose(out.last_hidden_state, _reference_forward(model, pixels), atol=1e-5)


@torch.no_grad()
def test_visible_forward_matches_reference():
    model, pixels = _model(use_head=False), _clip()
    visible = torch.tensor([[0, 5, 6, 11], [3, 4, 9, 10]])
    out = model(pixels, visible_indices=visible)
    assert out.pooler_output is None and out.last_hidden_state.shape == (2, 4, 128)
    assert torch.allclose(out.last_hidden_state, _reference_forward(model, pixels, visible),
                          atol=1e-5)


@torch.no_grad()
def test_explicit_grid_positions_give_the_dense_output():
    model, pixels = _model(), _clip()
    positions = grid_positions(T, 2, 2).unsqueeze(0).expand(2, -1, -1)
    assert positions[0, 5].tolist() == [1, 0, 1]
    dense = model(pixels).last_hidden_state
    assert torch.allclose(model(pixels, patch_positions=positions).last_hidden_state, dense,
                          atol=1e-6)
    everything = torch.arange(T * 4).expand(2, -1)
    assert torch.allclose(model(pixels, visible_indices=everything).last_hidden_state, dense,
                          atol=1e-5)
    # a 4D image is a one-frame clip
    image = pixels[:, :, 0]
    assert torch.allclose(model(image).last_hidden_state, model(image[:, :, None]).last_hidden_state)


@torch.no_grad()
def test_visible_indices_equal_their_explicit_positions():
    model, pixels = _model(), _clip()
    visible = torch.tensor([[1, 2, 7, 11], [0, 4, 8, 9]])
    implicit = model(pixels, visible_indices=visible).last_hidden_state
    positions = index_positions(visible, 2, 2)
    assert positions[0, 2].tolist() == [1, 1, 1]  # 7 = t1, h1, w1 in a 3x2x2 grid
    explicit = model(pixels, visible_indices=visible, patch_positions=positions)
    assert torch.allclose(explicit.last_hidden_state, implicit, atol=1e-6)
    moved = model(pixels, visible_indices=visible, patch_positions=positions + torch.tensor([9, 0, 0]))
    assert not torch.allclose(moved.last_hidden_state, implicit, atol=1e-3)


@torch.no_grad()
def test_embed_patches_equals_conv_then_gather():
    model, pixels = _model(), _clip(size=42)
    visible = torch.tensor([[0, 8, 9, 26, 13], [25, 1, 2, 3, 17]])
    full = model.embeddings(pixels)
    gathered = full.gather(1, visible[..., None].expand(-1, -1, full.shape[-1]))
    assert torch.allclose(model.embeddings.embed_patches(pixels, visible), gathered, atol=1e-5)


def test_bad_inputs_are_named():
    model, pixels = _model(), _clip()
    with pytest.raises(ValueError, match=r"range \[0, 12\]"):
        model(pixels, visible_indices=torch.tensor([[0, 12], [1, 2]]))
    with pytest.raises(ValueError, match="patch_positions must be"):
        model(pixels, patch_positions=torch.zeros(2, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by the patch size 14"):
        model(_clip(size=30))


# ------------------------------------------------------------------------ checkpoints


def _same_outputs(a, b):
    pixels = _clip(b=1)
    with torch.no_grad():
        return torch.equal(a(pixels).last_hidden_state, b(pixels).last_hidden_state)


def test_save_and_load_roundtrips(tmp_path):
    model = _model()
    folder = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert _same_outputs(model, OneVisionEncoder.from_pretrained(folder, attn_implementation="sdpa"))
    # the same weights as pytorch_model.bin (DDP-prefixed, as training scripts save them)
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text((folder / "config.json").read_text())
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, binary / "pytorch_model.bin")
    assert _same_outputs(model, OneVisionEncoder.from_pretrained(binary))
    # a lone weight file with the architecture given separately
    lone = tmp_path / "lone"
    lone.mkdir()
    (folder / "model.safetensors").rename(lone / "weights.safetensors")
    loaded = OneVisionEncoder.from_pretrained(lone / "weights.safetensors", config=model.config)
    assert _same_outputs(model, loaded)
    with pytest.raises(ConfigError, match="no config.json"):
        OneVisionEncoder.from_pretrained(lone / "weights.safetensors")


def test_missing_or_extra_key_fails_naming_it(tmp_path):
    model = _model()
    state = model.state_dict()
    missing = {k: v for k, v in state.items() if k != "encoder.layers.1.mlp.fc2.bias"}
    fresh = OneVisionEncoder(model.config)
    with pytest.raises(ConfigError, match=r"1 missing key\(s\): encoder.layers.1.mlp.fc2.bias"):
        fresh.load_checked(missing, source="ck.safetensors")
    with pytest.raises(ConfigError, match=r"unexpected key\(s\): video_rope.inv_freq_t"):
        fresh.load_checked({**state, "video_rope.inv_freq_t": torch.ones(8)})
    wrong = dict(state, **{"layernorm_pre.weight": torch.ones(64)})
    with pytest.raises(ConfigError, match=r"layernorm_pre.weight has shape \(64,\)"):
        fresh.load_checked(wrong)
    # the same through a file on disk names the file
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_file({k: v.contiguous() for k, v in missing.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match=f"{tmp_path}.*fc2.bias"):
        OneVisionEncoder.from_pretrained(tmp_path)


def test_config_json_keeps_unknown_keys_and_checks_values(tmp_path):
    published = {"architectures": ["OneVisionEncoderModel"], "auto_map": {"AutoModel": "x.Y"},
                 "torch_dtype": "bfloat16", "hidden_size": 1024, "patch_size": 14,
                 "model_type": "onevision_encoder", "rope_temporal_size": 64}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(published))
    config = OneVisionConfig.from_json_file(path)
    assert config.patch_size == 14 and config.num_hidden_layers == 24 and config.image_size == 448
    assert config.extra["torch_dtype"] == "bfloat16"
    config.save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["auto_map"] == {"AutoModel": "x.Y"} and again["architectures"] == published["architectures"]
    path.write_text(json.dumps({"hidden_size": "1024"}))
    with pytest.raises(ConfigError, match=f"{path}: hidden_size"):
        OneVisionConfig.from_json_file(path)
    path.write_text(json.dumps({"model_type": "siglip"}))
    with pytest.raises(ConfigError, match="model_type 'siglip'"):
        OneVisionConfig.from_json_file(path)
    path.write_text(json.dumps({"hidden_act": "relu"}))
    with pytest.raises(ConfigError, match="hidden_act 'relu'"):
        OneVisionConfig.from_json_file(path)


def test_named_sizes():
    large = onevision_config("hf_llava_vit_large_ln")
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads,
            large.intermediate_size, large.patch_size, large.layer_norm_type) == \
        (1024, 24, 16, 4096, 14, "layer_norm")
    assert onevision_config("ov_encoder_huge").head_dim == 64
    assert {"ov_encoder_tiny", "ov_encoder_large", "hf_llava_vit_base_ln"} <= set(ONEVISION_MODEL_NAMES)
    with pytest.raises(ConfigError, match="Did you mean 'ov_encoder_large'"):
        onevision_config("ov_encoder_larg")


def test_flash_requested_without_flash_attn_is_an_error():
    try:
        import flash_attn  # noqa: F401
        pytest.skip("flash_attn is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="flash_attn is not installed"):
        OneVisionEncoder(onevision_config("ov_encoder_tiny"), attn_implementation="flash")


def test_rms_norm_and_tanh_gelu_variant_runs():
    model = _model(layer_norm_type="rms_norm", hidden_act="gelu_pytorch_tanh")
    assert "layernorm_pre.bias" not in model.state_dict()
    with torch.no_grad():
        assert torch.isfinite(model(_clip(b=1)).last_hidden_state).all()


# ------------------------------------------------------------------------ sampling family


def _cfg(**values) -> ProbeConfig:
    cfg = ProbeConfig()
    defaults = dict(model_name="ov_encoder_tiny", model_weight="random", num_frames=2)
    for key, value in {**defaults, **values}.items():
        setattr(cfg, key, value)
    return cfg


def _batch(b=1, t=2, size=224, total=100):
    return {"pixel_values": torch.randn(b, 3, t, size, size),
            "frame_indices": torch.tensor([[0, 50, 99][:t]] * b),
            "total_frames": torch.full((b,), total)}


def test_sampling_family_builds_and_returns_dense_tokens():
    assert ENCODERS.get("chunk_wise_sampling") is build_sampling
    assert ENCODERS.canonical("llava_vit_sampling") == "sampling"
    encoder = build_sampling(_cfg())
    spec = encoder.spec
    assert (spec.family, spec.embed_dim, spec.patch_size, spec.input_size, spec.tokens_per_frame,
            spec.clip_source) == ("sampling", 128, 14, 224, 256, "frames")
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    batch = _batch()
    with torch.no_grad():
        tokens = encoder(batch)
    assert tokens.shape == (1, 2 * 256, 128)
    # the frames sit at round(i / (n - 1) * 63) on the temporal grid: 0 and 32
    positions = sampled_patch_positions(torch.tensor([[0, 32]]), 16, 16)
    with torch.no_grad():
        expected = encoder.model(batch["pixel_values"], patch_positions=positions).last_hidden_state
    assert torch.equal(tokens, expected)


def test_frame_indices_map_onto_the_64_grid():
    from eval_encoder.video.decode import to_rope_grid

    grid = to_rope_grid(torch.tensor([[0, 1, 50, 99]]), torch.tensor([100]), 64)
    assert grid.tolist() == [[round(i / 99 * 63) for i in (0, 1, 50, 99)]] == [[0, 1, 32, 63]]
    positions = sampled_patch_positions(torch.tensor([[0, 32]]), 2, 3)
    assert positions.shape == (1, 12, 3)
    assert positions[0, 7].tolist() == [32, 0, 1] and positions[0, 5].tolist() == [0, 1, 2]


def test_random_weights_are_seeded_and_files_load(tmp_path):
    a, b = build_onevision_model(_cfg(seed=3)), build_onevision_model(_cfg(seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    folder = a.save_pretrained(tmp_path / "w")
    assert _same_outputs(a, build_onevision_model(_cfg(model_weight=str(folder))))
    (folder / "config.json").unlink()  # a lone weight file: the size comes from the name
    assert _same_outputs(a, build_onevision_model(_cfg(model_weight=str(folder / "model.safetensors"))))


def test_sampling_overrides_and_bad_sizes():
    encoder = build_sampling(_cfg(input_size=112, mean=[0.5, 0.5, 0.5]))
    assert encoder.spec.tokens_per_frame == 64 and encoder.spec.mean == (0.5, 0.5, 0.5)
    assert "input_size" in encoder.spec.overrides
    with pytest.raises(ConfigError, match="--input_size 100 is not a positive multiple of the patch size 14"):
        build_sampling(_cfg(input_size=100))
    with pytest.raises(ValueError, match="square frames"):
        encoder({**_batch(size=112), "pixel_values": torch.randn(1, 3, 2, 112, 98)})
    with pytest.raises(ValueError, match="frame_indices shape"):
        encoder({**_batch(size=112), "frame_indices": torch.tensor([[0, 1, 2]])})
