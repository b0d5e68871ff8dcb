"""Typed run configuration: defaults < YAML recipe (--config) < command line.

Every flag of the upstream ``attentive_probe.py`` / ``attentive_probe_codec.py`` is a field
here, with the upstream spelling and default, so their command lines keep working. Unknown
YAML keys are errors naming the file. The resolved configuration, with the source of each
value, is saved in the run record.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from eval_encoder.codec.options import CodecOptions
from eval_encoder.protocol import BEHAVIOURS


class ConfigError(ValueError):
    """A configuration value that cannot be used, with the reason."""


@dataclass(frozen=True)
class Bound:
    """The numbers a flag accepts: ``lo``/``hi`` (None: unbounded), open or closed ends.

    Checked when the command line or a YAML file is read, before anything loads, so an
    error names the flag (or file and key) and the value in our words, not torch's.
    """

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                f"{')' if self.hi_open else ']'}")

    def allows(self, value: float) -> bool:
        """Whether ``value`` lies in the range (NaN never does)."""
        if value != value:
            return False
        low = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return low and high

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` (a number, a list of numbers or None) is refused; None if it is fine."""
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and not isinstance(item, bool) and not self.allows(item):
                return f"must be {self}, got {item!r}"
        return None


AT_LEAST_1 = Bound(1)  # counts: frames, epochs, batch sizes, threads, token budgets
POSITIVE = Bound(0, lo_open=True)  # learning rates, std, weights of a fusion
NON_NEGATIVE = Bound(0)  # weight decay, clip norm, minute intervals, seeds, ranks
FRACTION = Bound(0, 1, hi_open=True)  # label smoothing, skip fraction


