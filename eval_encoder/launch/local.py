"""The local launcher: torchrun on this machine (or on each of several, one suite per node).

One dataset at a time by default, in the suite's own thread, the trainer's output passed
through to the terminal. With ``--parallel N`` up to N datasets run at once, each in a thread
of its own, on its share of the GPUs (``CUDA_VISIBLE_DEVICES``) or, without GPUs, of the CPUs
(``taskset`` and ``OMP_NUM_THREADS``); their output goes to their logs only.
"""
from __future__ import annotations

import functools
import logging
import os
import shlex
import shutil
import socket
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from eval_encoder.config import require
from eval_encoder.launch.base import Ended, Job, Launcher, Option, Poll, Task
from eval_encoder.launch.process import log_tail, stop_live, stream_process

log = logging.getLogger(__name__)

# (cmd, log_path) -> (exit status, the output's tail)
Runner = Callable[[Sequence[str], "os.PathLike"], Tuple[int, str]]


class LocalLauncher(Launcher):
    """torchrun on this machine: ``--standalone``, or a rendezvous with other nodes."""

    name = "local"
    detached = False
    options = (Option("parallel", int, 1, "datasets run at once, each on its share of the "
                      "GPUs (CUDA_VISIBLE_DEVICES) or CPUs (default 1)"),)
    poll_s = 0.2

    def __init__(self, settings, topology, runner: Optional[Runner] = None):
        super().__init__(settings, topology)
        parallel = self.settings.get("parallel")
        self.capacity = 1 if parallel is None else int(parallel)
        require(self.capacity >= 1, f"--parallel must be >= 1, got {self.capacity}")
        require(self.capacity == 1 or topology.nnodes == 1, "--parallel with --nnodes > 1: each "
                "node's suite runs its datasets one after the other (or use --launcher slurm)")
        topology.flags()  # a multi-node layout without its endpoint fails now, not mid-suite
        self.echoes = self.capacity == 1
        self.runner = runner or functools.partial(stream_process, echo=self.echoes)
        self.free: Optional[List[List[str]]] = None  # command prefixes of the free shares

    def describe(self, task: Task) -> str:
        return shlex.join(self._prefix(task) + task.command())

    def start(self, task: Task) -> Job:
        # the suite's host and process, and the dataset: unique among the suite's jobs
        job = Job(f"{socket.gethostname()}:{os.getpid()}:{task.dataset}", str(task.log_path))
        if self.capacity == 1:  # here, in this thread: Ctrl-C and SIGTERM reach the child
            job.handle = {"result": self.runner(task.command(), task.log_path)}
            return job
        prefix = self._take_share(task)
        job.handle = {"prefix": prefix}
        job.handle["thread"] = threading.Thread(
            target=self._run, args=(job, prefix + task.command(), task), daemon=True,
            name=f"suite-{task.dataset}")
        job.handle["thread"].start()
        return job

    def _run(self, job: Job, cmd: List[str], task: Task) -> None:
        try:
            result = self.runner(cmd, task.log_path)
        except Exception as exc:  # the suite records it as the run's failure
            result = (1, f"{type(exc).__name__}: {exc}")
        self.free.append(job.handle["prefix"])  # free before the run counts as ended
        job.handle["result"] = result

    def poll(self, jobs: Sequence[Job]) -> Dict[str, Poll]:
        out = {}
        for job in jobs:
            if job.handle is None:  # an earlier suite's: it ended with that suite
                out[job.id] = Poll("ended", Ended(None, log_tail(job.log), "the run's suite "
                                                  "ended before it (stopped?)"))
                continue
            if "result" not in job.handle:
                out[job.id] = Poll("running")
                continue
            code, tail = job.handle["result"]
            said = f"the trainer exited with status {code}"
            out[job.id] = Poll("exited", Ended(code, tail, said))
        return out

    def interrupt(self, jobs: Sequence[Job], signum: int) -> str:
        threads = [j.handle["thread"] for j in jobs if j.handle and "thread" in j.handle]
        stop_live(signum, threads)
        return "its trainers were stopped"

    # ------------------------------------------------------------------ shares (--parallel)
    def _prefix(self, task: Task) -> List[str]:
        """The command prefix that confines a parallel run to its share (shown by a dry run:
        the first share)."""
        return [] if self.capacity == 1 else share_prefixes(self.capacity, task)[0]

    def _take_share(self, task: Task) -> List[str]:
        if self.free is None:
            self.free = share_prefixes(self.capacity, task)
        return self.free.pop(0)


def visible_gpus(device: str) -> List[str]:
    """The GPUs this process may use (none for ``--device cpu``)."""
    if device == "cpu":
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def share_prefixes(parallel: int, task: Task) -> List[List[str]]:
    """``parallel`` disjoint shares of the GPUs (each ``--nproc_per_node`` of them) or, with
    none, of the CPUs, as command prefixes (``env CUDA_VISIBLE_DEVICES=..`` / ``taskset``)."""
    nproc = task.topology.nproc_per_node
    gpus = visible_gpus(task.device)
    if gpus:
        require(parallel * nproc <= len(gpus), f"--parallel {parallel} x --nproc_per_node "
                f"{nproc} needs {parallel * nproc} GPUs; {len(gpus)} are visible")
        return [["env", f"CUDA_VISIBLE_DEVICES={','.join(gpus[i * nproc:(i + 1) * nproc])}"]
                for i in range(parallel)]
    cpus = sorted(os.sched_getaffinity(0))
    per = len(cpus) // parallel
    require(per >= 1, f"--parallel {parallel}: only {len(cpus)} CPUs to share")
    threads = max(1, per // nproc)
    pin = shutil.which("taskset")
    if not pin:
        log.warning("taskset not found: parallel runs share every CPU (OMP_NUM_THREADS=%d each)",
                    threads)
    return [([pin, "-c", ",".join(map(str, cpus[i * per:(i + 1) * per]))] if pin else [])
            + ["env", f"OMP_NUM_THREADS={threads}"] for i in range(parallel)]
