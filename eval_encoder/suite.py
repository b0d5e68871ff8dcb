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

Two suites on one ``--save_report``: each dataset of a recipe runs under a lock
(``<save_report>/suite/<recipe>/<dataset>.lock``, fcntl.flock), so the second suite waits
for the first (or, with ``--no_wait_lock``, leaves that dataset to it) and then finds its
record; every file the suite writes goes through a uniquely named temporary file.

The trainer runs in its own process group and dies with the suite: Ctrl-C and SIGTERM are
forwarded to its group (torchrun passes them on to its workers, which sit in sessions of
their own), and on Linux the trainer gets SIGTERM from the kernel when the suite dies, even
by ``kill -9`` (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import fcntl
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
# how long a stopped trainer may take to end before its group is killed (torchrun itself
# gives its workers 30 s between SIGTERM and SIGKILL)
STOP_GRACE_S = 60.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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
    status: str  # "skipped" (already complete) | "complete" | "failed" | "busy" (another
    # suite holds the dataset's lock and --no_wait_lock was given)
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
    path = Path(save_report) / "suite" / recipe.name / f"{dataset}.yaml"
    header = f"# written by `python -m eval_encoder suite` from {recipe.path} for {dataset}\n"
    write_atomic(path, header + yaml.safe_dump(probe_options(recipe, dataset), sort_keys=False))
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file in the same folder,
    so concurrent writers (two suites, a dry run) never tear the file or each other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- locks
def lock_path(save_report: str, recipe_name: str, dataset: str) -> Path:
    return Path(save_report) / "suite" / recipe_name / f"{dataset}.lock"


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


class Interrupted(KeyboardInterrupt):
    """The suite was asked to stop by ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class _Output:
    """Where the trainer's output goes: the log file, written unbuffered so a killed suite
    leaves every line it received; the terminal; and the last few thousand bytes."""

    def __init__(self, sink):
        self.sink = sink
        self.out = getattr(sys.stdout, "buffer", None)
        self.tail: collections.deque = collections.deque()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)
        if self.out is not None:
            self.out.write(chunk)
            self.out.flush()
        self.tail.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.tail[0]) > TAIL_BYTES:
            self.size -= len(self.tail.popleft())

    def text(self) -> str:
        return b"".join(self.tail).decode("utf-8", "replace")[-TAIL_BYTES:]


def _child_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    # the trainer imports the very package this suite runs from, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRAINER.parents[1]),
                                                      env.get("PYTHONPATH")]))
    return env


def _prctl():
    """libc's prctl on Linux, else None (looked up before fork: the child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int = signal.SIGTERM) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the kernel send ``sig`` to the child when this process
    dies, ``kill -9`` included; None where prctl is unavailable (then only a suite that
    lives to see its stop signal takes the trainer down)."""
    prctl, parent = _prctl(), os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the suite died before the line above took effect
            os.kill(os.getpid(), sig)
    return preexec


def stream_process(cmd: Sequence[str], log_path: Path) -> Tuple[int, str]:
    """Run ``cmd``, passing its output through as it comes (progress bars included) and
    into ``log_path``; returns the exit status and the output's last few thousand bytes.

    The child leads its own session and process group: a stop (Ctrl-C, SIGTERM) of the
    suite is forwarded to that group, which is killed if it has not ended within
    STOP_GRACE_S; and the child gets SIGTERM if the suite dies without stopping it (see
    :func:`die_with_parent`).
    """
    with open(log_path, "wb", buffering=0) as sink, _sigterm_interrupts(), subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=_child_env(), start_new_session=True,
            preexec_fn=die_with_parent()) as proc:
        output = _Output(sink)
        try:
            while chunk := proc.stdout.read1(65536):
                output.write(chunk)
            code = proc.wait()
        except KeyboardInterrupt as exc:
            _stop_group(proc, getattr(exc, "signum", signal.SIGINT), output)
            raise
    return code, output.text()


@contextlib.contextmanager
def _sigterm_interrupts():
    """While a trainer runs, SIGTERM to the suite raises :class:`Interrupted` as Ctrl-C
    raises KeyboardInterrupt, so both are forwarded (signal handlers: main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum, _frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_group(proc: subprocess.Popen, signum: int, output: _Output) -> None:
    """Send ``signum`` to the child's group and keep passing its output on until it ends;
    SIGKILL the group after STOP_GRACE_S or at a second interrupt."""
    _signal_group(proc, signum)
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            _pass_on(proc, output, 0.2)
    except KeyboardInterrupt:  # asked a second time: stop waiting
        pass
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    while _pass_on(proc, output, 0.0):  # what it wrote last
        pass


def _pass_on(proc: subprocess.Popen, output: _Output, timeout: float) -> bool:
    """Pass on what the child wrote within ``timeout`` seconds; True if anything came."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    chunk = proc.stdout.read1(65536) if ready else b""
    if chunk:
        output.write(chunk)
    elif ready:  # end of output while the process is still ending: do not spin
        time.sleep(timeout)
    return bool(chunk)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:  # the group has ended already
        pass


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
                script: Path = TRAINER, wait_lock: bool = True) -> Outcome:
    """Run (or skip) one dataset of a recipe under its lock; never raises for a failed run.
    Another suite holding the lock is waited for, or with ``wait_lock`` off left to it."""
    with dataset_lock(save_report, recipe.name, dataset, wait_lock) as held:
        if not held:
            return Outcome(dataset, "busy", error=f"another suite is running it (lock "
                           f"{lock_path(save_report, recipe.name, dataset)}); not waited for "
                           "(--no_wait_lock)")
        argv = trainer_argv(write_probe_yaml(recipe, dataset, save_report), dataset,
                            data_root, save_report, extra)
        chash = expected_hash(argv)
        outcome = _run_or_skip(argv, chash, dataset, data_root, save_report, nproc, launcher,
                               script, recipe.name)
    outcome.protocol = protocol_label(argv)
    return outcome


def say_resume(save_report: str, dataset: str, chash: str) -> None:
    """A dataset cut off mid-run continues from its checkpoint: say which (the trainer
    finds it itself, under the default checkpoint folder of this configuration)."""
    from eval_encoder import checkpoint as ckpt

    found = ckpt.find(ckpt.default_dir(save_report, dataset, chash))
    if found:
        _say(f"{dataset}: resuming from the checkpoint {found[0]}")


def _run_or_skip(argv, chash: str, dataset: str, data_root: str, save_report: str, nproc: int,
                 launcher: Launcher, script: Path, recipe_name: str) -> Outcome:
    done = find_complete(save_report, dataset, chash, nproc, data_root)
    if done:
        path, data = done
        return Outcome(dataset, "skipped", path, float(data["reported"]["top1"]))
    say_resume(save_report, dataset, chash)
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
              script: Path = TRAINER, wait_lock: bool = True) -> List[Outcome]:
    """Run ``recipe`` over ``datasets`` (default: its own), one after the other."""
    check_extra_flags(extra)
    names = list(datasets) if datasets else recipe.datasets
    outcomes = []
    for i, dataset in enumerate(names, 1):
        _say(f"[{i}/{len(names)}] {recipe.name} / {dataset}: starting")
        outcome = run_dataset(recipe, dataset, data_root, save_report, nproc, extra, launcher,
                              script, wait_lock)
        _say(f"[{i}/{len(names)}] {recipe.name} / {dataset}: {_describe(outcome)}")
        outcomes.append(outcome)
    return outcomes


def _describe(o: Outcome) -> str:
    said = f"[{o.protocol} protocol] " if o.protocol else ""
    if o.status == "skipped":
        return f"{said}already complete (top-1 {o.top1:.2f}%), skipped: {o.record_path}"
    if o.status == "complete":
        return f"{said}complete in {o.wall_s:.0f} s, top-1 {o.top1:.2f}%: {o.record_path}"
    if o.status == "busy":
        return f"skipped: {o.error}"
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
    parser.add_argument("--no_wait_lock", action="store_true",
                        help="skip a dataset that another suite on this --save_report is "
                             "running, instead of waiting for it")
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
                             args.nproc_per_node, extra, wait_lock=not args.no_wait_lock)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("\ninterrupted: run the same command again to resume (finished datasets are kept)",
              file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    print(f"\n{recipe.name}: " + ", ".join(f"{o.dataset} {o.status}" for o in outcomes) + "\n")
    print(recipe_row(outcomes), end="")
    return 0 if all(o.status in ("complete", "skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