def _f(default: Any, help: str, **meta) -> Any:
    """A dataclass field carrying its argparse help (and optional nargs/choices, and
    ``check``: the :class:`Bound` its numbers must lie in)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class ProbeConfig:
    # --- protocol (eval_encoder/protocol.py): the published scripts' behaviours or our corrections
    protocol: str = _f("paper", "paper: the published protocol; clean: our corrections (see "
                       "`python -m eval_encoder ls protocol`)", choices=["paper", "clean"])
    round_pixels: Optional[bool] = _f(None, "keep resized, cropped and jittered frames as 8-bit "
                                      "integers before normalising (default: from --protocol)")
    brightness_mode: Optional[str] = _f(None, "brightness jitter: 'multiply' (as published, DALI's "
                                        "multiplicative brightness) or 'shift' (additive); default: "
                                        "from --protocol", choices=["multiply", "shift"])
    drop_last: Optional[bool] = _f(None, "train floor(floor(n/W)/B) full steps per epoch, dropping "
                                   "the remainder as published; default: from --protocol")
    # --- data
    dataset: str = _f("ssv2", "dataset card name (datasets/<name>.yaml)")
    data_root: Optional[str] = _f(None, "folder holding <dataset>/<manifest>.csv and the videos")
    train_data_csv_path: Optional[str] = _f(None, "train manifest file name (default: the card's)")
    val_data_csv_path: Optional[str] = _f(None, "val manifest file name (default: the card's)")
    num_classes: int = _f(0, "0: from the dataset card; otherwise must equal the card's count",
                          check=NON_NEGATIVE)
    # --- model
    model_family: str = _f("chunk_wise_sampling", "encoder family (see `python -m eval_encoder ls`)")
    model_name: str = _f("ov_encoder_large", "model name inside the family")
    model_weight: str = _f("NULL", "checkpoint: local folder, file or hub id; 'random' for random init")
    encoder_module: List[str] = _f([], "import these modules first (user @register_encoder)", nargs="+")
    allow_download: bool = _f(False, "let a hub id be downloaded instead of read from the local cache")
    attn_implementation: str = _f("auto", "attention kernel", choices=["auto", "sdpa", "flash"])
    num_frames: int = _f(8, "frames per clip", check=AT_LEAST_1)
    num_tokens: Optional[int] = _f(None, "if set, the tokens per clip the encoder must return",
                                  check=AT_LEAST_1)
    input_size: Optional[int] = _f(None, "crop size (default: the encoder's)", check=AT_LEAST_1)
    token_layout: str = _f("family", "tokens per frame given to the head: the family's published "
                           "layout, patch tokens only, or every token", choices=["family", "patch", "all"])
    tubelet_size: int = _f(1, "temporal patch size; the encoders here take 1", check=AT_LEAST_1)
    embedding_size: Optional[int] = _f(None, "token width (default: the encoder's; checked against it)",
                                      check=AT_LEAST_1)
    frames_token_num: Optional[int] = _f(None, "tokens per frame (default: the encoder's; checked)",
                                        check=AT_LEAST_1)
    target_frames: int = _f(64, "RoPE temporal grid that frame indices are interpolated onto",
                            check=AT_LEAST_1)
    mean: Optional[List[float]] = _f(None, "normalisation mean (default: the encoder's)", nargs=3)
    std: Optional[List[float]] = _f(None, "normalisation std (default: the encoder's)", nargs=3,
                                   check=POSITIVE)
    short_side_size: Optional[int] = _f(None, "resize the shorter side to this (default: input size)",
                                       check=AT_LEAST_1)
    # --- training
    batch_size: Optional[int] = _f(None, "clips per process per micro-batch (default: the dataset "
                                   "card's); without --global_batch_size also per step",
                                   check=AT_LEAST_1)
    global_batch_size: Optional[int] = _f(None, "clips per optimiser step over all processes; "
                                          "the same numbers for any world size that divides "
                                          "it (gradient accumulation); unset: batch_size x W",
                                          check=AT_LEAST_1)
    default_epoch: Optional[int] = _f(None, "epochs (default: the dataset card's)", check=AT_LEAST_1)
    default_lr_list: List[float] = _f([1e-4], "learning rates: one probe head each", nargs="+",
                                      check=POSITIVE)
    default_weight_decay: List[float] = _f([0.0], "weight decays: one head per (lr, wd)", nargs="+",
                                           check=NON_NEGATIVE)
    default_min_lr: float = _f(1e-7, "LinearLR end learning rate", check=NON_NEGATIVE)
    clip_grad: float = _f(5.0, "gradient-norm clip per head (0: off)", check=NON_NEGATIVE)
    smoothing: float = _f(0.1, "label smoothing", check=FRACTION)
    probe_size: int = _f(1, "attention-pooling blocks in the head: 1, as published",
                         check=AT_LEAST_1)
    seed: int = _f(1, "seed for sampling, jitter and head init", check=NON_NEGATIVE)
    select: str = _f("best_val", "reported score: best epoch on val (upstream) or last epoch",
                     choices=["best_val", "last"])
    max_skip_fraction: float = _f(0.01, "fail when more than this fraction of a split is unreadable",
                                   check=FRACTION)
    # --- evaluation
    eval_freq: int = _f(1, "evaluate every N epochs (and always after the last)", check=AT_LEAST_1)
    eval_mode: str = _f("end", "score the heads of every evaluation epoch in one validation pass at "
                        "the end, or after each epoch as upstream", choices=["end", "epoch"])
    num_temporal_crops: int = _f(1, "temporal views per validation clip (logits averaged)",
                                 check=AT_LEAST_1)
    num_spatial_crops: int = _f(1, "spatial views per validation clip (1 centre, 3 left/centre/right)",
                                check=AT_LEAST_1)
    # --- loading and runtime
    loader: str = _f("auto", "data pipeline: auto = torch (decode and transforms in worker "
                          "processes) on any device; dali = NVIDIA DALI (transforms on the GPU "
                          "under CUDA)", choices=["auto", "dali", "torch"])
    device: str = _f("auto", "cuda when available, else cpu", choices=["auto", "cpu", "cuda"])
    dali_num_threads: int = _f(2, "DALI CPU threads", check=AT_LEAST_1)
    dali_py_num_workers: int = _f(4, "decode worker processes per rank, for the DALI and the torch "
                                  "loader alike, at most the node's CPUs / local ranks; 0: "
                                  "decode in the training process", check=NON_NEGATIVE)
    decord_num_threads: int = _f(2, "threads per video decoder (PyAV; upstream used decord)",
                                 check=AT_LEAST_1)
    print_freq: int = _f(10, "log every N steps", check=AT_LEAST_1)
    save_report: str = _f("fewshot_video_report/ActionRecognition", "folder for records and reports")
    checkpoint_dir: Optional[str] = _f(None, "folder for resume checkpoints (default: "
                                       "<save_report>/checkpoints); a rerun continues from there")
    resume_checkpoint: Optional[str] = _f(None, "resume from this checkpoint file")
    checkpoint_every_min: float = _f(10.0, "minutes between checkpoints inside an epoch (one "
                                     "at every epoch end too); 0: after every optimiser step",
                                     check=NON_NEGATIVE)
    # torchrun sets these through the environment; given on the command line they must agree
    rank: Optional[int] = _f(None, "compat: must match $RANK", check=NON_NEGATIVE)
    local_rank: Optional[int] = _f(None, "compat: must match $LOCAL_RANK",
                                  check=NON_NEGATIVE)
    world_size: Optional[int] = _f(None, "compat: must match $WORLD_SIZE", check=AT_LEAST_1)
    global_rank: Optional[int] = _f(None, "compat: must match $RANK",
                                   check=NON_NEGATIVE)
    # torchrun's multi-node flags: `suite` passes them to torchrun; given to the probe, which
    # runs under torchrun, they must describe the launch torchrun made
    nnodes: Optional[str] = _f(None, "torchrun: nodes, N or MIN:MAX (must match $GROUP_WORLD_SIZE)")
    node_rank: Optional[int] = _f(None, "torchrun: this node's rank, static rendezvous only "
                                  "(must match $GROUP_RANK)", check=NON_NEGATIVE)
    rdzv_backend: Optional[str] = _f(None, "torchrun: rendezvous backend (c10d for many nodes)",
                                     choices=["c10d", "static", "etcd", "etcd-v2"])
    rdzv_endpoint: Optional[str] = _f(None, "torchrun: rendezvous HOST[:PORT], on the first node")
    config: Optional[str] = _f(None, "YAML file of values (command line wins)")
    method_label: Optional[str] = _f(None, "leaderboard method name (default: family/model name)")
    arch_label: Optional[str] = _f(None, "leaderboard architecture label, e.g. ViT-L/14")
    # --- codec selection (used by the codec family)
    codec: CodecOptions = field(default_factory=CodecOptions)

    # where each value came from: default / yaml:<file> / command line / dataset card / encoder
    sources: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_SKIP = {"codec", "sources"}

# the codec options' ranges (their fields live in eval_encoder/codec/options.py; the ranges are
# checked here, with every other flag's, when the command line or a YAML file is read)
CODEC_BOUNDS: Dict[str, Bound] = {
    "patch_size": AT_LEAST_1, "K_keep": AT_LEAST_1, "mv_incon_ksize": Bound(3),
    "w_mv": NON_NEGATIVE, "w_res": NON_NEGATIVE, "center_prior": NON_NEGATIVE,
    "center_sigma": POSITIVE, "static_fallback": Bound(0, 1), "static_abs_thresh": NON_NEGATIVE,
    "static_rel_thresh": NON_NEGATIVE, "static_uniform_frames": AT_LEAST_1, "mv_floor": POSITIVE,
}

# where an option left unset (None) gets its value, for --help
DEFAULT_FROM: Dict[str, str] = {
    **dict.fromkeys((row.option.split(".")[-1] for row in BEHAVIOURS), "from --protocol"),
    **dict.fromkeys(("train_data_csv_path", "val_data_csv_path", "batch_size", "default_epoch"),
                    "from the dataset card"),
    **dict.fromkeys(("input_size", "embedding_size", "frames_token_num", "mean", "std"),
                    "from the encoder spec"),
    "short_side_size": "the crop size", "global_batch_size": "batch_size x processes",
    "checkpoint_dir": "<save_report>/checkpoints", "data_root": "none: required",
}
# dataset card attribute behind an option the card fills (--help shows the card's value)
CARD_DEFAULTS = {"batch_size": "default_batch_size", "default_epoch": "default_epochs",
                 "num_classes": "num_classes", "train_data_csv_path": "train_manifest",
                 "val_data_csv_path": "val_manifest"}


def _own_fields(cls) -> List[dataclasses.Field]:
    return [f for f in fields(cls) if f.name not in _SKIP]


def bound_of(f: dataclasses.Field) -> Optional[Bound]:
    """The range a field's numbers must lie in (None: any)."""
    return f.metadata.get("check") or CODEC_BOUNDS.get(f.name)


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
        kwargs["type"] = _parse_bool
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


