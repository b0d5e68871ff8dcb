"""The one interface every launcher offers the suite, and the suite's state file.

A launcher starts a dataset's run (a :class:`Task`) as a :class:`Job`, says how its jobs
stand (:meth:`Launcher.poll`), and what to do when the suite is interrupted. What differs
between launchers is data on the class -- ``detached`` (its jobs outlive the suite: a
scheduler runs them), its options (suite flags and recipe keys) -- so the suite never asks
which launcher it has. Launchers are registered by name in :data:`eval_encoder.launch.LAUNCHERS`.
"""
from __future__ import annotations

import abc
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from eval_encoder.files import file_lock, write_atomic  # noqa: F401  (write_atomic re-exported)
from eval_encoder.config import ConfigError
from eval_encoder.launch import torchrun
from eval_encoder.launch.torchrun import Topology

TRAINER = Path(__file__).resolve().parents[1] / "attentive_probe.py"


@dataclass(frozen=True)
class Option:
    """A launcher setting: the suite flag ``--<name>`` (plus ``aliases``, e.g. SLURM's dashed
    spelling) and the recipe key ``suite: {<launcher>: {<name>: value}}``."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    aliases: Tuple[str, ...] = ()
    repeat: bool = False  # the flag may be given many times (a list)


@dataclass
class Task:
    """One dataset of a suite, ready to start: the trainer's flags and where traces go."""

    recipe: str
    dataset: str
    argv: List[str]
    config_hash: str
    topology: Topology
    folder: Path  # <save_report>/suite/<recipe>
    script: Path = TRAINER
    device: str = "auto"  # the trainer's --device (what to ask a scheduler for)
    workers: int = 0  # decode workers per process (CPUs to ask for)

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.dataset}.log"

    def command(self) -> List[str]:
        return torchrun.command(self.script, self.argv, self.topology)


@dataclass
class Job:
    """A started task: the launcher's id for it and its log."""

    id: str
    log: str
    handle: Any = None  # the launcher's own (a thread, a result); never stored


@dataclass
class Ended:
    """How a job ended."""

    code: Optional[int]  # exit status; None where the launcher no longer knows it
    tail: str  # the last lines of its output
    what: str  # for messages: "the trainer exited with status 1", "SLURM job 7 ended FAILED ..."
    launch: Dict[str, Any] = field(default_factory=dict)  # facts for a failure record


@dataclass
class Poll:
    """A job's state now, in the launcher's words (``detail``: what changes by the minute,
    such as the time it has run); ``ended`` once it has ended."""

    state: str
    ended: Optional[Ended] = None
    detail: str = ""


class Launcher(abc.ABC):
    """How a suite's runs start. Subclasses set ``name``, ``detached`` and ``options``."""

    name: ClassVar[str]
    detached: ClassVar[bool] = False  # jobs outlive the suite (submitted to a scheduler)
    options: ClassVar[Tuple[Option, ...]] = ()
    poll_s: float = 1.0  # seconds between polls of running jobs
    capacity: int = 1  # datasets at once
    echoes: bool = False  # passes its runs' output to the terminal (then no progress bar)

    def __init__(self, settings: Mapping[str, Any], topology: Topology):
        self.settings = dict(settings)
        self.topology = topology

    @abc.abstractmethod
    def describe(self, task: Task) -> str:
        """What starting ``task`` runs, exactly (printed by ``--dry_run``)."""

    @abc.abstractmethod
    def start(self, task: Task) -> Job:
        """Start ``task`` (run it, or submit it)."""

    @abc.abstractmethod
    def poll(self, jobs: Sequence[Job]) -> Dict[str, Poll]:
        """Each job's state by id, with how it ended once it has."""

    @abc.abstractmethod
    def interrupt(self, jobs: Sequence[Job], signum: int) -> str:
        """The suite is being stopped: stop or leave ``jobs``; returns what was done."""

    @classmethod
    def alive(cls, job_id: str) -> bool:
        """Whether a job an earlier suite noted in the state is still queued or running
        (a local run's liveness is its dataset's lock, which the suite checks itself)."""
        return False

    @classmethod
    def states(cls, job_ids: Sequence[str]) -> Dict[str, str]:
        """The state now of jobs an earlier suite noted, for ``suite status`` (unknown ones
        left out)."""
        return {}


def settings_from(launcher: type, recipe: Mapping[str, Any], flags: Mapping[str, Any],
                  where: str) -> Dict[str, Any]:
    """A launcher's settings: its options' defaults < the recipe's section < flags."""
    known = {o.name: o for o in launcher.options}
    unknown = sorted(set(recipe) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for the {launcher.name} launcher "
                          f"(allowed: {', '.join(known) or 'none'})")
    out = {name: o.default for name, o in known.items()}
    for name, value in recipe.items():
        out[name] = _coerce(known[name], value, f"{where}.{name}")
    out.update({k: v for k, v in flags.items() if k in known and v is not None})
    return out


def _coerce(option: Option, value: Any, where: str) -> Any:
    try:
        if option.repeat:
            return [option.type(v) for v in (value if isinstance(value, list) else [value])]
        return None if value is None else option.type(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot use {value!r} ({exc})") from None


# ----------------------------------------------------------------------------- state file
@dataclass
class Entry:
    """One dataset's line in the suite state: the job that runs (or ran) it and what is
    needed to judge its outcome later (``suite status`` / ``suite collect``)."""

    dataset: str
    launcher: str
    job: str
    log: str
    config_hash: str
    world_size: int
    argv: List[str]
    data_root: str
    save_report: str
    before: List[str]  # record files of the dataset when the job started
    started: float  # time.time() at the start
    status: str = "running"  # running | complete | failed | submitted
    record: Optional[str] = None
    error: Optional[str] = None


class SuiteState:
    """``<save_report>/suite/<recipe>/state.json``: the suite's jobs, per dataset. Every
    change is a read-modify-write under ``state.json.lock`` and an atomic replace."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "state.json"

    def read(self) -> Dict[str, Entry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path}: damaged suite state ({exc}); remove it to start "
                             "over (records are not affected)") from None
        return {name: Entry(**entry) for name, entry in data.get("datasets", {}).items()}

    @contextlib.contextmanager
    def update(self) -> Iterator[Dict[str, Entry]]:
        """Yield the entries to change in place; written back when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path.with_name("state.json.lock")):  # removed after the update
            entries = self.read()
            yield entries
            data = {"updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "datasets": {k: asdict(v) for k, v in entries.items()}}
            write_atomic(self.path, json.dumps(data, indent=2) + "\n")

    def put(self, entry: Entry) -> None:
        with self.update() as entries:
            entries[entry.dataset] = entry
