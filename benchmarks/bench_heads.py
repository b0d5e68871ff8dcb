"""Cost of a bank of probe heads against one head, on the same tokens, as ratios.

    python benchmarks/bench_heads.py [--heads 1 4 16 64] [--width 768] [--tokens 1568]
                                     [--batch 4] [--rounds 5]

One training step of the trainer (forward of every head, backward, gradient sync, AdamW and
LinearLR step) on precomputed tokens ([batch, tokens, width]; ViT-B width, 8 frames x 196
tokens by default), for each head count, two ways, interleaved round by round:

  bank   the trainer as it runs: every head's scores from one product of the tokens with
         the stacked folded queries (the ``ov`` kind's bank, eval_encoder.probe.heads.ov)
  loop   each head's own forward (nn.MultiheadAttention projecting every token to keys and
         values), one head after another: the reference the bank replaces

Two measurements, each printed as the median time per step and, per head count, the median
and range over rounds of its ratio to one head (single-threaded):

  heads only   the step on the precomputed tokens: the heads' own cost. Each head has 7.2 M
               parameters at ViT-B width, and its gradient and AdamW step over them do not
               shrink with the bank, so this grows with the head count.
  full step    the same step with a frozen ViT-B/16 (timm, random weights) encoding the batch's
               frames one by one, as a run does (``--encoder``; ``none`` skips it): what a
               bank of heads costs a run against one head. Issue goal: 16 heads <= 1.2x.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from eval_encoder.distributed import DistEnv  # noqa: E402
from eval_encoder.probe import trainer as trainer_mod  # noqa: E402
from eval_encoder.probe.heads import head_grid  # noqa: E402
from eval_encoder.probe.trainer import ProbeTrainer, make_heads  # noqa: E402

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


class Tokens(nn.Module):
    """Stands in for the frozen encoder: hands back the precomputed tokens."""

    def __init__(self, tokens: torch.Tensor):
        super().__init__()
        self.tokens = tokens

    def forward(self, batch):
        return self.tokens


class FrameEncoder(nn.Module):
    """A frozen timm image encoder applied frame by frame: [B, T, 3, H, W] -> [B, T*N, D]."""

    def __init__(self, name: str, frames: torch.Tensor):
        super().__init__()
        import timm

        self.model = timm.create_model(name, pretrained=False, num_classes=0).eval()
        self.frames = frames

    def forward(self, batch):
        b, t = self.frames.shape[:2]
        out = self.model.forward_features(self.frames.flatten(0, 1))
        return out.reshape(b, t * out.shape[1], out.shape[2])


def loop_groups(heads):
    """Each head's own forward, one after another (as the trainer runs kinds without a bank)."""
    return [([j], lambda tokens, h=h: h(tokens).unsqueeze(1)) for j, h in enumerate(heads)]


def step_time(n: int, tokens: torch.Tensor, classes: int, way, encoder=None) -> float:
    """Seconds of one training step of ``n`` heads after a warm-up step on the tokens."""
    lrs = [1e-4 * (1 + i) for i in range(n)]
    heads = make_heads(head_grid(lrs, [0.0]), tokens.shape[-1], classes, steps=100, min_lr=1e-7,
                       device=ENV.device, seed=0)
    trainer = ProbeTrainer(Tokens(tokens), heads, ENV, 0.1, 5.0, classes)
    batch = {"labels": torch.randint(0, classes, (tokens.shape[0],)), "skipped": []}
    trainer_mod.bank_groups = way
    trainer.train_step(batch, 0, 0)  # warm-up: AdamW state, allocator
    if encoder is not None:
        trainer.encoder = encoder
    start = time.perf_counter()
    trainer.train_step(batch, 0, 1)
    return time.perf_counter() - start


def report(title: str, times, ways, counts) -> None:
    print(title)
    for w in ways:
        base = times[w, counts[0]]
        for n in counts:
            ratios = [t / b for t, b in zip(times[w, n], base)]
            print(f"  {w:4s} {n:3d} heads: {statistics.median(times[w, n]) * 1e3:8.1f} ms/step, "
                  f"{statistics.median(ratios):5.2f}x one head (range {min(ratios):.2f}-"
                  f"{max(ratios):.2f})")


def measure(args, tokens, ways, encoder=None):
    """Step times per (way, head count), the head counts interleaved round by round."""
    times = {(w, n): [] for w in args.ways for n in args.heads}
    for _ in range(args.rounds):
        for w in args.ways:
            for n in args.heads:
                times[w, n].append(step_time(n, tokens, args.classes, ways[w], encoder))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=8 * 196)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=174)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ways", nargs="+", default=["bank", "loop"], choices=["bank", "loop"])
    parser.add_argument("--encoder", default="vit_base_patch16_224",
                        help="timm encoder of the full-step measurement ('none': heads only)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--encoder_rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokens = torch.randn(args.batch, args.tokens, args.width)
    ways = {"bank": trainer_mod.bank_groups, "loop": loop_groups}
    head_times = measure(args, tokens, ways)
    shape = f"tokens [{args.batch}, {args.tokens}, {args.width}], {args.classes} classes"
    report(f"{shape}, {args.rounds} rounds, one thread; heads only (encoder left out)",
           head_times, args.ways, args.heads)
    if args.encoder != "none":
        full_step(args, ways)
    trainer_mod.bank_groups = ways["bank"]


def full_step(args, ways) -> None:
    """The step with the encoder in it, for the bank (the trainer as it runs)."""
    frames = torch.randn(args.batch, args.frames, 3, 224, 224)
    encoder = FrameEncoder(args.encoder, frames)
    with torch.no_grad():
        tokens = encoder(None)
    args.rounds, args.ways = args.encoder_rounds, ["bank"]
    times = measure(args, tokens, ways, encoder)
    report(f"{args.encoder} on {args.batch} x {args.frames} frames -> tokens "
           f"{list(tokens.shape)}, {args.rounds} rounds; full step (encoder + heads)",
           times, args.ways, args.heads)


if __name__ == "__main__":
    main()
