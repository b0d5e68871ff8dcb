"""Run one recipe (a leaderboard row) over its datasets: ``python -m eval_encoder suite``.

A recipe (``probes/<name>.yaml``) is the probe options of one encoder configuration --
every key a ProbeConfig / CodecOptions field, exactly as ``--config`` takes them -- plus one
suite-only key that the suite strips before the trainer sees the file::

    model_family: sampling
    ...                      # any probe option
    suite:
      datasets: [ssv2, diving48]       # required: the row's datasets, in run order
      per_dataset:                     # optional: options for one dataset only
        diving48: {static_abs_thresh: 126}
      description: one line for people

For each dataset the suite writes the probe options (merged with that dataset's
``per_dataset`` entry) to ``<save_report>/suite/<recipe>/<dataset>.yaml`` and runs
``attentive_probe.py --config <that> --dataset D --data_root R --save_report S [flags]``
(through torchrun when ``--nproc_per_node`` > 1; flags the suite does not know go to the
trainer and win over the recipe). Epochs and batch size come from the dataset cards unless
the recipe sets them.

Resuming: a dataset is skipped when ``<save_report>/runs/<dataset>/`` holds a complete
record with the same ``config_hash`` -- computed exactly as the trainer does, from the very
argv it will receive -- and the same world size (the batch size is per process, so another
world size is another experiment). A trainer that exits non-zero without writing a record
gets a failed record written by the suite, and the suite goes on with the next dataset.
It ends with the recipe's row of the leaderboard; the exit status is 0 only when every
dataset is complete.
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from eval_encoder import record as rec
from eval_encoder.config import (ConfigError, ProbeConfig, apply_values, build_parser, load_yaml,
                                 parse_config)
from eval_encoder.logs import setup_logging

log = logging.getLogger(__name__)

SUITE_KEY = "suite"
SUITE_FIELDS = ("datasets", "per_dataset", "description")
# options the suite sets itself for every dataset; a recipe or extra flag must not
OWNED = ("dataset", "data_root", "save_report", "config")
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT")
TRAINER = Path(__file__).resolve().parent / "attentive_probe.py"
DEFAULT_SAVE_REPORT = "results"
TAIL_BYTES = 4000


@dataclass
class Recipe:
    """A parsed recipe: probe options, the datasets of its row and per-dataset options."""

    path: Path
    probe: Dict[str, Any]
    datasets: List[str]
    per_dataset: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    description: str = ""

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Outcome:
    """What happened to one dataset of a suite run."""

    dataset: str
    status: str  # "skipped" (already complete) | "complete" | "failed"
    record_path: Optional[Path] = None
    top1: Optional[float] = None
    wall_s: float = 0.0
    error: Optional[str] = None
    protocol: str = ""  # the protocol the dataset's run follows (part of its config hash)


# ----------------------------------------------------------------------------- recipes
def load_recipe(path: str) -> Recipe:
    """Read and check a recipe: probe keys must be config fields, the suite key well formed,
    every dataset a known card. Errors are ConfigError naming the file and the key."""
    data = load_yaml(path)
    suite = data.pop(SUITE_KEY, None)
    if not isinstance(suite, dict):
        raise ConfigError(f"{path}: needs a '{SUITE_KEY}:' mapping with 'datasets: [...]'")
    unknown = sorted(set(suite) - set(SUITE_FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} under '{SUITE_KEY}:' "
                          f"(allowed: {', '.join(SUITE_FIELDS)})")
    owned = sorted(set(data) & set(OWNED))
    if owned:
        raise ConfigError(f"{path}: {owned} are set by the suite for each dataset; list datasets "
                          f"under '{SUITE_KEY}: datasets:' and pass --data_root/--save_report")
    apply_values(ProbeConfig(), data, path)  # unknown keys and bad values fail here, by name
    datasets = _dataset_list(suite.get("datasets"), f"{path}: {SUITE_KEY}.datasets")
    per_dataset = suite.get("per_dataset") or {}
    if not isinstance(per_dataset, dict):
        raise ConfigError(f"{path}: {SUITE_KEY}.per_dataset must map dataset -> options")
    for name, options in per_dataset.items():
        where = f"{path}: {SUITE_KEY}.per_dataset.{name}"
        if name not in datasets:
            raise ConfigError(f"{where}: {name!r} is not in {SUITE_KEY}.datasets {datasets}")
        if not isinstance(options, dict) or set(options) & set(OWNED):
            raise ConfigError(f"{where}: must be a mapping of probe options (not {list(OWNED)})")
        apply_values(ProbeConfig(), options, where)
    return Recipe(Path(path), data, datasets, per_dataset, str(suite.get("description") or ""))


def _dataset_list(value: Any, where: str) -> List[str]:
    """A non-empty list of distinct dataset names, each with a card."""
    from eval_encoder.video.manifest import cards_dir, load_card

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
    """The probe options of ``dataset``: the recipe's, then its per-dataset entry."""
    return {**recipe.probe, **recipe.per_dataset.get(dataset, {})}


