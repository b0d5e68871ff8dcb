"""Recipes (``probes/<name>.yaml``, the format in :mod:`eval_encoder.suite`): read and checked
before any run, and each dataset's probe options written as the trainer's ``--config`` file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from eval_encoder import recipe as recipe_file
from eval_encoder.config import ConfigError, ProbeConfig, apply_values, load_yaml
from eval_encoder.encoders import check_names
from eval_encoder.launch import LAUNCHERS, TORCHRUN_KEYS
from eval_encoder.launch.base import settings_from, write_atomic
from eval_encoder.listing import recipes_dir
from eval_encoder.registry import RegistryError
from eval_encoder.text import did_you_mean
from eval_encoder.video.manifest import cards_dir, load_card

SUITE_KEY = recipe_file.SUITE_KEY
SUITE_FIELDS = (*recipe_file.SUITE_FIELDS, *LAUNCHERS)
# options the suite sets itself for every dataset; a recipe or extra flag must not
OWNED = ("dataset", "data_root", "save_report", "config")


@dataclass
class Recipe:
    """A parsed recipe: probe options, the datasets of its row and per-dataset options."""

    path: Path
    probe: Dict[str, Any]
    datasets: List[str]
    per_dataset: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    launcher: Optional[str] = None  # suite.launcher
    launch: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # suite.<launcher>: settings
    torchrun: Dict[str, Any] = field(default_factory=dict)  # nnodes, rdzv_*: torchrun's keys

    @property
    def name(self) -> str:
        return self.path.stem


def recipe_path(name: str) -> str:
    """A recipe file as given, else the shipped (or $EVAL_ENCODER_PROBES) recipe of that name,
    so ``suite ov_encoder_large_8f`` works from any folder and after a wheel install."""
    if os.path.exists(name) or os.sep in name or name.endswith((".yaml", ".yml")):
        return name
    folder = recipes_dir()
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    if name not in known:
        hint = did_you_mean(name, known)
        raise ConfigError(f"no recipe file {name!r} and no recipe of that name in {folder}.{hint}")
    return str(folder / f"{name}.yaml")


def load_recipe(path: str) -> Recipe:
    """Read and check a recipe (a file, or a recipe's name: :func:`recipe_path`): probe keys
    must be config fields, the suite key well formed, every dataset a known card. Errors are
    ConfigError naming the file and the key."""
    path = recipe_path(path)
    data, suite = recipe_file.split_suite(load_yaml(path))
    suite = recipe_file.check_suite_keys(suite, path, LAUNCHERS)
    owned = sorted(set(data) & set(OWNED))
    if owned:
        raise ConfigError(f"{path}: {owned} are set by the suite for each dataset; list datasets "
                          f"under '{SUITE_KEY}: datasets:' and pass --data_root/--save_report")
    cfg = ProbeConfig()
    apply_values(cfg, data, path)  # unknown keys and bad values fail here, by name
    try:  # as do a misspelt family or model name, before any dataset's run
        check_names(cfg)
    except (RegistryError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    datasets = _dataset_list(suite.get("datasets"), f"{path}: {SUITE_KEY}.datasets")
    per_dataset = _per_dataset(recipe_file.per_dataset_entries(suite, path), datasets, path)
    torchrun = {k: data.pop(k) for k in TORCHRUN_KEYS if k in data}
    return Recipe(Path(path), data, datasets, per_dataset, str(suite.get("description") or ""),
                  _launcher_name(suite.get("launcher"), path), _launch_sections(suite, path),
                  torchrun)


def _per_dataset(per_dataset: Dict[str, Dict[str, Any]], datasets: List[str], path: str
                 ) -> Dict[str, Dict[str, Any]]:
    """The per-dataset entries, checked: datasets of the recipe, probe options that the suite
    does not set itself and torchrun does not own."""
    for name, options in per_dataset.items():
        where = f"{path}: {SUITE_KEY}.per_dataset.{name}"
        if name not in datasets:
            raise ConfigError(f"{where}: {name!r} is not in {SUITE_KEY}.datasets {datasets}")
        if set(options) & set(OWNED):
            raise ConfigError(f"{where}: must be a mapping of probe options (not {list(OWNED)})")
        if set(options) & set(TORCHRUN_KEYS):
            raise ConfigError(f"{where}: {sorted(set(options) & set(TORCHRUN_KEYS))} are "
                              "torchrun's, set once for the recipe")
        apply_values(ProbeConfig(), options, where)
    return per_dataset


def _launcher_name(value: Any, path: str) -> Optional[str]:
    if value is None:
        return None
    try:
        return LAUNCHERS.canonical(str(value))
    except KeyError as exc:
        raise ConfigError(f"{path}: {SUITE_KEY}.launcher: {exc}") from None


def _launch_sections(suite: Dict[str, Any], path: str) -> Dict[str, Dict[str, Any]]:
    """``suite: {<launcher>: {setting: value}}``, checked against each launcher's options."""
    out = {}
    for name in LAUNCHERS:
        section = suite.get(name) or {}
        where = f"{path}: {SUITE_KEY}.{name}"
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: must be a mapping of {name} launcher settings")
        settings_from(LAUNCHERS.get(name), section, {}, where)
        out[name] = section
    return out


def _dataset_list(value: Any, where: str) -> List[str]:
    """A non-empty list of distinct dataset names, each with a card."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of dataset names, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: a dataset is listed twice: {value}")
    for name in value:
        try:
            load_card(name)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except yaml.YAMLError as exc:  # load_card lets these through without the file name
            card = cards_dir() / f"{name}.yaml"
            raise ConfigError(f"{where}: dataset card {card} is not valid YAML: "
                              f"{' '.join(str(exc).split())}") from None
    return list(value)


def probe_options(recipe: Recipe, dataset: str) -> Dict[str, Any]:
    """The probe options of ``dataset``: the recipe's, then its per-dataset entry (torchrun's
    keys are not among them: they go to torchrun)."""
    return recipe_file.dataset_options(recipe.probe, recipe.per_dataset, dataset)


def write_probe_yaml(recipe: Recipe, dataset: str, save_report: str) -> Path:
    """Write the trainer's ``--config`` file; kept next to the records so a run can be redone
    by hand and the path in a record's config stays valid."""
    path = Path(save_report) / "suite" / recipe.name / f"{dataset}.yaml"
    header = f"# written by `python -m eval_encoder suite` from {recipe.path} for {dataset}\n"
    write_atomic(path, header + yaml.safe_dump(probe_options(recipe, dataset), sort_keys=False))
    return path
