"""One encoder pass per batch feeds every probe head; validation scores every clip once.

Each (learning rate, weight decay) pair gets its own head (of the run's kind), AdamW and
schedules (eval_encoder/probe/schedules.py: OneVision's LinearLR by default).
Gradients are synchronised by hand (one flat all-reduce over all heads, weighted by each
rank's number of good samples) rather than with DDP, so a batch that lost clips to decode
errors, or a head stopped by a non-finite loss, cannot desynchronise the ranks.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn
from tqdm import tqdm

from eval_encoder import distributed as dist
from eval_encoder.checkpoint import CheckpointError, decode, encode
from eval_encoder.compute import LoaderClock
from eval_encoder.probe.heads import bank_groups, bank_logits, build_head, head_name
from eval_encoder.probe.predictions import Scored, merge, score_clips, top1, top5
from eval_encoder.probe.views import fold_segments, unfold_tokens, view_fusion
from eval_encoder.probe.schedules import Plan
from eval_encoder.video.dataset import FLAG_NAMES, FLAG_TRUNCATED

log = logging.getLogger("eval_encoder.trainer")


class RunFailed(RuntimeError):
    """A run that cannot produce a trustworthy number (too many unreadable clips, ...)."""


@dataclass
class HeadState:
    name: str
    lr: float
    weight_decay: float
    module: nn.Module
    optimizer: Optional[torch.optim.Optimizer]  # None: a head that trains nothing (knn)
    scheduler: Optional[Any]  # the learning rate's (eval_encoder/probe/schedules.py)
    status: str = "ok"
    history: List[Dict] = field(default_factory=list)
    wd_scheduler: Optional[Any] = None  # the weight decay's

    def schedules(self) -> List[Any]:
        return [s for s in (self.scheduler, self.wd_scheduler) if s is not None]

    @property
    def alive(self) -> bool:
        return self.status == "ok"

    @property
    def trains(self) -> bool:
        return self.optimizer is not None

    @property
    def kind(self) -> str:
        return getattr(self.module, "head_kind", "?")


@dataclass
class Pending:
    """What the micro-batches of the current optimiser step have gathered on this process."""

    count: int
    loss: torch.Tensor  # float64 [heads]: loss x clips
    nonfinite: torch.Tensor  # float64 [heads]: micro-batches with a non-finite loss
    grads: Dict[int, torch.Tensor] = field(default_factory=dict)  # head -> flat float64
    started: bool = False  # a micro-batch with clips has run (gradients were zeroed)

    @classmethod
    def empty(cls, heads: int) -> "Pending":
        zeros = torch.zeros(heads, dtype=torch.float64)
        return cls(0, zeros.clone(), zeros.clone())

    def add_grads(self, heads: List[HeadState], live: List[int]) -> None:
        """Move each live head's gradient into its float64 sum (and zero the gradient)."""
        for i in live:
            params = list(heads[i].module.parameters())
            flat = torch.cat([p.grad.reshape(-1) for p in params]).to(torch.float64)
            self.grads[i] = self.grads[i] + flat if i in self.grads else flat
            for p in params:
                p.grad = None  # the next backward writes a fresh gradient: no zero-fill, no add

    def flat_grads(self, heads: List[HeadState], live: List[int]) -> torch.Tensor:
        """The live heads' float64 sums end to end (zeros for a head with none on this rank)."""
        parts = []
        for i in live:
            size = sum(p.numel() for p in heads[i].module.parameters())
            device = next(heads[i].module.parameters()).device
            parts.append(self.grads.get(i, torch.zeros(size, dtype=torch.float64, device=device)))
        return torch.cat(parts)


@dataclass
class EpochLoss:
    """Training loss of the epoch so far: loss x clips and clips, per head."""

    loss: torch.Tensor
    clips: torch.Tensor

    @classmethod
    def zeros(cls, heads: int) -> "EpochLoss":
        return cls(torch.zeros(heads, dtype=torch.float64), torch.zeros(heads, dtype=torch.float64))

    def add(self, loss: torch.Tensor, clips: torch.Tensor) -> None:
        self.loss += loss
        self.clips += clips

    def mean(self, i: int) -> Optional[float]:
        return float(self.loss[i] / self.clips[i]) if self.clips[i] > 0 else None

    def best(self) -> float:
        means = [m for m in (self.mean(i) for i in range(len(self.clips))) if m is not None]
        return min(means) if means else float("nan")


