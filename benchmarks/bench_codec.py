"""Plain decoding of 64 frames vs. codec patch selection, on the same clips, as a ratio.

    python benchmarks/bench_codec.py [--frames 128] [--clips 2] [--repeats 3]

For each size (320x240 and 640x360) it writes synthetic H.264 clips (a textured square over
a panning textured background), then times, interleaved on the same clips:

  plain      decode_clip: count the frames and decode the 64 uniformly sampled ones (RGB)
  selection  the codec source without cache: the same decode, then re-encode, vectors,
             residual, saliency, patch scores and top-K (K=2048, 224 crop, 14 px patches)

Single-threaded (BLAS/OpenMP pinned to one thread), as one loader worker runs. Prints the
medians, their ratio and where the selection's time goes.
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
from eval_encoder.codec import motion, saliency, select  # noqa: E402
from eval_encoder.codec.pipeline import Selector  # noqa: E402
from eval_encoder.codec.synthetic import moving_square, write_video  # noqa: E402
from eval_encoder.video.decode import decode_clip  # noqa: E402

SIZES = [(240, 320), (360, 640)]


def make_clips(folder: str, height: int, width: int, frames: int, count: int):
    paths = []
    for i in range(count):
        scene = moving_square(frames=frames, height=height, width=width, size=height // 3,
                              velocity=(0.3, -1.0), pan=(0, 2), start=(height // 3, width // 2),
                              seed=i)
        paths.append(write_video(os.path.join(folder, f"c{height}_{i}.mp4"), scene.frames))
    return paths


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def stages(frames: np.ndarray, opts) -> dict:
    """Seconds per stage of the selection for already decoded frames."""
    out = {}
    out["re-encode"], packets = timed(motion.encode_canonical, frames)
    out["decode vectors"], (luma, vectors, intra) = timed(motion.decode_with_vectors, packets,
                                                          frames.shape[0])
    intra[0] = True
    out["paint vectors"], field = timed(motion.paint_vectors, vectors, *frames.shape[:3])
    field[intra] = np.nan
    out["residual"], res = timed(motion.compensated_residual, luma, field, intra)
    out["saliency"], (_, maps) = timed(saliency.saliency, motion.MotionField(field, res, intra),
                                       opts)
    out["patch scores"], scores = timed(select.patch_scores, maps, 224, 224, 14)
    scores = np.concatenate([np.zeros(256), scores]) * 255.0  # the intra frame scores 0
    out["top-K"], _ = timed(select.choose, scores, 2048, 256, opts)
    return out


def bench(paths, repeats: int, opts):
    plain, selection, parts = [], [], []
    selector = Selector(64, 224, opts)
    for _ in range(repeats):
        for path in paths:
            t, (frames, _, _) = timed(decode_clip, path, 64, False, None, 1, 0, 1, True)
            plain.append(t)
            selection.append(timed(selector.load, path, 1)[0])
            parts.append(stages(frames, opts))
    breakdown = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    return statistics.median(plain), statistics.median(selection), breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=128, help="frames per synthetic clip")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    opts = make_options()  # upstream defaults: K 2048, similarity compensation, ...
    print(f"clips of {args.frames} frames, {args.clips} per size, {args.repeats} repeats; "
          "medians per clip, one thread")
    with tempfile.TemporaryDirectory() as folder:
        for h, w in SIZES:
            paths = make_clips(folder, h, w, args.frames, args.clips)
            bench(paths[:1], 1, opts)  # warm-up: imports, codec initialisation
            plain, sel, parts = bench(paths, args.repeats, opts)
            detail = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in parts.items())
            print(f"{w}x{h}: plain decode {plain * 1e3:.0f} ms, selection {sel * 1e3:.0f} ms, "
                  f"ratio {sel / plain:.2f}x  [selection after decode, ms: {detail}]")


if __name__ == "__main__":
    main()
