"""torchrun command lines, on one node or many, and the checks of torchrun's flags.

One node: ``torchrun --standalone --nproc_per_node=P`` (a private rendezvous on a free port),
or plain ``python`` for a single process. Many nodes: one torchrun per node, all given the
same ``--nnodes``, ``--rdzv_backend`` (c10d unless told) and ``--rdzv_endpoint`` (a port on
the first node's host); c10d assigns the node ranks, the static backend takes
``--node_rank``. The flags and their spelling are torchrun's own.
"""
from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

from eval_encoder.config import require

# the fields of ProbeConfig (and recipe keys) that are torchrun's flags, not the trainer's
TORCHRUN_KEYS = ("nnodes", "node_rank", "rdzv_backend", "rdzv_endpoint")


def parse_nnodes(text: str) -> Tuple[int, int]:
    """torchrun's ``--nnodes``: ``N`` or ``MIN:MAX`` -> (min, max)."""
    parts = str(text).split(":")
    try:
        low, high = int(parts[0]), int(parts[-1])
    except ValueError:
        low = high = 0
    require(len(parts) <= 2 and 1 <= low <= high,
            f"--nnodes {text!r}: expected a node count N or a range MIN:MAX (1 <= MIN <= MAX)")
    return low, high


def parse_endpoint(text: str) -> Tuple[str, Optional[int]]:
    """torchrun's ``--rdzv_endpoint``: ``HOST[:PORT]`` (``[v6 address]:PORT`` too)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = str(text), ""
    ok = bool(host) and (not port or (port.isdigit() and 0 < int(port) < 65536))
    require(ok, f"--rdzv_endpoint {text!r}: expected HOST:PORT (the first node's host name "
            "and a free port on it)")
    return host, int(port) if port else None


def check_rendezvous_flags(cfg, env: Mapping[str, str]) -> None:
    """The probe runs under torchrun: given ``--nnodes``/``--node_rank``/``--rdzv_*``, they
    must describe the launch torchrun made ($GROUP_WORLD_SIZE, $GROUP_RANK, $MASTER_PORT)."""
    if cfg.nnodes is not None:
        low, high = parse_nnodes(cfg.nnodes)
        nodes = int(env.get("GROUP_WORLD_SIZE", "1"))
        require(low <= nodes <= high, f"--nnodes {cfg.nnodes} disagrees with the launcher "
                f"($GROUP_WORLD_SIZE={nodes}); give torchrun the same --nnodes")
    static = cfg.rdzv_backend in (None, "static")
    if cfg.node_rank is not None and static:
        actual = int(env.get("GROUP_RANK", "0"))
        require(cfg.node_rank == actual, f"--node_rank {cfg.node_rank} disagrees with the "
                f"launcher ($GROUP_RANK={actual}); under a c10d rendezvous the rendezvous "
                "assigns node ranks: add --rdzv_backend c10d or leave --node_rank out")
    if cfg.rdzv_backend is None and cfg.rdzv_endpoint is None:
        return
    require("TORCHELASTIC_RUN_ID" in env, "--rdzv_backend/--rdzv_endpoint are torchrun's: this "
            "process was not started by torchrun (start it with `torchrun ... "
            "attentive_probe.py`, or run `python -m eval_encoder suite`)")
    if cfg.rdzv_endpoint is not None:
        _, port = parse_endpoint(cfg.rdzv_endpoint)
        master = env.get("MASTER_PORT")
        require(not static or port is None or str(port) == master,
                f"--rdzv_endpoint {cfg.rdzv_endpoint} disagrees with the launcher's static "
                f"rendezvous ($MASTER_PORT={master})")


@dataclass(frozen=True)
class Topology:
    """How a run's processes are laid out and meet: torchrun's flags, checked."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_backend: Optional[str] = None
    rdzv_endpoint: Optional[str] = None
    rdzv_id: Optional[str] = None

    def __post_init__(self) -> None:
        require(self.nproc_per_node >= 1,
                f"--nproc_per_node must be >= 1, got {self.nproc_per_node}")
        require(self.nnodes >= 1, f"--nnodes must be >= 1, got {self.nnodes}")
        require(0 <= self.node_rank < self.nnodes,
                f"--node_rank {self.node_rank} is not a rank of {self.nnodes} node(s)")
        if self.rdzv_endpoint is not None:
            parse_endpoint(self.rdzv_endpoint)
        require(self.rdzv_backend is None or self.rdzv_endpoint is not None,
                f"--rdzv_backend {self.rdzv_backend} needs --rdzv_endpoint HOST:PORT (one node "
                "without it runs torchrun --standalone)")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def keeps_books(self) -> bool:
        """Whether this node's suite writes the suite's own records and state (the first
        node's; the others only take part in the runs)."""
        return self.node_rank == 0

    def flags(self) -> List[str]:
        """torchrun's flags: ``--standalone`` on one node, else the rendezvous."""
        if self.nnodes == 1 and self.rdzv_endpoint is None:
            return ["--standalone", f"--nproc_per_node={self.nproc_per_node}"]
        require(self.rdzv_endpoint is not None, f"--nnodes {self.nnodes} needs --rdzv_endpoint "
                "HOST:PORT (a free port on the first node; every node gives the same)")
        backend = self.rdzv_backend or "c10d"
        out = [f"--nnodes={self.nnodes}", f"--nproc_per_node={self.nproc_per_node}",
               f"--rdzv_backend={backend}", f"--rdzv_endpoint={self.rdzv_endpoint}"]
        if backend == "static":  # c10d assigns node ranks itself (torchrun ignores the flag)
            out.append(f"--node_rank={self.node_rank}")
        return out + ([f"--rdzv_id={self.rdzv_id}"] if self.rdzv_id else [])


def command(script: Path, argv: Sequence[str], topology: Topology,
            python: str = sys.executable) -> List[str]:
    """``python script argv`` for one process, else torchrun with ``topology``'s flags."""
    if topology.world_size == 1 and topology.rdzv_endpoint is None:
        return [python, str(script), *argv]
    return [python, "-m", "torch.distributed.run", *topology.flags(), str(script), *argv]


def free_port() -> int:
    """A TCP port nobody listens on now, on any interface (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])
