"""Run one recipe (a leaderboard row) over its datasets: ``python -m eval_encoder suite``.

A recipe (``probes/<name>.yaml``) is the probe options of one encoder configuration --
every key a ProbeConfig / CodecOptions field, exactly as ``--config`` takes them -- plus one
suite-only key that the suite strips before the trainer sees the file::

    model_family: sampling
    ...                      # any probe option
    nnodes: 2                # optional: torchrun's multi-node keys go to torchrun, not the trainer
    suite:
      datasets: [ssv2, diving48]       # required: the row's datasets, in run order
      per_dataset:                     # optional: options for one dataset only
        diving48: {static_abs_thresh: 126}
      description: one line for people
      launcher: slurm                  # optional: how the runs start (default local)
      slurm: {partition: gpu, time: "12:00:00"}   # optional: a launcher's settings

For each dataset the suite writes the probe options (merged with that dataset's
``per_dataset`` entry) to ``<save_report>/suite/<recipe>/<dataset>.yaml`` and runs
``attentive_probe.py --config <that> --dataset D --data_root R --save_report S [flags]``
(through torchrun when there is more than one process; flags the suite does not know go to
the trainer and win over the recipe). Epochs and batch size come from the dataset cards
unless the recipe sets them.

How a run starts is the launcher's business (``eval_encoder/launch``): ``local`` runs
torchrun here, one dataset at a time or ``--parallel N`` at once, or joins other nodes
(``--nnodes``/``--rdzv_endpoint``, one suite per node); ``slurm`` submits one batch job per
dataset and follows it (``--no_wait``: submit and return; ``suite status``/``suite collect``
follow up later). Every launcher has the same interface: the suite never branches on it.

Resuming: a dataset is skipped when ``<save_report>/runs/<dataset>/`` holds a complete
record with the same ``config_hash`` -- computed exactly as the trainer does, from the very
argv it will receive -- and the same world size (the batch size is per process, so another
world size is another experiment). A run that ends without writing a record gets a failed
record written by the suite (saying how it ended: exit status, or the SLURM state, and where
its log is), and the suite goes on with the next dataset. It ends with the recipe's row of
the leaderboard; the exit status is 0 only when every dataset is complete (or, with
``--no_wait``, submitted).

Two suites on one ``--save_report``: each dataset of a recipe is claimed under a lock
(``<save_report>/suite/<recipe>/<dataset>.lock``, fcntl.flock), held for the whole run by a
local launcher and while submitting by a scheduler's; a dataset whose job an earlier suite
submitted and that is still queued or running is followed, not submitted again. The suite's
jobs are kept in ``<save_report>/suite/<recipe>/state.json``. Every file the suite writes
goes through a uniquely named temporary file.

A local trainer runs in its own process group and dies with the suite (see
``eval_encoder/launch/process.py``); SLURM jobs outlive it.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import socket
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from eval_encoder import record as rec
from eval_encoder.config import ConfigError, ProbeConfig, apply_values, load_yaml
from eval_encoder.encoders import check_names
from eval_encoder.flags import build_parser
from eval_encoder.probe.args import parse_config
from eval_encoder.launch import (LAUNCHERS, TORCHRUN_KEYS, Ended, Entry, Job, LaunchError,
                                 Launcher, LocalLauncher, SuiteState, Task, Topology)
from eval_encoder.launch.base import TRAINER, settings_from, write_atomic
from eval_encoder.launch.process import (LAUNCHER_ENV, STOP_GRACE_S, Interrupted,  # noqa: F401
                                         die_with_parent, sigterm_interrupts, stream_process)
from eval_encoder.launch.torchrun import parse_nnodes
from eval_encoder.logs import setup_logging
from eval_encoder.registry import RegistryError, method_label
from eval_encoder.text import did_you_mean

log = logging.getLogger(__name__)

SUITE_KEY = "suite"
SUITE_FIELDS = ("datasets", "per_dataset", "description", "launcher", *LAUNCHERS)
# options the suite sets itself for every dataset; a recipe or extra flag must not
OWNED = ("dataset", "data_root", "save_report", "config")
DEFAULT_SAVE_REPORT = "results"
DEFAULT_LAUNCHER = "local"
DONE = ("complete", "skipped")


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


@dataclass
class Outcome:
    """What happened to one dataset of a suite run."""

    dataset: str
    status: str  # "skipped" (already complete) | "complete" | "failed" | "busy" (another
    # suite holds the dataset's lock and --no_wait_lock was given) | "submitted" (queued,
    # not waited for: --no_wait) | "running" (``suite collect``: not ended yet)
    record_path: Optional[Path] = None
    top1: Optional[float] = None
    wall_s: float = 0.0
    error: Optional[str] = None
    protocol: str = ""  # the protocol the dataset's run follows (part of its config hash)
    job: Optional[str] = None  # the launcher's job id and the run's log
    log: Optional[str] = None


# ----------------------------------------------------------------------------- recipes
def recipe_path(name: str) -> str:
    """A recipe file as given, else the shipped (or $EVAL_ENCODER_PROBES) recipe of that name,
    so ``suite ov_encoder_large_8f`` works from any folder and after a wheel install."""
    if os.path.exists(name) or os.sep in name or name.endswith((".yaml", ".yml")):
        return name
    from eval_encoder.listing import recipes_dir

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
    cfg = ProbeConfig()
    apply_values(cfg, data, path)  # unknown keys and bad values fail here, by name
    try:  # as do a misspelt family or model name, before any dataset's run
        check_names(cfg)
    except (RegistryError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    datasets = _dataset_list(suite.get("datasets"), f"{path}: {SUITE_KEY}.datasets")
    per_dataset = _per_dataset(suite.get("per_dataset") or {}, datasets, path)
    torchrun = {k: data.pop(k) for k in TORCHRUN_KEYS if k in data}
    return Recipe(Path(path), data, datasets, per_dataset, str(suite.get("description") or ""),
                  _launcher_name(suite.get("launcher"), path), _launch_sections(suite, path),
                  torchrun)


def _per_dataset(per_dataset: Any, datasets: List[str], path: str) -> Dict[str, Dict[str, Any]]:
    if not isinstance(per_dataset, dict):
        raise ConfigError(f"{path}: {SUITE_KEY}.per_dataset must map dataset -> options")
    for name, options in per_dataset.items():
        where = f"{path}: {SUITE_KEY}.per_dataset.{name}"
        if name not in datasets:
            raise ConfigError(f"{where}: {name!r} is not in {SUITE_KEY}.datasets {datasets}")
        if not isinstance(options, dict) or set(options) & set(OWNED):
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
    """The probe options of ``dataset``: the recipe's, then its per-dataset entry (torchrun's
    keys are not among them: they go to torchrun)."""
    return {**recipe.probe, **recipe.per_dataset.get(dataset, {})}


def write_probe_yaml(recipe: Recipe, dataset: str, save_report: str) -> Path:
    """Write the trainer's ``--config`` file; kept next to the records so a run can be redone
    by hand and the path in a record's config stays valid."""
    path = Path(save_report) / "suite" / recipe.name / f"{dataset}.yaml"
    header = f"# written by `python -m eval_encoder suite` from {recipe.path} for {dataset}\n"
    write_atomic(path, header + yaml.safe_dump(probe_options(recipe, dataset), sort_keys=False))
    return path


