"""Official annotation formats by name, and the ``prepare`` targets they give.

Each family module registers one :class:`~eval_encoder.prepare.base.Format`; a target is a
dataset card name (``prepare ssv2``) or a format's group (``prepare epic`` writes both EPIC
datasets from one reading). :func:`load_formats` fills the registry by explicit imports.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Tuple

from eval_encoder.prepare.base import Format
from eval_encoder.registry import Registry

FORMATS: Registry[Format] = Registry("annotation format")
TARGETS: Registry["Target"] = Registry("prepare target")

FAMILY_MODULES = ("ssv2", "diving48", "hmdb51", "ucf101", "kinetics", "epic", "charadesego",
                  "perception_test")


@dataclass(frozen=True)
class Target:
    """What ``prepare <name>`` writes: ``datasets`` read with ``format``."""

    name: str
    format: Format
    datasets: Tuple[str, ...]


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` and a target per dataset (plus its group's target, if any)."""
    FORMATS.register(fmt.name, fmt)
    for dataset in fmt.datasets:
        TARGETS.register(dataset, Target(dataset, fmt, (dataset,)))
    if fmt.group:
        TARGETS.register(fmt.group, Target(fmt.group, fmt, fmt.datasets))
    return fmt


def load_formats() -> None:
    """Import every family module once (each registers its format on import)."""
    for name in FAMILY_MODULES:
        importlib.import_module(f"eval_encoder.prepare.{name}")


def target(name: str) -> Target:
    """The target called ``name``; an unknown one lists the known ones ("did you mean")."""
    load_formats()
    return TARGETS.get(name)
