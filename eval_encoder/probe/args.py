"""Command line and recipe -> a checked probe configuration.

defaults < ``base`` (a caller's values) < YAML recipe (``--config``: its top level, then its
``suite.per_dataset`` entry for the run's dataset, as the suite reads it) < command line; then
the recipe's codec version fills the codec options left unset, a ``--model_weight`` alias
becomes its canonical name, launcher flags are checked against torchrun's environment, and
every behaviour left unset takes the protocol's value, the head flags left unset take the head
kind's defaults and the schedules are checked. ``--help`` shows the values the recipe,
its codec version and the dataset card would supply.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

from eval_encoder import recipe
from eval_encoder.codec.versions import apply_codec_version, version_defaults
from eval_encoder.config import ConfigError, ProbeConfig, apply_values, load_yaml
from eval_encoder.encoders.user import load_encoder_modules
from eval_encoder.flags import build_parser
from eval_encoder.launch import LAUNCHERS
from eval_encoder.launch.torchrun import check_rendezvous_flags
from eval_encoder.probe.heads import HEADS
from eval_encoder.probe.heads.options import kind_names, resolve_head
from eval_encoder.probe.schedules import check_schedules
from eval_encoder.protocol import apply_protocol
from eval_encoder.registry import WEIGHT_ALIASES
from eval_encoder.video.manifest import ManifestError, load_card

# dataset card attribute behind an option the card fills (--help shows the card's value)
CARD_DEFAULTS = {"batch_size": "default_batch_size", "default_epoch": "default_epochs",
                 "num_classes": "num_classes", "train_data_csv_path": "train_manifest",
                 "val_data_csv_path": "val_manifest", "input_size": "input_size"}


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
            known.update(_recipe_defaults(given["config"], given["dataset"], known))
        except ConfigError:
            pass
    dataset = str(given["dataset"] or (known.get("dataset") or (ProbeConfig.dataset, ""))[0])
    version = (known.get("codec_version") or (None, ""))[0]
    for option, value in {**version_defaults(version, dataset), **_card_defaults(dataset)}.items():
        known.setdefault(option, value)  # these fill only what the recipe leaves unset
    return known


def _recipe_defaults(path: str, dataset: Optional[str], known: Dict[str, Tuple[Any, str]]
                     ) -> Dict[str, Tuple[Any, str]]:
    """{option: (value, origin)} of a recipe for --help: its top level, then its dataset's
    entry."""
    options, entries = read_recipe(path)
    out = {k: (v, f"recipe {path}") for k, v in options.items()}
    name = str(dataset or (out.get("dataset") or known.get("dataset")
                           or (ProbeConfig.dataset, ""))[0])
    out.update({k: (v, f"recipe {path} ({recipe.SUITE_KEY}.{recipe.PER_DATASET}.{name})")
                for k, v in entries.get(name, {}).items()})
    return out


def read_recipe(path: str) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    """A ``--config`` file's probe options and its per-dataset entries (a recipe's ``suite:``
    block is checked; its other keys say how a suite runs it)."""
    options, suite = recipe.split_suite(load_yaml(path))
    options.pop("config", None)
    if suite is None:
        return options, {}
    recipe.check_suite_keys(suite, path, LAUNCHERS)
    return options, recipe.per_dataset_entries(suite, path)


def apply_recipe(cfg: ProbeConfig, path: str, dataset: Optional[str]) -> None:
    """Set a ``--config`` file's options on ``cfg``: its top level, then the entry of the run's
    dataset (``dataset`` from the command line, else the recipe's or the default)."""
    options, entries = read_recipe(path)
    apply_values(cfg, options, f"yaml:{path}")
    name = dataset or cfg.dataset
    if name in entries:
        apply_values(cfg, entries[name], recipe.entry_origin(path, name))


def _card_defaults(dataset: str) -> Dict[str, Tuple[Any, str]]:
    try:
        card = load_card(dataset)
    except (ManifestError, ValueError, OSError):
        return {}
    return {option: (getattr(card, attr), f"dataset card {card.path}")
            for option, attr in CARD_DEFAULTS.items() if getattr(card, attr) is not None}


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
    if ns.get("config"):
        apply_recipe(cfg, ns["config"], ns.get("dataset"))
    apply_values(cfg, ns, "command line")
    apply_codec_version(cfg)
    canonical_weight(cfg)
    check_launcher_flags(cfg)
    apply_protocol(cfg)
    if any(n not in HEADS for n in kind_names(cfg)):  # a user's kind: its module registers it
        load_encoder_modules(cfg.encoder_module)
    resolve_head(cfg)
    check_schedules(cfg)
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