# ----------------------------------------------------------------------------- locks
def lock_path(save_report: str, recipe_name: str, dataset: str, node_rank: int = 0) -> Path:
    """The (recipe, dataset) lock; the other nodes of a multi-node suite have their own."""
    suffix = f".node{node_rank}" if node_rank else ""
    return Path(save_report) / "suite" / recipe_name / f"{dataset}{suffix}.lock"


@contextlib.contextmanager
def dataset_lock(save_report: str, recipe_name: str, dataset: str, wait: bool = True):
    """Hold the (recipe, dataset) lock while the body runs; yields False without it when
    another suite holds it and ``wait`` is off. The lock is an fcntl.flock on
    ``<save_report>/suite/<recipe>/<dataset>.lock`` and ends with this process."""
    path = lock_path(save_report, recipe_name, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        held = _take_lock(fd, path, wait)
        if held:
            _note_owner(fd)
        yield held
    finally:
        os.close(fd)  # releases the lock


def _take_lock(fd: int, path: Path, wait: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
    if not wait:
        return False
    _say(f"{path.parent.name} / {path.stem}: another suite is running it ({owner}); waiting "
         f"for {path} (--no_wait_lock skips the dataset instead)")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return True


def _note_owner(fd: int) -> None:
    """Who holds the lock, for the message of a suite that finds it taken."""
    owner = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner.encode(), 0)


def try_lock(path: Path) -> Tuple[Optional[contextlib.ExitStack], str]:
    """Take the lock at ``path`` without waiting: (its holder, to close when done; "") or,
    when another suite holds it, (None, who holds it)."""
    stack = contextlib.ExitStack()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    stack.callback(os.close, fd)  # closing releases the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
        stack.close()
        return None, owner
    _note_owner(fd)
    return stack, ""


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
    from eval_encoder.files import file_sha256
    from eval_encoder.video.manifest import load_card, split_paths

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


def failure_record(argv: Sequence[str], config_hash: str, message: str, wall_s: float,
                   world_size: int, launch: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A schema-v1 failed record for a run that ended without writing one.

    Row labels come from the config as the trainer makes them (it could not say more: the
    encoder was never built here), so the leaderboard can mark the cell as failed. ``launch``
    keeps what the launcher knows of the end (a SLURM job's id, state, exit code and log).
    """
    cfg = parse_config(list(argv))
    record = {
        "schema": rec.SCHEMA, "schema_version": rec.SCHEMA_VERSION,
        "run_id": rec.new_run_id(cfg.dataset), "status": "failed", "error": message,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": round(wall_s, 2),
        "dataset": {"name": cfg.dataset},
        "encoder": {"family": cfg.model_family, "model_name": cfg.model_name,
                    "model_weight": cfg.model_weight, "spec": None},
        "method": method_label(cfg),
        "arch": cfg.arch_label or "", "res": cfg.input_size, "frames": cfg.num_frames,
        "token_budget": None, "heads": [], "reported": None,
        "config": rec.config_block(cfg), "sources": dict(cfg.sources), "config_hash": config_hash,
        "versions": rec.software_versions(), "git_commit": rec.git_commit(),
        "world_size": world_size, "device": None,
    }
    if launch:
        record["launch"] = launch
    return record


# ----------------------------------------------------------------------------- tasks
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


def new_entry(task: Task, launcher: str, job: Job, data_root: str, save_report: str) -> Entry:
    """The state line of a task started as ``job`` (with the records it must not count)."""
    folder = rec.records_dir(save_report, task.dataset)
    before = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
    return Entry(task.dataset, launcher, job.id, job.log, task.config_hash,
                 task.topology.world_size, list(task.argv), str(data_root), str(save_report),
                 before, time.time())


def say_resume(save_report: str, dataset: str, chash: str) -> None:
    """A dataset cut off mid-run continues from its checkpoint: say which (the trainer
    finds it itself, under the default checkpoint folder of this configuration)."""
    from eval_encoder import checkpoint as ckpt

    found = ckpt.find(ckpt.default_dir(save_report, dataset, chash))
    if found:
        _say(f"{dataset}: resuming from the checkpoint {found[0]}")


def conclude(entry: Entry, ended: Ended, keeps_books: bool = True) -> Outcome:
    """What a run that has ended leaves: its complete record, the trainer's own failed
    record, or -- neither written -- a failed record by the suite saying how it ended.
    Only the suite that keeps the books (the first node's) writes records."""
    wall = time.time() - entry.started
    folder = rec.records_dir(entry.save_report, entry.dataset)
    new = records_since(entry.save_report, entry.dataset, entry.config_hash,
                        {folder / name for name in entry.before})
    complete = [(p, d) for p, d in new if d.get("status") == "complete"]
    if complete and ended.code in (0, None):
        path, data = complete[-1]
        return Outcome(entry.dataset, "complete", path, float(data["reported"]["top1"]), wall)
    how = f" ({ended.what}; log {entry.log})" if ended.launch else ""
    if new:  # the trainer recorded its own failure (its error says why)
        path, data = new[-1]
        error = (data.get("error") or f"exit status {ended.code}") + how
        return Outcome(entry.dataset, "failed", path, None, wall, error)
    last = " | ".join(line.strip() for line in ended.tail.strip().splitlines()[-5:])
    message = (f"{ended.what} without writing a record (record written by the suite); full "
               f"output: {entry.log}; last lines: {last}")
    if not keeps_books:
        return Outcome(entry.dataset, "failed", None, None, wall, message.replace(
            "record written by the suite", "the first node's suite records it"))
    path = rec.write_record(failure_record(entry.argv, entry.config_hash, message, wall,
                                           entry.world_size, ended.launch), entry.save_report)
    return Outcome(entry.dataset, "failed", path, None, wall, message)


# ----------------------------------------------------------------------------- the drive
@dataclass
class Running:
    """A started (or followed) run: its state line, its job and the lock it holds."""

    entry: Entry
    job: Job
    lock: Optional[contextlib.ExitStack] = None
    state: str = ""

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


class Drive:
    """A suite's pass over its datasets with one launcher: claim each dataset (skip it when
    done, follow a live job an earlier suite submitted for it), start it when the launcher
    has room, poll what runs and judge each run as it ends. ``wait`` off: return once every
    dataset is started (a detached launcher's jobs run on)."""

    def __init__(self, launcher: Launcher, recipe_name: str, data_root: str, save_report: str,
                 wait_lock: bool = True, wait: bool = True):
        self.launcher, self.recipe = launcher, recipe_name
        self.data_root, self.save_report = str(data_root), str(save_report)
        self.wait, self.wait_lock = wait, wait_lock and wait
        self.books = launcher.topology.keeps_books
        self.state = SuiteState(Path(save_report) / "suite" / recipe_name)
        self.outcomes: Dict[str, Outcome] = {}
        self.running: Dict[str, Running] = {}
        self.argv: Dict[str, List[str]] = {}
        self.told: set = set()
        self.bar = None
        self.left_as = "submitted"  # what a job left running is, when not waiting

    def run(self, tasks: Sequence[Task]) -> List[Outcome]:
        """Start, follow and judge ``tasks``; their outcomes in the same order."""
        self.argv = {t.dataset: list(t.argv) for t in tasks}
        self._loop(collections.deque(tasks))
        return [self.outcomes[t.dataset] for t in tasks]

    def follow(self, entries: Sequence[Entry]) -> List[Outcome]:
        """Judge the jobs of ``entries`` (started by an earlier suite) that have ended, and,
        with ``wait``, wait for the others; the rest are "running" outcomes."""
        self.left_as = "running"
        for e in entries:
            self.argv[e.dataset] = list(e.argv)
            self.running[e.dataset] = Running(e, Job(e.job, e.log))
        self._loop(collections.deque())
        return [self.outcomes[e.dataset] for e in entries]

    def _loop(self, todo: collections.deque) -> None:
        with sigterm_interrupts(), self._progress(len(todo) + len(self.running)):
            try:
                while todo or self.running:
                    moved = self._start_more(todo)
                    changed = self._poll()
                    if not self.wait and not todo:
                        self._leave_running()
                    elif not (moved or changed):
                        time.sleep(self.launcher.poll_s)
            except KeyboardInterrupt as exc:
                self._interrupt(exc)
                raise

    def _start_more(self, todo: collections.deque) -> bool:
        """Claim datasets while the launcher has room; True if any was started or settled."""
        moved, later = False, []
        while todo and len(self.running) < self.launcher.capacity:
            task = todo.popleft()
            claimed = self._claim(task)
            if claimed is None:  # busy: try again later
                later.append(task)
                continue
            if isinstance(claimed, Outcome):
                self._done(task.dataset, claimed)
            else:
                self.running[task.dataset] = claimed
            moved = True
        todo.extend(later)
        return moved

    # ------------------------------------------------------------------ claiming a dataset
    def _claim(self, task: Task) -> Union[Outcome, Running, None]:
        """Skip, follow or start ``task`` under its lock; None: busy, try again later."""
        path = lock_path(self.save_report, self.recipe, task.dataset, task.topology.node_rank)
        lock, owner = try_lock(path)
        if lock is None:
            return self._busy(task, f"another suite is running it ({owner})", str(path),
                              f"lock {path}")
        try:
            return self._claimed(task, lock)
        except BaseException:
            lock.close()
            raise

    def _claimed(self, task: Task, lock: contextlib.ExitStack) -> Union[Outcome, Running, None]:
        done = find_complete(self.save_report, task.dataset, task.config_hash,
                             task.topology.world_size, self.data_root)
        if done:
            lock.close()
            self._note_skipped(task, done[0])
            return Outcome(task.dataset, "skipped", done[0], float(done[1]["reported"]["top1"]))
        live = self._live_entry(task)
        if live is not None:
            lock.close()
            return self._attach(task, live)
        say_resume(self.save_report, task.dataset, task.config_hash)
        entry = new_entry(task, self.launcher.name, Job("", str(task.log_path)),
                          self.data_root, self.save_report)
        self._note(entry)  # a run in this suite's hands (no job yet)
        _say(f"[{self._index(task.dataset)}] {self.recipe} / {task.dataset}: starting")
        try:
            job = self.launcher.start(task)
        except LaunchError as exc:
            lock.close()
            entry.status, entry.error = "failed", str(exc)
            self._note(entry)
            return Outcome(task.dataset, "failed", error=str(exc))
        entry.job, entry.log = job.id, job.log
        self._note(entry)
        if self.launcher.detached:  # the job outlives this suite: its state line guards it
            lock.close()
            lock = None
            _say(f"{task.dataset}: {self.launcher.name} job {job.id}, log {job.log}")
        return Running(entry, job, lock)

    def _note(self, entry: Entry) -> None:
        """Write ``entry`` into the suite state (the first node's suite keeps it)."""
        if self.books:
            self.state.put(entry)

    def _note_skipped(self, task: Task, record: Path) -> None:
        """A complete dataset has a state line too, so that ``suite status`` lists it (the
        line of the job that made the record is kept)."""
        known = self.state.read().get(task.dataset)
        if known is not None and known.record == str(record):
            return
        entry = new_entry(task, "", Job("", ""), self.data_root, self.save_report)
        entry.status, entry.record = "complete", str(record)
        self._note(entry)

    def _live_entry(self, task: Task) -> Optional[Entry]:
        """The state line of a job an earlier suite started for this very run, if that job
        is still queued or running."""
        entry = self.state.read().get(task.dataset)
        if (entry is None or entry.status != "running" or not entry.job
                or (entry.config_hash, entry.world_size)
                != (task.config_hash, task.topology.world_size)):
            return None
        return entry if LAUNCHERS.get(entry.launcher).alive(entry.job) else None

    def _attach(self, task: Task, live: Entry) -> Union[Running, Outcome, None]:
        who = f"{live.launcher} job {live.job} of an earlier suite is running it"
        if live.launcher != self.launcher.name:
            return self._busy(task, who, f"job {live.job}", f"job {live.job}")
        _say(f"{task.dataset}: {who}: following it (log {live.log})")
        return Running(live, Job(live.job, live.log))

    def _busy(self, task: Task, who: str, what: str, where: str) -> Optional[Outcome]:
        if not self.wait_lock:
            return Outcome(task.dataset, "busy", error=f"another suite is running it ({where}); "
                           "not waited for (--no_wait_lock)")
        if task.dataset not in self.told:
            self.told.add(task.dataset)
            _say(f"{self.recipe} / {task.dataset}: {who}; waiting for {what} (--no_wait_lock "
                 "skips the dataset instead)")
        return None

    # ------------------------------------------------------------------ following runs
    def _poll(self) -> bool:
        """Poll the running jobs; judge those that ended. True if anything changed."""
        if not self.running:
            return False
        try:
            polls = self.launcher.poll([r.job for r in self.running.values()])
        except LaunchError as exc:
            log.warning("%s (asking again in %.0f s)", exc, self.launcher.poll_s)
            return False
        changed = False
        for dataset, run in list(self.running.items()):
            now = polls.get(run.job.id)
            if now is not None and now.ended is not None:
                run.release()
                del self.running[dataset]
                self._done(dataset, conclude(run.entry, now.ended, self.books), run.entry)
                changed = True
            elif now is not None and now.state != run.state:
                run.state = now.state
                _say(f"{dataset}: {self.launcher.name} job {run.job.id} {now.state}")
                changed = True
        self._show_states()
        return changed

    def _leave_running(self) -> None:
        for dataset, run in list(self.running.items()):
            self._done(dataset, Outcome(dataset, self.left_as,
                                        job=run.job.id, log=run.job.log, error=run.state))
        self.running.clear()

    def _interrupt(self, exc: KeyboardInterrupt) -> None:
        jobs = [r.job for r in self.running.values()]
        note = self.launcher.interrupt(jobs, getattr(exc, "signum", signal.SIGINT))
        for run in self.running.values():
            run.release()
        _say(f"{self.recipe}: interrupted: {note}")

    def _done(self, dataset: str, outcome: Outcome, entry: Optional[Entry] = None) -> None:
        if outcome.status != "busy":
            outcome.protocol = protocol_label(self.argv[dataset])
        self.outcomes[dataset] = outcome
        if entry is not None and outcome.status in ("complete", "failed"):
            entry.status, entry.error = outcome.status, outcome.error
            entry.record = str(outcome.record_path) if outcome.record_path else None
            self._note(entry)
        _say(f"[{self._index(dataset)}] {self.recipe} / {dataset}: {_describe(outcome)}")
        if self.bar is not None:
            self.bar.update(1)

    def _index(self, dataset: str) -> str:
        names = list(self.argv)
        return f"{names.index(dataset) + 1}/{len(names)}"

    # ------------------------------------------------------------------ progress display
    @contextlib.contextmanager
    def _progress(self, total: int):
        """A bar of datasets done, with the jobs' states, while output is not passed through
        (on a terminal only)."""
        if self.launcher.echoes or total == 0:
            yield
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=self.recipe, unit="dataset", file=sys.stderr,
                  disable=None, dynamic_ncols=True) as bar:
            self.bar = bar
            try:
                yield
            finally:
                self.bar = None

    def _show_states(self) -> None:
        if self.bar is not None:
            counts = collections.Counter((r.state or "starting").split()[0]
                                         for r in self.running.values())
            self.bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


# ----------------------------------------------------------------------------- suites
def run_suite(recipe: Recipe, data_root: str, save_report: str = DEFAULT_SAVE_REPORT,
              datasets: Optional[Sequence[str]] = None, nproc: int = 1,
              extra: Sequence[str] = (), launcher: Any = stream_process,
              script: Path = TRAINER, wait_lock: bool = True,
              topology: Optional[Topology] = None, wait: bool = True) -> List[Outcome]:
    """Run ``recipe`` over ``datasets`` (default: its own) with ``launcher``: a
    :class:`~eval_encoder.launch.Launcher`, or a function ``(cmd, log_path) -> (status,
    output tail)`` that runs one command (the local launcher's, one dataset at a time)."""
    check_extra_flags(extra)
    topology = topology or Topology(nproc_per_node=nproc)
    if not isinstance(launcher, Launcher):
        launcher = LocalLauncher({"parallel": 1}, topology, runner=launcher)
    if not (wait or launcher.detached):
        raise ConfigError(f"--no_wait: the {launcher.name} launcher's runs end with the suite; "
                          "use a scheduler's (--launcher slurm)")
    names = list(datasets) if datasets else recipe.datasets
    tasks = [make_task(recipe, name, data_root, save_report, topology, extra, script)
             for name in names]
    return Drive(launcher, recipe.name, data_root, save_report, wait_lock, wait).run(tasks)


def _describe(o: Outcome) -> str:
    said = f"[{o.protocol} protocol] " if o.protocol else ""
    if o.status == "skipped":
        return f"{said}already complete (top-1 {o.top1:.2f}%), skipped: {o.record_path}"
    if o.status == "complete":
        return f"{said}complete in {o.wall_s:.0f} s, top-1 {o.top1:.2f}%: {o.record_path}"
    if o.status == "busy":
        return f"skipped: {o.error}"
    if o.status in ("submitted", "running", "interrupted"):
        return f"{said}{o.status}: job {o.job} {o.error or ''} (log {o.log})"
    return f"{said}FAILED after {o.wall_s:.0f} s: {o.error} (record {o.record_path})"


def _say(text: str) -> None:
    from tqdm import tqdm

    with tqdm.external_write_mode(file=sys.stdout):  # above a progress bar, if one is shown
        print(f"== suite {text}", flush=True)


def recipe_row(outcomes: Sequence[Outcome], fmt: str = "md") -> str:
    """The leaderboard row(s) of this suite run: its datasets as the benchmark columns."""
    from eval_encoder import leaderboard as lb

    paths = [o.record_path for o in outcomes if o.record_path is not None]
    if not paths:  # queued or busy only: no record to show yet
        return "(no run recorded yet: no leaderboard row)\n"
    # failed runs too: the board lists each failure with its record's error
    board = lb.build_board([lb.load_record(p) for p in paths], [o.dataset for o in outcomes])
    return lb.render(board, fmt)


# ----------------------------------------------------------------------------- command line
def build_suite_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval_encoder suite",
        description="Run a recipe (probes/<name>.yaml) over its datasets; a rerun resumes. "
                    "Other flags go to the trainer (attentive_probe.py) and win over the recipe. "
                    "`suite status <recipe>` and `suite collect <recipe>` follow submitted jobs.")
    parser.add_argument("recipe", help="recipe YAML (e.g. probes/ov_encoder_large_8f.yaml) or a "
                        "shipped recipe's name (ov_encoder_large_8f; see `ls`)")
    parser.add_argument("--data_root", required=True,
                        help="folder holding <dataset>/<manifest>.csv and the videos")
    parser.add_argument("--datasets", help="comma-separated subset to run (default: the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="run every dataset once per seed (head init, sampling and "
                             "augmentation); the leaderboard shows their mean and spread")
    parser.add_argument("--save_report", default=DEFAULT_SAVE_REPORT,
                        help="records go to <save_report>/runs/<dataset>/ "
                             f"(default {DEFAULT_SAVE_REPORT})")
    parser.add_argument("--dry_run", action="store_true",
                        help="print each dataset's command (or batch script) and whether it is "
                             "done; run nothing")
    parser.add_argument("--no_wait_lock", action="store_true",
                        help="skip a dataset that another suite on this --save_report is "
                             "running, instead of waiting for it")
    parser.add_argument("--launcher", choices=list(LAUNCHERS), default=None,
                        help="how runs start: local torchrun or SLURM jobs (default: the "
                             f"recipe's suite.launcher, else {DEFAULT_LAUNCHER})")
    parser.add_argument("--no_wait", action="store_true",
                        help="submit and return (a scheduler's launcher); `suite status` and "
                             "`suite collect` follow the jobs")
    _add_torchrun_flags(parser.add_argument_group("processes and nodes (torchrun's flags)"))
    _add_launcher_options(parser)
    from eval_encoder.logs import add_verbosity_flags

    add_verbosity_flags(parser)  # -v/-q
    return parser


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


def seed_extras(seeds: Optional[Sequence[int]], extra: Sequence[str]) -> List[List[str]]:
    """The trainer flags of each seed's pass: one pass with ``extra`` alone without seeds."""
    if not seeds:
        return [list(extra)]
    if "--seed" in extra:
        raise ConfigError("give seeds with --seeds only, not also --seed")
    return [[*extra, "--seed", str(seed)] for seed in dict.fromkeys(seeds)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder suite``; exit 0 when every dataset is complete (with
    ``--no_wait``: complete or submitted), 1 otherwise, 2 for a recipe or option that cannot
    be used. ``suite status|collect <recipe>`` follow a suite's jobs."""
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FOLLOW:
        return FOLLOW[argv[0]](argv[1:])
    parser = build_suite_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        recipe = load_recipe(args.recipe)
        names = (_dataset_list(args.datasets, "--datasets") if args.datasets else recipe.datasets)
        check_extra_flags(extra)
        launcher = make_launcher(recipe, args, topology_from(recipe, args))
        if args.dry_run:
            dry_run(recipe, names, args, extra, launcher)
            return 0
        if args.seeds and launcher.detached:
            raise ConfigError("--seeds runs the seeds one after another here; with a "
                              "scheduler, submit one suite per --seed")
        outcomes = []
        for seed_extra in seed_extras(args.seeds, extra):
            outcomes += run_suite(recipe, args.data_root, args.save_report, names,
                                  extra=seed_extra, launcher=launcher,
                                  wait_lock=not args.no_wait_lock, topology=launcher.topology,
                                  wait=not args.no_wait)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("\ninterrupted: run the same command again to resume (finished datasets are kept)",
              file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    return _summary(recipe.name, outcomes, args.save_report, args.no_wait)


def _summary(name: str, outcomes: Sequence[Outcome], save_report: str, submitted_ok: bool) -> int:
    """Print the outcomes and the recipe's leaderboard row; the exit status."""
    print(f"\n{name}: " + ", ".join(f"{o.dataset} {o.status}" for o in outcomes) + "\n")
    print(recipe_row(outcomes), end="")
    waiting = [o for o in outcomes if o.status in ("submitted", "running", "interrupted")]
    if waiting:
        print(f"\n{len(waiting)} job(s) not ended: `python -m eval_encoder suite status {name} "
              f"--save_report {save_report}` shows them, `suite collect` gathers them")
    ok = DONE + (("submitted",) if submitted_ok else ())
    return 0 if all(o.status in ok for o in outcomes) else 1


# ----------------------------------------------------------------------------- status, collect
def _follow_parser(command: str, what: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m eval_encoder suite {command}",
                                     description=what)
    parser.add_argument("recipe", help="the recipe (its file, or its name)")
    parser.add_argument("--save_report", default=DEFAULT_SAVE_REPORT,
                        help=f"as given to the suite (default {DEFAULT_SAVE_REPORT})")
    return parser


def _state_of(args) -> Tuple[str, SuiteState, Dict[str, Entry]]:
    name = Path(args.recipe).stem
    state = SuiteState(Path(args.save_report) / "suite" / name)
    return name, state, state.read()


def _nothing_started(state: SuiteState) -> int:
    print(f"no suite state at {state.path}: nothing was started there", file=sys.stderr)
    return 1


def _usage_error(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def status_main(argv: Sequence[str]) -> int:
    """``suite status <recipe>``: each dataset's job, its state now, and its record or log."""
    args = _follow_parser("status", status_main.__doc__).parse_args(list(argv))
    try:
        name, state, entries = _state_of(args)
    except ConfigError as exc:
        return _usage_error(exc)
    if not entries:
        return _nothing_started(state)
    rows = [("dataset", "status", "job", "now", "record / log")]
    rows += [_status_row(name, e) for e in entries.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"{name} ({state.path})")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    return 0


def _status_row(name: str, e: Entry) -> Tuple[str, str, str, str, str]:
    job = f"{e.launcher} {e.job}" if e.job else "-"
    if e.status != "running":
        return e.dataset, e.status, job, "", e.record or e.log
    lock, owner = try_lock(lock_path(e.save_report, name, e.dataset))
    if lock is None:
        return e.dataset, "running", job, f"lock held by {owner}", e.log
    lock.close()
    cls = LAUNCHERS.get(e.launcher)
    ended = "ended: `suite collect` records it" if cls.detached else "stopped with its suite"
    try:
        now = cls.states([e.job]).get(e.job, ended) if e.job else ended
    except LaunchError as exc:
        now = f"unknown ({exc})"
    return e.dataset, "running", job, now, e.log


def collect_main(argv: Sequence[str]) -> int:
    """``suite collect <recipe>``: judge the suite's jobs that have ended (a failed record
    for a job that ended without one), list the others, print the recipe's row."""
    parser = _follow_parser("collect", collect_main.__doc__)
    parser.add_argument("--wait", action="store_true", help="wait for the jobs still running")
    _add_launcher_options(parser)  # e.g. --poll_s while waiting
    args = parser.parse_args(list(argv))
    try:
        name, state, entries = _state_of(args)
        outcomes = {k: _recorded_outcome(e) for k, e in entries.items() if e.status != "running"}
        for launcher_name in sorted({e.launcher for e in entries.values()}):
            followed = _still_running(name, entries, launcher_name)
            if followed:
                launcher = _launcher_for(launcher_name, vars(args))
                drive = Drive(launcher, name, followed[0].data_root, followed[0].save_report,
                              wait=args.wait)
                outcomes.update(zip([e.dataset for e in followed], drive.follow(followed)))
        outcomes.update(_not_followed(name, entries, outcomes))
    except ConfigError as exc:
        return _usage_error(exc)
    if not entries:
        return _nothing_started(state)
    return _summary(name, [outcomes[k] for k in entries if k in outcomes], args.save_report, False)


def _still_running(name: str, entries: Dict[str, Entry], launcher_name: str) -> List[Entry]:
    """Running entries of one launcher whose jobs outlive suites and that no suite is
    claiming now (its lock is free)."""
    if not LAUNCHERS.get(launcher_name).detached:
        return []
    out = []
    for e in entries.values():
        if e.status == "running" and e.launcher == launcher_name and e.job:
            lock, _ = try_lock(lock_path(e.save_report, name, e.dataset))
            if lock is not None:
                lock.close()
                out.append(e)
    return out


def _not_followed(name: str, entries: Dict[str, Entry],
                  outcomes: Dict[str, Outcome]) -> Dict[str, Outcome]:
    """Running entries ``collect`` leaves alone: a suite runs them now (their lock is
    held), or a local run whose suite was stopped (the next suite run resumes it)."""
    out = {}
    for k, e in entries.items():
        if k in outcomes:
            continue
        lock, owner = try_lock(lock_path(e.save_report, name, e.dataset))
        if lock is None:
            out[k] = Outcome(k, "running", job=e.job, log=e.log,
                             error=f"(a suite runs it: {owner})")
        else:
            lock.close()
            out[k] = Outcome(k, "interrupted", job=e.job, log=e.log,
                             error="its suite stopped before it ended; rerun the suite "
                                   "to resume it")
    return out


def _recorded_outcome(e: Entry) -> Outcome:
    top1 = None
    if e.status == "complete" and e.record:
        top1 = float(rec.read_record(e.record)["reported"]["top1"])
    return Outcome(e.dataset, e.status, Path(e.record) if e.record else None, top1,
                   error=e.error, protocol=protocol_label(e.argv), job=e.job, log=e.log)


def _launcher_for(name: str, flags: Dict[str, Any]) -> Launcher:
    """A launcher to follow the jobs an earlier suite started with it."""
    cls = LAUNCHERS.get(name)
    return cls(settings_from(cls, {}, flags, name), Topology())


FOLLOW = {"status": status_main, "collect": collect_main}


if __name__ == "__main__":
    sys.exit(main())
