"""Plain decoding of 64 frames vs. codec patch selection, on the same clips, as a ratio.

    python benchmarks/bench_codec.py [--frames 128] [--clips 2] [--repeats 3] [--sizes 240x320 ...]
    python benchmarks/bench_codec.py --videos a.mp4 b.avi [--repeats 3]

For each size it writes synthetic H.264 clips (a textured square over a panning textured
background; ``--videos``: the given files instead, one report each), then times, interleaved on
the same clips and per protocol:

  plain      count the frames and decode the 64 uniformly sampled ones (RGB): what any
             64-frame loader pays
  selection  the codec source without cache: one decode pass for the 64 frames (RGB and
             luma) and the luma of each one's source predecessor, then the pairwise
             re-encode, vectors, residual, the map (paper: pixel grid at the source's
             resolution; clean: motion cells at the map's), patch scores and top-K
             (K=2048, 224 crop, 14 px patches)

Single-threaded (BLAS/OpenMP pinned to one thread), as one loader worker runs; ``--clock cpu``
times the process's CPU time instead of wall time (steadier where other work shares the
machine). Prints the
medians over clips x repeats, the ratio's median and range over rounds, and where the
selection's time goes.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eval_encoder.codec import make_options  # noqa: E402
from eval_encoder.codec import pipeline  # noqa: E402
from eval_encoder.codec.schedule import zeroed  # noqa: E402
from eval_encoder.codec.select import choose  # noqa: E402
from eval_encoder.codec.synthetic import write_moving_clips  # noqa: E402
from eval_encoder.video.decode import decode_clip  # noqa: E402

SIZES = ["240x320", "360x640", "720x1280"]
# --clock: wall time, or the process's CPU time (steadier on a machine shared with other work)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timed(fn, *args):
    start = clock()
    out = fn(*args)
    return clock() - start, out


def stages(selector: pipeline.Selector, path: str) -> dict:
    """Seconds per stage of one uncached selection."""
    opts, out = selector.opts, {}
    out["decode"], clip = timed(selector.decode, path, 1, True)
    live = ~zeroed(clip.ids, opts.zero_frames)
    size = pipeline.RESOLUTIONS[opts.map_resolution](*clip.luma.shape[1:3], 224)
    out["motion"], (pos, field) = timed(pipeline.MOTION[opts.mv_reference], clip, live, size)
    out["map"], (part, area) = timed(pipeline.GRIDS[opts.map_grid], field, opts, 224, 224)
    scores = np.zeros((64, 256))
    scores[pos] = part
    out["top-K"], _ = timed(choose, scores.reshape(-1), 2048, 256, opts, area)
    return out


def bench(paths, repeats: int, selectors: dict):
    """Interleaved rounds: per round and clip, plain decode then each protocol's selection."""
    plain, sel, parts = [], {k: [] for k in selectors}, {k: [] for k in selectors}
    ratios = {k: [] for k in selectors}
    for _ in range(repeats):
        for path in paths:
            t_plain = timed(decode_clip, path, 64, False, None, 1, 0, 1, True)[0]
            plain.append(t_plain)
            for name, selector in selectors.items():
                t = timed(selector.load, path, 1)[0]
                sel[name].append(t)
                ratios[name].append(t / t_plain)
                parts[name].append(stages(selector, path))
    return plain, sel, ratios, parts


def report(size: str, plain, sel, ratios, parts) -> None:
    print(f"{size}: plain decode {statistics.median(plain) * 1e3:.0f} ms")
    for name in sel:
        detail = ", ".join(f"{k} {statistics.median(p[k] for p in parts[name]) * 1e3:.0f}"
                           for k in parts[name][0])
        print(f"  {name:5s} selection {statistics.median(sel[name]) * 1e3:.0f} ms, ratio "
              f"{statistics.median(ratios[name]):.2f}x (range {min(ratios[name]):.2f}-"
              f"{max(ratios[name]):.2f})  [stages, ms: {detail}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=128, help="frames per synthetic clip")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="HxW sizes")
    parser.add_argument("--videos", nargs="+", default=[],
                        help="benchmark these files instead of synthetic clips")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or CPU time of this process (on a shared machine)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)
    selectors = {p: pipeline.Selector(64, 224, make_options(p)) for p in ("paper", "clean")}
    for path in args.videos:
        bench([path], 1, selectors)  # warm-up
        report(os.path.basename(path), *bench([path], args.repeats, selectors))
    if args.videos:
        return
    print(f"clips of {args.frames} frames, {args.clips} per size, {args.repeats} rounds; "
          "K 2048 of 64x16x16, one thread")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            paths = write_moving_clips(folder, h, w, args.frames, args.clips)
            bench(paths[:1], 1, selectors)  # warm-up: imports, codec initialisation
            report(f"{w}x{h}", *bench(paths, args.repeats, selectors))


if __name__ == "__main__":
    main()
