"""Everything that touches torch.distributed lives here (and nowhere else).

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; NCCL is used on GPU and gloo on CPU. A single
process with no launcher needs no process group at all.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict, List

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_pref: str = "auto") -> DistEnv:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return DistEnv(rank, local_rank, world, device)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (a no-op for one process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if not active():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def nodes() -> List[Dict[str, Any]]:
    """Every node of the run: its host name, node rank (torchrun's $GROUP_RANK), its number
    of processes and their global ranks, gathered over all ranks (a collective)."""
    mine = (int(os.environ.get("GROUP_RANK", "0")), socket.gethostname(),
            int(os.environ.get("RANK", "0")))
    by_node: Dict[int, Dict[str, Any]] = {}
    for node_rank, host, rank in all_gather_objects(mine):
        node = by_node.setdefault(node_rank, {"node_rank": node_rank, "host": host, "ranks": []})
        node["ranks"].append(rank)
    out = [by_node[k] for k in sorted(by_node)]
    for node in out:
        node["world_size"] = len(node["ranks"])
    return out


# gloo's worker threads free a finished collective's buffers after its caller has moved on,
# and freeing a tensor that Python knows takes the GIL: a worker thread that asks for it
# while the interpreter exits aborts the process ("terminate called without an active
# exception", after the run's record is written; ~1 in 20 two-rank CPU runs here). Letting
# go of the GIL for a moment before the end lets them finish.
SETTLE_S = 0.05


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        time.sleep(SETTLE_S)  # releases the GIL: see SETTLE_S
        dist.destroy_process_group()
