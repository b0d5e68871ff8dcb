"""Clips/s of the torch loader against bare PyAV decoding of the same frames, side by side.

    python benchmarks/bench_loader.py [--sizes 240x320 360x640] [--frames 128] [--clips 4]
                                      [--samples 32] [--num_frames 16] [--input 224]
                                      [--workers 0 1 2] [--rounds 3] [--train]

For each size it writes synthetic H.264 clips (a textured square over a panning textured
background), then times, interleaved round by round on the same ``--samples`` samples:

  bare     PyAV only: open the file, decode up to the last sampled frame, convert the
           sampled frames to RGB arrays (what any loader must pay at least)
  loader   the torch loader (eval_encoder.video.loader.make_loader) with 0, 1, 2, ...
           worker processes: sample, decode, resize, crop, (--train: jitter,) normalise,
           batch; each loader is built and run once before the timed rounds (workers are
           persistent, so their start-up is reported apart, as "first pass")

Ratios: ``per worker`` = loader seconds per clip x max(1, workers) / bare seconds per clip
(1.0: a worker costs no more than bare decoding); ``scaling`` = loader clips/s with w
workers / with the first worker count given; ``CPU`` = CPU seconds per clip of the loader
(this process and its workers, from /proc) / of bare decoding: the cost without the wait
for a CPU, which on a machine shared with other jobs is the steadier number. One thread per
process (OMP_NUM_THREADS=1); medians and ranges are over rounds: the ranges show the noise.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Sequence  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from eval_encoder.encoders.base import CLIP_MEAN, CLIP_STD  # noqa: E402
from eval_encoder.codec.synthetic import write_moving_clips  # noqa: E402
from eval_encoder.video.dataset import ClipDataset, FramesSource  # noqa: E402
from eval_encoder.video.decode import segment_indices  # noqa: E402
from eval_encoder.video.loader import make_loader  # noqa: E402
from eval_encoder.video.manifest import ManifestEntry  # noqa: E402
from eval_encoder.video.steps import chunk  # noqa: E402
from eval_encoder.video.transforms import TransformSpec, transform_clip  # noqa: E402

SIZES = ["240x320", "360x640"]


def packet_count(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size > 0)


def bare_decode(path: str, indices: Sequence[int]) -> np.ndarray:
    """PyAV alone: decode up to the last wanted frame, keep the wanted ones as RGB."""
    wanted, keep = set(int(i) for i in indices), {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                keep[n] = frame.to_ndarray(format="rgb24")
            if n >= max(wanted):
                break
    return np.stack([keep[int(i)] for i in indices])


def _children_cpu() -> float:
    """CPU seconds of this process's live child processes (loader workers), from /proc."""
    total, me, tick = 0.0, str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[1] == me:  # fields after the name: state, ppid, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and its live children."""
    return time.process_time() + _children_cpu()


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def timed_cpu(fn, *args):
    """(wall seconds, CPU seconds of this process and its children)."""
    cpu = cpu_seconds()
    wall = timed(fn, *args)
    return wall, cpu_seconds() - cpu


def run_bare(jobs) -> None:
    for path, idx in jobs:
        bare_decode(path, idx)


def run_loader(loader) -> int:
    clips = 0
    for batch in loader:
        clips += len(batch.get("index", ()))
    return clips


def stages(ds: ClipDataset, tspec: TransformSpec, samples: Sequence[int]) -> Dict[str, float]:
    """Seconds per clip in this process: sampling + decoding, then the transforms."""
    t_sample = t_transform = 0.0
    for i in samples:
        start = time.perf_counter()
        s = ds.sample(i, 0)
        mid = time.perf_counter()
        transform_clip(s.frames, tspec, s.crop_pos, s.jitter)
        t_sample, t_transform = t_sample + mid - start, t_transform + time.perf_counter() - mid
    return {"decode": t_sample / len(samples), "transform": t_transform / len(samples)}


