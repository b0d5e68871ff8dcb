"""Which launcher starts a suite's runs and with how many processes and nodes: each launcher's
options and torchrun's as flags, over the recipe's settings."""
from __future__ import annotations

import argparse
from typing import Any, Dict

from eval_encoder.config import ConfigError
from eval_encoder.launch import LAUNCHERS, TORCHRUN_KEYS, Launcher, Topology
from eval_encoder.launch.base import settings_from
from eval_encoder.launch.torchrun import parse_nnodes
from eval_encoder.suite.recipes import SUITE_KEY, Recipe

DEFAULT_LAUNCHER = "local"


def _add_launcher_options(parser: argparse.ArgumentParser) -> None:
    """Every launcher's options, a group each (unset: None, so that given ones are known)."""
    for name, cls in LAUNCHERS.items():
        group = parser.add_argument_group(f"{name} launcher")
        for option in cls.options:
            group.add_argument(*[f"--{n}" for n in (option.name, *option.aliases)],
                               dest=option.name, type=option.type, default=None,
                               action="append" if option.repeat else "store", help=option.help)


def _add_torchrun_flags(group) -> None:
    group.add_argument("--nproc_per_node", type=int, default=1,
                       help="processes per node (torchrun when > 1; default 1)")
    group.add_argument("--nnodes", "--nodes", dest="nnodes", default=None,
                       help="nodes per run (default 1; recipe key nnodes); locally, run the "
                            "suite on every node with its --node_rank")
    group.add_argument("--node_rank", type=int, default=None,
                       help="this node's rank, 0 on the first (local launcher, many nodes)")
    group.add_argument("--rdzv_backend", default=None, choices=["c10d", "static"],
                       help="torchrun rendezvous backend (default c10d)")
    group.add_argument("--rdzv_endpoint", default=None,
                       help="HOST:PORT on the first node, the same for every node (local "
                            "launcher, many nodes)")


def topology_from(recipe: Recipe, args: argparse.Namespace) -> Topology:
    """The processes of each run: the recipe's torchrun keys, overridden by flags."""
    given = {k: getattr(args, k) for k in TORCHRUN_KEYS if getattr(args, k) is not None}
    values = {**recipe.torchrun, **given}
    low, high = parse_nnodes(values.get("nnodes", 1))
    if low != high:
        raise ConfigError(f"--nnodes {values['nnodes']}: a suite needs a fixed node count "
                          "(the world size is part of what a record is compared by)")
    return Topology(args.nproc_per_node, low, int(values.get("node_rank") or 0),
                    values.get("rdzv_backend"), values.get("rdzv_endpoint"))


def make_launcher(recipe: Recipe, args: argparse.Namespace, topology: Topology) -> Launcher:
    """The launcher the flags or the recipe ask for, with its settings (defaults < recipe
    < flags); a flag of another launcher is an error."""
    name = args.launcher or recipe.launcher or DEFAULT_LAUNCHER
    cls = LAUNCHERS.get(name)
    for other, other_cls in LAUNCHERS.items():
        stray = [o.name for o in other_cls.options if other != name
                 and getattr(args, o.name) is not None
                 and o.name not in {p.name for p in cls.options}]
        if stray:
            raise ConfigError(f"--{stray[0]} is a setting of the {other} launcher, not of "
                              f"{name} (--launcher {other})")
    settings = settings_from(cls, recipe.launch.get(name, {}), vars(args),
                             f"{recipe.path}: {SUITE_KEY}.{name}")
    return cls(settings, topology)


def _launcher_for(name: str, flags: Dict[str, Any]) -> Launcher:
    """A launcher to follow the jobs an earlier suite started with it."""
    cls = LAUNCHERS.get(name)
    return cls(settings_from(cls, {}, flags, name), Topology())
