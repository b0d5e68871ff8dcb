"""A run's head from its configuration: ``--probe_head`` names the kind, and flags carry its
options (``--probe_size``: depth, ``--probe_num_heads``: attention heads)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from torch import nn

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.probe.heads.base import HEADS, HeadKind, head_parameters
from eval_encoder.protocol import ORIGIN_PREFIX
from eval_encoder.registry import RegistryError

# head option -> the configuration field (flag) that carries it; options without one (e.g.
# mlp_ratio) keep the kind's default
FLAGS = {"depth": "probe_size", "num_heads": "probe_num_heads"}
NOT_GIVEN = ("head kind", ORIGIN_PREFIX)  # sources that yield to the kind's defaults
USER_KINDS = ("a kind of your own registers with @register_head in a module given to "
              "--encoder_module")


def kind_of(cfg: ProbeConfig) -> HeadKind:
    """The registered kind ``--probe_head`` names (ConfigError with a "did you mean")."""
    try:
        return HEADS.get(cfg.probe_head)
    except RegistryError as exc:
        raise ConfigError(f"--probe_head: {exc} ({USER_KINDS})") from None


def resolve_head(cfg: ProbeConfig) -> None:
    """Name the kind canonically and give the head flags left at their built-in values the
    kind's defaults (``vjepa2``: ``--probe_size 4``, ``--probe_num_heads 16``), with the kind
    as their source; a value the protocol supplied yields to the kind too (``--protocol vjepa2
    --probe_head ov`` is one block, a departure). A flag given for an option the kind does not
    have is refused. Runs while the configuration is parsed, so hashes, recipes and records see
    the resolved values."""
    kind = kind_of(cfg)
    cfg.probe_head = kind.name
    for option, name in FLAGS.items():
        given = not cfg.sources.get(name, "head kind").startswith(NOT_GIVEN)
        if option not in kind.options:
            if given:
                raise ConfigError(f"--{name} {getattr(cfg, name)}: head kind {kind.name!r} "
                                  f"has no {option} option")
            continue
        default = kind.options[option]
        if not given and getattr(cfg, name) != default:
            setattr(cfg, name, default)
            cfg.sources[name] = f"head kind {kind.name}"


def head_options(cfg: ProbeConfig) -> Dict[str, Any]:
    """The options ``build_head`` gets from the configuration (None: the kind's default)."""
    kind = kind_of(cfg)
    return {option: getattr(cfg, name) for option, name in FLAGS.items()
            if option in kind.options}


def check_head(cfg: ProbeConfig, dim: Optional[int] = None) -> None:
    """ConfigError naming the flag whose value the head kind cannot take (``dim``: the token
    width, once known, which the attention heads must divide)."""
    kind = kind_of(cfg)
    options = head_options(cfg)
    for option, why in kind.problems(kind.resolve(options), dim).items():
        name = FLAGS.get(option, option)
        raise ConfigError(f"--{name} {options.get(option)}: head kind {kind.name!r} {why}")


def describe_head(cfg: ProbeConfig, dim: int, module: Optional[nn.Module] = None
                  ) -> Dict[str, Any]:
    """The record's ``probe_head``: the kind, every option it is built with (None: decided by
    the kind from the width), the width and, given a head, its parameter count."""
    kind = kind_of(cfg)
    out = {"kind": kind.name, "options": kind.resolve(head_options(cfg)), "width": dim}
    if module is not None:
        out["parameters"] = head_parameters(module)
    return out
