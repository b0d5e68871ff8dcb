"""``--codec_pixels reencoded`` against ``source`` on the same clips: pixels, picks and cost.

    python benchmarks/bench_codec_pixels.py [--sizes 240x320 360x640 720x1280] [--frames 128]
        [--clips 2] [--repeats 3] [--clock cpu]
    python benchmarks/bench_codec_pixels.py --videos a.mp4 b.webm
    python benchmarks/bench_codec_pixels.py --images a.png b.png c.png [--size 360x480]

Clips: synthetic H.264 ones (a textured square over a background panning 2 px a frame, as
``bench_codec.py``), the given ``--videos``, or clips made from photographs (``--images``: a
camera gliding and zooming slowly over each photograph by fractions of a pixel, a cut-out of
the next one crossing it; H.264 at QP 20). For each clip:

  pixels   the 64 frames the codec family samples, decoded from the original and from its
           HEVC copy (the published step 2's settings), resized (shorter side 224, the
           suite's cubic) and centre-cropped to 224 as the encoder's input, in 8-bit levels:
           mean absolute difference and PSNR over the 64 crops
  picks    Jaccard index of the K=2048 patches selected from the original and from the copy,
           under --protocol paper and clean (224 crop, 14 px patches)
  cost     single-threaded, interleaved rounds, as ratios to the plain decode of the 64 frames
           from the original: making the copy (x265), and decoding the 64 frames from the
           cached copy (every later read); a clip's first read by the codec source (clean,
           nothing cached: the selection, and under reencoded the copy) from the copy against
           from the original; and the copy's size against the original's

Prints the medians and ranges; ``main`` returns them per clip.
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
from eval_encoder.codec.pipeline import Selector  # noqa: E402
from eval_encoder.codec.reencode import write_copy  # noqa: E402
from eval_encoder.codec.schedule import frame_ids  # noqa: E402
from eval_encoder.codec.synthetic import write_moving_clips, write_video  # noqa: E402
from eval_encoder.video.decode import count_frames, decode_clip, decode_frames  # noqa: E402
from eval_encoder.video.transforms import TransformSpec, resize_crop  # noqa: E402

SIZES = ["240x320", "360x640", "720x1280"]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
PROTOCOLS = ("paper", "clean")


def crops(path: str, ids: np.ndarray, size: int) -> np.ndarray:
    """The encoder's input in 8-bit levels: float [3, T, size, size] rounded and clipped."""
    spec = TransformSpec(input_size=size, short_side=size, mean=(0, 0, 0), std=(1, 1, 1))
    frames = torch.from_numpy(decode_frames(path, ids))
    return resize_crop(frames, spec).round().clamp(0, 255).numpy()


def pixel_difference(src: str, copy: str, size: int) -> dict:
    """Mean absolute difference (levels) and PSNR (dB) of the 64 sampled crops."""
    ids = frame_ids(count_frames(src), 64, "trunc")
    diff = crops(src, ids, size) - crops(copy, ids, size)
    mse = float(np.mean(diff ** 2))
    return {"mad": float(np.mean(np.abs(diff))),
            "psnr": 10 * np.log10(255.0 ** 2 / mse) if mse else float("inf")}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / max(len(a | b), 1)


def pick_overlap(src: str, cache: str, size: int, k: int) -> dict:
    """Jaccard of the picks from the original and from the copy, per protocol."""
    out = {}
    for protocol in PROTOCOLS:
        picks = [Selector(64, size, make_options(protocol, K_keep=k, codec_pixels=pixels,
                                                 cache_dir=cache)).load(src)[3].indices
                 for pixels in ("source", "reencoded")]
        out[protocol] = jaccard(*picks)
    return out


def _first_read(path: str, pixels: str, cache: str, size: int, k: int):
    """A clip's first read by the codec source (``clean``): no selection cached; under
    ``reencoded`` the copy is made too."""
    opts = make_options("clean", K_keep=k, codec_pixels=pixels, cache_dir=cache)
    return Selector(64, size, opts).load(path)


def costs(paths, repeats: int, clock, size: int = 224, k: int = 2048) -> dict:
    """Per clip, seconds of: the plain decode, making the copy, decoding from the copy, and a
    first read by the codec source from the original and from a copy made then."""
    out = {p: {k: [] for k in ("plain", "copy", "cached", "first", "first_copy")} for p in paths}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(repeats):
            for i, path in enumerate(paths):
                dst, cache = (os.path.join(folder, f"{i}_{r}{x}") for x in (".mp4", "_cache"))
                steps = {"plain": lambda: decode_clip(path, 64, False, None, 1, 0, 1, True),
                         "copy": lambda: write_copy(path, dst, 1),
                         "cached": lambda: decode_clip(dst, 64, False, None, 1, 0, 1, True),
                         "first": lambda: _first_read(path, "source", cache, size, k),
                         "first_copy": lambda: _first_read(path, "reencoded", cache, size, k)}
                for name, fn in steps.items():
                    start = clock()
                    fn()
                    out[path][name].append(clock() - start)
                out[path].setdefault("bytes", [os.path.getsize(dst), os.path.getsize(path)])
    return out


