"""Head kinds as a registry, and the bank that trains many heads on one encoder pass.

A head kind is a builder ``f(dim, num_classes, **options) -> nn.Module`` (tokens [B, N, D] ->
logits [B, C]) registered under a name with the options it takes and their defaults. Users add
their own from a module given to ``--encoder_module``::

    from eval_encoder.probe.heads import register_head

    @register_head("mean_linear", options={"depth": 1})
    def build(dim, num_classes, depth):
        return MeanLinear(dim, num_classes)

A kind may also register a ``bank``: a function computing the logits [B, M, C] of M heads of
that kind on the same tokens at once (the ``ov`` kind folds its queries, see ``ov.py``); heads
of a kind without one run one after another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from eval_encoder.registry import Registry

Bank = Callable[[Sequence[nn.Module], torch.Tensor], torch.Tensor]
Group = Tuple[List[int], Callable[[torch.Tensor], torch.Tensor]]


class HeadOptionError(ValueError):
    """An option a head kind does not take, or a value it cannot take."""


@dataclass(frozen=True)
class HeadKind:
    """How to build one kind of probe head.

    ``options``: every option the builder takes, with its default (None: the builder decides,
    e.g. from the width); ``fixed``: options that take one value only, as (value, why);
    ``bank``: the logits of many heads of this kind at once (None: head by head);
    ``trains``: False for a kind fitted without gradients (``knn``: its train features), whose
    heads are one per value of its option ``sweep`` (``k``) rather than one per (lr, wd)."""

    name: str
    build: Callable[..., nn.Module]
    options: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Tuple[Any, str]] = field(default_factory=dict)
    bank: Optional[Bank] = None
    summary: str = ""
    trains: bool = True
    sweep: Optional[str] = None

    @property
    def pooled(self) -> bool:
        """Whether its heads read one pooled vector per clip (their options include
        ``pool``): a run of such heads only can take its vectors from the feature cache."""
        return "pool" in self.options

    def resolve(self, given: Mapping[str, Any]) -> Dict[str, Any]:
        """The builder's options: the defaults, updated by ``given`` (None: the default)."""
        return {**self.options, **{k: v for k, v in given.items() if v is not None}}

    def problems(self, options: Mapping[str, Any], dim: Optional[int] = None) -> Dict[str, str]:
        """Option -> why this kind cannot take its value: an option it does not have, a fixed
        option at another value, a head count that does not divide the width ``dim``."""
        out = {name: f"takes no option {name} (it takes: {', '.join(sorted(self.options))})"
               for name in options if name not in self.options}
        for name, (value, why) in self.fixed.items():
            if options.get(name, value) != value:
                out[name] = f"takes {name} {value} only, not {options[name]}: {why}"
        heads = options.get("num_heads")
        if dim is not None and heads is not None and (heads < 1 or dim % heads):
            out["num_heads"] = f"needs num_heads dividing the token width {dim}, not {heads}"
        return out


HEADS: Registry[HeadKind] = Registry("probe head kind")


class MLP(nn.Module):
    """fc1 -> exact GELU -> fc2: the MLP of both published heads (OneVision's ``Siglip2MLP``,
    V-JEPA 2's block MLP), with their parameter names."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


def register_head(name: str, options: Optional[Mapping[str, Any]] = None,
                  fixed: Optional[Mapping[str, Tuple[Any, str]]] = None,
                  bank: Optional[Bank] = None, summary: str = "",
                  aliases: Sequence[str] = (), trains: bool = True,
                  sweep: Optional[str] = None) -> Callable:
    """Decorator registering a head builder ``f(dim, num_classes, **options) -> nn.Module``
    as kind ``name`` (see the module docstring); returns the builder unchanged."""

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        kind = HeadKind(name, build, dict(options or {}), dict(fixed or {}), bank,
                        summary or (build.__doc__ or "").strip().split("\n")[0], trains,
                        sweep)
        HEADS.register(name, kind, aliases)
        return build

    return wrap


def build_head(kind: str, dim: int, num_classes: int, **options) -> nn.Module:
    """A probe head of ``kind`` for tokens of width ``dim`` and ``num_classes`` classes.

    ``options`` (the kind's own, e.g. ``depth``, ``num_heads``) left out or None take the
    kind's defaults. The module remembers its kind (``head_kind``), so a bank of heads can
    fuse those of a kind that knows how. Raises RegistryError for an unknown kind and
    HeadOptionError for an option the kind does not take or a width its heads do not divide.
    """
    spec = HEADS.get(kind)
    resolved = spec.resolve(options)
    problems = spec.problems(resolved, dim)
    if problems:
        raise HeadOptionError(f"head kind {spec.name!r} " + "; ".join(problems.values()))
    module = spec.build(dim, num_classes, **resolved)
    module.head_kind = spec.name
    return module


def head_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- the grid

def head_grid(lrs: Sequence[float], wds: Sequence[float]) -> List[Tuple[float, float]]:
    """Every (learning rate, weight decay) pair: one head each, all fed by one encoder pass."""
    return [(float(lr), float(wd)) for lr in lrs for wd in wds]


def head_name(lr: float, wd: float, kind: Optional[str] = None) -> str:
    """``lr=..,wd=..``; ``<kind> lr=..,wd=..`` in a run of several kinds."""
    return f"{kind + ' ' if kind else ''}lr={lr:g},wd={wd:g}"


def sweep_name(kind: str, option: str, value: Any) -> str:
    """The name of one head of a kind that sweeps an option: ``knn k=20``."""
    return f"{kind} {option}={value:g}" if isinstance(value, float) else f"{kind} {option}={value}"


# ----------------------------------------------------------------------------- the bank

def _bank_of(module: nn.Module) -> Optional[Tuple[str, Bank]]:
    kind = getattr(module, "head_kind", None)
    bank = HEADS.get(kind).bank if kind in HEADS else None
    return (kind, bank) if bank is not None else None


def _alone(module: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return module(tokens).unsqueeze(1)


def bank_groups(modules: Sequence[nn.Module]) -> List[Group]:
    """``modules`` in groups that run together on the same tokens: the heads of a kind with a
    bank in one group, every other head alone. Each group is (positions in ``modules``,
    tokens -> logits [B, len(positions), C]). Training backpropagates group by group, so only
    one group's activations are held at a time."""
    fused: Dict[str, Tuple[Bank, List[int]]] = {}
    groups: List[Group] = []
    for j, module in enumerate(modules):
        found = _bank_of(module)
        if found is None:
            groups.append(([j], partial(_alone, module)))
        else:
            fused.setdefault(found[0], (found[1], []))[1].append(j)
    for bank, members in fused.values():
        groups.append((members, partial(bank, [modules[j] for j in members])))
    return groups


def bank_logits(modules: Sequence[nn.Module], tokens: torch.Tensor) -> torch.Tensor:
    """Logits [B, len(modules), C] of every head on the same tokens [B, N, D]: each kind's bank
    where it has one (``ov``: about the cost of one head), the other heads one by one."""
    groups = bank_groups(modules)
    if len(groups) == 1:
        return groups[0][1](tokens)
    out: List[Optional[torch.Tensor]] = [None] * len(modules)
    for members, logits_of in groups:
        logits = logits_of(tokens)
        for k, j in enumerate(members):
            out[j] = logits[:, k]
    return torch.stack(out, dim=1)