def bench_size(paths: List[str], args) -> Dict:
    """Interleaved rounds of bare decoding and each loader; seconds per pass."""
    entries = [ManifestEntry(os.path.basename(p), 0, n + 1) for n, p in enumerate(paths)]
    ds = ClipDataset(entries, os.path.dirname(paths[0]), FramesSource(args.num_frames),
                     train=args.train, seed=0)
    tspec = TransformSpec(args.input, args.short or args.input, CLIP_MEAN, CLIP_STD)
    order = [i % len(paths) for i in range(args.samples)]
    counts = {p: packet_count(p) for p in paths}
    jobs = [(paths[i], segment_indices(counts[paths[i]], args.num_frames, False)) for i in order]
    batches = chunk(order, args.batch)
    loaders, first = {}, {}
    for w in args.workers:
        loaders[w] = make_loader(ds, lambda _e: batches, args.batch, tspec, "torch",
                                 torch.device("cpu"), w, 1, 0)
        first[w] = timed(run_loader, loaders[w])  # starts the (persistent) workers
    times = {"bare": [], **{w: [] for w in args.workers}}
    cpu = {"bare": [], **{w: [] for w in args.workers}}
    for _ in range(args.rounds):
        for key, fn, arg in [("bare", run_bare, jobs)] + [(w, run_loader, loaders[w])
                                                          for w in args.workers]:
            wall, used = timed_cpu(fn, arg)
            times[key].append(wall)
            cpu[key].append(used)
    got = run_loader(loaders[args.workers[0]])
    if got != len(order):
        raise RuntimeError(f"the loader gave {got} clips, expected {len(order)}")
    return {"times": times, "cpu": cpu, "first": first, "stages": stages(ds, tspec, order[:len(paths)]),
            "n": len(order)}


def summarise(result: Dict, workers: Sequence[int]) -> Dict:
    """Clips/s, per-worker ratio and scaling per worker count (medians and ranges over rounds)."""
    times, cpu, n = result["times"], result["cpu"], result["n"]
    bare = times["bare"]
    out = {"bare_clips_s": statistics.median(n / t for t in bare), "workers": {}}
    base = times[workers[0]]
    for w in workers:
        per_worker = [t * max(1, w) / b for t, b in zip(times[w], bare)]
        scaling = [b0 / t for t, b0 in zip(times[w], base)]
        out["workers"][w] = {"clips_s": statistics.median(n / t for t in times[w]),
                             "per_worker": per_worker, "scaling": scaling,
                             "cpu": [c / b for c, b in zip(cpu[w], cpu["bare"])],
                             "first_pass_s": result["first"][w]}
    return out


def _range(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def report(size: str, result: Dict, summary: Dict, workers: Sequence[int]) -> None:
    st = result["stages"]
    print(f"{size}: bare decode {summary['bare_clips_s']:.1f} clips/s; in-process per clip: "
          f"sample+decode {st['decode'] * 1e3:.0f} ms, transforms {st['transform'] * 1e3:.0f} ms")
    for w in workers:
        s = summary["workers"][w]
        print(f"  loader, {w} workers: {s['clips_s']:.1f} clips/s, per worker / bare "
              f"{_range(s['per_worker'])}, CPU / bare {_range(s['cpu'])}, scaling vs "
              f"{workers[0]} workers {_range(s['scaling'])}, first pass {s['first_pass_s']:.2f} s")


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="HxW sizes")
    parser.add_argument("--frames", type=int, default=128, help="frames per synthetic clip")
    parser.add_argument("--clips", type=int, default=4, help="clips per size")
    parser.add_argument("--samples", type=int, default=32, help="samples per timed pass")
    parser.add_argument("--num_frames", type=int, default=16, help="frames sampled per clip")
    parser.add_argument("--input", type=int, default=224, help="crop size")
    parser.add_argument("--short", type=int, default=None, help="short side (default: --input)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process "
                        "(its transforms with 0 workers; workers always use one)")
    parser.add_argument("--train", action="store_true", help="training samples (random frames, "
                        "colour jitter); bare decoding then takes the validation frames")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """Run the benchmark; returns ``{size: summary}`` (see :func:`summarise`)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.samples} samples of {args.num_frames} frames per pass ({args.clips} clips of "
          f"{args.frames} frames), crop {args.input}, batch {args.batch}, {args.rounds} rounds, "
          f"{args.threads} torch thread(s) in this process, {os.cpu_count()} CPUs")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            paths = write_moving_clips(folder, h, w, args.frames, args.clips)
            result = bench_size(paths, args)
            out[f"{w}x{h}"] = summarise(result, args.workers)
            report(f"{w}x{h}", result, out[f"{w}x{h}"], args.workers)
    return out


if __name__ == "__main__":
    main()