# the passes a run counts: training, validation, and the progress monitor (probe/monitor.py)
SPLITS = ("train", "val", "monitor")


@dataclass
class Counters:
    encoder_passes: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    batches: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    skipped: Dict[str, Dict[int, Dict]] = field(default_factory=lambda: {s: {} for s in SPLITS})
    flags: Dict[str, Dict[str, set]] = field(default_factory=lambda: {s: {} for s in SPLITS})
    # sample index -> {"frames_used", "packets"} of samples sampled over fewer frames than
    # their stream has packets (FLAG_TRUNCATED), so the record can name them
    truncated: Dict[str, Dict[int, Dict]] = field(default_factory=lambda: {s: {} for s in SPLITS})
    cached: Dict[str, int] = field(default_factory=dict)  # batches the feature cache answered

    def note_flags(self, batch: Dict, split: str) -> None:
        """Count each flag of a batch once per sample (a clip seen in several epochs counts
        once) and keep the frame counts of truncated samples."""
        pairs = zip(batch["flags"].view(-1).tolist(), batch["index"].view(-1).tolist())
        for row, (flags, index) in enumerate(pairs):
            for bit, name in FLAG_NAMES.items():
                if int(flags) & bit:
                    self.flags.setdefault(split, {}).setdefault(name, set()).add(int(index))
            if int(flags) & FLAG_TRUNCATED:
                self.truncated.setdefault(split, {})[int(index)] = self.frame_counts(batch, row)

    @staticmethod
    def frame_counts(batch: Dict, row: int) -> Dict:
        """Frames a sample was sampled over, and its stream's packets where the source says."""
        packets = batch.get("packets")
        return {"frames_used": int(batch["total_frames"][row]),
                "packets": None if packets is None else int(packets[row].view(-1)[0])}


def make_heads(grid, dim: int, num_classes: int, steps: int, min_lr: float,
               device: torch.device, seed: int, kind: str = "ov",
               options: Optional[Dict[str, Any]] = None,
               plan: Optional[Plan] = None, named: bool = False) -> List[HeadState]:
    """One head of ``kind`` (``options``: its options), AdamW and schedules per (lr, wd).
    ``plan``: the schedules (default: LinearLR from lr to ``min_lr`` over ``steps``, constant
    weight decay); ``named``: the heads' names start with the kind (a run of several)."""
    plan = plan or Plan(total=steps, min_lr=min_lr)
    heads = []
    for i, (lr, wd) in enumerate(grid):
        torch.manual_seed(seed + i)  # the same initial head on every rank
        module = build_head(kind, dim, num_classes, **(options or {})).to(device)
        opt = adamw(module.parameters(), lr, wd)
        heads.append(HeadState(head_name(lr, wd, kind if named else None), lr, wd, module, opt,
                               plan.lr_schedule(opt, lr),
                               wd_scheduler=plan.wd_schedule(opt, wd)))
    return heads


def adamw(params, lr: float, wd: float) -> torch.optim.AdamW:
    """The probe's AdamW, as the one-pass (fused) kernel: the step reads and writes each
    parameter, gradient and moment once, where the multi-tensor version makes a pass per
    operation. At ViT-B width one head's step takes 7 ms instead of 30 on one CPU thread,
    which is most of a head's cost once its token work is folded (see ``bank_logits``);
    the result equals the multi-tensor step to float round-off."""
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd,
                             fused=True)


