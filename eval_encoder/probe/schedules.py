"""Learning-rate and weight-decay schedules of the probe heads, as kinds.

Learning rate (``--lr_schedule``):

* ``linear`` (default, OneVision's): torch's LinearLR from each head's rate to
  ``--default_min_lr`` over every step, stepped after each optimiser step (none when the rate
  is not above it), exactly as before schedules were kinds;
* ``cosine`` (V-JEPA 2's ``WarmupCosineLRSchedule``): a linear warmup from ``--start_lr`` (unset:
  the head's rate) over ``--warmup`` epochs, then a half cosine to ``--final_lr``.

Weight decay (``--wd_schedule``):

* ``constant`` (default): each head's weight decay throughout;
* ``cosine`` (V-JEPA 2's ``CosineWDSchedule``): a half cosine from the head's weight decay to
  ``--final_weight_decay`` (unset: the head's own, i.e. constant).

The cosine kinds compute what the published classes compute: they are stepped before each
training iteration, so the optimiser's k-th step (from 1) runs at the value of step k of T
(T = epochs x steps per epoch, warmup steps = int(warmup x steps per epoch)). Users may register
kinds of their own in :data:`LR_SCHEDULES` / :data:`WD_SCHEDULES`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.registry import Registry, RegistryError


def warmup_cosine_lr(step: int, total: int, warmup: int, start: float, ref: float,
                     final: float) -> float:
    """The learning rate at ``step`` (from 1) of ``total``: linear from ``start`` to ``ref``
    over ``warmup`` steps, then a half cosine to ``final`` over the rest (never below it)."""
    if step < warmup:
        return start + step / max(1, warmup) * (ref - start)
    progress = (step - warmup) / max(1, total - warmup)
    return max(final, final + (ref - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def cosine_wd(step: int, total: int, ref: float, final: float) -> float:
    """The weight decay at ``step`` (from 1) of ``total``: a half cosine from ``ref`` to
    ``final``, clamped at ``final``."""
    progress = step / total
    value = final + (ref - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(final, value) if final <= ref else min(final, value)


@dataclass(frozen=True)
class Plan:
    """What the schedules of a run need: the kinds, the step counts and their settings."""

    total: int  # optimiser steps of the run
    lr: str = "linear"
    wd: str = "constant"
    min_lr: float = 1e-7  # linear: the end
    warmup: int = 0  # cosine: warmup steps
    start_lr: Optional[float] = None  # cosine: warmup start (None: the head's rate)
    final_lr: float = 0.0  # cosine: the end
    final_wd: Optional[float] = None  # cosine weight decay: the end (None: the head's)

    def lr_schedule(self, optimizer: torch.optim.Optimizer, lr: float):
        return LR_SCHEDULES.get(self.lr).make(optimizer, lr, self)

    def wd_schedule(self, optimizer: torch.optim.Optimizer, wd: float):
        return WD_SCHEDULES.get(self.wd).make(optimizer, wd, self)


def plan_of(cfg: ProbeConfig, steps_per_epoch: int) -> Plan:
    """The schedules of a run of ``cfg.default_epoch`` epochs of ``steps_per_epoch`` steps."""
    return Plan(total=steps_per_epoch * cfg.default_epoch, lr=cfg.lr_schedule,
                wd=cfg.wd_schedule, min_lr=cfg.default_min_lr,
                warmup=int(cfg.warmup * steps_per_epoch), start_lr=cfg.start_lr,
                final_lr=cfg.final_lr, final_wd=cfg.final_weight_decay)


class StepSchedule:
    """Sets an optimiser setting (``lr``, ``weight_decay``) to ``value(k)`` for its k-th step
    (from 1); :meth:`step` follows each optimiser step. Its state is the steps done."""

    def __init__(self, optimizer: torch.optim.Optimizer, key: str, value: Callable[[int], float]):
        self.optimizer, self.key, self.value = optimizer, key, value
        self.done = 0
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group[self.key] = self.value(self.done + 1)

    def step(self) -> None:
        self.done += 1
        self._apply()

    def state_dict(self) -> Dict[str, int]:
        return {"done": self.done}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.done = int(state["done"])
        self._apply()


@dataclass(frozen=True)
class ScheduleKind:
    """``make(optimizer, head value, plan)`` -> a schedule (``step``, ``state_dict``,
    ``load_state_dict``) or None (nothing changes); ``reads``: the options it reads."""

    make: Callable[[torch.optim.Optimizer, float, Plan], Any]
    reads: Tuple[str, ...] = ()


def _linear_lr(optimizer, lr: float, plan: Plan):
    if plan.min_lr >= lr:
        return None
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0,
                                             end_factor=plan.min_lr / lr,
                                             total_iters=max(1, plan.total))


def _cosine_lr(optimizer, lr: float, plan: Plan) -> StepSchedule:
    start = lr if plan.start_lr is None else plan.start_lr
    return StepSchedule(optimizer, "lr", partial(warmup_cosine_lr, total=plan.total,
                                                 warmup=plan.warmup, start=start, ref=lr,
                                                 final=plan.final_lr))


def _cosine_wd(optimizer, wd: float, plan: Plan) -> StepSchedule:
    final = wd if plan.final_wd is None else plan.final_wd
    return StepSchedule(optimizer, "weight_decay",
                        partial(cosine_wd, total=max(1, plan.total), ref=wd, final=final))


LR_SCHEDULES: Registry[ScheduleKind] = Registry("learning-rate schedule")
LR_SCHEDULES.register("linear", ScheduleKind(_linear_lr, ("default_min_lr",)))
LR_SCHEDULES.register("cosine", ScheduleKind(_cosine_lr, ("start_lr", "warmup", "final_lr")))
WD_SCHEDULES: Registry[ScheduleKind] = Registry("weight-decay schedule")
WD_SCHEDULES.register("constant", ScheduleKind(lambda optimizer, wd, plan: None))
WD_SCHEDULES.register("cosine", ScheduleKind(_cosine_wd, ("final_weight_decay",)))

# the configuration field that names each schedule, and its registry
KINDS = {"lr_schedule": LR_SCHEDULES, "wd_schedule": WD_SCHEDULES}


def check_schedules(cfg: ProbeConfig) -> None:
    """ConfigError for an unknown schedule (with a "did you mean"), or an option given on the
    command line or in a recipe that the chosen schedules do not read (a flag that would
    change nothing)."""
    for name, registry in KINDS.items():
        try:
            registry.get(getattr(cfg, name))
        except RegistryError as exc:
            raise ConfigError(f"--{name}: {exc}") from None
    read = {o for name, registry in KINDS.items()
            for o in registry.get(getattr(cfg, name)).reads}
    for name, registry in KINDS.items():
        for kind in registry:
            for option in set(registry.get(kind).reads) - read:
                if _given(cfg, option):
                    raise ConfigError(f"--{option} {getattr(cfg, option)} is read by "
                                      f"--{name} {kind} only (this run: --{name} "
                                      f"{getattr(cfg, name)}); leave it out or choose {kind}")


def _given(cfg: ProbeConfig, option: str) -> bool:
    """Whether the user set ``option`` (command line, recipe, caller), not a protocol."""
    origin = cfg.sources.get(option)
    return origin is not None and not origin.startswith("protocol")
