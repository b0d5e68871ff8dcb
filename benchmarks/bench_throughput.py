"""Encoder throughput of the OneVision families, and MFU on CUDA.

    python benchmarks/bench_throughput.py                      # full size on a GPU, tiny on CPU
    python benchmarks/bench_throughput.py --size tiny          # the CPU smoke test CI runs
    python benchmarks/bench_throughput.py --attn sdpa flash --batch 8 --rounds 5 --json out.json

Cases, each the frozen encoder's forward as a run calls it (no gradient):

  sampling-8f / sampling-16f   every patch of 8 / 16 frames (256 per frame at 224 px, ViT-L/14)
  codec-K2048 / codec-K4096    K visible patches of the 64-frame grid (only those embedded)

For each case and attention implementation (``sdpa``; ``flash`` where flash-attn is installed
and the device is CUDA) it prints clips/s (median and range over rounds, after a warm-up
forward), encoder tokens per clip, GFLOPs per clip (counted once per case with
torch.utils.flop_counter on one clip: matmuls and attention; elementwise work left out) and,
on CUDA, MFU = GFLOPs/clip x clips/s over the device's dense bf16 peak (``--peak_tflops``, or
known for H100/H200/A100). Precision is the trainer's: bf16 autocast on CUDA, float32 on CPU.
Rounds interleave the cases, so a noisy machine slows all of them alike.

``--loader_workers N ...`` adds the data loader's clips/s with N workers (see
benchmarks/bench_loader.py, which compares it with bare decoding).

How to read it: clips/s is the encoder's own ceiling; a run is slower by the heads' step and
by any time the GPU waits for data (the run record's ``compute.loader_wait_share``). MFU
shows how far the attention implementation and batch are from the hardware.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Callable, Dict, List, Optional  # noqa: E402

import torch  # noqa: E402

from eval_encoder.compute import count_flops  # noqa: E402
from eval_encoder.encoders import onevision  # noqa: E402
from eval_encoder.encoders.onevision_config import onevision_config  # noqa: E402
from eval_encoder.encoders.sampling import sampled_patch_positions  # noqa: E402

SIZES = {  # model name, batch, clip frames per case
    "full": {"model": "ov_encoder_large", "batch": 8},
    "tiny": {"model": "ov_encoder_tiny", "batch": 1},
}
CODEC_FRAMES = 64
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM


@dataclass
class Case:
    name: str
    frames: int
    keep: Optional[int] = None  # codec: visible patches per clip


CASES = [Case("sampling-8f", 8), Case("sampling-16f", 16),
         Case("codec-K2048", CODEC_FRAMES, 2048), Case("codec-K4096", CODEC_FRAMES, 4096)]


@dataclass
class Result:
    case: str
    attn: str
    dtype: str
    batch: int
    tokens_per_clip: int
    gflops_per_clip: float
    clips_per_s: List[float] = field(default_factory=list)
    mfu: Optional[float] = None

    def median(self) -> float:
        return statistics.median(self.clips_per_s)


def case_inputs(case: Case, batch: int, patch: int, device: torch.device) -> Dict:
    """The forward's inputs as the sampling or codec family builds them."""
    grid = 224 // patch
    pixels = torch.randn(batch, 3, case.frames, 224, 224, device=device)
    if case.keep is None:
        rope_t = torch.arange(case.frames, device=device).float().expand(batch, -1)
        return {"pixel_values": pixels,
                "patch_positions": sampled_patch_positions(rope_t * 64 / case.frames, grid, grid)}
    total = case.frames * grid * grid
    visible = torch.stack([torch.randperm(total, device=device)[:case.keep].sort().values
                           for _ in range(batch)])
    return {"pixel_values": pixels, "visible_indices": visible}


def forward_fn(model, inputs: Dict, device: torch.device) -> Callable[[], int]:
    """One frozen forward in the trainer's precision; returns the tokens per clip."""
    def run() -> int:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                             enabled=device.type == "cuda"):
            return model(**inputs).last_hidden_state.shape[1]
    return run


def count_gflops(model, case: Case, patch: int, device: torch.device) -> float:
    """GFLOPs of one clip's forward (matmuls and attention), counted by torch."""
    return count_flops(forward_fn(model, case_inputs(case, 1, patch, device), device)) / 1e9


