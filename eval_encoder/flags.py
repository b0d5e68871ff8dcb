"""Configuration fields as command-line flags: ``--name`` for every field of
:class:`~eval_encoder.config.ProbeConfig` and :class:`~eval_encoder.config.CodecOptions`, with
its help, choices and range from the field's metadata, and a help text that says where each
unset default comes from (built in, the protocol, the dataset card, the encoder).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import fields
from typing import Any, Callable, Dict, Optional, Tuple

from eval_encoder.config import Bound, CodecOptions, ProbeConfig, bound_of, own_fields, parse_bool
from eval_encoder.logs import add_verbosity_flags
from eval_encoder.parsing import ArgumentParser
from eval_encoder.protocol import BEHAVIOURS

# where an option left unset (None) gets its value, for --help
DEFAULT_FROM: Dict[str, str] = {
    **dict.fromkeys((row.option.split(".")[-1] for row in BEHAVIOURS), "from --protocol"),
    **dict.fromkeys(("train_data_csv_path", "val_data_csv_path", "batch_size", "default_epoch"),
                    "from the dataset card"),
    **dict.fromkeys(("embedding_size", "frames_token_num", "mean", "std"),
                    "from the encoder spec"),
    "input_size": "from the dataset card, else the encoder spec",
    "short_side_size": "the crop size", "global_batch_size": "batch_size x processes",
    "checkpoint_dir": "<save_report>/checkpoints", "data_root": "none: required",
    "published_batch_size": "global_batch_size / published_world_size, else batch_size",
    "probe_num_heads": "the head kind's: ov width/64, vjepa2 16",
    "start_lr": "each head's learning rate", "final_weight_decay": "each head's weight decay",
}


def _checked(convert: Callable[[str], Any], bound: Optional[Bound]) -> Callable[[str], Any]:
    """An argparse ``type`` converting with ``convert`` then checking ``bound``; argparse
    turns the error into "argument --name: must be >= 1, got 0"."""
    if bound is None:
        return convert

    def check(text: str) -> Any:
        value = convert(text)
        why = bound.problem(value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    check.__name__ = convert.__name__  # argparse names the type in "invalid int value"
    return check


def default_text(f: dataclasses.Field, known: Optional[Dict[str, Tuple[Any, str]]] = None) -> str:
    """``[default: value (where from)]`` for --help: ``known`` (values a recipe or dataset card
    gives this command line), else the built-in default, else where an unset value comes from.
    Shown in the help only: parsing keeps SUPPRESS, so defaults < YAML < command line holds."""
    if known and f.name in known:
        value, origin = known[f.name]
        return f"[default: {_show(value)}, from {origin}]"
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    env = f.metadata.get("env")  # a default an environment variable replaces
    if env:
        origin = f"from ${env}" if os.environ.get(env) else f"built-in; ${env} replaces it"
        return f"[default: {_show(value)}, {origin}]"
    if value is not None:
        return f"[default: {_show(value)}, built-in]"
    return f"[default: {DEFAULT_FROM.get(f.name, 'unset')}]"


def _show(value: Any) -> str:
    text = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text.replace("%", "%%")  # argparse %-formats help texts


def add_field(parser: argparse.ArgumentParser, f: dataclasses.Field,
              known: Optional[Dict[str, Tuple[Any, str]]] = None) -> None:
    """Add dataclass field ``f`` as ``--name`` (help, nargs, choices and range from its
    metadata; the help ends with the default and where it comes from, see default_text)."""
    meta = f.metadata
    said = re.sub(r" ?\(default: [^)]*\)|;? default: from --protocol", "", meta.get("help") or "")
    kwargs: Dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                              "help": f"{said} {default_text(f, known)}".strip()}
    ftype = str(f.type)
    if "bool" in ftype:
        kwargs["type"] = parse_bool
        kwargs["nargs"] = "?"
        kwargs["const"] = True
    else:
        convert = float if "float" in ftype else int if "int" in ftype else str
        kwargs["type"] = _checked(convert, bound_of(f))
    if "nargs" in meta:
        kwargs["nargs"] = meta["nargs"]
    if "choices" in meta:
        kwargs["choices"] = meta["choices"]
    parser.add_argument(f"--{f.name}", **kwargs)


def build_parser(prog: str = "attentive_probe.py",
                 known: Optional[Dict[str, Tuple[Any, str]]] = None) -> argparse.ArgumentParser:
    """The command-line parser: every ProbeConfig and CodecOptions field as ``--name``, and
    -v/-q. ``known``: {option: (value, origin)} that a recipe or dataset card supplies, for
    the help's defaults (see :func:`eval_encoder.probe.args.help_defaults`)."""
    parser = ArgumentParser(prog, description="Attentive probe of a frozen video encoder")
    for f in own_fields(ProbeConfig):
        add_field(parser, f, known)
    group = parser.add_argument_group("codec patch selection (codec family)")
    for f in fields(CodecOptions):
        add_field(group, f, known)
    add_verbosity_flags(parser)
    return parser