def _parse_bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser(prog: str = "attentive_probe.py",
                 known: Optional[Dict[str, Tuple[Any, str]]] = None) -> argparse.ArgumentParser:
    """The command-line parser: every ProbeConfig and CodecOptions field as ``--name``, and
    -v/-q. ``known``: {option: (value, origin)} that a recipe or dataset card supplies, for
    the help's defaults (see :func:`help_defaults`)."""
    from eval_encoder.logs import add_verbosity_flags

    parser = argparse.ArgumentParser(prog, description="Attentive probe of a frozen video encoder")
    for f in _own_fields(ProbeConfig):
        add_field(parser, f, known)
    group = parser.add_argument_group("codec patch selection (codec family)")
    for f in fields(CodecOptions):
        add_field(group, f, known)
    add_verbosity_flags(parser)
    return parser


def help_defaults(argv: Sequence[str], base: Optional[Dict[str, Any]] = None
                  ) -> Dict[str, Tuple[Any, str]]:
    """For --help: the values this command line's --config recipe and dataset card (given, or
    the default one) would supply, as {option: (value, origin)}. Unreadable files add nothing:
    the help must always print."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--dataset")
    given = vars(pre.parse_known_args(list(argv))[0])
    known = {k: (v, "this script's own defaults") for k, v in (base or {}).items()}
    if given["config"]:
        try:
            known.update({k: (v, f"recipe {given['config']}")
                          for k, v in load_yaml(given["config"]).items()})
        except ConfigError:
            pass
    dataset = given["dataset"] or (known.get("dataset") or (ProbeConfig.dataset, ""))[0]
    for option, value in _card_defaults(str(dataset)).items():
        known.setdefault(option, value)  # the card fills only what the recipe leaves unset
    return known


def _card_defaults(dataset: str) -> Dict[str, Tuple[Any, str]]:
    from eval_encoder.video.manifest import ManifestError, load_card

    try:
        card = load_card(dataset)
    except (ManifestError, ValueError, OSError):
        return {}
    return {option: (getattr(card, attr), f"dataset card {card.path}")
            for option, attr in CARD_DEFAULTS.items()}


def _coerce(name: str, value: Any, f: dataclasses.Field, origin: str) -> Any:
    """Check a YAML value against the field's type and range (as the command line's); lists
    stay lists."""
    coerced = _convert(name, value, f, origin)
    bound = bound_of(f)
    why = bound.problem(coerced) if bound else None
    if why:
        raise ConfigError(f"{origin}: {name}: {why}")
    return coerced


def _convert(name: str, value: Any, f: dataclasses.Field, origin: str) -> Any:
    ftype = str(f.type)
    try:
        if value is None:
            return None
        if "List" in ftype:
            items = value if isinstance(value, (list, tuple)) else [value]
            inner = float if "float" in ftype else str
            return [inner(v) for v in items]
        if "bool" in ftype:
            return _parse_bool(value)
        if "float" in ftype:
            return float(value)
        if "int" in ftype:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {name}: cannot use {value!r} ({exc})") from None


def load_yaml(path: str) -> Dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return data


def apply_values(cfg: ProbeConfig, values: Dict[str, Any], origin: str) -> None:
    """Set ``values`` on ``cfg`` (flat names, codec options included); unknown keys raise."""
    own = {f.name: f for f in _own_fields(ProbeConfig)}
    codec = {f.name: f for f in fields(CodecOptions)}
    for name, value in values.items():
        if name in own:
            setattr(cfg, name, _coerce(name, value, own[name], origin))
        elif name in codec:
            setattr(cfg.codec, name, _coerce(name, value, codec[name], origin))
        else:
            import difflib

            close = difflib.get_close_matches(name, [*own, *codec], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{origin}: unknown option {name!r}{hint}")
        cfg.sources[name] = origin


def parse_config(argv: Optional[Sequence[str]] = None, prog: str = "attentive_probe.py",
                 base: Optional[Dict[str, Any]] = None) -> ProbeConfig:
    """Resolve a ProbeConfig from ``base`` values, an optional --config YAML and ``argv``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    known = help_defaults(argv, base) if {"-h", "--help"} & set(argv) else None
    parser = build_parser(prog, known)
    ns = vars(parser.parse_args(argv))
    cfg = ProbeConfig()
    if base:
        apply_values(cfg, base, "caller")
    yaml_path = ns.get("config")
    if yaml_path:
        apply_values(cfg, {k: v for k, v in load_yaml(yaml_path).items() if k != "config"},
                     f"yaml:{yaml_path}")
    apply_values(cfg, ns, "command line")
    canonical_weight(cfg)
    check_launcher_flags(cfg)
    from eval_encoder.protocol import apply_protocol

    apply_protocol(cfg)
    return cfg


