"""GPU smoke test: the CUDA-only paths the CPU tests cannot reach.

Skipped (with the reason) where CUDA is absent, which is every CI run; the first machine with
a GPU runs it with ``pytest -m gpu -s tests/test_gpu.py`` (see benchmarks/gpu_check.sh, which
also runs the throughput benchmark). Measured differences are printed (-s).

  * the OneVision encoder in bf16 autocast with sdpa (and flash-attn where installed) against
    float32 on the CPU, for the sampling and the codec inputs;
  * V-JEPA 2 ViT-L/16 (vjepa2 family) at 16 x 256 px in bf16 autocast against float32, and
    its analytic FLOPs against torch's counter at full size;
  * DALI's transforms on the GPU (device_id=0) against the torch transforms;
  * a whole probe run on CUDA (NCCL over every visible GPU, at least one process) with the
    torch loader (the default) and, where DALI is installed, the DALI loader.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_encoder.encoders import onevision
from eval_encoder.encoders.onevision_config import onevision_config
from eval_encoder.encoders.sampling import sampled_patch_positions

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda", 0)


def _model(attn: str = "sdpa"):
    torch.manual_seed(0)
    config = onevision_config("ov_encoder_base")
    return onevision.OneVisionEncoder(config, attn_implementation=attn).eval().requires_grad_(False)


def _inputs(codec: bool):
    torch.manual_seed(1)
    frames = 64 if codec else 8
    pixels = torch.randn(2, 3, frames, 224, 224)
    if codec:
        visible = torch.stack([torch.randperm(frames * 256)[:2048].sort().values for _ in range(2)])
        return {"pixel_values": pixels, "visible_indices": visible}
    rope_t = (torch.arange(frames) * 8).expand(2, -1)
    return {"pixel_values": pixels, "patch_positions": sampled_patch_positions(rope_t, 16, 16)}


def _tokens(model, inputs, device, bf16: bool) -> torch.Tensor:
    moved = {k: v.to(device) for k, v in inputs.items()}
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        return model.to(device)(**moved).last_hidden_state.float().cpu()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(0, 1), b.flatten(0, 1), dim=-1)


@pytest.mark.parametrize("codec", [False, True], ids=["sampling", "codec"])
def test_bf16_sdpa_matches_float32_cpu(codec):
    inputs = _inputs(codec)
    ref = _tokens(_model(), inputs, torch.device("cpu"), bf16=False)
    got = _tokens(_model(), inputs, CUDA, bf16=True)
    cos = _cosine(got, ref)
    print(f"bf16 sdpa vs fp32 CPU ({'codec' if codec else 'sampling'}): token cosine min "
          f"{cos.min():.5f} mean {cos.mean():.5f}")
    assert cos.mean() > 0.999 and cos.min() > 0.99


@pytest.mark.parametrize("codec", [False, True], ids=["sampling", "codec"])
def test_flash_matches_sdpa(codec):
    if onevision._flash_attn_func is None:
        pytest.skip("flash_attn is not installed (pip install -e '.[flash]')")
    inputs = _inputs(codec)
    sdpa = _tokens(_model("sdpa"), inputs, CUDA, bf16=True)
    flash = _tokens(_model("flash"), inputs, CUDA, bf16=True)
    cos = _cosine(flash, sdpa)
    print(f"flash vs sdpa, bf16: token cosine min {cos.min():.5f}, max abs diff "
          f"{(flash - sdpa).abs().max():.3e}")
    assert cos.min() > 0.999


def test_vjepa2_large_in_bf16_on_cuda():
    """V-JEPA 2 ViT-L/16 (random weights) on 16 frames x 256 px, as the trainer runs it (bf16
    autocast) against float32, and its analytic FLOPs against torch's counter at full size
    (on CPU, bf16 autocast gave a token cosine of 0.9999 at 4 frames x 64 px)."""
    pytest.importorskip("transformers")
    from eval_encoder import compute
    from eval_encoder.config import ProbeConfig
    from eval_encoder.encoders.vjepa2 import build_vjepa2

    cfg = ProbeConfig(model_family="vjepa2", model_name="vjepa2_large_patch16_256",
                      model_weight="random", num_frames=16)
    enc = build_vjepa2(cfg).to(CUDA)
    clip = {"pixel_values": torch.randn(2, 3, 16, 256, 256, device=CUDA)}
    with torch.no_grad():
        ref = enc(clip)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = enc(clip)
    cos = _cosine(got.float(), ref)
    print(f"vjepa2 ViT-L bf16 vs fp32 on CUDA: token cosine min {cos.min():.5f} mean "
          f"{cos.mean():.5f}")
    assert ref.shape == (2, 2048, 1024) and cos.mean() > 0.999 and cos.min() > 0.99
    one = {"pixel_values": clip["pixel_values"][:1]}
    cost = compute.encoder_cost(enc, 16, 2048)
    assert sum(cost.flops.values()) == compute.count_flops(lambda: enc(one))


def test_dali_gpu_transforms_match_torch(tmp_path):
    pytest.importorskip("nvidia.dali")
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from eval_encoder.video.dali import dali_transform
    from eval_encoder.video.transforms import TransformSpec, transform_clip

    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8) for h, w in ((120, 160), (48, 64))]
    tspec = TransformSpec(input_size=56, short_side=64, mean=(0.5,) * 3, std=(0.25,) * 3)

    @pipeline_def(batch_size=len(clips), num_threads=1, device_id=0)
    def pipe():
        frames = fn.external_source(name="frames", layout="FHWC").gpu()
        crop = fn.external_source(name="crop")
        return dali_transform(frames, crop, None, tspec, False)

    p = pipe()
    p.build()
    p.feed_input("frames", clips)
    p.feed_input("crop", [np.asarray((0.5, 0.5), np.float32)] * len(clips))
    out = p.run()[0].as_cpu()
    worst = max((torch.from_numpy(np.array(out[i])) - transform_clip(c, tspec, (0.5, 0.5)))
                .abs().max().item() for i, c in enumerate(clips))
    print(f"DALI on GPU vs torch transforms: max abs diff {worst:.2e} (after normalisation)")
    assert worst < 2e-3  # a tenth of a level: arithmetic order, not a different filter


def _demo(tmp_path: Path, loader: str) -> dict:
    gpus = torch.cuda.device_count()
    out = tmp_path / loader
    cmd = [sys.executable, "-m", "eval_encoder", "demo", "--out", str(out), "--nproc_per_node",
           str(gpus), "--device", "cuda", "--loader", loader]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    record = json.loads(max((out / "report" / "runs" / "demo").glob("*.json"),
                            key=lambda p: p.stat().st_mtime).read_text())
    print(f"demo on {gpus} GPU(s), {loader} loader: top-1 {record['reported']['top1']:.1f}%, "
          f"{record['wall_time_s']:.1f} s")
    return record


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_probe_run_on_cuda(tmp_path, loader):
    if loader == "dali":
        pytest.importorskip("nvidia.dali")
    record = _demo(tmp_path, loader)
    assert record["status"] == "complete"
    assert record["samples"]["val"]["scored"] == record["samples"]["val"]["expected"]
    assert "cuda" in str(record["device"])
    assert record["world_size"] == torch.cuda.device_count()
