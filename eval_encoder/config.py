"""Typed run configuration: the fields of a probe run and of codec selection, with their
metadata (help, choices, ranges), and the checked setting of values on them.

Every flag of the upstream ``attentive_probe.py`` / ``attentive_probe_codec.py`` is a field
here, with the upstream spelling and default, so their command lines keep working. Unknown
YAML keys are errors naming the file. The resolved configuration, with the source of each
value, is saved in the run record.

This is the bottom of the house: it imports nothing of the project. Fields become flags in
:mod:`eval_encoder.flags`; argv and a recipe become a checked configuration (protocol, dataset
card, registry, launcher) in :mod:`eval_encoder.probe.args`.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Union

import yaml


class ConfigError(ValueError):
    """A configuration value that cannot be used, with the reason."""


class UsageMistake(ConfigError):
    """A run asked for in a way its data cannot give (a batch larger than the split under
    drop_last, a validation draw that scores nothing, a manifest line that cannot be read),
    found before the encoder loads: exit 2, and no record is written."""


# One results root for every command: probe, suite and demo write their records under
# <root>/runs/, leaderboard and compare read them there. Upstream wrote to
# fewshot_video_report/ActionRecognition; --save_report (probe, suite) still overrides it.
RESULTS_ENV = "EVAL_ENCODER_RESULTS"
DEFAULT_RESULTS = "results"


def results_root() -> str:
    """The default results root: ``$EVAL_ENCODER_RESULTS`` when set, else ``results`` (in the
    folder a command runs from)."""
    return os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS


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
class CodecOptions:
    """Options of codec-style patch selection, with the upstream flag names and defaults;
    every field that changes the selected indices is part of the cache key."""

    patch_size: int = _f(14, "selection grid patch size (the encoder's patch size)",
                         check=AT_LEAST_1)
    K_keep: int = _f(2048, "patches kept per clip from the 64-frame grid", check=AT_LEAST_1)
    mv_compensate: str = _f("similarity", "camera-motion removal",
                            choices=["none", "median", "mean", "similarity", "affine"])
    mv_use_inconsistency: bool = _f(False, "score motion by its local variance (inconsistency) "
                                           "instead of its magnitude")
    mv_incon_ksize: int = _f(3, "odd window (>= 3, in 8-pixel motion cells) of that variance",
                             check=Bound(3))
    res_use_grad: bool = _f(False, "use the residual's gradient magnitude instead of |r|")
    fuse_mode: str = _f("weighted", "how motion and residual energy are fused",
                        choices=["weighted", "max", "sum", "geomean"])
    w_mv: float = _f(1.0, "weight of motion energy in the weighted fusion", check=NON_NEGATIVE)
    w_res: float = _f(1.0, "weight of residual energy in the weighted fusion", check=NON_NEGATIVE)
    center_prior: float = _f(0.3, "weight of the centred Gaussian prior (0: off)",
                             check=NON_NEGATIVE)
    center_sigma: float = _f(0.35, "sigma of the centre prior, as a fraction of min(H, W)",
                             check=POSITIVE)
    static_fallback: int = _f(1, "1: near-static clips take uniform frames whole",
                              check=Bound(0, 1))
    static_abs_thresh: float = _f(126.0, "static test: absolute energy threshold",
                                  check=NON_NEGATIVE)
    static_rel_thresh: float = _f(0.38, "static test: relative energy threshold",
                                  check=NON_NEGATIVE)
    static_uniform_frames: int = _f(4, "frames taken whole by the static fallback",
                                    check=AT_LEAST_1)
    mv_reference: str = _f("source", "motion of each sampled frame against its source-rate "
                           "predecessor, or against the previous sampled frame",
                           choices=["source", "sampled"])
    codec_frame_ids: Optional[str] = _f(None, "64 frame ids from linspace: truncated (published) "
                                        "or rounded; default: from --protocol",
                                        choices=["trunc", "round"])
    zero_frames: Optional[str] = _f(None, "frames whose map is zero: 'gop16' (published: sampled "
                                    "frames on a 16-frame GOP's intra frame, first 8, and repeated "
                                    "ids) or 'unreferenced' (no predecessor, repeats); default: "
                                    "from --protocol", choices=["gop16", "unreferenced"])
    mv_floor: Optional[float] = _f(None, "floor (px) of the motion map's 95th-percentile "
                                   "normaliser; default: from --protocol", check=POSITIVE)
    map_grid: Optional[str] = _f(None, "'pixel': every map stage at pixel resolution as published "
                                 "(8-bit map, cubic a=-0.75 resize); 'cell': on 8-pixel motion "
                                 "cells, float, resampled like the pixels; default: from --protocol",
                                 choices=["pixel", "cell"])
    map_resolution: Optional[str] = _f(None, "resolution of the re-encode, vectors, residual and "
                                       "map: the source's, or the map's own (shorter side "
                                       "area-downscaled to the resize size, never upscaled); "
                                       "default: from --protocol", choices=["source", "map"])
    topk_ties: Optional[str] = _f(None, "top-K order among equal scores: numpy's argpartition "
                                  "(published) or stable (lower index first); default: from "
                                  "--protocol", choices=["partition", "stable"])
    codec_pixels: str = _f("source", "where the frames the encoder sees and the selection reads "
                           "are decoded from: the original file, or a copy re-encoded as the "
                           "published step 2 does (libx265, CRF 23, GOP 16; made once per clip "
                           "into <cache_dir>/hevc)", choices=["source", "reencoded"])
    cache_dir: Optional[str] = _f(None, "folder for cached patch indices (.npy)")


@dataclass
class ProbeConfig:
    # --- protocol (eval_encoder/protocol.py): the published scripts' behaviours or our corrections
    protocol: str = _f("paper", "paper: the published OneVision protocol; clean: our corrections "
                       "of it; vjepa2: V-JEPA 2's frozen evaluation (see `python -m eval_encoder "
                       "ls protocol`)", choices=["paper", "clean", "vjepa2"])
    round_pixels: Optional[bool] = _f(None, "keep resized, cropped and jittered frames as 8-bit "
                                      "integers before normalising (default: from --protocol)")
    brightness_mode: Optional[str] = _f(None, "brightness jitter: 'multiply' (as published, DALI's "
                                        "multiplicative brightness) or 'shift' (additive); default: "
                                        "from --protocol", choices=["multiply", "shift"])
    drop_last: Optional[bool] = _f(None, "train floor(floor(n/W)/B) full steps per epoch, dropping "
                                   "the remainder as published; default: from --protocol")
    frame_step: Optional[int] = _f(None, "frames between a segment's consecutive frames, as V-JEPA "
                                   "2 samples (16 frames at step 4 span 64); 0: the frames spread "
                                   "over the segment, one in each of --num_frames equal parts (the "
                                   "OneVision scripts); default: from --protocol", check=NON_NEGATIVE)
    num_segments: Optional[int] = _f(None, "segments per clip, spread over it: each of --num_frames "
                                     "frames, encoded on its own, the tokens concatenated for the "
                                     "head; default: from --protocol", check=AT_LEAST_1)
    eval_window: Optional[str] = _f(None, "where a segment's frames sit at evaluation: the centre of "
                                    "the range they may take, or drawn at random as in training "
                                    "(V-JEPA 2's loader); default: from --protocol",
                                    choices=["centre", "random"])
    view_fusion: Optional[str] = _f(None, "how a validation clip's views combine: mean of the "
                                    "logits, or mean of the softmax probabilities (V-JEPA 2); "
                                    "default: from --protocol", choices=["logits", "softmax"])
    train_augment: Optional[str] = _f(None, "training augmentation: 'ov' (the OneVision colour "
                                      "jitter after resize and centre crop) or 'vjepa2' (RandAugment, "
                                      "random resized crop, random erasing; torch loader only); "
                                      "default: from --protocol", choices=["ov", "vjepa2"])
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
    input_size: Optional[int] = _f(None, "crop size (default: the dataset card's, else the "
                                  "encoder's)", check=AT_LEAST_1)
    token_layout: str = _f("family", "tokens per frame given to the head: the family's published "
                           "layout, patch tokens only, or every token", choices=["family", "patch", "all"])
    tubelet_size: int = _f(1, "frames per temporal patch (the encoder's own is used; given, it "
                           "must agree: 1 per-frame encoders, 2 V-JEPA 2)", check=AT_LEAST_1)
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
    default_min_lr: float = _f(1e-7, "LinearLR end learning rate (--lr_schedule linear)",
                               check=NON_NEGATIVE)
    lr_schedule: str = _f("linear", "learning rate per step: 'linear' (OneVision's LinearLR to "
                          "--default_min_lr) or 'cosine' (V-JEPA 2's: warmup from --start_lr "
                          "over --warmup epochs, then cosine to --final_lr)")
    start_lr: Optional[float] = _f(None, "--lr_schedule cosine: learning rate the warmup starts "
                                   "from (unset: each head's own)", check=NON_NEGATIVE)
    warmup: float = _f(0.0, "--lr_schedule cosine: warmup epochs", check=NON_NEGATIVE)
    final_lr: float = _f(0.0, "--lr_schedule cosine: learning rate at the last step",
                         check=NON_NEGATIVE)
    wd_schedule: str = _f("constant", "weight decay per step: 'constant' (each head's) or "
                          "'cosine' (V-JEPA 2's: from each head's to --final_weight_decay)")
    final_weight_decay: Optional[float] = _f(None, "--wd_schedule cosine: weight decay at the "
                                             "last step (unset: each head's own)",
                                             check=NON_NEGATIVE)
    clip_grad: float = _f(5.0, "gradient-norm clip per head (0: off)", check=NON_NEGATIVE)
    smoothing: float = _f(0.1, "label smoothing", check=FRACTION)
    probe_head: Union[str, List[str]] = _f(
        "ov", "probe head kind(s): 'ov' (OneVision's published head), 'vjepa2' (V-JEPA 2's "
        "AttentiveClassifier), 'linear' (a linear classifier on the pooled tokens), 'knn' "
        "(k-nearest neighbours of the pooled tokens, no training) or one registered by a module "
        "of --encoder_module (@register_head); several (e.g. ov linear knn) share one encoder "
        "pass", nargs="+")
    probe_pool: str = _f("auto", "the pooled kinds' (linear, knn) clip vector: the class token "
                         "where the encoder has one (auto), the mean of the patch tokens, or "
                         "the class token", choices=["auto", "mean", "cls"])
    feature_cache: str = _f("on", "the pooled kinds' vectors (linear, knn) from the feature cache "
                            "under <save_report>/features, computed and stored on a miss: a "
                            "second run of such heads on the same encoder and data runs no "
                            "encoder (off: always compute)", choices=["on", "off"])
    knn_k: List[int] = _f([20], "--probe_head knn: neighbours voting, one knn head per value",
                          nargs="+", check=AT_LEAST_1)
    knn_temperature: float = _f(0.07, "--probe_head knn: a neighbour's vote is exp(cosine / T)",
                                check=POSITIVE)
    probe_size: int = _f(1, "attention blocks in the head (its depth): 1 for ov, as published; "
                         "left at 1, the kind's own default (vjepa2: 4)", check=AT_LEAST_1)
    probe_num_heads: Optional[int] = _f(None, "attention heads of the probe head",
                                        check=AT_LEAST_1)
    seed: int = _f(1, "seed for sampling, jitter and head init", check=NON_NEGATIVE)
    select: str = _f("best_val", "reported score: best epoch on val (upstream) or last epoch",
                     choices=["best_val", "last"])
    select_on: str = _f("val", "what the reported (head, epoch) is chosen on: 'val' (the split "
                        "that is reported, as published: optimistic by the choice) or 'heldout' "
                        "(a class-stratified --heldout_fraction of the training manifest, taken "
                        "out of training and scored at each evaluation epoch; only the chosen "
                        "snapshot's validation score is reported)", choices=["val", "heldout"])
    heldout_fraction: float = _f(0.1, "--select_on heldout: share of each class's training clips "
                                 "held out (at least one of a class of two or more; drawn from "
                                 "the seed and the manifest)", check=Bound(0, 1, True, True))
    heldout_val_max: bool = _f(True, "--select_on heldout: also score every snapshot on val in "
                               "the same validation pass (the encoder runs once either way) so "
                               "the record has the grid's val maximum and the gap; off: only the "
                               "chosen snapshot is scored on val")
    refit: bool = _f(False, "--select_on heldout: after the choice, train the chosen (lr, wd) "
                     "of the reported kind again, from a fresh head (the grid's seed), on the "
                     "whole training manifest (held-out clips included) for the chosen epochs, "
                     "and report that head's validation score (as CLIP_benchmark and DINOv2's "
                     "linear evaluation do); costs one more training of one head")
    val_sampling: str = _f("exact", "validation clips: 'exact' scores each once; 'published' scores each "
                           "once too, then also measures every head snapshot as the published "
                           "scripts' per-rank draws would have (clips 0..W times) and reports the "
                           "best by that", choices=["exact", "published"])
    published_world_size: int = _f(8, "--val_sampling published: the published run's processes W",
                                   check=AT_LEAST_1)
    published_batch_size: Optional[int] = _f(None, "--val_sampling published: its per-process "
                                             "batch B", check=AT_LEAST_1)
    max_skip_fraction: float = _f(0.01, "fail when more than this fraction of a split is unreadable",
                                   check=FRACTION)
    # --- evaluation
    val_only: bool = _f(False, "score given heads on the validation split without training: "
                        "the heads of --probe_checkpoint, or of our checkpoint "
                        "--resume_checkpoint")
    probe_checkpoint: Optional[str] = _f(None, "--val_only: file of trained heads: a published "
                                         "V-JEPA 2 probe checkpoint ({'classifiers': [...]}), "
                                         "a state_dict (.pt) or a safetensors file")
    eval_freq: int = _f(1, "evaluate every N epochs (and always after the last)", check=AT_LEAST_1)
    monitor_clips: int = _f(64, "training clips scored in eval mode by every head after each "
                            "epoch: a progress line for long runs, never reported and never "
                            "used to choose (0: off)", check=NON_NEGATIVE)
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
    report_to: List[str] = _f(["none"], "live logs on rank 0: none, tensorboard, wandb (offline "
                              "unless $WANDB_MODE says otherwise), several allowed: every "
                              "head's loss and lr per step, validation top-1/top-5, clips/s, "
                              "under <save_report>/logs/<dataset>/<run id>/", nargs="+")
    wandb_project: str = _f("eval_encoder", "--report_to wandb: the W&B project")
    save_report: str = field(default_factory=results_root, metadata={
        "help": "results root: records go to <save_report>/runs/<dataset>/, where `leaderboard` "
                "reads them", "env": RESULTS_ENV})
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
    codec_version: Optional[str] = _f(None, "the published codec settings to follow, by the date "
                                      "of their shell (`python -m eval_encoder ls codec`): they "
                                      "fill every codec option left unset, per dataset; unset: "
                                      "the codec options as given")
    codec: CodecOptions = field(default_factory=CodecOptions)

    # where each value came from: default / yaml:<file> / command line / dataset card / encoder
    sources: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_SKIP = {"codec", "sources"}


def own_fields(cls) -> List[dataclasses.Field]:
    """The fields of ``cls`` that are options (not the nested codec options or the sources)."""
    return [f for f in fields(cls) if f.name not in _SKIP]


def bound_of(f: dataclasses.Field) -> Optional[Bound]:
    """The range a field's numbers must lie in (None: any)."""
    return f.metadata.get("check")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); argparse words the error."""
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


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
            inner = float if "float" in ftype else int if "List[int]" in ftype else str
            return [inner(v) for v in items]
        if "bool" in ftype:
            return parse_bool(value)
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
    own = {f.name: f for f in own_fields(ProbeConfig)}
    codec = {f.name: f for f in fields(CodecOptions)}
    for name, value in values.items():
        if name in own:
            setattr(cfg, name, _coerce(name, value, own[name], origin))
        elif name in codec:
            setattr(cfg.codec, name, _coerce(name, value, codec[name], origin))
        else:
            close = difflib.get_close_matches(name, [*own, *codec], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{origin}: unknown option {name!r}{hint}")
        cfg.sources[name] = origin


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)