def measure(paths, repeats: int, size: int, k: int, clock) -> dict:
    """Every figure of every clip (see the module's doc)."""
    timing = costs(paths, repeats, clock, size, k)
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for path in paths:
            copy = os.path.join(folder, "copy.mp4")
            write_copy(path, copy, 1)
            t = timing[path]
            out[path] = {**pixel_difference(path, copy, size),
                         "jaccard": pick_overlap(path, os.path.join(folder, "cache"), size, k),
                         "copy_ratio": [c / p for c, p in zip(t["copy"], t["plain"])],
                         "cached_ratio": [c / p for c, p in zip(t["cached"], t["plain"])],
                         "first_ratio": [c / p for c, p in zip(t["first_copy"], t["first"])],
                         **{f"{k}_s": statistics.median(t[k]) for k in
                            ("plain", "copy", "cached", "first", "first_copy")},
                         "size_ratio": t["bytes"][0] / t["bytes"][1]}
    return out


def _span(values) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def report(name: str, figures: dict) -> None:
    f = figures
    print(f"{name}: MAD {f['mad']:.2f} levels, PSNR {f['psnr']:.1f} dB; Jaccard paper "
          f"{f['jaccard']['paper']:.2f}, clean {f['jaccard']['clean']:.2f}; plain decode "
          f"{f['plain_s'] * 1e3:.0f} ms, copy {f['copy_s'] * 1e3:.0f} ms = "
          f"{_span(f['copy_ratio'])}, cached read {f['cached_s'] * 1e3:.0f} ms = "
          f"{_span(f['cached_ratio'])}; first read (clean) {f['first_s'] * 1e3:.0f} ms from "
          f"the original, {f['first_copy_s'] * 1e3:.0f} ms with the copy = "
          f"{_span(f['first_ratio'])}; copy size {f['size_ratio']:.2f}x the original's")


def _warp(img: torch.Tensor, h: int, w: int, t: int, frames: int) -> torch.Tensor:
    """The h x w view at time t of a camera gliding right and down and zooming in slowly."""
    H, W = img.shape[1:]
    zoom = 1.0 - 0.08 * t / frames
    cy, cx = 0.5 * H + 0.25 * t - 0.12 * frames, 0.5 * W + 0.6 * t - 0.3 * frames
    ys = (cy + (torch.arange(h) - h / 2) * zoom * min(H / h, W / w) * 0.9) / (H - 1) * 2 - 1
    xs = (cx + (torch.arange(w) - w / 2) * zoom * min(H / h, W / w) * 0.9) / (W - 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None]
    return torch.nn.functional.grid_sample(img[None], grid.float(), mode="bicubic",
                                           padding_mode="reflection", align_corners=True)[0]


def photo_clip(path: str, background: np.ndarray, cutout: np.ndarray, h: int, w: int,
               frames: int) -> str:
    """An H.264 clip of a camera moving over ``background`` with ``cutout`` crossing it
    (``side`` = h/3 pixels, from (h/3, w - side) moving 0.4 px down and 2 px left a frame,
    wrapping around)."""
    img = torch.from_numpy(background).permute(2, 0, 1).float()
    side = h // 3
    obj = torch.from_numpy(cutout[:side, :side].copy()).permute(2, 0, 1).float()
    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    for t in range(frames):
        frame = _warp(img, h, w, t, frames)
        y, x = int(h / 3 + 0.4 * t) % (h - side), int(w - side - 2.0 * t) % (w - side)
        frame[:, y:y + side, x:x + side] = obj
        out[t] = frame.round().clamp(0, 255).permute(1, 2, 0).byte().numpy()
    # a fixed quantiser: x264's CRF mode through PyAV gave other bytes from run to run on a
    # loaded machine (and so other picks); at a fixed QP the clip is the same every time
    return write_video(path, out, options={"crf": "-1", "qp": "20"})


def _read_image(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=128, help="frames per made clip")
    parser.add_argument("--clips", type=int, default=2, help="synthetic clips per size")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="HxW of synthetic clips")
    parser.add_argument("--videos", nargs="+", default=[], help="measure these files")
    parser.add_argument("--images", nargs="+", default=[], help="make clips from these photos")
    parser.add_argument("--size", default="360x480", help="HxW of the clips made from photos")
    parser.add_argument("--input", type=int, default=224, help="crop size")
    parser.add_argument("--K", type=int, default=2048, help="patches kept")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clock, results = CLOCKS[args.clock], {}
    with tempfile.TemporaryDirectory() as folder:
        groups = {os.path.basename(v): [v] for v in args.videos}
        if args.images:
            h, w = (int(v) for v in args.size.split("x"))
            photos = [_read_image(p) for p in args.images]
            groups.update({os.path.basename(p): [photo_clip(
                os.path.join(folder, f"photo{i}.mp4"), photos[i], photos[(i + 1) % len(photos)],
                h, w, args.frames)] for i, p in enumerate(args.images)})
        if not groups:
            for size in args.sizes:
                h, w = (int(v) for v in size.split("x"))
                groups[f"{w}x{h}"] = write_moving_clips(folder, h, w, args.frames, args.clips)
        print(f"{args.repeats} interleaved rounds, one thread, {args.clock} clock; K {args.K}, "
              f"crop {args.input}")
        for name, paths in groups.items():
            costs(paths[:1], 1, clock, args.input, args.K)  # warm-up: imports, codec initialisation
            figures = measure(paths, args.repeats, args.input, args.K, clock)
            for i, path in enumerate(paths):
                report(f"{name}[{i}]" if len(paths) > 1 else name, figures[path])
                results[f"{name}[{i}]"] = figures[path]
    return results


if __name__ == "__main__":
    main()
