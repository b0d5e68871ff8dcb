"""A one-node SLURM cluster on this machine, for the SLURM tests and CI (standard library only).

    python3 tests/slurm_cluster.py start [--no-install]   # exit 0: started, 3: already up,
    python3 tests/slurm_cluster.py stop                   #   1: cannot start (says why)
    python3 tests/slurm_cluster.py status                 # then: export SLURM_CONF=<printed>

``start`` installs the distribution's ``slurm-wlm`` and ``munge`` packages when they are absent
(apt-get; root only), writes a ``slurm.conf`` for this machine under ``ROOT`` (its CPUs from
``nproc``, ``select/cons_tres``, ``proctrack/linuxproc``, ``task/none``, state and spool
folders under ``ROOT``, its own munge key and socket, ports 16817/16818 so a system SLURM is
left alone), starts ``munged``, ``slurmctld`` and ``slurmd`` directly (no systemd) and waits
until ``sinfo`` shows the node up. It is idempotent: a cluster this script started that still
answers is reused.

Each ``start`` takes a lease for its user (a process: the caller's shell on the command line,
the test process in the tests) and ``stop`` gives it back; the daemons are stopped when the
last live lease is given back, so a test session and CI, or two test sessions, can share the
cluster. Only the processes this script started are stopped, by the process ids (and start
times) it wrote down, never by name.

Requeued jobs wait ``cred_expire`` + 1 seconds before they may start again (120 s by
default); the cluster sets 10 s so that the requeue test stays short.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(os.environ.get("EVAL_ENCODER_SLURM_DIR", "/tmp/eval_encoder_slurm"))
CONF = ROOT / "slurm.conf"
PIDS = ROOT / "pids.json"
DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = ("slurm-wlm", "munge")
IDLE_TIMEOUT_S = 60.0
ALREADY_RUNNING = 3  # exit status of `start` that found the cluster up (not its to stop)


class Unavailable(RuntimeError):
    """SLURM cannot be started here; the message says why."""


@dataclass
class Cluster:
    conf: Path
    started: bool  # by this call; False: it was up already


# ----------------------------------------------------------------------------- processes
def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (/proc), None if it is gone (or a
    zombie, which is reaped when it is this process's child)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return fields[19]


def _ours_alive(pids: Dict[str, List]) -> bool:
    return bool(pids) and all(_start_time(pid) == start for pid, start in pids.values())


def _read_pids() -> Dict[str, List]:
    try:
        return json.loads(PIDS.read_text())
    except (OSError, ValueError):
        return {}


def _env() -> Dict[str, str]:
    return dict(os.environ, SLURM_CONF=str(CONF))


def _sinfo_states() -> List[str]:
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                             env=_env(), timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def _up(states: List[str]) -> bool:
    """The node answers and takes jobs (idle, or busy with some: mixed, allocated)."""
    return any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states)


@contextlib.contextmanager
def _exclusive():
    """One start or stop at a time (two test processes, CI and a test)."""
    try:
        ROOT.mkdir(parents=True, exist_ok=True)
        fh = open(ROOT / ".lock", "a+")
    except OSError as exc:
        raise Unavailable(f"cannot use {ROOT}: {exc}") from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ----------------------------------------------------------------------------- start
def start(install: bool = True, user: Optional[int] = None) -> Cluster:
    """Start the cluster (or reuse the one this script started) and take a lease for
    ``user`` (a process id, default this process); Unavailable says why it cannot start."""
    _check_root()
    with _exclusive():
        if _ours_alive(_read_pids()) and _up(_sinfo_states()):
            _take_lease(user)
            return Cluster(CONF, started=False)
        _check_installed(install)
        _stop_recorded()  # leftovers of an earlier start (some daemons died): ours only
        _fresh_folders()
        pids: Dict[str, List] = {}
        try:
            for name in DAEMONS:
                pids[name] = _launch(name)
                PIDS.write_text(json.dumps(pids))
                _wait_ready(name)
        except Unavailable:
            _stop_recorded()
            raise
        _take_lease(user)
    return Cluster(CONF, started=True)


def _take_lease(user: Optional[int]) -> None:
    pid = os.getpid() if user is None else user
    (ROOT / "leases").mkdir(exist_ok=True)
    (ROOT / "leases" / f"{pid}-{_start_time(pid)}").touch()


def _live_leases() -> List[Path]:
    """Leases whose process still runs (those of ended processes are removed)."""
    live = []
    for lease in (ROOT / "leases").glob("*-*"):
        pid, started = lease.name.split("-", 1)
        if _start_time(int(pid)) == started:
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def _check_root() -> None:
    if not sys.platform.startswith("linux"):
        raise Unavailable("SLURM needs Linux")
    if os.geteuid() != 0:
        raise Unavailable("starting SLURM daemons needs root (this cluster runs them as root)")


def _check_installed(install: bool) -> None:
    missing = [d for d in (*DAEMONS, "sbatch", "sinfo") if not shutil.which(d)]
    if missing and install:
        _install()
        missing = [d for d in (*DAEMONS, "sbatch", "sinfo") if not shutil.which(d)]
    if missing:
        raise Unavailable(f"SLURM is not installed ({', '.join(missing)} not found); "
                          f"`python3 tests/{Path(__file__).name} start` installs "
                          f"{' and '.join(PACKAGES)} with apt-get, as .ci/run does")


def _install() -> None:
    if not shutil.which("apt-get"):
        raise Unavailable("SLURM is not installed and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise Unavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")


def _fresh_folders() -> None:
    for sub in ("state", "spool", "log", "munge", "leases"):
        shutil.rmtree(ROOT / sub, ignore_errors=True)
        (ROOT / sub).mkdir(parents=True, mode=0o755)
    os.chmod(ROOT, 0o755)  # munged refuses a socket folder others may write to
    key = ROOT / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    os.chmod(key, 0o400)
    CONF.write_text(slurm_conf())


def slurm_conf() -> str:
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "# a one-node cluster for eval_encoder's tests (tests/slurm_cluster.py)",
        "ClusterName=evalci", f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmctldPort=16817", "SlurmdPort=16818", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge",
        # requeued jobs wait cred_expire + 1 s before they may start again (default 120 s)
        f"AuthInfo=socket={ROOT}/munge/munge.socket,cred_expire=10",
        f"StateSaveLocation={ROOT}/state", f"SlurmdSpoolDir={ROOT}/spool",
        f"SlurmctldPidFile={ROOT}/slurmctld.pid", f"SlurmdPidFile={ROOT}/slurmd.pid",
        f"SlurmctldLogFile={ROOT}/log/slurmctld.log", f"SlurmdLogFile={ROOT}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2", "KillWait=5", "MinJobAge=600",
        # look at pending jobs every few seconds (a requeued job's start waits for a pass)
        "SchedulerParameters=sched_interval=2,bf_interval=2",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


def _launch(name: str) -> List:
    """Start one daemon in the foreground of a session of its own; its [pid, start time]."""
    munge = ROOT / "munge"
    cmd = {"munged": ["munged", "-F", "--force", "--num-threads=10",
                      f"--socket={munge}/munge.socket", f"--key-file={munge}/munge.key",
                      f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed",
                      f"--log-file={ROOT}/log/munged.log"],
           "slurmctld": ["slurmctld", "-D"], "slurmd": ["slurmd", "-D"]}[name]
    with open(ROOT / "log" / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=_env(), start_new_session=True)
    time.sleep(0.1)
    return [proc.pid, _start_time(proc.pid)]


def _wait_ready(name: str) -> None:
    """Wait until ``name`` is up: munge's socket, the controller answering, the node idle."""
    ready = {"munged": lambda: (ROOT / "munge" / "munge.socket").exists(),
             "slurmctld": lambda: subprocess.run(["scontrol", "ping"], capture_output=True,
                                                 env=_env(), timeout=20).returncode == 0,
             "slurmd": lambda: "idle" in _sinfo_states()}[name]
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _ours_alive({name: _read_pids()[name]}):
            raise Unavailable(f"{name} exited at start: {_log_tail(name)}")
        if ready():
            return
        time.sleep(0.3)
    raise Unavailable(f"{name} not ready after {IDLE_TIMEOUT_S:.0f} s: {_log_tail(name)}")


