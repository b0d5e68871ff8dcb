"""A suite's run: :class:`Drive` claims each dataset under its lock, skips it when done,
follows a live job an earlier suite started for it, starts it when the launcher has room and
judges each run as it ends; :func:`run_suite` runs a recipe's datasets with it."""
from __future__ import annotations

import collections
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from tqdm import tqdm

from eval_encoder import checkpoint as ckpt
from eval_encoder.config import ConfigError, results_root
from eval_encoder.launch import (
    LAUNCHERS,
    Entry,
    Job,
    Launcher,
    LaunchError,
    LocalLauncher,
    SuiteState,
    Task,
    Topology,
)
from eval_encoder.launch.base import TRAINER
from eval_encoder.launch.process import sigterm_interrupts, stream_process
from eval_encoder.suite.books import Outcome, conclude, find_complete, kinds_text, new_entry
from eval_encoder.suite.locks import lock_path, try_lock
from eval_encoder.suite.plan import check_extra_flags, make_task, protocol_label
from eval_encoder.suite.recipes import Recipe
from eval_encoder.suite.show import _describe, _say

log = logging.getLogger(__name__)


def say_resume(save_report: str, dataset: str, chash: str) -> None:
    """A dataset cut off mid-run continues from its checkpoint: say which (the trainer
    finds it itself, under the default checkpoint folder of this configuration)."""
    found = ckpt.find(ckpt.default_dir(save_report, dataset, chash))
    if found:
        _say(f"{dataset}: resuming from the checkpoint {found[0]}")


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
            return Outcome(task.dataset, "skipped", done[0], float(done[1]["reported"]["top1"]),
                           kinds=kinds_text(done[1]))
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


def check_wait(launcher: Launcher, wait: bool) -> None:
    """``--no_wait`` needs a launcher whose runs outlive the suite."""
    if not (wait or launcher.detached):
        raise ConfigError(f"--no_wait: the {launcher.name} launcher's runs end with the suite; "
                          "use a scheduler's (--launcher slurm)")


def run_suite(recipe: Recipe, data_root: str, save_report: Optional[str] = None,
              datasets: Optional[Sequence[str]] = None, nproc: int = 1,
              extra: Sequence[str] = (), launcher: Any = stream_process,
              script: Path = TRAINER, wait_lock: bool = True,
              topology: Optional[Topology] = None, wait: bool = True) -> List[Outcome]:
    """Run ``recipe`` over ``datasets`` (default: its own) with ``launcher``: a
    :class:`~eval_encoder.launch.Launcher`, or a function ``(cmd, log_path) -> (status,
    output tail)`` that runs one command (the local launcher's, one dataset at a time);
    ``save_report`` None: the default results root."""
    save_report = results_root() if save_report is None else save_report
    check_extra_flags(extra)
    topology = topology or Topology(nproc_per_node=nproc)
    if not isinstance(launcher, Launcher):
        launcher = LocalLauncher({"parallel": 1}, topology, runner=launcher)
    check_wait(launcher, wait)
    names = list(datasets) if datasets else recipe.datasets
    tasks = [make_task(recipe, name, data_root, save_report, topology, extra, script)
             for name in names]
    return Drive(launcher, recipe.name, data_root, save_report, wait_lock, wait).run(tasks)
