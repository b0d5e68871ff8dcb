"""Command line and recipe -> a checked probe configuration.

defaults < ``base`` (a caller's values) < YAML recipe (``--config``) < command line; then a
``--model_weight`` alias becomes its canonical name, launcher flags are checked against
torchrun's environment, and every behaviour left unset takes the protocol's value. ``--help``
shows the values the recipe and the dataset card would supply.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

from eval_encoder.config import ConfigError, ProbeConfig, apply_values, load_yaml
from eval_encoder.flags import build_parser
from eval_encoder.launch.torchrun import check_rendezvous_flags
from eval_encoder.protocol import apply_protocol
from eval_encoder.registry import WEIGHT_ALIASES
from eval_encoder.video.manifest import ManifestError, load_card

# dataset card attribute behind an option the card fills (--help shows the card's value)
CARD_DEFAULTS = {"batch_size": "default_batch_size", "default_epoch": "default_epochs",
                 "num_classes": "num_classes", "train_data_csv_path": "train_manifest",
                 "val_data_csv_path": "val_manifest"}


def help_defaults(argv: Sequence[str], base: Optional[Dict[str, Any]] = None
                  ) -> Dict[str, Tuple[Any, str]]:
    """For --help: the values this command line's --config recipe and dataset card (given, or
    the default one) would supply, as {option: (value, origin)}. Unreadable files add nothing:
    the help must always print."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--dataset")
    given = vars(pre.parse_known_args(list(argv))[0])
    known = {k: (v, "this script's own defaults") for k, v in (base or {}).items()}
    if given["config"]:
        try:
            known.update({k: (v, f"recipe {given['config']}")
                          for k, v in load_yaml(given["config"]).items()})
        except ConfigError:
            pass
    dataset = given["dataset"] or (known.get("dataset") or (ProbeConfig.dataset, ""))[0]
    for option, value in _card_defaults(str(dataset)).items():
        known.setdefault(option, value)  # the card fills only what the recipe leaves unset
    return known


def _card_defaults(dataset: str) -> Dict[str, Tuple[Any, str]]:
    try:
        card = load_card(dataset)
    except (ManifestError, ValueError, OSError):
        return {}
    return {option: (getattr(card, attr), f"dataset card {card.path}")
            for option, attr in CARD_DEFAULTS.items()}


def parse_config(argv: Optional[Sequence[str]] = None, prog: str = "attentive_probe.py",
                 base: Optional[Dict[str, Any]] = None) -> ProbeConfig:
    """Resolve a ProbeConfig from ``base`` values, an optional --config YAML and ``argv``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    known = help_defaults(argv, base) if {"-h", "--help"} & set(argv) else None
    parser = build_parser(prog, known)
    ns = vars(parser.parse_args(argv))
    cfg = ProbeConfig()
    if base:
        apply_values(cfg, base, "caller")
    yaml_path = ns.get("config")
    if yaml_path:
        apply_values(cfg, {k: v for k, v in load_yaml(yaml_path).items() if k != "config"},
                     f"yaml:{yaml_path}")
    apply_values(cfg, ns, "command line")
    canonical_weight(cfg)
    check_launcher_flags(cfg)
    apply_protocol(cfg)
    return cfg


def canonical_weight(cfg: ProbeConfig) -> None:
    """Replace a ``--model_weight`` alias (registry.WEIGHT_ALIASES) by the canonical name, so
    both spellings hash, resolve and record as one model; the source says it was an alias."""
    canonical = WEIGHT_ALIASES.get(cfg.model_weight)
    if canonical:
        origin = cfg.sources.get("model_weight", "default")
        cfg.sources["model_weight"] = f"{origin} (as {cfg.model_weight}, an alias)"
        cfg.model_weight = canonical


def check_launcher_flags(cfg: ProbeConfig) -> None:
    """--rank/--local_rank/--world_size and the multi-node flags are torchrun's job; given,
    they must agree with it."""
    env = {"rank": "RANK", "global_rank": "RANK", "local_rank": "LOCAL_RANK", "world_size": "WORLD_SIZE"}
    for name, var in env.items():
        given = getattr(cfg, name)
        if given is None:
            continue
        actual = int(os.environ.get(var, "1" if var == "WORLD_SIZE" else "0"))
        if given != actual:
            raise ConfigError(
                f"--{name} {given} disagrees with the launcher (${var}={actual}); "
                "launch with torchrun and leave rank flags out")
    check_rendezvous_flags(cfg, os.environ)
