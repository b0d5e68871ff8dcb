"""A run's heads of every kind ``--probe_head`` names, all fed by one encoder pass.

Kinds that train (ov, vjepa2, linear) get one head per (lr, wd) of the grid, with AdamW and
the run's schedules; a kind that trains nothing (knn) gets one head per value of the option it
sweeps (``--knn_k``). In a run of several kinds the trained heads' names start with their kind
(``ov lr=..,wd=..``, ``linear lr=..,wd=..``); a knn head is always ``knn k=<k>``. Each kind's
reported head is chosen among that kind's heads as a run of that kind alone would choose it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from eval_encoder.config import ProbeConfig
from eval_encoder.probe.heads import HeadKind, build_head, head_grid, sweep_name
from eval_encoder.probe.heads.options import head_options, kinds_of, sweep_values
from eval_encoder.probe.schedules import Plan
from eval_encoder.probe.trainer import HeadState, make_heads


def make_run_heads(cfg: ProbeConfig, spec, num_classes: int, steps: int,
                   device: torch.device, plan: Plan) -> List[HeadState]:
    """Every head of the run, kind after kind in ``--probe_head``'s order; the first kind's
    heads get the seeds a run of that kind alone gives them."""
    kinds = kinds_of(cfg)
    heads: List[HeadState] = []
    for kind in kinds:
        options = head_options(cfg, kind, spec)
        if kind.trains:
            heads += make_heads(head_grid(cfg.default_lr_list, cfg.default_weight_decay),
                                spec.embed_dim, num_classes, steps, cfg.default_min_lr, device,
                                cfg.seed + len(heads), kind=kind.name, options=options,
                                plan=plan, named=len(kinds) > 1)
        else:
            heads += untrained_heads(cfg, kind, options, spec.embed_dim, num_classes, device)
    return heads


def untrained_heads(cfg: ProbeConfig, kind: HeadKind, options: Dict[str, Any], dim: int,
                    num_classes: int, device: torch.device) -> List[HeadState]:
    """One head of a kind that trains nothing per value of its swept option."""
    return [HeadState(sweep_name(kind.name, kind.sweep, value), None, None,
                      build_head(kind.name, dim, num_classes,
                                 **{**options, kind.sweep: value}).to(device), None, None)
            for value in sweep_values(cfg, kind)]


def one_of_each(heads: List[HeadState]) -> Dict[str, torch.nn.Module]:
    """The first head of each kind, for the record's description of the kinds."""
    out: Dict[str, torch.nn.Module] = {}
    for h in heads:
        out.setdefault(h.kind, h.module)
    return out


def untrained(heads: List[HeadState]) -> List[int]:
    """Positions of the heads that train nothing (knn), fitted before they are scored."""
    return [i for i, h in enumerate(heads) if not h.trains]


def rows_of_kind(rows: List[Dict], kind: Optional[str]) -> List[Dict]:
    return [r for r in rows if kind is None or r.get("kind") == kind]
