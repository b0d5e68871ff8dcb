"""transformers' video models through ``--model_family hf`` (encoders/hf_video.py): tiny random
checkpoints saved with their processors, tokens against transformers' own forward, frame counts,
no downloads, and a probe run on demo data under the default protocol."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from eval_encoder.config import ConfigError
from eval_encoder.encoders import build_encoder
from eval_encoder.encoders.clip import ClipModuleEncoder
from eval_encoder.probe.args import parse_config

transformers = pytest.importorskip("transformers")
hv = pytest.importorskip("eval_encoder.encoders.hf_video")

SIZE, FRAMES = 32, 4
SHAPE = dict(image_size=SIZE, num_frames=FRAMES, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=64)
PROC_SIZE = dict(size={"shortest_edge": 36}, crop_size={"height": SIZE, "width": SIZE})
CLIP_STATS = dict(image_mean=list(hv.CLIP_MEAN), image_std=list(hv.CLIP_STD))
# name -> (config, model class, processor); X-CLIP's processor is its VideoMAEImageProcessor
MODELS = {
    "videomae": lambda t: (t.VideoMAEConfig(patch_size=16, tubelet_size=2, **SHAPE),
                           t.VideoMAEModel, t.VideoMAEVideoProcessor(**PROC_SIZE)),
    "timesformer": lambda t: (t.TimesformerConfig(patch_size=16, **SHAPE), t.TimesformerModel,
                              t.TimesformerVideoProcessor(**PROC_SIZE)),
    "vivit": lambda t: (t.VivitConfig(tubelet_size=[2, 16, 16], **SHAPE), t.VivitModel,
                        t.VivitVideoProcessor(**PROC_SIZE)),
    "xclip": lambda t: (t.XCLIPVisionConfig(patch_size=16, **SHAPE), t.XCLIPVisionModel,
                        t.VideoMAEImageProcessor(**PROC_SIZE, **CLIP_STATS)),
}
# tokens per clip: VideoMAE 2 tubelets x 4; TimeSformer 1 + 4 x 4; ViViT 1 + 2 x 4; X-CLIP 4 x 5
TOKENS = {"videomae": 8, "timesformer": 17, "vivit": 9, "xclip": 20}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfvideo")
    out = {}
    for name, make in MODELS.items():
        config, cls, proc = make(transformers)
        torch.manual_seed(0)
        cls(config).save_pretrained(root / name)
        proc.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from eval_encoder.demo import generate_dataset

    root = tmp_path_factory.mktemp("demo")
    generate_dataset(root, "demo", train_per_class=2, val_clips=4, seed=0)
    return root


def _encoder(folder, *flags):
    return build_encoder(parse_config(["--model_family", "hf", "--model_name", str(folder),
                                       "--dataset", "demo", *flags]))


def _decoded_frames(demo) -> np.ndarray:
    """FRAMES decoded frames of a demo video (PyAV), a SIZE x SIZE window of their pixels."""
    video = next((demo / "demo" / "videos").glob("*.mp4"))
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:FRAMES]
    return np.stack(frames)[:, 20:20 + SIZE, 30:30 + SIZE]


def _transformers_tokens(name, folder, pixels: torch.Tensor) -> torch.Tensor:
    """transformers' own forward on the processor's [1, T, C, H, W], frame by frame."""
    config, cls, _ = MODELS[name](transformers)
    model = cls.from_pretrained(folder).eval()
    with torch.no_grad():
        if name == "xclip":
            out = model(pixel_values=pixels.flatten(0, 1)).last_hidden_state
            return out.reshape(1, -1, out.shape[-1])
        out = model(pixel_values=pixels).last_hidden_state
    if name == "timesformer":  # [cls, (patch, frame)] -> [cls, (frame, patch)]
        rest = out[:, 1:].reshape(1, -1, FRAMES, out.shape[-1]).transpose(1, 2)
        out = torch.cat([out[:, :1], rest.reshape(1, -1, out.shape[-1])], dim=1)
    return out


def _processed(name, folder, frames: np.ndarray) -> torch.Tensor:
    """The model's own processor on the frames, its resize and crop off (same pixels)."""
    auto = transformers.AutoImageProcessor if name == "xclip" else transformers.AutoVideoProcessor
    proc = auto.from_pretrained(folder)
    kwargs = dict(do_resize=False, do_center_crop=False, return_tensors="pt")
    if name == "xclip":  # an image processor: the frames as one video, [1, T, C, H, W]
        return proc(images=list(frames), **kwargs)["pixel_values"].float().reshape(
            1, FRAMES, 3, SIZE, SIZE)
    return proc(videos=[list(frames)], **kwargs)["pixel_values"].float()