def to_device(batch: Dict, device: torch.device) -> Dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class ProbeTrainer:
    """Trains a bank of heads on a frozen encoder and evaluates them."""

    def __init__(self, encoder: nn.Module, heads: List[HeadState], env, smoothing: float,
                 clip_grad: float, num_classes: int, num_tokens: Optional[int] = None,
                 print_freq: int = 10, accumulation: int = 1, tokens_from: str = "--num_tokens",
                 segments: int = 1, fusion: str = "logits"):
        self.encoder = encoder
        self.heads = heads
        self.env = env
        self.criterion = nn.CrossEntropyLoss(label_smoothing=smoothing)
        self.clip_grad = clip_grad
        self.num_classes = num_classes
        self.num_tokens = num_tokens
        self.tokens_from = tokens_from
        self.print_freq = print_freq
        self.accumulation = accumulation  # micro-batches per optimiser step on each process
        self.counters = Counters()
        self.pending = Pending.empty(len(heads))
        self.epoch_loss = EpochLoss.zeros(len(heads))
        self.last_epoch: Dict[str, float] = {}  # seconds and clips of the last epoch trained
        self.last_step = (torch.zeros(0), torch.zeros(0))  # loss sum and clips per head
        self.clock = LoaderClock()  # loop time and batch waits per split, for the record
        self.segments = segments  # encoded one by one, their tokens side by side (views.py)
        self.pooled_source = None  # probe/cached.py: pooled vectors of the passes it answers
        self.epoch = 0  # the training epoch in progress (its draws); other passes draw epoch 0
        self.fusion = view_fusion(fusion)  # how a validation clip's views combine

    # ---- encoder
    def tokens(self, batch: Dict, split: str) -> torch.Tensor:
        """The tokens [B, N, D] of a batch, or its pooled vectors [B, D] where the run's
        feature cache answers ``split`` (see probe/cached.py; counted in ``cached``)."""
        source = self.pooled_source
        if source is None or split not in source.splits:
            return self.encode(batch, split)
        epoch = self.epoch if split == "train" else 0
        passes = self.counters.encoder_passes.get(split, 0)
        out = source.vectors(batch, split, epoch, lambda: self.encode(batch, split),
                             self.env.device)
        if self.counters.encoder_passes.get(split, 0) == passes:
            self.counters.cached[split] = self.counters.cached.get(split, 0) + 1
        return out

    def encode(self, batch: Dict, split: str) -> torch.Tensor:
        """The single encoder pass of a batch (counted, so tests can check it); a clip's
        segments are encoded as samples of their own and their tokens put side by side."""
        with torch.no_grad(), _autocast(self.env.device):
            out = unfold_tokens(self.encoder(fold_segments(batch, self.segments)),
                                self.segments)
        passes = self.counters.encoder_passes
        passes[split] = passes.get(split, 0) + 1
        if self.num_tokens is not None and out.shape[1] != self.num_tokens:
            raise RunFailed(f"the encoder returned {out.shape[1]} tokens for a clip, but "
                            f"{self.num_tokens} were expected ({self.tokens_from})")
        return out

    def note_batch(self, batch: Dict, split: str) -> None:
        c = self.counters
        c.batches[split] = c.batches.get(split, 0) + 1
        for item in batch.get("skipped", []):
            c.skipped.setdefault(split, {})[item["index"]] = item
        if "flags" in batch:
            self.counters.note_flags(batch, split)

    def flag_counts(self, split: str) -> Dict[str, int]:
        """Samples of ``split`` (over all ranks) that carried each flag (collective call)."""
        merged: Dict[str, set] = {}
        for part in dist.all_gather_objects(self.counters.flags[split]):
            for name, indices in part.items():
                merged.setdefault(name, set()).update(indices)
        return {name: len(indices) for name, indices in sorted(merged.items())}

    def truncated_clips(self, split: str, dataset) -> List[Dict]:
        """Samples of ``split`` (over all ranks) whose stream did not decode to its end, like
        the skipped ones: index, clip, path, frames used and packets (collective call).
        ``dataset``: the split's ClipDataset, which names the files."""
        merged: Dict[int, Dict] = {}
        for part in dist.all_gather_objects(self.counters.truncated[split]):
            merged.update(part)
        return [{"index": i, "clip": dataset.clip_of(i), "path": dataset.path_of(i), **counts}
                for i, counts in sorted(merged.items())]

    # ---- training
    def train_epoch(self, loader, epoch: int, start_step: int = 0,
                    on_step: Optional[Callable[[int, int], None]] = None) -> Dict[str, Optional[float]]:
        """One epoch from optimiser step ``start_step`` (the loader already skips the batches
        before it); ``on_step(epoch, step)`` runs after every step (checkpoints). Returns each
        head's mean training loss over the clips it trained on, None for a head stopped
        before the epoch."""
        for h in self.heads:
            h.module.train()
        self.epoch = epoch
        if start_step == 0:
            self.epoch_loss = EpochLoss.zeros(len(self.heads))
        bar = tqdm(self.clock.timed(loader, "train"), total=len(loader), desc=f"train {epoch}",
                   disable=not self._bars(),
                   leave=False, dynamic_ncols=True)
        step, start, clips = start_step, time.perf_counter(), self.epoch_loss.clips.max().item()
        for k, batch in enumerate(bar):
            self.note_batch(batch, "train")
            self.accumulate(batch)
            if (k + 1) % self.accumulation:
                continue
            self.last_step = self.finish_step(epoch, step)  # the live log reads it
            self.epoch_loss.add(*self.last_step)
            step += 1
            if on_step is not None:
                on_step(epoch, step)
            if self.env.is_main and step % self.print_freq == 0:
                bar.set_postfix(loss=f"{self.epoch_loss.best():.4f}")
        self.last_epoch = {"seconds": time.perf_counter() - start,
                           "clips": self.epoch_loss.clips.max().item() - clips}
        return {h.name: self.epoch_loss.mean(i) for i, h in enumerate(self.heads)}

    def _bars(self) -> bool:
        """Progress bars on rank 0 in an interactive terminal only (no carriage-return noise
        in a log file); each epoch also gets one log line (see probe/training.py)."""
        return self.env.is_main and sys.stderr.isatty()

    def accumulate(self, batch: Dict) -> None:
        """Forward and backward one micro-batch for every live head; gradients and loss sums
        wait in ``self.pending`` until :meth:`finish_step`."""
        pending = self.pending
        n_local = int(batch["labels"].shape[0]) if "labels" in batch else 0
        live = self.training_heads()
        if not n_local or not live:
            return
        if not pending.started:  # the step's first micro-batch here: gradients start from zero
            self._zero_grads(live)
            pending.started = True
        batch = to_device(batch, self.env.device)
        feats = self.tokens(batch, "train")
        losses = self._backward(feats, batch["labels"], live, n_local)
        pending.count += n_local
        for i, loss in losses.items():
            pending.loss[i] += float(loss.detach()) * n_local
            pending.nonfinite[i] += 0.0 if torch.isfinite(loss) else 1.0
        if self._exact_sum():  # sum micro-batch gradients in float64: order-free, see _sync_grads
            pending.add_grads(self.heads, live)

    def _backward(self, feats: torch.Tensor, labels: torch.Tensor, live: List[int],
                  n_local: int) -> Dict[int, torch.Tensor]:
        """Every live head's loss on one pass over the tokens, backpropagated group by group
        (a kind's fused bank at once, other heads one by one: one group's activations at a
        time). The exact sum keeps loss x clips per micro-batch (divided by the step's clips
        in _sync_grads); a whole step on one process backpropagates the mean directly."""
        weight = n_local if self._exact_sum() else 1
        losses: Dict[int, torch.Tensor] = {}
        for members, logits_of in bank_groups([self.heads[i].module for i in live]):
            with _autocast(self.env.device):
                logits = logits_of(feats)
            part = {live[j]: self.criterion(logits[:, k].float(), labels)
                    for k, j in enumerate(members)}
            sum(loss * weight for loss in part.values()).backward()
            losses.update(part)
        return losses

    def train_step(self, batch: Dict, epoch: int, step: int):
        """One batch as a whole optimiser step: (clips over all ranks, loss sum per head)."""
        self.accumulate(batch)
        loss, ran = self.finish_step(epoch, step)
        return int(ran.max()) if len(ran) else 0, loss

    def training_heads(self) -> List[int]:
        """Positions of the live heads that train (a knn head trains nothing)."""
        return [i for i, h in enumerate(self.heads) if h.alive and h.trains]

    def _exact_sum(self) -> bool:
        return self.accumulation > 1 or self.env.world_size > 1

    def finish_step(self, epoch: int, step: int):
        """Sync the step's gradients over ranks and micro-batches, stop non-finite heads, step
        every live head. Returns (clips in the step, loss sum per head, clips per head)."""
        pending, self.pending = self.pending, Pending.empty(len(self.heads))
        stats = torch.cat([torch.tensor([float(pending.count)], dtype=torch.float64),
                           pending.nonfinite, pending.loss])
        stats = self._all_reduce(stats)
        n_global, count = int(stats[0]), len(self.heads)
        self._stop_nonfinite(stats[1:1 + count], epoch, step)
        live = self.training_heads()
        ran = torch.tensor([float(n_global) if i in live else 0.0 for i in range(count)],
                           dtype=torch.float64)
        if n_global == 0 or not live:  # every clip of this step failed on every rank
            self._zero_grads(live)
            return torch.zeros(count, dtype=torch.float64), torch.zeros(count, dtype=torch.float64)
        self._sync_grads(live, n_global, pending)
        for i in live:
            self._step_head(i, epoch, step)
        loss = torch.where(ran > 0, stats[1 + count:], torch.zeros(count, dtype=torch.float64))
        return loss, ran

    def _step_head(self, i: int, epoch: int, step: int) -> None:
        """Clip, step and schedule one head; a step that fails (e.g. an overflowing learning
        rate) stops that head alone."""
        h = self.heads[i]
        try:
            if self.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(h.module.parameters(), self.clip_grad)
            h.optimizer.step()
        except (RuntimeError, OverflowError, ValueError) as exc:
            self._stop(h, f"optimiser step failed at epoch {epoch} step {step} ({exc})")
            return
        for schedule in h.schedules():
            schedule.step()
        # weights an overflowing step made non-finite give a non-finite loss at the next step,
        # which stops the head there

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if not dist.active():
            return t
        moved = t.to(self.env.device)
        dist.all_reduce_sum_(moved)
        return moved.cpu()

    def _stop(self, h: HeadState, why: str) -> None:
        h.status = f"stopped: {why}"
        log.warning("head %s: %s; it is stopped and will not be reported", h.name, why)

    def _stop_nonfinite(self, flags: torch.Tensor, epoch: int, step: int) -> None:
        for i, h in enumerate(self.heads):
            if h.alive and flags[i] > 0:
                self._stop(h, f"non-finite loss at epoch {epoch} step {step}")

    def _zero_grads(self, live: List[int]) -> None:
        for i in live:
            self.heads[i].optimizer.zero_grad(set_to_none=True)

    def _sync_grads(self, live: List[int], n_global: int, pending: "Pending") -> None:
        """Set every live head's gradient to the step's sum over micro-batches and ranks
        divided by the step's clip count.

        One micro-batch on one process: the gradient is already the mean (nothing to do: no
        flatten, no copy, no pass over the gradients). Otherwise the micro-batch gradients were summed in float64 and are all-reduced in
        float64 (one bucket): the sum of a few float32 numbers is then exact, so its order
        (micro-batches on one rank, or ranks) does not change a bit of the result, and any
        world size gives the same numbers.
        """
        if not self._exact_sum():
            return
        params = [p for i in live for p in self.heads[i].module.parameters()]
        flat = pending.flat_grads(self.heads, live)
        if dist.active():
            dist.all_reduce_sum_(flat)
        flat /= n_global
        offset = 0
        for p in params:  # the micro-batches left no gradient behind (see Pending.add_grads)
            p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()

    # ---- checkpoint state
    def run_state(self) -> Dict:
        """This process's share of a checkpoint (see eval_encoder/checkpoint.py): every head,
        the epoch's loss so far, and under ``per_rank`` the counters."""
        from dataclasses import asdict

        return {"heads": [_head_state(h) for h in self.heads],
                "epoch_loss": [self.epoch_loss.loss, self.epoch_loss.clips],
                "per_rank": {"counters": asdict(self.counters)}}

    def restore(self, state: Dict, rank: int) -> None:
        """Load what :meth:`run_state` saved (``per_rank`` already decoded, one per rank)."""
        names = [h["name"] for h in state["heads"]]
        if names != [h.name for h in self.heads]:
            raise CheckpointError(f"checkpoint heads {names} differ from this run's "
                                  f"{[h.name for h in self.heads]}")
        for h, saved in zip(self.heads, state["heads"]):
            _load_head(h, saved)
        self.epoch_loss = EpochLoss(*state["epoch_loss"])
        self.counters = Counters(**state["per_rank"][rank]["counters"])

    # ---- evaluation
    @torch.no_grad()
    def evaluate(self, loader, views: int, modules: List[nn.Module], desc: str = "val",
                 keep_probs: bool = False, split: str = "val") -> Scored:
        """Score every clip once with each of ``modules`` (heads, or snapshots of heads).

        A clip's views combine as ``self.fusion`` says (logits, or softmax probabilities,
        averaged), then turn into probabilities. Returns, on
        every rank, the clips of all ranks (sorted) with each module's 5 best classes and
        their probabilities, and every class's probability with ``keep_probs``.
        """
        for m in modules:
            m.eval()
        sums: Dict[int, torch.Tensor] = {}
        seen: Dict[int, int] = defaultdict(int)
        labels: Dict[int, int] = {}
        bar = tqdm(self.clock.timed(loader, split), total=len(loader), desc=desc,
                   disable=not self._bars(),
                   leave=False, dynamic_ncols=True)
        for batch in bar:
            self.note_batch(batch, split)
            if "labels" not in batch:
                continue
            batch = to_device(batch, self.env.device)
            # heads score in float32: bf16 logits would round before views are averaged
            feats = self.tokens(batch, split).float()
            logits = bank_logits(modules, feats).cpu()
            for row, (clip, label) in enumerate(zip(batch["clip_index"].tolist(),
                                                    batch["labels"].tolist())):
                sums[clip] = sums.get(clip, 0) + self.fusion.per_view(logits[row])
                seen[clip] += 1
                labels[clip] = label
        # a clip with a view that failed to decode is listed as skipped, not scored
        means = {c: self.fusion.to_logits(total / views) for c, total in sums.items()
                 if seen[c] == views}
        local = score_clips(means, labels, keep_probs, min(5, self.num_classes))
        return merge(dist.all_gather_objects(local))