def _log_tail(name: str) -> str:
    try:
        text = (ROOT / "log" / f"{name}.out").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-5:])


# ----------------------------------------------------------------------------- stop
def stop(user: Optional[int] = None) -> bool:
    """Give back ``user``'s lease; the last one cancels the jobs left on the cluster and
    ends the daemons this script started. True if they were stopped."""
    pid = os.getpid() if user is None else user
    with _exclusive():
        for lease in (ROOT / "leases").glob(f"{pid}-*"):
            lease.unlink(missing_ok=True)
        if _live_leases():
            return False
        if _ours_alive(_read_pids()):
            subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True,
                           env=_env(), timeout=30)
        _stop_recorded()
        return True


def _stop_recorded(grace: float = 15.0) -> None:
    """SIGTERM each recorded daemon still running with its recorded start time (a reused
    pid is another process: left alone), in reverse start order; SIGKILL after ``grace``."""
    pids = _read_pids()
    for name in reversed(DAEMONS):
        if name not in pids:
            continue
        pid, started = pids[name]
        if _start_time(pid) != started:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _start_time(pid) == started and time.monotonic() < deadline:
            time.sleep(0.1)
        if _start_time(pid) == started:
            os.kill(pid, signal.SIGKILL)
    PIDS.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- command line
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--no-install", action="store_true",
                        help="do not install the packages when they are absent")
    parser.add_argument("--user", type=int, default=os.getppid(),
                        help="the process whose lease this is (default: the calling shell)")
    args = parser.parse_args(argv)
    if args.command == "stop":
        stopped = stop(args.user)
        print("SLURM stopped" if stopped else "SLURM left running: another user holds a lease")
        return 0
    if args.command == "status":
        alive = _ours_alive(_read_pids())
        print(f"{'running' if alive else 'not running'}: SLURM_CONF={CONF} {_sinfo_states()}")
        return 0 if alive else 1
    try:
        cluster = start(install=not args.no_install, user=args.user)
    except Unavailable as exc:
        print(f"SLURM not started: {exc}", file=sys.stderr)
        return 1
    print(f"SLURM_CONF={cluster.conf}  ({'started' if cluster.started else 'already running'})")
    return 0 if cluster.started else ALREADY_RUNNING


if __name__ == "__main__":
    sys.exit(main())
