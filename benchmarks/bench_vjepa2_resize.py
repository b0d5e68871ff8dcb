"""V-JEPA 2's evaluation views: the suite's (``--protocol vjepa2``) against the published ones.

    python benchmarks/bench_vjepa2_resize.py [--sizes 320x240 640x360 1280x720 1920x1080]
        [--frames 4] [--images a.jpg ...] [--videos a.mp4 ...] [--crops 719x477 ...]
        [--count_shorts 240 256 360 480 720 1080] [--count_longs 257 2000] [--offsets_only]

The pixel comparison needs OpenCV, which the suite does not depend on
(``pip install opencv-python-headless``); ``--offsets_only`` runs the offset count without it.

Both sides make the 3 spatial views of a validation clip (crop 256, the protocol's):

  ours       the suite's own path: ``parse_config(--protocol vjepa2)`` -> ``transform_spec``
             -> ``ClipDataset`` samples (their crop positions) -> ``transform_clip`` (the
             cubic resize, antialiased when shrinking, 8-bit levels), normalisation undone;
             the shorter side to the crop, as for an encoder whose spec sets no shorter side
             (the vjepa2 family's spec sets its processor's, 292 for 256: not measured here)
  published  V-JEPA 2's ``EvalVideoTransform`` (facebookresearch/vjepa2 c2963a4,
             evals/video_classification_frozen/utils.py) written again here: ``cv2.resize``
             INTER_LINEAR of the uint8 frames, the shorter side to the crop and the longer to
             int(crop x long / short) (no resize when the shorter side is the crop already),
             view i starting at i x ((long' - crop) // (views - 1))

Frames (W x H): per ``--sizes``, ``--frames`` random-phase images with a 1/f amplitude
spectrum (the average spectrum of natural images: detail at every scale, as a sharp
photograph has); each ``--images`` photograph and ``--frames`` frames of each ``--videos``
file at their own size and as their centre windows of each ``--crops`` size that fits (a
window one pixel narrower can move the views), with no resampling before the comparison.

Per source it prints the mean absolute difference of the views in 8-bit levels (all views, and
view by view: view 0 starts at pixel 0 on both sides, so where the resized longer sides agree
its figure is the filters' difference alone; where they do not, the published stretch of the
longer side also drifts against ours, which keeps one scale and centres the rounding), PSNR,
the resized longer side and each view's offset on both sides. Then, per shorter side of
``--count_shorts``, over every longer side in ``--count_longs`` (and above the shorter side):
how many sizes get another resized longer side, and another offset per view (and by how much).
``main`` returns the figures.
"""
import argparse
import math
from types import SimpleNamespace
from typing import Dict, List, Sequence

import numpy as np
import torch

from eval_encoder.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import transform_spec
from eval_encoder.video.dataset import ClipDataset, spatial_crop_positions
from eval_encoder.video.decode import count_frames, decode_frames
from eval_encoder.video.manifest import ManifestEntry
from eval_encoder.video.transforms import crop_start, resize_plan, transform_clip

SIZES = ["320x240", "640x360", "1280x720", "1920x1080"]
COUNT_SHORTS = [240, 256, 360, 480, 720, 1080]
INSTALL = "pip install opencv-python-headless"


def import_cv2():
    """OpenCV, for the published resize; exit saying how to install it when it is absent."""
    try:
        import cv2
    except ImportError:
        raise SystemExit("bench_vjepa2_resize.py compares against the published OpenCV resize "
                         f"and needs OpenCV: {INSTALL} (or run it with --offsets_only)") from None
    return cv2


# ------------------------------------------------------------------------- the suite's views

