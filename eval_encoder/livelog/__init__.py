"""Live logs of a run: scalars while it trains, its summary at the end, to backends by name.

``--report_to none|tensorboard|wandb`` (several allowed) names the backends of the
:data:`LOGGERS` registry; :func:`check_report_to` refuses an unknown name or a backend whose
package is missing (a ConfigError naming the extra to install) before anything runs, and
:func:`open_live_log` opens them. The run feeds one :class:`LiveLog`: ``step`` (every head's
loss and learning rate), ``evaluation`` (every head's validation top-1/top-5), ``epoch``
(clips/s, the loader's wait share) and ``finish`` (the record's summary). With no backend
each call returns at once. Tags are the same in every backend: ``train/loss/<head>``,
``train/lr/<head>``, ``val/top1/<head>``, ``val/top5/<head>``, ``train/clips_per_s``,
``train/loader_wait_share``, ``reported/top1`` and ``reported/top5``; a head's name is
written with the characters TensorBoard keeps (``lr=0.0001,wd=0`` as ``lr_0.0001_wd_0``).
Logging reads numbers and never changes them: opening a backend keeps the random states.
"""
from __future__ import annotations

import importlib
import logging
import random
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
import torch

from eval_encoder.config import ConfigError
from eval_encoder.registry import Registry, RegistryError

log = logging.getLogger("eval_encoder.livelog")


@dataclass
class LogPlace:
    """Where and as what a run's logs are written: ``folder`` (the backends' folders go
    under it), the logs' id (the run id of the run that started them), the W&B project,
    the config, and the first global step this process logs (> 1: a resumed run)."""

    folder: Path
    run_id: str
    project: str = "eval_encoder"
    config: Dict[str, Any] = field(default_factory=dict)
    first_step: int = 1


class Backend:
    """One live log's writer: scalars at a step, a summary, close. ``path``: its files."""

    name = "none"
    path: Optional[str] = None

    def scalars(self, tags: Dict[str, float], step: int) -> None:
        raise NotImplementedError

    def summary(self, values: Dict[str, Any], step: int) -> None:
        raise NotImplementedError

    def close(self, ok: bool) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Logger:
    """A registered backend: its factory and the module it needs (None: none)."""

    open: Optional[Callable[[LogPlace], Backend]]
    module: Optional[str] = None
    extra: Optional[str] = None


LOGGERS: Registry[Logger] = Registry("live logger")


def register_logger(name: str, open: Optional[Callable[[LogPlace], Backend]],
                    module: Optional[str] = None, extra: Optional[str] = None) -> Logger:
    """Add a backend: ``open(place) -> Backend``; ``module``: the package it imports
    (checked by :func:`check_report_to`), ``extra``: eval-encoder's extra that installs it."""
    return LOGGERS.register(name, Logger(open, module, extra))


def _open_tensorboard(place: LogPlace) -> Backend:
    from eval_encoder.livelog.tensorboard_log import TensorBoardLog
    return TensorBoardLog(place)


def _open_wandb(place: LogPlace) -> Backend:
    from eval_encoder.livelog.wandb_log import WandbLog
    return WandbLog(place)


register_logger("none", None)
register_logger("tensorboard", _open_tensorboard, "tensorboard", "tensorboard")
register_logger("wandb", _open_wandb, "wandb", "wandb")


def backend_names(names: Iterable[str]) -> List[str]:
    """The canonical names of the backends asked for, ``none`` and repeats left out."""
    out: List[str] = []
    for name in names:
        try:
            canonical = LOGGERS.canonical(name)
        except RegistryError as exc:
            raise ConfigError(f"--report_to: {exc}") from None
        if canonical != "none" and canonical not in out:
            out.append(canonical)
    return out