def write_probe_yaml(recipe: Recipe, dataset: str, save_report: str) -> Path:
    """Write the trainer's ``--config`` file; kept next to the records so a run can be redone
    by hand and the path in a record's config stays valid."""
    folder = Path(save_report) / "suite" / recipe.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset}.yaml"
    header = f"# written by `python -m eval_encoder suite` from {recipe.path} for {dataset}\n"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(probe_options(recipe, dataset), sort_keys=False),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- one dataset
def trainer_argv(config_yaml: Path, dataset: str, data_root: str, save_report: str,
                 extra: Sequence[str] = ()) -> List[str]:
    """The trainer's command-line flags (also what its config_hash is computed from)."""
    return ["--config", str(config_yaml), "--dataset", dataset, "--data_root", str(data_root),
            "--save_report", str(save_report), *extra]


def check_extra_flags(extra: Sequence[str]) -> None:
    """Flags passed through to the trainer must be trainer flags and not ones the suite owns."""
    try:
        given = vars(build_parser("attentive_probe.py").parse_args(list(extra)))
    except SystemExit:
        raise ConfigError(f"not trainer flags: {' '.join(extra)} "
                          "(see attentive_probe.py --help)") from None
    owned = sorted(set(given) & set(OWNED))
    if owned:
        raise ConfigError(f"--{owned[0]} is set by the suite; use --datasets, --data_root, "
                          "--save_report or the recipe file")


def expected_hash(argv: Sequence[str]) -> str:
    """The config_hash the trainer will store for ``argv`` (same parse, same hash)."""
    return rec.config_hash(parse_config(list(argv)).to_dict())


def protocol_label(argv: Sequence[str]) -> str:
    """The protocol the trainer will follow for ``argv``, as the leaderboard labels it."""
    from eval_encoder.protocol import departures

    cfg = parse_config(list(argv))
    return cfg.protocol + ("*" if departures(cfg) else "")


def data_changed(record: Dict[str, Any], data_root: str) -> Optional[str]:
    """Why a finished record no longer describes the data under ``data_root`` (None: same).

    The config hash leaves the data root out (the same data may move), so the card version
    and the manifests' contents are compared here instead.
    """
    from eval_encoder.video.manifest import file_sha256, load_card, split_paths

    stored = record.get("dataset") or {}
    config = record.get("config") or {}
    card = load_card(stored.get("name", ""))
    if str(stored.get("version")) != card.version:
        return f"dataset card version {stored.get('version')} -> {card.version}"
    _, train_csv, val_csv = split_paths(card, data_root, config.get("train_data_csv_path"),
                                        config.get("val_data_csv_path"))
    for split, path in (("train", train_csv), ("val", val_csv)):
        current = file_sha256(path) if os.path.isfile(path) else None
        if current != stored.get(f"{split}_manifest_sha256"):
            return f"{split} manifest {path} differs from the one the record was made with"
    return None


def find_complete(save_report: str, dataset: str, config_hash: str, world_size: int,
                  data_root: Optional[str] = None) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest complete record of this dataset with this config hash and world size
    (and, given ``data_root``, made from the same card version and manifests)."""
    found = []
    for path in sorted(rec.records_dir(save_report, dataset).glob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        try:
            data = rec.read_record(str(path))
        except ValueError as exc:  # another schema: cannot be this run, say so and go on
            log.warning("ignoring %s when looking for finished runs: %s", path, exc)
            continue
        if data.get("status") == "complete" and data.get("config_hash") == config_hash:
            changed = data_changed(data, data_root) if data_root else None
            if changed:
                log.info("%s: same config but %s: not reused", path, changed)
            elif int(data.get("world_size") or 1) == world_size:
                found.append((str(data.get("created") or ""), path, data))
            else:
                log.info("%s: same config but world size %s (now %d): not reused", path,
                         data.get("world_size"), world_size)
    return max(found, key=lambda f: (f[0], f[1].name))[1:] if found else None


def records_since(save_report: str, dataset: str, config_hash: str,
                  before: set) -> List[Tuple[Path, Dict[str, Any]]]:
    """Records of this config written after ``before`` (a set of paths) was taken."""
    out = []
    for path in sorted(rec.records_dir(save_report, dataset).glob("*.json")):
        if path in before or path.name.startswith(".tmp-"):
            continue
        try:
            data = rec.read_record(str(path))
        except ValueError:
            continue
        if data.get("config_hash") == config_hash:
            out.append((path, data))
    return out


def launch_command(argv: Sequence[str], nproc: int, script: Path = TRAINER) -> List[str]:
    """``python attentive_probe.py ...`` for one process, torchrun (standalone) for more."""
    if nproc == 1:
        return [sys.executable, str(script), *argv]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *argv]


def stream_process(cmd: Sequence[str], log_path: Path) -> Tuple[int, str]:
    """Run ``cmd``, passing its output through as it comes (progress bars included) and
    into ``log_path``; returns the exit status and the output's last few thousand bytes."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    # the trainer imports the very package this suite runs from, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRAINER.parents[1]),
                                                      env.get("PYTHONPATH")]))
    tail: collections.deque = collections.deque()
    size = 0
    out = getattr(sys.stdout, "buffer", None)
    with open(log_path, "wb") as sink, subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
        try:
            while chunk := proc.stdout.read1(65536):
                sink.write(chunk)
                if out is not None:
                    out.write(chunk)
                    out.flush()
                tail.append(chunk)
                size += len(chunk)
                while size - len(tail[0]) > TAIL_BYTES:
                    size -= len(tail.popleft())
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=60)
            raise
    return code, b"".join(tail).decode("utf-8", "replace")[-TAIL_BYTES:]


