"""A run's head from its configuration: ``--probe_head`` names the kind, and flags carry its
options (``--probe_size``: depth, ``--probe_num_heads``: attention heads)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, List, Optional

from torch import nn

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.features.pool import TokenLayout
from eval_encoder.probe.heads.base import HEADS, HeadKind, head_parameters
from eval_encoder.protocol import ORIGIN_PREFIX
from eval_encoder.registry import RegistryError

# head option -> the configuration field (flag) that carries it; options without one (e.g.
# mlp_ratio) keep the kind's default
FLAGS = {"depth": "probe_size", "num_heads": "probe_num_heads", "pool": "probe_pool",
         "temperature": "knn_temperature"}
SWEEPS = {"k": "knn_k"}  # a swept option -> the flag listing its values (one head each)
FROM_RUN = ("prefix_tokens", "segments")  # options the encoder and the run give, not flags
NOT_GIVEN = ("head kind", ORIGIN_PREFIX)  # sources that yield to the kind's defaults
USER_KINDS = ("a kind of your own registers with @register_head in a module given to "
              "--encoder_module")


def kind_names(cfg: ProbeConfig) -> List[str]:
    """The names ``--probe_head`` lists (one, or several sharing the encoder pass)."""
    value = cfg.probe_head
    return [value] if isinstance(value, str) else list(value)


def kinds_of(cfg: ProbeConfig) -> List[HeadKind]:
    """The registered kinds ``--probe_head`` names (ConfigError with a "did you mean")."""
    out = []
    for name in kind_names(cfg):
        try:
            out.append(HEADS.get(name))
        except RegistryError as exc:
            raise ConfigError(f"--probe_head: {exc} ({USER_KINDS})") from None
    return out


def kind_of(cfg: ProbeConfig) -> HeadKind:
    """The first kind ``--probe_head`` names: the one a record's ``reported`` is of."""
    return kinds_of(cfg)[0]


def _given(cfg: ProbeConfig, name: str) -> bool:
    return not cfg.sources.get(name, "head kind").startswith(NOT_GIVEN)


def resolve_head(cfg: ProbeConfig) -> None:
    """Name the kinds canonically (one kind: a string, as before; several: a list) and, for
    one kind, give the head flags left at their built-in values the kind's defaults
    (``vjepa2``: ``--probe_size 4``, ``--probe_num_heads 16``), with the kind as their source;
    a value the protocol supplied yields to the kind too (``--protocol vjepa2 --probe_head
    ov`` is one block, a departure). A flag given for an option no kind has is refused. Runs
    while the configuration is parsed, so hashes, recipes and records see the resolved
    values."""
    kinds = kinds_of(cfg)
    names = [k.name for k in kinds]
    if len(set(names)) < len(names):
        raise ConfigError(f"--probe_head {' '.join(kind_names(cfg))}: a kind named twice")
    cfg.probe_head = names[0] if len(names) == 1 else names
    for option, name in {**FLAGS, **SWEEPS}.items():
        having = [k for k in kinds if option in k.options]
        if not having:
            if _given(cfg, name):
                said = repr(names[0]) if len(names) == 1 else "s " + " ".join(names)
                raise ConfigError(f"--{name} {_shown(getattr(cfg, name))}: head kind{'' if len(names) > 1 else ' '}{said} "
                                  f"{'has' if len(names) == 1 else 'have'} no {option} option")
            continue
        default = having[0].options[option]
        if len(kinds) == 1 and option in FLAGS and not _given(cfg, name) \
                and getattr(cfg, name) != default:
            setattr(cfg, name, default)
            cfg.sources[name] = f"head kind {names[0]}"


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def head_options(cfg: ProbeConfig, kind: Optional[HeadKind] = None, spec: Any = None,
                 ) -> Dict[str, Any]:
    """The options ``build_head`` gets for ``kind`` (default: the first) from the
    configuration (a flag given, else the kind's default; None: the kind decides) and, given
    the encoder's ``spec``, where the prefix tokens are among its tokens (``TokenLayout``)."""
    kind = kind or kind_of(cfg)
    out = {option: (getattr(cfg, name) if _given(cfg, name) else kind.options[option])
           for option, name in FLAGS.items() if option in kind.options}
    if spec is not None:
        run = asdict(TokenLayout.of(spec, cfg.num_frames, cfg.num_segments or 1))
        out.update({k: v for k, v in run.items() if k in kind.options})
    return out


def sweep_values(cfg: ProbeConfig, kind: HeadKind) -> List[Any]:
    """The values of the option a non-training kind sweeps (``knn``: ``--knn_k``)."""
    return list(getattr(cfg, SWEEPS[kind.sweep])) if kind.sweep in SWEEPS else \
        [kind.options[kind.sweep]]


def check_head(cfg: ProbeConfig, dim: Optional[int] = None) -> None:
    """ConfigError naming the flag whose value a head kind cannot take (``dim``: the token
    width, once known, which the attention heads must divide)."""
    for kind in kinds_of(cfg):
        options = head_options(cfg, kind)
        for option, why in kind.problems(kind.resolve(options), dim).items():
            name = FLAGS.get(option, option)
            raise ConfigError(f"--{name} {options.get(option)}: head kind {kind.name!r} {why}")


def check_kinds(cfg: ProbeConfig) -> None:
    """ConfigError for kinds a mode of the run cannot take: ``--val_only`` scores given heads
    of one kind, which must be a kind with something to give (knn has no weights: it fits the
    train split's vectors); ``--val_sampling published`` chooses one head over the whole
    grid, so it takes one kind."""
    kinds = kinds_of(cfg)
    names = " ".join(k.name for k in kinds)
    if cfg.val_only and (len(kinds) > 1 or not kinds[0].trains):
        raise ConfigError(f"--val_only with --probe_head {names}: --val_only scores given heads "
                          "of one kind that has weights (knn has none: it is fitted on the "
                          "train split's pooled vectors; run it without --val_only)")
    if cfg.val_sampling == "published" and len(kinds) > 1:
        raise ConfigError(f"--val_sampling published with --probe_head {names}: the published "
                          "draw is measured for a run of one head kind; run the kinds apart")


def describe_kind(cfg: ProbeConfig, kind: HeadKind, dim: int, spec: Any = None,
                  module: Optional[nn.Module] = None) -> Dict[str, Any]:
    """One kind's description: the kind, every option it is built with (None: decided by the
    kind from the width), the width and, given a head, its parameter count."""
    out = {"kind": kind.name, "options": kind.resolve(head_options(cfg, kind, spec)),
           "width": dim}
    if kind.sweep:
        out["options"][kind.sweep] = sweep_values(cfg, kind)
    if module is not None:
        out["parameters"] = head_parameters(module)
    return out


def describe_head(cfg: ProbeConfig, dim: int, module: Optional[nn.Module] = None,
                  spec: Any = None, modules: Optional[Dict[str, nn.Module]] = None
                  ) -> Dict[str, Any]:
    """The record's ``probe_head``: the first kind's description (see :func:`describe_kind`)
    and, in a run of several kinds, ``kinds``: every kind's (``modules``: one head of each)."""
    kinds = kinds_of(cfg)
    out = describe_kind(cfg, kinds[0], dim, spec, module)
    if len(kinds) > 1:
        modules = modules or {}
        out["kinds"] = {k.name: describe_kind(cfg, k, dim, spec, modules.get(k.name))
                        for k in kinds}
    return out
