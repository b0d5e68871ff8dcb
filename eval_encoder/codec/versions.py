"""The published versions of the codec family's selection settings, as data.

The published repository (EvolvingLMMs-Lab/OneVision-Encoder) changed the settings its codec
shell (``eval_encoder/shells_eval_ap/common_codec.sh``) passes, and the defaults of its codec
probe (``eval_encoder/attentive_probe_codec.py``), three times before the paper (arXiv
2602.08683, 2026-02-09). Each version here is what one shell with its probe ran, per dataset:
the values the shell passes and, where it passes nothing, the probe's default at that commit
(``fuse_mode``, ``w_mv``, ``w_res`` have no flag upstream and never changed). A recipe picks
one with ``codec_version:``; it fills every codec option the recipe and the command line leave
unset, and the run's sources name the version. The budget ``K_keep`` is the recipe's (it
makes the leaderboard row); each version's note says what its shells passed.

Which version made the paper's codec rows is not recorded anywhere upstream: the results
figure that carries the paper's numbers (``asset/result_ap.png``, 35d2031, 2025-12-25)
predates every codec shell and the selection code they call, and the one set of logged codec
runs (branch ``feilong_logs``, 2025-12-31, the 2026-01-01 shell) differs from the paper in 6
of 8 cells. The paper's recipes therefore follow the latest version before the paper
(:data:`PAPER_VERSION`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from eval_encoder.config import ConfigError
from eval_encoder.text import did_you_mean

# every version's values for the options it does not change (hard-coded upstream, or the
# same default in every commit)
COMMON: Mapping[str, Any] = {
    "mv_compensate": "similarity", "mv_incon_ksize": 3, "res_use_grad": False,
    "fuse_mode": "weighted", "w_mv": 1.0, "w_res": 1.0, "center_sigma": 0.35,
    "static_fallback": 1, "static_uniform_frames": 4,
}


@dataclass(frozen=True)
class CodecVersion:
    """One published version: its shell and probe commits, the values for every dataset, the
    datasets that differ, and what else its shells did."""

    name: str  # the date of its shell commit
    shell: str
    probe: str
    values: Mapping[str, Any]
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    note: str = ""

    def settings(self, dataset: str) -> Dict[str, Any]:
        """The codec options this version gives a run on ``dataset``."""
        return {**COMMON, **self.values, **self.per_dataset.get(dataset, {})}


VERSIONS: Tuple[CodecVersion, ...] = (
    CodecVersion(
        "2025-12-30", "common_codec.sh at 505ba7b", "attentive_probe_codec.py at 5c794b1",
        {"center_prior": 0.0, "mv_use_inconsistency": False,
         "static_abs_thresh": 116.0, "static_rel_thresh": 0.55},
        {"diving48": {"static_abs_thresh": 126.0, "static_rel_thresh": 0.38},
         "perception_test": {"static_abs_thresh": 126.0, "static_rel_thresh": 0.38}},
        "per-dataset static thresholds from the shell's get_codec_params; centre prior and "
        "inconsistency at the probe's defaults (0.0, off); the shells pass K_keep (2048, 4096)"),
    CodecVersion(
        "2026-01-01", "common_codec.sh at be1f4d2", "attentive_probe_codec.py at 59a5505",
        {"center_prior": 0.3, "mv_use_inconsistency": True,
         "static_abs_thresh": 126.0, "static_rel_thresh": 0.38},
        {"diving48": {"mv_use_inconsistency": False}},
        "the shell passes only --mv_use_inconsistency (every dataset but Diving48); thresholds "
        "and centre prior become the probe's new defaults; no K_keep is passed, so the 4k "
        "shell also ran at the default 2048"),
    CodecVersion(
        "2026-01-18", "common_codec.sh at d45ca2a (4k shell 573ca22)",
        "attentive_probe_codec.py at 23e56b3",
        {"center_prior": 0.3, "mv_use_inconsistency": True,
         "static_abs_thresh": 126.0, "static_rel_thresh": 0.38},
        {"diving48": {"mv_use_inconsistency": False}},
        "the latest before the paper, still the repository's head (c2cd3e0): the settings of "
        "2026-01-01, and the shell passes K_KEEP, --static_uniform_frames 4 and "
        "--static_fallback 1; its inconsistency test reads an unset variable, so only Diving48 "
        "goes without it (k400 and charadesego keep it, whatever its comment says); the 4k "
        "shell sets K_KEEP=4096, the 2k shell a lower-case K_keep, which leaves --K_keep "
        "empty (argparse stops; K_KEEP=2048 runs it)"),
)
BY_NAME: Dict[str, CodecVersion] = {v.name: v for v in VERSIONS}
# the options some version sets apart from COMMON, in a fixed order (the tables' columns)
VARYING: Tuple[str, ...] = ("static_abs_thresh", "static_rel_thresh", "center_prior",
                            "mv_use_inconsistency")
PAPER_VERSION = "2026-01-18"  # the latest before the paper (see the module's docstring)


def get(name: str) -> CodecVersion:
    """The named version; an unknown name lists the known ones."""
    if name not in BY_NAME:
        hint = did_you_mean(name, BY_NAME)
        raise ConfigError(f"--codec_version {name!r} is not a published version.{hint} "
                          f"Known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def version_defaults(name: Optional[str], dataset: str) -> Dict[str, Tuple[Any, str]]:
    """{option: (value, origin)} a version gives ``dataset`` (nothing without a version)."""
    if name is None:
        return {}
    return {k: (v, f"codec version {name}") for k, v in get(str(name)).settings(dataset).items()}


def apply_codec_version(cfg) -> None:
    """Fill every codec option that ``cfg.codec_version`` sets and nothing else set (no
    source yet: neither the recipe nor the command line), for ``cfg.dataset``."""
    for name, (value, origin) in version_defaults(cfg.codec_version, cfg.dataset).items():
        if name not in cfg.sources:
            setattr(cfg.codec, name, value)
            cfg.sources[name] = origin


def markdown_table() -> str:
    """The versions as a Markdown table (``ls codec --markdown``, results/README.md)."""
    options = VARYING
    head = ["| version | shell | probe | " + " | ".join(f"`{o}`" for o in options) + " | note |",
            "|---" * (len(options) + 4) + "|"]
    body = [f"| `{v.name}` | {v.shell} | {v.probe} | "
            + " | ".join(cell(v, o) for o in options) + f" | {v.note} |" for v in VERSIONS]
    common = ", ".join(f"`{k}` {v}" for k, v in COMMON.items())
    return "\n".join(head + body + ["", f"Every version: {common}."]) + "\n"


def cell(version: CodecVersion, option: str) -> str:
    """``0.3``, or ``116 (diving48, perception_test: 126)`` where datasets differ."""
    base = version.values.get(option, COMMON.get(option))
    other: Dict[Any, List[str]] = {}
    for dataset, entry in version.per_dataset.items():
        if option in entry:
            other.setdefault(entry[option], []).append(dataset)
    extra = "; ".join(f"{', '.join(names)}: {_show(value)}" for value, names in other.items())
    return _show(base) + (f" ({extra})" if extra else "")


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
