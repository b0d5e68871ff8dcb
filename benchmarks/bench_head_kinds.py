"""Cost of a grid of heads of each kind against one head of that kind, on the same tokens.

    python benchmarks/bench_head_kinds.py [--kinds ov vjepa2] [--heads 1 20] [--width 768]
                                          [--tokens 1568] [--batch 1] [--rounds 3]

One training step of the trainer (every head's forward on the tokens, the backward group by
group, AdamW and schedule steps) on precomputed tokens ([batch, tokens, width]; ViT-B width,
8 frames x 196 tokens by default), for each kind and head count, interleaved round by round
(one thread). Printed per kind and head count: the median time per step, and the median and
range over rounds of its ratio to one head of the same kind measured in the same round.

  ov      OneVision's head: the grid is fused (one product of the tokens with the stacked
          folded queries), so a grid costs little more than one head beyond each head's own
          gradient and AdamW step
  vjepa2  V-JEPA 2's probe (depth 4: three self-attention blocks over every token, then the
          query's cross-attention block; 16 heads): no work is shared between heads (each
          transforms every token with its own weights), so heads run one after another and a
          grid of N costs about N heads; the V-JEPA 2 configs train 20 (5 lr x 4 wd)

``--encoder vit_base_patch16_224`` adds a frozen timm ViT-B/16 encoding the batch's frames in
the step, as a run does: the ratio a run pays (slow: use few rounds). ``--device cuda`` times
the step on the GPU (bf16 autocast, as a run there) and prints the peak memory per head count.
"""
import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from eval_encoder.distributed import DistEnv  # noqa: E402
from eval_encoder.probe.heads import head_grid  # noqa: E402
from eval_encoder.probe.trainer import ProbeTrainer, make_heads  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_heads import FrameEncoder, Tokens  # noqa: E402  (the same stand-ins)

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_time(kind: str, n: int, tokens: torch.Tensor, classes: int, encoder=None,
              env: DistEnv = ENV) -> float:
    """Seconds of one training step of ``n`` heads of ``kind`` after a warm-up step."""
    grid = head_grid([1e-4 * (1 + i) for i in range(n)], [0.0])
    heads = make_heads(grid, tokens.shape[-1], classes, steps=100, min_lr=1e-7,
                       device=env.device, seed=0, kind=kind)
    trainer = ProbeTrainer(Tokens(tokens), heads, env, 0.1, 5.0, classes)
    labels = torch.randint(0, classes, (tokens.shape[0],), device=env.device)
    batch = {"labels": labels, "skipped": []}
    trainer.train_step(batch, 0, 0)  # warm-up: AdamW state, allocator
    if encoder is not None:
        trainer.encoder = encoder
    _sync(env.device)
    start = time.perf_counter()
    trainer.train_step(batch, 0, 1)
    _sync(env.device)
    return time.perf_counter() - start


def measure(args, tokens, encoder=None, env: DistEnv = ENV):
    """Step times per (kind, head count), interleaved round by round; the peak device memory
    (GiB) per (kind, head count) on CUDA."""
    times = {(k, n): [] for k in args.kinds for n in args.heads}
    peaks = {}
    for _ in range(args.rounds):
        for kind in args.kinds:
            for n in args.heads:
                if env.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(env.device)
                times[kind, n].append(step_time(kind, n, tokens, args.classes, encoder, env))
                if env.device.type == "cuda":
                    peaks[kind, n] = torch.cuda.max_memory_allocated(env.device) / 2**30
    return times, peaks


def report(title: str, times, kinds, counts, peaks=None) -> None:
    print(title)
    for kind in kinds:
        base = times[kind, counts[0]]
        for n in counts:
            ratios = [t / b for t, b in zip(times[kind, n], base)]
            peak = f", peak {peaks[kind, n]:.1f} GiB" if peaks else ""
            print(f"  {kind:6s} {n:3d} heads: {statistics.median(times[kind, n]) * 1e3:9.1f} "
                  f"ms/step, {statistics.median(ratios):6.2f}x {counts[0]} head(s) (range "
                  f"{min(ratios):.2f}-{max(ratios):.2f}){peak}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=["ov", "vjepa2"])
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=8 * 196)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--classes", type=int, default=174)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoder", default="none",
                        help="timm encoder in the step, e.g. vit_base_patch16_224 ('none': "
                             "heads only)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device(args.device))
    encoder = None
    if args.encoder != "none":
        frames = torch.randn(args.batch, args.frames, 3, 224, 224, device=env.device)
        encoder = FrameEncoder(args.encoder, frames).to(env.device)
        with torch.no_grad():
            tokens = encoder(None)
    else:
        tokens = torch.randn(args.batch, args.tokens, args.width, device=env.device)
    times, peaks = measure(args, tokens, encoder, env)
    what = f"full step with {args.encoder}" if encoder is not None else "heads only"
    where = "one thread" if env.device.type == "cpu" else f"{args.device}, bf16 autocast"
    report(f"tokens {list(tokens.shape)}, {args.classes} classes, {args.rounds} rounds, "
           f"{where}; {what}", times, args.kinds, args.heads, peaks)


if __name__ == "__main__":
    main()
