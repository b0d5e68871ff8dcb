"""How an epoch's training clips become optimiser steps, micro-batches and ranks.

One permutation per epoch (seeded by seed and epoch, the same on every rank) is cut into
steps of ``global_batch`` clips. Each step is cut into micro-batches of ``micro`` consecutive
clips; micro-batch j of a step goes to rank ``j mod W``, which runs its micro-batches in order
and accumulates their gradients. The step's gradient is the sum over all its micro-batches
divided by its clip count, so the clips of a step, the grouping of the micro-batches and the
numbers they give are the same for every world size W that divides ``global_batch / micro``.

Without a global batch (``--global_batch_size`` unset) the per-process ``--batch_size`` is
the micro-batch and the global batch is ``batch_size x W``: results then depend on W, as
they did in the published scripts.

The last step of an epoch may be short (some micro-batches partial or empty: every rank still
runs the same number of micro-batches, so the collectives line up). With ``drop_last`` (as
published) only full steps run: floor(n / global_batch) of them, which equals the published
floor(floor(n / W) / B) when the global batch is W x B.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np


class StepPlanError(ValueError):
    """A global batch, micro-batch and world size that do not fit together."""


@dataclass(frozen=True)
class StepPlan:
    """Clips per optimiser step (all ranks), per micro-batch, ranks, and the last-step rule."""

    global_batch: int
    micro: int
    world: int
    drop_last: bool

    @property
    def micro_per_step(self) -> int:
        return self.global_batch // self.micro

    @property
    def accumulation(self) -> int:
        """Micro-batches each rank runs per optimiser step."""
        return self.micro_per_step // self.world

    def steps(self, n: int) -> int:
        """Optimiser steps per epoch over ``n`` clips; StepPlanError when there is none."""
        steps = n // self.global_batch if self.drop_last else -(-n // self.global_batch)
        if steps <= 0:
            raise StepPlanError(self._no_step(n))
        return steps

    def _no_step(self, n: int) -> str:
        """Why an epoch of ``n`` clips has no step, and the ways out."""
        batch = (f"a global batch of {self.global_batch} ({self.world} processes x "
                 f"{self.accumulation} micro-batches of --batch_size {self.micro})")
        if not self.drop_last:
            return f"no training step per epoch: the training split is empty ({batch})"
        return (f"no training step per epoch: {n} training clips and {batch} give "
                f"floor({n}/{self.global_batch}) = 0 full steps, and drop_last (the paper "
                "protocol's, as published) drops the short one. Keep it with --drop_last false "
                f"(1 step of {n} clips per epoch; --protocol clean keeps it too, with its other "
                f"corrections), or make the global batch at most {n} clips (--batch_size, "
                "--global_batch_size)")

    def describe(self) -> dict:
        """The record's ``batch`` block."""
        return {"global_batch": self.global_batch, "micro_batch": self.micro,
                "world_size": self.world, "accumulation_steps": self.accumulation,
                "drop_last": self.drop_last}


def make_plan(global_batch: Optional[int], micro: int, world: int, drop_last: bool) -> StepPlan:
    """The plan for ``--global_batch_size`` (or, unset, ``micro x world``), checked."""
    if micro <= 0 or world <= 0:
        raise StepPlanError(f"batch size {micro} and world size {world} must be positive")
    if global_batch is None:
        return StepPlan(micro * world, micro, world, drop_last)
    if global_batch <= 0 or global_batch % micro:
        raise StepPlanError(f"--global_batch_size {global_batch} is not a positive multiple of "
                            f"the per-process micro-batch --batch_size {micro}")
    parts = global_batch // micro
    if parts % world:
        fits = [w for w in range(1, parts + 1) if parts % w == 0]
        raise StepPlanError(f"--global_batch_size {global_batch} = {parts} micro-batches of "
                            f"{micro} cannot be shared by {world} processes; world sizes that "
                            f"fit: {', '.join(map(str, fits))} (or change --batch_size)")
    return StepPlan(global_batch, micro, world, drop_last)


def train_batches(n: int, epoch: int, rank: int, plan: StepPlan, seed: int) -> List[List[int]]:
    """This rank's micro-batches of clip indices for one epoch, step after step (each step
    ``plan.accumulation`` of them, possibly short or empty in the last step)."""
    perm = np.random.default_rng([seed, epoch, 7]).permutation(n)
    out: List[List[int]] = []
    for step in range(plan.steps(n)):
        base = step * plan.global_batch
        for j in range(rank, plan.micro_per_step, plan.world):
            lo = base + j * plan.micro
            out.append(perm[lo:min(lo + plan.micro, n)].tolist())
    return out


def chunk(order: List[int], size: int) -> List[List[int]]:
    """A flat order as consecutive batches of ``size`` (the last one shorter)."""
    return [list(order[i:i + size]) for i in range(0, len(order), size)]
