"""``suite status`` and ``suite collect``: follow up, from the suite's state file, on the jobs
a suite started (a scheduler's outlive it)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from eval_encoder import record as rec
from eval_encoder.config import DEFAULT_RESULTS, RESULTS_ENV, ConfigError, results_root
from eval_encoder.launch import LAUNCHERS, Entry, LaunchError, SuiteState
from eval_encoder.parsing import ArgumentParser
from eval_encoder.suite.books import Outcome
from eval_encoder.suite.launchers import _add_launcher_options, _launcher_for
from eval_encoder.suite.locks import lock_path, try_lock
from eval_encoder.suite.plan import protocol_label
from eval_encoder.suite.runner import Drive
from eval_encoder.suite.show import _summary


def _follow_parser(command: str, what: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=f"python -m eval_encoder suite {command}",
                            description=what)
    parser.add_argument("recipe", help="the recipe (its file, or its name)")
    parser.add_argument("--save_report", default=results_root(),
                        help=f"as given to the suite (default ${RESULTS_ENV}, else "
                             f"{DEFAULT_RESULTS}: now {results_root()})")
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