def suite_setup(input_size: int = 0):
    """The run's config under ``--protocol vjepa2`` and its transform (ImageNet mean and std,
    as the V-JEPA 2 processor's; the shorter side to the crop, as for an encoder that sets none)."""
    cfg = parse_config(["--protocol", "vjepa2"] + (["--input_size", str(input_size)]
                                                   if input_size else []))
    spec = SimpleNamespace(input_size=cfg.input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return cfg, transform_spec(cfg, spec)


class MemorySource:
    """A clip source that hands every request the same frames (all of them, in order)."""

    segments = 1

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def load(self, _req):
        n = len(self.frames)
        return self.frames, np.arange(n), n, {}


def levels(x: torch.Tensor, tspec) -> np.ndarray:
    """Normalised float [3, T, S, S] -> 8-bit levels [T, S, S, 3] (float64): the protocol's
    round_pixels made them whole levels before normalising; the rounding drops float noise."""
    mean = torch.tensor(tspec.mean, dtype=torch.float64).view(3, 1, 1, 1) * 255
    std = torch.tensor(tspec.std, dtype=torch.float64).view(3, 1, 1, 1) * 255
    return (x.double() * std + mean).round().permute(1, 2, 3, 0).numpy()


def suite_views(frames: np.ndarray, cfg, tspec) -> List[np.ndarray]:
    """The suite's evaluation views of uint8 ``frames`` [T, H, W, 3]: the validation samples of
    a one-clip ``ClipDataset`` (its spatial views) through ``transform_clip``, in levels."""
    ds = ClipDataset([ManifestEntry("memory", 0, 1)], "", MemorySource(frames), train=False,
                     seed=0, temporal_views=1, spatial_views=cfg.num_spatial_crops)
    samples = [ds.sample(i) for i in range(len(ds))]
    return [levels(transform_clip(s.frames, tspec, s.crop_pos), tspec) for s in samples]


def suite_starts(long: int, short: int, crop: int, short_side: int, views: int) -> List[int]:
    """Each view's first pixel along the longer side, as ``axis_plan`` places it: the resized
    length (``resize_plan``) and ``crop_start`` at each of ``spatial_crop_positions``."""
    out = resize_plan(long, short, short_side)[0]
    return [crop_start(out, crop, pos) for pos in spatial_crop_positions(views)]


# ------------------------------------------------------------------------ the published views

def published_size(h: int, w: int, crop: int) -> tuple:
    """(height, width) after V-JEPA 2's ``resize_clip`` to ``crop``."""
    if min(h, w) == crop:
        return h, w
    if w < h:
        return int(crop * h / w), crop
    return crop, int(crop * w / h)


def published_starts(long: int, crop: int, views: int) -> List[int]:
    step = (long - crop) // (views - 1)
    return [i * step for i in range(views)]


def published_views(frames: np.ndarray, crop: int, views: int, cv2) -> List[np.ndarray]:
    """``EvalVideoTransform``'s views of uint8 ``frames`` [T, H, W, 3], uint8 [T, S, S, 3]
    (``cv2`` is used only when the frames need resizing)."""
    h, w = frames.shape[1:3]
    oh, ow = published_size(h, w, crop)
    if (oh, ow) != (h, w):
        frames = np.stack([cv2.resize(f, (ow, oh), interpolation=cv2.INTER_LINEAR)
                           for f in frames])
    starts = published_starts(max(oh, ow), crop, views)
    if oh > ow:
        return [frames[:, s:s + crop] for s in starts]
    return [frames[:, :, s:s + crop] for s in starts]


# --------------------------------------------------------------------------------- comparing

def offsets(h: int, w: int, crop: int, short_side: int, views: int) -> Dict:
    """Resized longer side and view offsets on both sides for an H x W frame."""
    long, short = max(h, w), min(h, w)
    ours = suite_starts(long, short, crop, short_side, views)
    theirs = published_starts(max(published_size(h, w, crop)), crop, views)
    return {"long": (resize_plan(long, short, short_side)[0], max(published_size(h, w, crop))),
            "starts": (ours, theirs), "shift": [a - b for a, b in zip(ours, theirs)]}


def psnr(mse: float) -> float:
    return 10 * math.log10(255.0 ** 2 / mse) if mse else math.inf


def compare(frames: np.ndarray, cfg, tspec, cv2) -> Dict:
    """Pixel difference and offsets of the two sides' views of ``frames``."""
    crop, views = tspec.input_size, cfg.num_spatial_crops
    diffs = [o - p for o, p in zip(suite_views(frames, cfg, tspec),
                                   published_views(frames, crop, views, cv2))]
    every = np.stack(diffs)
    h, w = frames.shape[1:3]
    return {"size": f"{w}x{h}", "frames": len(frames), "mad": float(np.abs(every).mean()),
            "psnr": psnr(float((every ** 2).mean())),
            "view_mad": [float(np.abs(d).mean()) for d in diffs],
            **offsets(h, w, crop, tspec.short_side, views)}


def offset_counts(shorts: Sequence[int], longs: Sequence[int], crop: int,
                  views: int = 3) -> Dict[int, Dict]:
    """Per shorter side, over the longer sides in ``longs`` above it: sizes, sizes whose resized
    longer side differs, sizes with some view elsewhere, and per view how many and how far."""
    out = {}
    for short in shorts:
        rows = [offsets(short, long, crop, crop, views) for long in longs if long > short]
        shifts = np.array([r["shift"] for r in rows]).reshape(len(rows), views)
        out[short] = {"sizes": len(rows), "long": sum(a != b for a, b in (r["long"] for r in rows)),
                      "any": int((shifts != 0).any(1).sum()),
                      "views": [int(c) for c in (shifts != 0).sum(0)],
                      "max": [int(m) for m in np.abs(shifts).max(0, initial=0)]}
    return out


# ------------------------------------------------------------------------------------ frames

def pink_frames(h: int, w: int, count: int, seed: int = 0) -> np.ndarray:
    """uint8 [count, h, w, 3]: white noise shaped to a 1/f amplitude spectrum (a luminance
    field and weaker colour fields), mean 128, 40 levels' deviation, clipped."""
    rng = np.random.default_rng([seed, h, w])
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None])
    amplitude = np.divide(1.0, f, out=np.zeros_like(f), where=f > 0)

    def field():
        x = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) * amplitude, s=(h, w))
        return x / x.std()

    out = np.empty((count, h, w, 3), dtype=np.uint8)
    for t in range(count):
        luma = field()
        rgb = np.stack([128 + 40 * (luma + 0.35 * field()) for _ in range(3)], -1)
        out[t] = rgb.round().clip(0, 255)
    return out