def canonical_weight(cfg: ProbeConfig) -> None:
    """Replace a ``--model_weight`` alias (registry.WEIGHT_ALIASES) by the canonical name, so
    both spellings hash, resolve and record as one model; the source says it was an alias."""
    from eval_encoder.registry import WEIGHT_ALIASES

    canonical = WEIGHT_ALIASES.get(cfg.model_weight)
    if canonical:
        origin = cfg.sources.get("model_weight", "default")
        cfg.sources["model_weight"] = f"{origin} (as {cfg.model_weight}, an alias)"
        cfg.model_weight = canonical


def check_launcher_flags(cfg: ProbeConfig) -> None:
    """--rank/--local_rank/--world_size and the multi-node flags are torchrun's job; given,
    they must agree with it."""
    env = {"rank": "RANK", "global_rank": "RANK", "local_rank": "LOCAL_RANK", "world_size": "WORLD_SIZE"}
    for name, var in env.items():
        given = getattr(cfg, name)
        if given is None:
            continue
        actual = int(os.environ.get(var, "1" if var == "WORLD_SIZE" else "0"))
        if given != actual:
            raise ConfigError(
                f"--{name} {given} disagrees with the launcher (${var}={actual}); "
                "launch with torchrun and leave rank flags out")
    from eval_encoder.launch.torchrun import check_rendezvous_flags

    check_rendezvous_flags(cfg, os.environ)


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)

