"""A recipe (``probes/<name>.yaml``): probe options at the top level, and a ``suite:`` block
with the datasets of its leaderboard row and, under ``per_dataset``, options of one dataset
(the paper's per-dataset global batch, a dataset's codec settings).

A recipe means one thing wherever it is read: ``probe --config``, ``suite``, ``--help`` and
``--dry_run`` all take the top-level options, then the run's dataset's own entry
(:func:`dataset_options`). The other keys of the ``suite:`` block say how a suite runs the
recipe (its datasets, description, launcher) and do not change a run's options.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

from eval_encoder.config import ConfigError

SUITE_KEY = "suite"
PER_DATASET = "per_dataset"
SUITE_FIELDS = ("datasets", PER_DATASET, "description", "launcher")  # and one per launcher


def split_suite(data: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """A recipe mapping's probe options, and its ``suite:`` block (None without one)."""
    return {k: v for k, v in data.items() if k != SUITE_KEY}, data.get(SUITE_KEY)


def check_suite_keys(suite: Any, path: str, launchers: Iterable[str]) -> Dict[str, Any]:
    """The ``suite:`` block, checked to be a mapping of known keys (``launchers``: the names of
    the launchers, whose settings sections it may hold)."""
    if not isinstance(suite, dict):
        raise ConfigError(f"{path}: needs a '{SUITE_KEY}:' mapping with 'datasets: [...]'")
    allowed = (*SUITE_FIELDS, *launchers)
    unknown = sorted(set(suite) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} under '{SUITE_KEY}:' "
                          f"(allowed: {', '.join(allowed)})")
    return suite


def per_dataset_entries(suite: Optional[Dict[str, Any]], path: str) -> Dict[str, Dict[str, Any]]:
    """``suite.per_dataset`` as {dataset: options}; a ConfigError naming the file when it is not
    a mapping of mappings."""
    entries = (suite or {}).get(PER_DATASET) or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: {SUITE_KEY}.{PER_DATASET} must map dataset -> options")
    for name, options in entries.items():
        if not isinstance(options, dict):
            raise ConfigError(f"{path}: {SUITE_KEY}.{PER_DATASET}.{name}: must be a mapping of "
                              f"probe options, got {options!r}")
    return entries


def dataset_options(options: Dict[str, Any], entries: Dict[str, Dict[str, Any]],
                    dataset: str) -> Dict[str, Any]:
    """The options a run of ``dataset`` takes from a recipe: the top level's, then the
    dataset's own entry, which wins."""
    return {**options, **entries.get(dataset, {})}


def entry_origin(path: str, dataset: str) -> str:
    """How a run's sources name a value from a recipe's per-dataset entry."""
    return f"yaml:{path} ({SUITE_KEY}.{PER_DATASET}.{dataset})"