@pytest.mark.parametrize("name", list(MODELS))
def test_tokens_equal_transformers_on_the_processors_pixels(name, folders, demo):
    """The suite's normalisation (spec mean/std on x / 255) of the same decoded pixels equals
    the processor's output, and the encoder's tokens equal transformers' last_hidden_state."""
    encoder = _encoder(folders[name])
    assert isinstance(encoder, ClipModuleEncoder) and encoder.spec.num_frames == FRAMES
    frames = _decoded_frames(demo)
    theirs = _processed(name, folders[name], frames)  # [1, T, C, H, W]
    mean = torch.tensor(encoder.spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(encoder.spec.std).view(3, 1, 1, 1)
    ours = ((torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255 - mean) / std)[None]
    pixel_diff = (ours - theirs.transpose(1, 2)).abs().max().item()
    with torch.no_grad():
        tokens = encoder({"pixel_values": ours})
    want = _transformers_tokens(name, folders[name], theirs)
    token_diff = (tokens - want).abs().max().item()
    print(f"{name}: pixels max abs diff {pixel_diff:.2e}, tokens {token_diff:.2e}")
    assert tokens.shape == (1, TOKENS[name], 32)
    assert pixel_diff < 1e-5 and token_diff < 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_the_spec_declares_the_clip(name, folders):
    spec = _encoder(folders[name]).spec
    clip_prefix = {"timesformer": 1, "vivit": 1}.get(name, 0)
    assert (spec.num_frames, spec.input_size, spec.tokens_per_frame) == (FRAMES, SIZE, 4)
    assert spec.clip_prefix_tokens == clip_prefix
    assert spec.prefix_tokens == (1 if name == "xclip" else 0)
    assert spec.tubelet_size == (2 if name in ("videomae", "vivit") else 1)
    assert spec.short_side == 36 and "config" in spec.origins["mean"]
    if name == "vivit":  # x / 127.5 - 1, then (. - 0.5) / 0.5
        assert spec.mean == (0.75,) * 3 and spec.std == (0.25,) * 3


def test_a_frame_count_asked_that_differs_is_an_error_naming_both(folders):
    with pytest.raises(ConfigError, match=r"built for clips of 4 frames.*--num_frames 8"):
        _encoder(folders["videomae"], "--num_frames", "8")
    encoder = _encoder(folders["vivit"])  # the protocol's default 8 yields to the model's 4
    with pytest.raises(ValueError, match=r"clips of 4 frames, got a clip of 6 frames"):
        encoder({"pixel_values": torch.zeros(1, 3, 6, SIZE, SIZE)})


def test_nothing_is_downloaded_without_allow_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ConfigError, match=r"only local files are read; --allow_download"):
        _encoder("MCG-NJU/videomae-base")


def test_xclip_interpolates_its_size_and_the_others_do_not(folders):
    assert _encoder(folders["xclip"], "--input_size", "48").spec.tokens_per_frame == 9
    assert _encoder(folders["videomae"], "--input_size", "48").spec.input_size == SIZE


def test_a_vjepa2_checkpoint_through_hf_is_the_vjepa2_encoder(tmp_path):
    vj = pytest.importorskip("eval_encoder.encoders.vjepa2")
    config = transformers.VJEPA2Config(**vj.SIZES["vjepa2_tiny"].config_values())
    transformers.VJEPA2Model(config).save_pretrained(tmp_path / "vj")
    encoder = _encoder(tmp_path / "vj", "--num_frames", "4")
    assert isinstance(encoder, vj.VJEPA2Encoder) and encoder.spec.tubelet_size == 2


def test_listing_describes_video_support():
    from eval_encoder.registry import ENCODERS

    family = ENCODERS.get("hf")
    notes = " ".join(row["note"] for row in family.describe_models())
    assert "VideoMAE" in family.description and "video (timesformer)" in notes


@pytest.mark.parametrize("name", ["videomae", "timesformer", "vivit", "xclip"])
def test_a_probe_run_end_to_end(name, folders, demo, tmp_path, monkeypatch):
    """Each tiny video model through the probe on demo data under the default protocol."""
    from eval_encoder.probe.run import main as probe_main
    from eval_encoder.record import read_record

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    report = tmp_path / "report"
    code = probe_main(["--model_family", "hf", "--model_name", str(folders[name]),
                       "--dataset", "demo", "--data_root", str(demo), "--default_epoch", "1",
                       "--default_lr_list", "1e-3", "--batch_size", "4", "--loader", "torch",
                       "--dali_py_num_workers", "0", "--save_report", str(report)])
    assert code == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["config"]["protocol"] == "paper"
    # X-CLIP's tower interpolates its positions, so it runs at the card's 224 px: 4 x (1 + 14^2)
    tokens = 4 * (1 + 14 * 14) if name == "xclip" else TOKENS[name]
    assert record["token_budget"] == tokens and record["config"]["num_frames"] == FRAMES
    assert ("input_size" in record["encoder"]["spec"].get("overrides", {})) == (name == "xclip")
    cost = record["compute"]["encoder"]
    assert cost["flops_method"] == "counter" and cost["gflops_per_clip"] > 0
    assert record["samples"]["val"]["scored"] == 4