def failure_record(argv: Sequence[str], config_hash: str, message: str, wall_s: float,
                   world_size: int) -> Dict[str, Any]:
    """A schema-v1 failed record for a trainer that died without writing one.

    Row labels come from the config as the trainer makes them (it could not say more: the
    encoder was never built here), so the leaderboard can mark the cell as failed.
    """
    cfg = parse_config(list(argv))
    return {
        "schema": rec.SCHEMA, "schema_version": rec.SCHEMA_VERSION,
        "run_id": rec.new_run_id(cfg.dataset), "status": "failed", "error": message,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": round(wall_s, 2),
        "dataset": {"name": cfg.dataset},
        "encoder": {"family": cfg.model_family, "model_name": cfg.model_name,
                    "model_weight": cfg.model_weight, "spec": None},
        "method": cfg.method_label or f"{cfg.model_family}/{cfg.model_name}",
        "arch": cfg.arch_label or "", "res": cfg.input_size, "frames": cfg.num_frames,
        "token_budget": None, "heads": [], "reported": None,
        "config": cfg.to_dict(), "sources": dict(cfg.sources), "config_hash": config_hash,
        "versions": rec.software_versions(), "git_commit": rec.git_commit(),
        "world_size": world_size, "device": None,
    }


Launcher = Callable[[Sequence[str], Path], Tuple[int, str]]


def run_dataset(recipe: Recipe, dataset: str, data_root: str, save_report: str, nproc: int,
                extra: Sequence[str] = (), launcher: Launcher = stream_process,
                script: Path = TRAINER) -> Outcome:
    """Run (or skip) one dataset of a recipe; never raises for a failed run."""
    argv = trainer_argv(write_probe_yaml(recipe, dataset, save_report), dataset, data_root,
                        save_report, extra)
    chash = expected_hash(argv)
    outcome = _run_or_skip(argv, chash, dataset, data_root, save_report, nproc, launcher,
                           script, recipe.name)
    outcome.protocol = protocol_label(argv)
    return outcome


def _run_or_skip(argv, chash: str, dataset: str, data_root: str, save_report: str, nproc: int,
                 launcher: Launcher, script: Path, recipe_name: str) -> Outcome:
    done = find_complete(save_report, dataset, chash, nproc, data_root)
    if done:
        path, data = done
        return Outcome(dataset, "skipped", path, float(data["reported"]["top1"]))
    folder = rec.records_dir(save_report, dataset)
    before = set(folder.glob("*.json")) if folder.is_dir() else set()
    log_path = Path(save_report) / "suite" / recipe_name / f"{dataset}.log"
    start = time.time()
    code, tail = launcher(launch_command(argv, nproc, script), log_path)
    wall = time.time() - start
    new = records_since(save_report, dataset, chash, before)
    complete = [(p, d) for p, d in new if d.get("status") == "complete"]
    if code == 0 and complete:
        path, data = complete[-1]
        return Outcome(dataset, "complete", path, float(data["reported"]["top1"]), wall)
    if new:  # the trainer recorded its own failure (its error says why)
        path, data = new[-1]
        error = data.get("error") or f"exit status {code}"
        return Outcome(dataset, "failed", path, None, wall, error)
    last = " | ".join(line.strip() for line in tail.strip().splitlines()[-5:])
    message = (f"the trainer exited with status {code} without writing a record (record "
               f"written by the suite); full output: {log_path}; last lines: {last}")
    path = rec.write_record(failure_record(argv, chash, message, wall, nproc), save_report)
    return Outcome(dataset, "failed", path, None, wall, message)


