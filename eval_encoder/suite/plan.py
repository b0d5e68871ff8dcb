"""What a suite will run: each dataset's trainer flags, the config hash and protocol they give,
the task a launcher starts, one pass per seed, and the dry run that prints it all."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from eval_encoder import record as rec
from eval_encoder.config import ConfigError
from eval_encoder.encoders import check_names, check_weights
from eval_encoder.flags import build_parser
from eval_encoder.launch import Launcher, Task, Topology
from eval_encoder.launch.base import TRAINER
from eval_encoder.parsing import closest_flags, option_names
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import check_data
from eval_encoder.protocol import departures
from eval_encoder.suite.books import find_complete
from eval_encoder.suite.recipes import OWNED, Recipe, probe_options, write_probe_yaml


SUITE_PROG = "python -m eval_encoder suite"


def trainer_argv(config_yaml: Path, dataset: str, data_root: str, save_report: str,
                 extra: Sequence[str] = ()) -> List[str]:
    """The trainer's command-line flags (also what its config_hash is computed from)."""
    return ["--config", str(config_yaml), "--dataset", dataset, "--data_root", str(data_root),
            "--save_report", str(save_report), *extra]


def check_extra_flags(extra: Sequence[str], suite_flags: Sequence[str] = ()) -> None:
    """Flags passed through to the trainer must be trainer flags and not ones the suite owns;
    a misspelt one is named with the closest trainer or suite flags (``suite_flags``). A bad
    value of a trainer flag exits as argparse does, naming the suite."""
    if any(a == "--config" or a.startswith("--config=") for a in extra):
        raise ConfigError(f"the recipe is the suite's first argument (`{SUITE_PROG} RECIPE "
                          "--data_root ...`), not --config")
    parser = build_parser(SUITE_PROG)
    parsed, unknown = parser.parse_known_args(list(extra))
    if unknown:
        hint = closest_flags(unknown, [*option_names(parser), *suite_flags])
        raise ConfigError(f"not trainer flags: {' '.join(unknown)}.{hint} "
                          f"(`{SUITE_PROG} --help` and `python -m eval_encoder probe --help` "
                          "list them)")
    given = vars(parsed)
    owned = sorted(set(given) & set(OWNED))
    if owned:
        raise ConfigError(f"--{owned[0]} is set by the suite; use --datasets, --data_root, "
                          "--save_report or the recipe file")


def expected_hash(argv: Sequence[str]) -> str:
    """The config_hash the trainer will store for ``argv`` (same parse, same hash)."""
    return rec.config_hash(parse_config(list(argv)).to_dict())


def protocol_label(argv: Sequence[str]) -> str:
    """The protocol the trainer will follow for ``argv``, as the leaderboard labels it."""
    cfg = parse_config(list(argv))
    return cfg.protocol + ("*" if departures(cfg) else "")


def make_task(recipe: Recipe, dataset: str, data_root: str, save_report: str,
              topology: Topology, extra: Sequence[str] = (), script: Path = TRAINER) -> Task:
    """Write the dataset's ``--config`` file and describe its run for a launcher."""
    argv = trainer_argv(write_probe_yaml(recipe, dataset, save_report), dataset, data_root,
                        save_report, extra)
    cfg = parse_config(argv)
    # the rendezvous id keeps the datasets of a multi-node suite apart on one endpoint
    topology = dataclasses.replace(topology, rdzv_id=f"{recipe.name}.{dataset}")
    return Task(recipe.name, dataset, argv, rec.config_hash(cfg.to_dict()), topology,
                Path(save_report) / "suite" / recipe.name, script, cfg.device,
                cfg.dali_py_num_workers)


def check_inputs(recipe: Recipe, names: Sequence[str], data_root: str, save_report: str,
                 extra: Sequence[str] = ()) -> None:
    """The trainer's own usage checks (data root, manifests, model names, weights) for every
    dataset, before anything is launched or written: a suite never starts runs that can only
    fail. Every problem in one ConfigError, with the datasets that could run."""
    if not Path(data_root).is_dir():
        raise ConfigError(f"--data_root {data_root}: no such folder; nothing was started "
                          "(give the folder holding <dataset>/<manifest>.csv)")
    problems: Dict[str, List[str]] = {}
    for name in names:
        cfg = parse_config(["--dataset", name, "--data_root", str(data_root), "--save_report",
                            str(save_report), *extra], base=probe_options(recipe, name))
        try:
            check_names(cfg)
            check_data(cfg)
            check_weights(cfg)
        except (ConfigError, ValueError) as exc:  # ManifestError, RegistryError: ValueErrors
            problems.setdefault(str(exc), []).append(name)
    if problems:
        raise ConfigError(_problems_text(problems, [n for n in names if not any(
            n in bad for bad in problems.values())]))


def _problems_text(problems: Dict[str, List[str]], ready: List[str]) -> str:
    lines = [f"  {', '.join(bad)}: {message}" for message, bad in problems.items()]
    rest = (f"the datasets that can run: --datasets {','.join(ready)}" if ready
            else "no dataset can run")
    return "nothing was started:\n" + "\n".join(lines) + f"\n{rest}"


def seed_extras(seeds: Optional[Sequence[int]], extra: Sequence[str]) -> List[List[str]]:
    """The trainer flags of each seed's pass: one pass with ``extra`` alone without seeds."""
    if not seeds:
        return [list(extra)]
    if "--seed" in extra:
        raise ConfigError("give seeds with --seeds only, not also --seed")
    return [[*extra, "--seed", str(seed)] for seed in dict.fromkeys(seeds)]


def dry_run(recipe: Recipe, names: Sequence[str], args, extra: Sequence[str],
            launcher: Launcher) -> None:
    """Print what the suite would do for each dataset: the exact command or batch script."""
    for name in names:
        task = make_task(recipe, name, args.data_root, args.save_report, launcher.topology,
                         extra)
        done = find_complete(args.save_report, name, task.config_hash,
                             task.topology.world_size, args.data_root)
        state = f"done ({done[0]})" if done else "to run"
        print(f"{name}: {state}\n{textwrap.indent(launcher.describe(task), '  ')}")
