"""How a suite's runs start: one interface (:class:`~eval_encoder.launch.base.Launcher`),
registered by name, so the suite never branches on the launcher.

- ``local``: torchrun on this machine (``--standalone``), or on several machines joined by a
  rendezvous (``--nnodes``/``--rdzv_endpoint``, one suite per node); ``--parallel N``
  datasets at once on shares of the GPUs or CPUs.
- ``slurm``: one batch job per dataset, one torchrun per node through ``srun``; the jobs
  outlive the suite, requeue themselves near their time limit and resume from checkpoints.
"""
from eval_encoder.launch.base import Ended, Entry, Job, Launcher, Option, Poll, SuiteState, Task
from eval_encoder.launch.local import LocalLauncher
from eval_encoder.launch.slurm import LaunchError, SlurmLauncher
from eval_encoder.launch.torchrun import TORCHRUN_KEYS, Topology
from eval_encoder.registry import Registry

LAUNCHERS: Registry[type] = Registry("launcher")
LAUNCHERS.register(LocalLauncher.name, LocalLauncher)
LAUNCHERS.register(SlurmLauncher.name, SlurmLauncher)

__all__ = ["LAUNCHERS", "Ended", "Entry", "Job", "LaunchError", "Launcher", "LocalLauncher",
           "Option", "Poll", "SlurmLauncher", "SuiteState", "Task", "TORCHRUN_KEYS", "Topology"]
