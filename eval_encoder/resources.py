"""Where the data shipped with the package is found: dataset cards, probe recipes and the
reported numbers of each published evaluation.

In the checkout they live where a person looks for them: ``datasets/*.yaml``,
``probes/*.yaml`` and ``results/paper_attentive_probe.csv``. ``eval_encoder/_data/`` holds
relative symbolic links to them (git keeps links), so one lookup through
:mod:`importlib.resources` serves every install: an editable install reads the checkout through
the links, and a wheel carries real copies (the build follows the links; ``package_data`` in
setup.cfg names them). Nothing is stored twice, and ``datasets/`` and ``probes/`` stay plain
folders, never Python packages (a package named ``datasets`` would shadow Hugging Face's).

A user's own folder replaces a shipped one through an environment variable (:data:`FOLDERS`);
the reported numbers are replaced by a flag instead (``leaderboard --reported_csv``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

DATA = "_data"  # eval_encoder/_data/: links in the checkout, files in a wheel
REPORTED = "paper_attentive_probe.csv"
OPTIMISM = "val_sampling_optimism.csv"


@dataclass(frozen=True)
class Folder:
    """One folder of shipped data files and the environment variable that replaces it."""

    name: str     # eval_encoder/_data/<name>, a link to <checkout>/<name>
    pattern: str  # the files that count as its entries
    what: str     # how messages call them
    env: str      # the override: a folder of the user's own


FOLDERS = {
    "datasets": Folder("datasets", "*.yaml", "dataset cards", "EVAL_ENCODER_DATASETS"),
    "probes": Folder("probes", "*.yaml", "probe recipes", "EVAL_ENCODER_PROBES"),
}


class MissingData(ValueError):
    """A data folder without entries: a package installed without its data, or an override
    naming a wrong folder. The message names the folder and the way out."""


def shipped_root() -> Path:
    """``eval_encoder/_data`` of the imported package, as a folder on disk."""
    root = resources.files("eval_encoder") / DATA
    if not isinstance(root, Path):  # imported from a zip: nothing to glob or hand to a child
        raise MissingData(f"eval_encoder is imported from an archive ({root}); install it as a "
                          "folder (pip install) to use its shipped data")
    return root


def shipped(kind: str) -> Path:
    """The shipped folder of ``kind`` (a key of :data:`FOLDERS`), whether or not it is there."""
    return shipped_root() / FOLDERS[kind].name


def data_dir(kind: str) -> Path:
    """The folder of ``kind`` (``datasets`` or ``probes``): ``$EVAL_ENCODER_<KIND>`` when set,
    else the shipped one. Raises MissingData when it holds no entry, so that a broken install
    or a mistyped override is never read as "nothing there"."""
    folder = FOLDERS[kind]
    override = os.environ.get(folder.env)
    path = Path(override).expanduser() if override else shipped(kind)
    if not any(path.glob(folder.pattern)):
        raise MissingData(_missing(folder, path, bool(override)))
    return path


def _missing(folder: Folder, path: Path, override: bool) -> str:
    """Why ``path`` gave no entries, and what to do about it."""
    state = "is not a folder" if not path.is_dir() else f"holds no {folder.pattern}"
    if override:
        return (f"{folder.env}={path}: {state}; point it at a folder of {folder.what}, or unset "
                "it to use the shipped ones")
    return (f"the shipped {folder.what} are missing: {path} {state}. This install lacks its "
            f"data; reinstall the package, or set {folder.env} to a folder of {folder.what}")


def reported_csv(name: str = REPORTED) -> Path:
    """Reported numbers as shipped: ``results/<name>``, by default the OneVision paper's
    (``results/paper_attentive_probe.csv``; V-JEPA 2's: ``vjepa2_attentive_probe.csv``)."""
    return shipped_root() / name


def optimism_csv() -> Path:
    """The simulated gain of the paper's validation draw per dataset, as shipped
    (``results/val_sampling_optimism.csv``, written by benchmarks/bench_val_sampling.py)."""
    return shipped_root() / OPTIMISM


def source_checkout() -> Optional[Path]:
    """The source checkout the package runs from (an editable install or a bare checkout), or
    None for an installed copy, whose folder says nothing of the code's version control."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "setup.cfg").is_file() and (root / "eval_encoder").is_dir() else None