def image_frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")[None]


def video_frames(path: str, count: int) -> np.ndarray:
    """``count`` frames spread over the file, decoded by the suite."""
    ids = np.linspace(0, count_frames(path) - 1, count).round().astype(np.int64)
    return decode_frames(path, ids)


def wh(size: str) -> tuple:
    w, h = (int(v) for v in size.lower().split("x"))
    return w, h


def windows(name: str, frames: np.ndarray, crops: Sequence[str]) -> Dict[str, np.ndarray]:
    """The frames whole, and their centre W x H window per ``crops`` that fits (no resampling)."""
    out, (h, w) = {name: frames}, frames.shape[1:3]
    for cw, ch in map(wh, crops):
        if (cw, ch) != (w, h) and cw <= w and ch <= h:
            y, x = (h - ch) // 2, (w - cw) // 2
            window = frames[:, y:y + ch, x:x + cw]
            out[f"{name} [{cw}x{ch} window]"] = np.ascontiguousarray(window)
    return out


def sources(args) -> Dict[str, np.ndarray]:
    out = {f"{w}x{h} 1/f noise": pink_frames(h, w, args.frames) for w, h in map(wh, args.sizes)}
    for path in args.images:
        out.update(windows(path, image_frames(path), args.crops))
    for path in args.videos:
        out.update(windows(path, video_frames(path, args.frames), args.crops))
    return out


# ----------------------------------------------------------------------------------- reports

def _ints(values) -> str:
    return ", ".join(f"{v:+d}" if isinstance(v, int) and v else str(v) for v in values)


def report(name: str, f: Dict) -> None:
    (ours, theirs), moved = f["starts"], sum(s != 0 for s in f["shift"])
    print(f"{name} ({f['size']}, {f['frames']} frame(s)): MAD {f['mad']:.2f} levels (views "
          f"{', '.join(f'{m:.2f}' for m in f['view_mad'])}), PSNR {f['psnr']:.1f} dB; longer "
          f"side {f['long'][0]} ours, {f['long'][1]} published; offsets "
          f"{', '.join(map(str, ours))} ours, {', '.join(map(str, theirs))} published: {moved} "
          f"of {len(ours)} differ ({_ints(f['shift'])} px)")


def report_counts(counts: Dict[int, Dict], longs: Sequence[int], crop: int) -> None:
    print(f"offsets over longer sides {longs[0]}-{longs[-1]} (crop {crop}):")
    for short, c in counts.items():
        per_view = "; ".join(f"view {i}: {n}, up to {m} px"
                             for i, (n, m) in enumerate(zip(c["views"], c["max"])))
        print(f"  shorter side {short}: {c['sizes']} sizes; resized longer side differs in "
              f"{c['long']}; some view elsewhere in {c['any']} ({per_view})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=SIZES, help="WxH of the 1/f-noise frames")
    parser.add_argument("--frames", type=int, default=4, help="frames per size and per video")
    parser.add_argument("--images", nargs="+", default=[], help="photographs, at their own size")
    parser.add_argument("--videos", nargs="+", default=[], help="videos, at their own size")
    parser.add_argument("--crops", nargs="+", default=[],
                        help="WxH centre windows of the photographs and videos, where they fit")
    parser.add_argument("--input_size", type=int, default=0, help="crop (default: the protocol's)")
    parser.add_argument("--count_shorts", type=int, nargs="+", default=COUNT_SHORTS)
    parser.add_argument("--count_longs", type=int, nargs=2, default=[257, 2000],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--offsets_only", action="store_true", help="only the offset count")
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    cfg, tspec = suite_setup(args.input_size)
    results = {"pixels": {}}
    if not args.offsets_only:
        cv2 = import_cv2()
        print(f"--protocol vjepa2: crop {tspec.input_size}, {cfg.num_spatial_crops} views; "
              f"OpenCV {cv2.__version__}")
        for name, frames in sources(args).items():
            results["pixels"][name] = compare(frames, cfg, tspec, cv2)
            report(name, results["pixels"][name])
    longs = range(args.count_longs[0], args.count_longs[1] + 1)
    results["offsets"] = offset_counts(args.count_shorts, longs, tspec.input_size,
                                       cfg.num_spatial_crops)
    report_counts(results["offsets"], longs, tspec.input_size)
    return results


if __name__ == "__main__":
    main()