def run_suite(recipe: Recipe, data_root: str, save_report: str = DEFAULT_SAVE_REPORT,
              datasets: Optional[Sequence[str]] = None, nproc: int = 1,
              extra: Sequence[str] = (), launcher: Launcher = stream_process,
              script: Path = TRAINER) -> List[Outcome]:
    """Run ``recipe`` over ``datasets`` (default: its own), one after the other."""
    check_extra_flags(extra)
    names = list(datasets) if datasets else recipe.datasets
    outcomes = []
    for i, dataset in enumerate(names, 1):
        _say(f"[{i}/{len(names)}] {recipe.name} / {dataset}: starting")
        outcome = run_dataset(recipe, dataset, data_root, save_report, nproc, extra, launcher,
                              script)
        _say(f"[{i}/{len(names)}] {recipe.name} / {dataset}: {_describe(outcome)}")
        outcomes.append(outcome)
    return outcomes


def _describe(o: Outcome) -> str:
    said = f"[{o.protocol} protocol] " if o.protocol else ""
    if o.status == "skipped":
        return f"{said}already complete (top-1 {o.top1:.2f}%), skipped: {o.record_path}"
    if o.status == "complete":
        return f"{said}complete in {o.wall_s:.0f} s, top-1 {o.top1:.2f}%: {o.record_path}"
    return f"{said}FAILED after {o.wall_s:.0f} s: {o.error} (record {o.record_path})"


def _say(text: str) -> None:
    print(f"== suite {text}", flush=True)


def recipe_row(outcomes: Sequence[Outcome], fmt: str = "md") -> str:
    """The leaderboard row(s) of this suite run: its datasets as the benchmark columns."""
    from eval_encoder import leaderboard as lb

    paths = [o.record_path for o in outcomes if o.record_path is not None]
    board = lb.build_board([lb.load_record(p) for p in paths], [o.dataset for o in outcomes])
    return lb.render(board, fmt)


# ----------------------------------------------------------------------------- command line
def build_suite_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval_encoder suite",
        description="Run a recipe (probes/<name>.yaml) over its datasets; a rerun resumes. "
                    "Other flags go to the trainer (attentive_probe.py) and win over the recipe.")
    parser.add_argument("recipe", help="recipe YAML, e.g. probes/ov_encoder_large_8f.yaml")
    parser.add_argument("--data_root", required=True,
                        help="folder holding <dataset>/<manifest>.csv and the videos")
    parser.add_argument("--datasets", help="comma-separated subset to run (default: the recipe's)")
    parser.add_argument("--nproc_per_node", type=int, default=1,
                        help="processes per node (torchrun when > 1; default 1)")
    parser.add_argument("--save_report", default=DEFAULT_SAVE_REPORT,
                        help="records go to <save_report>/runs/<dataset>/ "
                             f"(default {DEFAULT_SAVE_REPORT})")
    parser.add_argument("--dry_run", action="store_true",
                        help="print each dataset's command and whether it is done; run nothing")
    return parser


def dry_run(recipe: Recipe, names: Sequence[str], args, extra: Sequence[str]) -> None:
    """Print what the suite would do for each dataset."""
    for name in names:
        argv = trainer_argv(write_probe_yaml(recipe, name, args.save_report), name,
                            args.data_root, args.save_report, extra)
        done = find_complete(args.save_report, name, expected_hash(argv), args.nproc_per_node,
                             args.data_root)
        state = f"done ({done[0]})" if done else "to run"
        print(f"{name}: {state}\n  {' '.join(launch_command(argv, args.nproc_per_node))}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder suite``; exit 0 when every dataset is complete, 1 otherwise,
    2 for a recipe or option that cannot be used."""
    setup_logging()
    parser = build_suite_parser()
    args, extra = parser.parse_known_args(argv)
    if args.nproc_per_node < 1:
        parser.error(f"--nproc_per_node must be >= 1, got {args.nproc_per_node}")
    try:
        recipe = load_recipe(args.recipe)
        names = (_dataset_list(args.datasets, "--datasets") if args.datasets else recipe.datasets)
        check_extra_flags(extra)
        if args.dry_run:
            dry_run(recipe, names, args, extra)
            return 0
        outcomes = run_suite(recipe, args.data_root, args.save_report, names,
                             args.nproc_per_node, extra)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume (finished datasets are kept)",
              file=sys.stderr)
        return 130
    print(f"\n{recipe.name}: " + ", ".join(f"{o.dataset} {o.status}" for o in outcomes) + "\n")
    print(recipe_row(outcomes), end="")
    return 0 if all(o.status in ("complete", "skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