def _head_state(h: HeadState) -> Dict:
    return {"name": h.name, "module": h.module.state_dict(),
            "optimizer": h.optimizer.state_dict() if h.trains else None,
            "scheduler": h.scheduler.state_dict() if h.scheduler is not None else None,
            "wd_scheduler": h.wd_scheduler.state_dict() if h.wd_scheduler is not None else None,
            "status": h.status, "history": json.dumps(encode(h.history))}


def _load_head(h: HeadState, saved: Dict) -> None:
    h.module.load_state_dict(saved["module"])
    if h.trains:
        h.optimizer.load_state_dict(saved["optimizer"])
    if h.scheduler is not None:
        h.scheduler.load_state_dict(saved["scheduler"])
    if h.wd_scheduler is not None:
        h.wd_scheduler.load_state_dict(saved["wd_scheduler"])
    h.status, h.history = saved["status"], decode(json.loads(saved["history"]))


def accuracy(scored: Scored, module: int) -> Dict[str, float]:
    """Top-1 and top-5 accuracy (%) of one module over the scored clips."""
    one = scored.module(module)
    return {"top1": top1(one), "top5": top5(one)}


def check_scored_once(scored: Scored, expected_clips: int, skipped_clips: set) -> None:
    """Every clip is scored exactly once or listed as skipped; anything else is a bug."""
    clips = scored.clips.tolist()
    if len(clips) != len(set(clips)):
        raise RunFailed("a validation clip was scored more than once")
    missing = set(range(expected_clips)) - set(clips) - skipped_clips
    if missing:
        raise RunFailed(f"{len(missing)} validation clips were neither scored nor skipped: "
                        f"{sorted(missing)[:10]}")


def is_finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
