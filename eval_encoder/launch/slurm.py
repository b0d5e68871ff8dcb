"""The SLURM launcher: each dataset of a suite is one batch job.

The suite writes ``<save_report>/suite/<recipe>/<dataset>.sbatch`` and submits it with
``sbatch``. The job asks for ``--nodes`` nodes with one task each; the batch step starts
one torchrun per node through ``srun``, meeting in a c10d rendezvous on a free port of the
first node. Its output goes to ``<dataset>.<job id>.log`` beside the script.

Time limits and preemption: the job is ``--requeue``-able and gets SIGUSR1 ``signal_time``
seconds before its time limit (``--signal=B:USR1@..``); the script traps it and requeues
itself (``scontrol requeue``). The requeued job reruns the same command, and the trainer
continues from its newest checkpoint (``--checkpoint_every_min`` sets how much can be lost).
A preempted job is requeued by SLURM itself (``--requeue``).

Job states come from ``squeue`` while a job is queued or running, then from ``sacct``
(``scontrol show job`` where accounting is off).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from eval_encoder.config import ConfigError, require
from eval_encoder.launch.base import Ended, Job, Launcher, Option, Poll, Task, write_atomic
from eval_encoder.launch.process import LAUNCHER_ENV, PACKAGE_ROOT, log_tail

QUERY_TIMEOUT_S = 60
# job states that are not an end (squeue's and sacct's words)
GOING_ON = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED",
                      "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STAGE_OUT",
                      "SIGNALING", "STOPPED", "RESV_DEL_HOLD"})


class LaunchError(RuntimeError):
    """A job could not be submitted (the scheduler's own message included)."""


class SlurmLauncher(Launcher):
    """Submits one batch job per dataset; the jobs outlive the suite."""

    name = "slurm"
    detached = True
    capacity = 1 << 30  # every dataset is submitted at once; SLURM schedules them
    options = (
        Option("partition", str, None, "sbatch --partition (default: the cluster's)"),
        Option("account", str, None, "sbatch --account (default: yours)"),
        Option("time", str, None, "sbatch --time limit per job, e.g. 12:00:00 (default: the "
               "partition's); a job near it requeues itself and resumes"),
        Option("gpus_per_node", int, None, "sbatch --gpus-per-node (default: --nproc_per_node; "
               "none with --device cpu)", aliases=("gpus-per-node",)),
        Option("cpus_per_task", int, None, "sbatch --cpus-per-task, one task per node (default: "
               "--nproc_per_node x (1 + --dali_py_num_workers))", aliases=("cpus-per-task",)),
        Option("signal_time", int, 120, "seconds before the time limit at which a job "
               "requeues itself (sbatch --signal=B:USR1@..; default 120)"),
        Option("sbatch", str, (), "another sbatch option for every job, e.g. "
               "--sbatch=--qos=high (repeatable)", repeat=True),
        Option("poll_s", float, 15.0, "seconds between squeue calls while waiting (default 15)"),
    )

    def __init__(self, settings, topology):
        super().__init__(settings, topology)
        self.poll_s = float(self.settings["poll_s"])
        check_settings(self.settings)
        given = [f"--{k}" for k in ("rdzv_endpoint", "rdzv_backend", "node_rank")
                 if getattr(topology, k)]
        require(not given, f"{', '.join(given)}: the slurm launcher sets the rendezvous itself "
                "(c10d on a free port of the job's first node); give --nnodes only")

    # ------------------------------------------------------------------ the batch script
    def describe(self, task: Task) -> str:
        return self.script(task)

    def script(self, task: Task) -> str:
        """The batch script of ``task``, exactly as it is submitted."""
        head = ["#!/bin/bash",
                f"# {task.recipe} / {task.dataset}, written by `python -m eval_encoder suite "
                "--launcher slurm`;", "# `sbatch` this file to run it by hand.",
                *[f"#SBATCH {option}" for option in self.sbatch_options(task)]]
        return "\n".join(head) + "\n" + BODY.format(
            unset=" ".join(LAUNCHER_ENV), root=shlex.quote(str(PACKAGE_ROOT)),
            python=shlex.quote(sys.executable), srun=" ".join(self.srun_options(task)),
            torchrun=self.torchrun_line(task))

    def sbatch_options(self, task: Task) -> List[str]:
        s, nodes = self.settings, task.topology.nnodes
        gpus = s["gpus_per_node"]
        if gpus is None:
            gpus = 0 if task.device == "cpu" else task.topology.nproc_per_node
        folder = task.folder.resolve()
        wanted = [f"--job-name={task.recipe}.{task.dataset}", f"--nodes={nodes}",
                  "--ntasks-per-node=1", f"--cpus-per-task={self.cpus(task)}",
                  f"--gpus-per-node={gpus}" if gpus else None,
                  f"--time={s['time']}" if s["time"] else None,
                  f"--partition={s['partition']}" if s["partition"] else None,
                  f"--account={s['account']}" if s["account"] else None,
                  f"--output={folder / task.dataset}.%j.log", "--open-mode=append",
                  f"--chdir={os.getcwd()}", "--requeue", f"--signal=B:USR1@{s['signal_time']}",
                  *s["sbatch"]]
        return [w for w in wanted if w]

    def cpus(self, task: Task) -> int:
        given = self.settings["cpus_per_task"]
        return int(given) if given else task.topology.nproc_per_node * (1 + task.workers)

    def srun_options(self, task: Task) -> List[str]:
        # srun (22.05+) does not take --cpus-per-task from the job: say it again
        return [f"--nodes={task.topology.nnodes}", "--ntasks-per-node=1",
                f"--cpus-per-task={self.cpus(task)}", "--kill-on-bad-exit=1"]

    def torchrun_line(self, task: Task) -> str:
        t = task.topology
        flags = [f"--nnodes={t.nnodes}", f"--nproc_per_node={t.nproc_per_node}",
                 "--rdzv_backend=c10d", '--rdzv_endpoint="$head_node:$port"',
                 '--rdzv_id="$SLURM_JOB_ID"']
        return " \\\n    ".join(["-m torch.distributed.run " + " ".join(flags),
                                 shlex.join([str(task.script), *task.argv])])

    # ------------------------------------------------------------------ jobs
    def start(self, task: Task) -> Job:
        path = task.folder / f"{task.dataset}.sbatch"
        write_atomic(path, self.script(task))
        out = _slurm(["sbatch", "--parsable", str(path)], f"sbatch refused {path}")
        job_id = out.strip().split(";")[0]
        return Job(job_id, str(task.folder.resolve() / f"{task.dataset}.{job_id}.log"))

    def poll(self, jobs: Sequence[Job]) -> Dict[str, Poll]:
        live = squeue([j.id for j in jobs])
        return {j.id: live[j.id] if j.id in live else left_queue(j) for j in jobs}

    def interrupt(self, jobs: Sequence[Job], signum: int) -> str:
        ids = " ".join(j.id for j in jobs)
        return (f"its SLURM jobs keep running ({ids or 'none'}): follow them with "
                "`python -m eval_encoder suite status <recipe>`, gather them with "
                f"`suite collect <recipe>`, or stop them with `scancel {ids}`")

    @classmethod
    def alive(cls, job_id: str) -> bool:
        try:
            return job_id in squeue([job_id])
        except LaunchError:  # no SLURM here: the job cannot be followed from this machine
            return False

    @classmethod
    def states(cls, job_ids: Sequence[str]) -> Dict[str, str]:
        live = squeue(job_ids)
        return {j: f"{live[j].state}, {live[j].detail}" if j in live
                else final_state(j)["state"] for j in job_ids}


BODY = """set -u
# A time limit is near (SIGUSR1, --signal): requeue. The rerun runs the same command and the
# trainer continues from its newest checkpoint.
requeue() {{
    echo "== $(date -u +%FT%TZ) SIGUSR1: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
}}
trap requeue USR1
unset {unset}
export PYTHONUNBUFFERED=1 PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=$({python} -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
echo "== $(date -u +%FT%TZ) job $SLURM_JOB_ID, start ${{SLURM_RESTART_COUNT:-0}}, on $SLURM_JOB_NODELIST; rendezvous $head_node:$port"
srun {srun} \\
    {python} {torchrun} &
srun_pid=$!
wait "$srun_pid"
status=$?
while kill -0 "$srun_pid" 2>/dev/null; do  # a trapped signal ended the wait, not srun
    wait "$srun_pid"
    status=$?
done
echo "== $(date -u +%FT%TZ) srun ended with status $status"
exit "$status"
"""


# ----------------------------------------------------------------------------- queries
def _slurm(cmd: List[str], what: str) -> str:
    """Run a SLURM command; its stdout, or LaunchError with its own message."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except FileNotFoundError:
        raise LaunchError(f"{what}: `{cmd[0]}` not found (is SLURM installed here, on a "
                          "login node?)") from None
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{what}: `{cmd[0]}` did not answer in {QUERY_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise LaunchError(f"{what}: {' '.join((proc.stderr or proc.stdout).split())}")
    return proc.stdout


def squeue(ids: Sequence[str]) -> Dict[str, Poll]:
    """The jobs among ``ids`` that are queued or running, with their state."""
    if not ids:
        return {}
    try:
        out = _slurm(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r|%M|%N"], "squeue")
    except LaunchError as exc:
        if "Invalid job id" in str(exc):  # every one of them has left the queue
            return {}
        raise
    found = {}
    for line in out.splitlines():
        job, state, reason, elapsed, nodes = (line.split("|") + [""] * 5)[:5]
        where = f" on {nodes}" if nodes else ""
        why = f" ({reason})" if reason not in ("", "None") else ""
        found[job.strip()] = Poll(f"{state}{where or why}", detail=f"{elapsed} run")
    return found


def final_state(job_id: str) -> Dict[str, str]:
    """State, exit code and reason of a job that has left the queue (``UNKNOWN`` once
    neither sacct nor slurmctld remembers it)."""
    try:
        out = _slurm(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,Reason"],
                     "sacct")
        state, code, reason = (out.strip().splitlines()[-1].split("|") + ["", "", ""])[:3]
        return {"state": state.split()[0], "exit_code": code, "reason": reason}
    except (LaunchError, IndexError):
        pass
    try:
        out = _slurm(["scontrol", "show", "job", "-o", job_id], "scontrol show job")
    except LaunchError:
        return {"state": "UNKNOWN", "exit_code": "", "reason": "no longer known to SLURM"}
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return {"state": fields.get("JobState", "UNKNOWN"), "exit_code": fields.get("ExitCode", ""),
            "reason": fields.get("Reason", "")}


def left_queue(job: Job) -> Poll:
    """A job squeue no longer lists: how it ended (accounting may lag behind the queue: a
    state that is not final yet means it has not ended)."""
    facts = final_state(job.id)
    if facts["state"] in GOING_ON:
        return Poll(facts["state"])
    return Poll("ended", ended(job, facts))


def ended(job: Job, facts: Dict[str, str]) -> Ended:
    """How a job ended: its state, exit code and log."""
    code = exit_status(facts["exit_code"]) if facts["state"] != "UNKNOWN" else None
    reason = facts["reason"] if facts["reason"] not in ("", "None") else ""
    what = (f"SLURM job {job.id} ended {facts['state']} (exit code {facts['exit_code'] or '?'}"
            + (f", reason {reason}" if reason else "") + ")")
    return Ended(code, log_tail(job.log), what,
                 {"launcher": "slurm", "job": job.id, **facts, "log": job.log})


def exit_status(code: str) -> Optional[int]:
    """sacct's ``exit:signal`` as one status (128 + signal for a signal)."""
    try:
        status, _, sig = code.partition(":")
        return 128 + int(sig) if int(sig or 0) else int(status)
    except ValueError:
        return None


def check_settings(settings: Dict) -> None:
    """Values SLURM would refuse late, refused here with the option's name."""
    for name in ("gpus_per_node", "cpus_per_task"):
        value = settings.get(name)
        if value is not None and value < (0 if name == "gpus_per_node" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} {value}: out of range")