def timed(run: Callable[[], int], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def attention_choices(requested: List[str], device: torch.device) -> List[str]:
    """The requested implementations that can run here; says which are left out and why."""
    usable = []
    for attn in requested:
        if attn == "flash" and (device.type != "cuda" or onevision._flash_attn_func is None):
            print("  (flash left out: needs CUDA and the flash_attn package)", file=sys.stderr)
            continue
        usable.append(attn)
    return usable


def peak_tflops(args, device: torch.device) -> Optional[float]:
    """--peak_tflops, else the known peak of this GPU; None (no MFU) for a CPU."""
    if args.peak_tflops:
        return args.peak_tflops
    return known_peak(device_name(device)) if device.type == "cuda" else None


def known_peak(name: str) -> Optional[float]:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build(model_name: str, attn: str, device: torch.device):
    torch.manual_seed(0)
    model = onevision.OneVisionEncoder(onevision_config(model_name),
                                       attn_implementation=attn)
    return model.to(device).eval().requires_grad_(False)  # frozen, as the families run it


def measure(args, device: torch.device) -> List[Result]:
    """Every (case, attention) pair, interleaved over rounds."""
    size = SIZES[args.size]
    batch = args.batch or size["batch"]
    runs, results = [], []
    for attn in attention_choices(args.attn, device):
        model = build(args.model or size["model"], attn, device)
        patch = model.config.patch_size
        for case in CASES:
            run = forward_fn(model, case_inputs(case, batch, patch, device), device)
            tokens = run()  # warm-up (allocator, kernels)
            dtype = "bf16" if device.type == "cuda" else "fp32"
            results.append(Result(case.name, attn, dtype, batch, tokens,
                                  count_gflops(model, case, patch, device)))
            runs.append(run)
    for _ in range(args.rounds):
        for run, result in zip(runs, results):
            result.clips_per_s.append(batch / timed(run, device))
    peak = peak_tflops(args, device)
    for r in results:
        r.mfu = None if peak is None else r.gflops_per_clip * r.median() / (peak * 1e3)
    return results


def print_results(results: List[Result], device: torch.device) -> None:
    print(f"encoder forward on {device_name(device)}, torch {torch.__version__}")
    print(f"  {'case':13s} {'attn':5s} {'dtype':5s} {'batch':>5s} {'tokens':>7s} "
          f"{'GFLOPs/clip':>11s} {'clips/s (range)':>24s} {'MFU':>6s}")
    for r in results:
        spread = f"{r.median():9.2f} ({min(r.clips_per_s):.2f}-{max(r.clips_per_s):.2f})"
        mfu = "-" if r.mfu is None else f"{100 * r.mfu:5.1f}%"
        print(f"  {r.case:13s} {r.attn:5s} {r.dtype:5s} {r.batch:5d} {r.tokens_per_clip:7d} "
              f"{r.gflops_per_clip:11.1f} {spread:>24s} {mfu:>6s}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


LOADER_ARGS = {  # bench_loader's options per --size (tiny: seconds, for the CI smoke test)
    "tiny": ["--sizes", "36x48", "--frames", "12", "--clips", "2", "--samples", "4",
             "--num_frames", "4", "--input", "32", "--batch", "2"],
    "full": ["--sizes", "240x320", "360x640", "--num_frames", "16", "--input", "224"],
}


def loader_section(args) -> Optional[Dict]:
    """The torch loader's clips/s with each worker count against bare decoding, from
    benchmarks/bench_loader.py (None when not asked for)."""
    if not args.loader_workers:
        return None
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_loader

    return bench_loader.main([*LOADER_ARGS[args.size], "--rounds", str(args.rounds),
                              "--workers", *map(str, args.loader_workers)])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["auto", *sorted(SIZES)], default="auto",
                        help="full (ViT-L/14, batch 8) or tiny; auto: full on CUDA, tiny on CPU")
    parser.add_argument("--model", help="a OneVision model name (default: per --size)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    parser.add_argument("--attn", nargs="+", default=["sdpa", "flash"], choices=["sdpa", "flash"])
    parser.add_argument("--batch", type=int, help="clips per forward (default: per --size)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peak_tflops", type=float, help="dense bf16 peak for MFU")
    parser.add_argument("--loader_workers", type=int, nargs="*", default=[])
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    if args.size == "auto":
        args.size = "full" if device.type == "cuda" else "tiny"
    results = measure(args, device)
    print_results(results, device)
    loader = loader_section(args)
    if args.json:
        out = {"device": device_name(device), "torch": torch.__version__, "args": vars(args),
               "encoder": [asdict(r) for r in results], "loader": loader}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