def check_report_to(names: Iterable[str]) -> List[str]:
    """The backends asked for, each known and its package importable; else a ConfigError
    that names the extra to install. Called before a run writes anything."""
    wanted = backend_names(names)
    for name in wanted:
        logger = LOGGERS.get(name)
        if logger.module and not _importable(logger.module):
            raise ConfigError(f"--report_to {name} needs the {logger.module} package, which "
                              f"is not installed: pip install 'eval-encoder[{logger.extra}]'")
    return wanted


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@contextmanager
def kept_random_state():
    """Python's, numpy's and torch's random states as they were (a backend may draw)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def open_live_log(names: Iterable[str], place: LogPlace) -> "LiveLog":
    """Open every backend of ``names`` (none: a LiveLog that does nothing)."""
    wanted = check_report_to(names)
    backends = []
    with kept_random_state():
        for name in wanted:
            backends.append(LOGGERS.get(name).open(place))
            log.info("live log: %s in %s", name, backends[-1].path)
    return LiveLog(backends)


_UNSAFE = re.compile(r"[^-/\w.]")


def tag_name(head: str) -> str:
    """A head's name in a tag: characters other than letters, digits, ``_-./`` become ``_``
    (TensorBoard's rule, applied for every backend so that the tags agree)."""
    return _UNSAFE.sub("_", head)


class LiveLog:
    """What a run calls; each call goes to every backend (none: returns at once)."""

    def __init__(self, backends: Iterable[Backend] = ()):
        self.backends = list(backends)
        self.last_step = 0

    @property
    def active(self) -> bool:
        return bool(self.backends)

    @property
    def paths(self) -> Dict[str, Optional[str]]:
        return {b.name: b.path for b in self.backends}

    def step(self, step: int, losses: Dict[str, float], lrs: Dict[str, float]) -> None:
        """One optimiser step (``step``: global, from 1): each head's loss and lr."""
        if self.backends:
            tags = {f"train/loss/{tag_name(h)}": v for h, v in losses.items()}
            tags.update({f"train/lr/{tag_name(h)}": v for h, v in lrs.items()})
            self._scalars(tags, step)

    def evaluation(self, step: int, scores: Dict[str, Dict[str, float]]) -> None:
        """One evaluation: each head's validation top-1 and top-5 (%)."""
        if self.backends:
            self._scalars({f"val/{m}/{tag_name(h)}": s[m] for h, s in scores.items()
                           for m in ("top1", "top5") if s.get(m) is not None}, step)

    def epoch(self, step: int, clips_per_s: float, wait_share: Optional[float]) -> None:
        """One training epoch's clips/s and the share of it spent waiting for batches."""
        if self.backends:
            tags = {"train/clips_per_s": clips_per_s}
            if wait_share is not None:
                tags["train/loader_wait_share"] = wait_share
            self._scalars(tags, step)

    def finish(self, record: Dict[str, Any]) -> None:
        """The record's summary (reported top-1/top-5, head, epoch, wall time), then close."""
        if self.backends:
            values = summary_of(record)
            for b in self.backends:
                b.summary(values, self.last_step)
            self.close(ok=True)

    def close(self, ok: bool = False) -> None:
        """Flush and close every backend (``ok``: the run completed); idempotent."""
        backends, self.backends = self.backends, []
        for b in backends:
            b.close(ok)

    def _scalars(self, tags: Dict[str, float], step: int) -> None:
        self.last_step = max(self.last_step, step)
        for b in self.backends:
            b.scalars(tags, step)


def summary_of(record: Dict[str, Any]) -> Dict[str, Any]:
    """The record's result in a few values (reported head, top-1/top-5, epoch, wall time)."""
    reported = record.get("reported") or {}
    return {"reported/top1": reported.get("top1"), "reported/top5": reported.get("top5"),
            "reported/head": reported.get("head"), "reported/epoch": reported.get("epoch"),
            "wall_time_s": record.get("wall_time_s"), "status": record.get("status"),
            "record_run_id": record.get("run_id"), "config_hash": record.get("config_hash")}
