"""The named protocols as data: every behaviour in which published code and our corrections
differ is one row here, and code asks for the resolved value, never for the name.

``paper`` reproduces the published OneVision-Encoder attentive-probe scripts in every
deterministic respect that moves a number; ``clean`` keeps our corrections where they are
corrections; ``vjepa2`` follows V-JEPA 2's frozen evaluation (clips of several segments,
three views whose probabilities are averaged, RandAugment, random resized crop and erasing).
A row holds one value per protocol (a fourth protocol is one more value in each row); a
value may depend on the dataset (:class:`ByDataset`, as V-JEPA 2's configs do) or be None,
which leaves the option to the recipe, dataset card or encoder. A row's option can still be
set on its own (command line or recipe), which wins over the protocol and is recorded as a
departure. Differences no protocol reverts are in :mod:`eval_encoder.deviations`; both kinds
are printed by ``python -m eval_encoder ls protocol`` and reproduced in ``results/README.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from eval_encoder.config import ConfigError
from eval_encoder.deviations import (  # noqa: F401  (DATA and UNRELEASED: re-exported)
    DATA,
    DEVIATIONS,
    ONEVISION,
    UNRELEASED,
    VJEPA2,
    VJEPA2_DEVIATIONS,
    Deviation,
)


@dataclass(frozen=True)
class Protocol:
    """A named protocol: the published code it follows or corrects, and what it is."""

    name: str
    follows: str  # a key of PUBLISHED
    summary: str


@dataclass(frozen=True)
class Published:
    """Published evaluation code, the protocol that reproduces it (whose runs are compared
    with its reported numbers, ``results/<reported_csv>``) and how its table is laid out."""

    name: str
    title: str
    reproduced_by: str
    reported_csv: str
    frame_blocks: bool  # rows grouped by frames per clip (the OneVision paper's table)
    source: str  # where its code and numbers come from
    datasets: Tuple[str, ...]  # the benchmark columns of its reported numbers (AVG's)
    pair_on: Tuple[str, ...]  # what makes a measured row the reported row it is compared with
    val_draw_note: bool = False  # ``leaderboard --val_optimism`` explains its numbers
    reported_label: str = "reported"  # the leaderboard's sub-row of its reported numbers


PROTOCOL_INFO: Tuple[Protocol, ...] = (
    Protocol("paper", ONEVISION, "the published OneVision-Encoder attentive-probe scripts"),
    Protocol("clean", ONEVISION, "our corrections of those scripts"),
    Protocol("vjepa2", VJEPA2, "V-JEPA 2's frozen evaluation (evals/video_classification_frozen)"),
)
PROTOCOLS = tuple(p.name for p in PROTOCOL_INFO)
PUBLISHED: Dict[str, Published] = {
    ONEVISION: Published(ONEVISION, "OneVision-Encoder attentive probe", "paper",
                         "paper_attentive_probe.csv", True,
                         "the OneVision-Encoder repository's shells and results figure",
                         ("ssv2", "diving48", "perception_test", "charadesego", "epic_verb",
                          "epic_noun", "k400", "hmdb51"), ("frames", "method"), True, "paper"),
    # its rows are models, whatever frames each dataset's config reads (16x2x3 on SSv2,
    # 32x4x3 on Diving48 for ViT-L): no frame blocks, a row pairs on method and arch
    VJEPA2: Published(VJEPA2, "V-JEPA 2 frozen evaluation", "vjepa2",
                      "vjepa2_attentive_probe.csv", False,
                      "facebookresearch/vjepa2 c2963a4: evals/video_classification_frozen, "
                      "configs/eval/vitl and vitg-384, README",
                      ("ssv2", "diving48"), ("method", "arch")),
}
DEFAULT = "paper"
REPORTED = "paper"  # the protocol that produced the OneVision paper's reported numbers
UNSTATED = "unstated"  # label of records written before protocols existed


def info(protocol: str) -> Protocol:
    """The :class:`Protocol` named ``protocol``; ConfigError naming the choices otherwise."""
    for p in PROTOCOL_INFO:
        if p.name == protocol:
            return p
    raise ConfigError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")


def published_of(protocol: str) -> Published:
    """The published code ``protocol`` follows (an unknown name: the default's)."""
    known = {p.name: p.follows for p in PROTOCOL_INFO}
    return PUBLISHED[known.get(protocol, known[DEFAULT])]


def following(code: str) -> List[str]:
    """The protocols that follow (or correct) published ``code``."""
    return [p.name for p in PROTOCOL_INFO if p.follows == code]


ORIGIN_PREFIX = "protocol "


def origin(protocol: str) -> str:
    """How a run's sources name a value its protocol supplied."""
    return ORIGIN_PREFIX + protocol


@dataclass(frozen=True)
class ByDataset:
    """A protocol value that depends on the dataset: ``default``, and ``per`` (dataset, value)
    pairs for the datasets whose published configs say otherwise."""

    default: Any
    per: Tuple[Tuple[str, Any], ...] = ()

    def of(self, dataset: Optional[str]) -> Any:
        return dict(self.per).get(dataset, self.default)

    def __str__(self) -> str:
        groups: Dict[str, List[str]] = {}
        for name, value in self.per:
            groups.setdefault(repr(value), []).append(name)
        said = "; ".join(f"{', '.join(names)}: {value}" for value, names in groups.items())
        return f"{self.default!r} ({said})" if said else repr(self.default)


@dataclass(frozen=True)
class Behaviour:
    """A behaviour the protocols switch: the option that carries it, its value under each
    protocol, what each value does (``does``), why they differ and the measured effect."""

    name: str
    option: str  # a ProbeConfig field, or "codec.<CodecOptions field>"
    values: Dict[str, Any]  # protocol -> value (None: left to recipe, card or encoder)
    does: Dict[str, str]  # protocol -> what its value does
    why: str
    effect: str  # the measured effect of the difference

    def value(self, protocol: str, dataset: Optional[str] = None) -> Any:
        """The value under ``protocol`` for ``dataset``."""
        value = self.values[protocol]
        return value.of(dataset) if isinstance(value, ByDataset) else value

    @property
    def flag(self) -> str:
        return "--" + self.option.split(".")[-1]


def _row(name: str, option: str, values: Sequence[Any], does: Sequence[str], why: str,
         effect: str) -> Behaviour:
    """A behaviour from one value and one description per protocol, in PROTOCOLS order."""
    if len(values) != len(PROTOCOLS) or len(does) != len(PROTOCOLS):
        raise ValueError(f"protocol row {name!r}: one value and one description per protocol "
                         f"({', '.join(PROTOCOLS)})")
    return Behaviour(name, option, dict(zip(PROTOCOLS, values)), dict(zip(PROTOCOLS, does)),
                     why, effect)


# V-JEPA 2's behaviours (facebookresearch/vjepa2 c2963a4, configs/eval/vitl/*.yaml; a dataset
# without a card here, jester and coin, is kept for the record of what was published). The
# recipe's own values (ViT-g/16: 64 frames at step 2 on SSv2, 384 px) are departures.
_CARD = "the dataset card's (else the encoder's)"
VJEPA2_ROWS: Tuple[Behaviour, ...] = (
    _row("frames per segment", "num_frames",
         (None, None, ByDataset(16, (("diving48", 32), ("jester", 32)))),
         ("the recipe's --num_frames (8 or 16 frames per clip)", "as paper",
          "frames_per_clip: 16, or 32 on Diving48 and Jester"),
         "V-JEPA 2's configs fix the frames per dataset",
         "a clip of 2 x 16 frames at 256 px gives the head 4,096 tokens at tubelet 2"),
    _row("frame step", "frame_step", (0, 0, ByDataset(4, (("diving48", 2), ("jester", 2)))),
         ("0: T frames spread over the clip, one in each of T equal parts (train: a random "
          "point in each; val: the centres)", "as paper",
          "frames taken frame_step apart: np.linspace over frames_per_clip x frame_step frames, "
          "truncated (16 frames at step 4 span 64 frames at steps of 4.27)"),
         "the two papers sample differently: a clip-wide spread vs a short dense window",
         "SSv2 (median 45 frames): paper spreads 8 or 16 frames over the clip; vjepa2 reads 2 "
         "windows of 64 frames, which overlap on clips under 128 frames"),
    _row("segments", "num_segments",
         (1, 1, ByDataset(2, (("k400", 8), ("coin", 8), ("diving48", 4), ("jester", 4)))),
         ("one segment: the whole clip", "as paper",
          "num_segments windows spread over the clip (a random window in each of equal "
          "partitions, or windows shifted by (n - span) // (segments - 1) when a partition is "
          "shorter than the span); each encoded on its own, the tokens concatenated"),
         "V-JEPA 2 covers a long clip with several short windows",
         "tokens to the head x segments (2 on SSv2, 8 on K400, 4 on Diving48)"),
    _row("evaluation window", "eval_window", ("centre", "centre", "random"),
         ("the centre of each segment", "as paper",
          "validation windows drawn at random, as in training: the loader never turns "
          "random_clip_sampling off"),
         "a random validation clip makes the number a draw",
         "not measured; only clips longer than num_segments x the span are affected (SSv2 "
         "16x4x2: clips over 128 frames)"),
    _row("spatial views", "num_spatial_crops", (1, 1, 3),
         ("one centre crop", "as paper",
          "3 views along the longer side of the shorter-side resize (left, centre, right)"),
         "V-JEPA 2 scores every validation clip on 3 spatial views",
         "3x the validation cost"),
    _row("view fusion", "view_fusion", ("logits", "logits", "softmax"),
         ("logits averaged over a clip's views", "as paper",
          "softmax probabilities averaged over the views"),
         "the published code averages probabilities",
         "none with one view"),
    _row("training augmentation", "train_augment", ("ov", "ov", "vjepa2"),
         ("resize, centre crop, colour jitter (brightness/contrast, saturation, hue with p=0.8, "
          "RGB/BGR swap with p=0.1)", "as paper",
          "per segment: RandAugment rand-m7-n4-mstd0.5-inc1 (PIL, bicubic, grey fill) on the "
          "full frames, random resized crop (scale 0.08-1, ratio 3/4-4/3, bilinear) to the "
          "input size, random erasing (p=0.25, per-pixel noise, one box through all frames); no "
          "flip (random_horizontal_flip=False)"),
         "two published recipes",
         "not measured here"),
    _row("input size", "input_size", (None, None, 256),
         (_CARD, _CARD, "resolution: 256 (ViT-g/16 at 384 sets its own)"),
         "V-JEPA 2 evaluates at 256 px", "tokens per frame x (256/224)^2 at a 16-px patch"),
    _row("epochs", "default_epoch",
         (None, None, ByDataset(20, (("diving48", 100), ("jester", 100)))),
         (_CARD, _CARD, "num_epochs: 20, or 100 on Diving48 and Jester"),
         "V-JEPA 2's configs", "not measured here"),
    _row("label smoothing", "smoothing", (0.1, 0.1, 0.0),
         ("0.1", "as paper", "none: torch.nn.CrossEntropyLoss()"),
         "the published losses differ", "not measured here"),
    _row("gradient clipping", "clip_grad", (5.0, 5.0, 0.0),
         ("each head's gradient norm clipped to 5", "as paper", "none"),
         "the published steps differ", "not measured here"),
    _row("probe head", "probe_head", ("ov", "ov", "vjepa2"),
         ("OneVision's attention-pooling head: one query, one block, D/64 heads "
          "(`python -m eval_encoder ls heads`)", "as paper",
          "V-JEPA 2's AttentiveClassifier: 3 self-attention blocks over every token, then a "
          "query's cross-attention block, linear"),
         "the published heads differ", "not measured here"),
    _row("attention blocks", "probe_size", (None, None, 4),
         ("the head kind's (ov: 1)", "as paper", "num_probe_blocks: 4"),
         "the published heads differ", "not measured here"),
    _row("attention heads", "probe_num_heads", (None, None, 16),
         ("the head kind's (ov: width / 64)", "as paper", "num_heads: 16"),
         "the published heads differ", "not measured here"),
    _row("learning rates", "default_lr_list",
         (None, None, ByDataset([0.005, 0.003, 0.001, 0.0003, 0.0001],
                                (("diving48", [0.001, 0.0003, 0.0001]),
                                 ("jester", [0.001, 0.0003, 0.0001])))),
         ("the recipe's (one head per rate)", "as paper",
          "multihead_kwargs: lr 0.005, 0.003, 0.001, 0.0003, 0.0001 (Diving48 and Jester: "
          "0.001, 0.0003, 0.0001), each head's start_lr its own"),
         "V-JEPA 2 trains a grid of heads and reports the best",
         "20 heads on one encoder pass (Diving48 and Jester: 3)"),
    _row("weight decays", "default_weight_decay",
         (None, None, ByDataset([0.01, 0.1, 0.4, 0.8], (("diving48", [0.8]), ("jester", [0.8])))),
         ("the recipe's (one head per rate and decay)", "as paper",
          "multihead_kwargs: weight_decay 0.01, 0.1, 0.4, 0.8 (Diving48 and Jester: 0.8), "
          "final_weight_decay equal to it (constant)"),
         "V-JEPA 2 trains a grid of heads and reports the best",
         "4 decays x 5 rates: 20 heads (Diving48 and Jester: 3)"),
    _row("learning-rate schedule", "lr_schedule", ("linear", "linear", "cosine"),
         ("LinearLR from each head's rate to --default_min_lr over the run", "as paper",
          "WarmupCosineSchedule: warmup 0, then cosine from each head's rate to final_lr 0"),
         "the published optimisers differ", "not measured here"),
    _row("batch per step", "global_batch_size",
         (None, None, ByDataset(256, (("diving48", 128), ("jester", 128)))),
         ("the card's batch per process x processes", "as paper",
          "batch_size 4 (Diving48 and Jester: 2) on 8 nodes x 8 GPUs: 256 (128) clips per "
          "step, accumulated on fewer processes"),
         "the published launches differ",
         "64x fewer optimiser steps per epoch than batch 4 on one process"),
)


BEHAVIOURS: Tuple[Behaviour, ...] = (
    _row("pixel rounding", "round_pixels", (True, False, True),
         ("frames stay uint8 through resize, crop and each colour op (DALI on uint8)",
          "float32 from decode to normalisation",
          "evaluation frames are resized by OpenCV on uint8 and stay 8-bit until "
          "normalised; the training augmentation keeps 8 bits through RandAugment (PIL) and is "
          "float from its crop on (it ignores this option)"),
         "8-bit rounding and clipping of the cubic overshoot are an artefact of the pipeline",
         "5 real clips, 8 frames at 224: mean 0.16-0.27 levels (of 255), max 8-24 levels at "
         "sharp edges; 0.01-0.54% of values move by more than half a level"),
    _row("brightness jitter", "brightness_mode", ("multiply", "shift", "shift"),
         ("U(-0.125, 0.125) passed as DALI's multiplicative `brightness`: a negative draw "
          "turns the clip black",
          "the same draw as an additive shift of the 0..255 range",
          "no colour jitter (the value acts only under --train_augment ov)"),
         "a black training clip carries no signal; the range was meant as a shift",
         "40.7% of 4,000 drawn training clips all black under `multiply` (0.8 x P(draw <= 0), "
         "plus draws so small that every pixel rounds to 0); none under `shift`"),
    _row("steps per epoch", "drop_last", (True, False, False),
         ("floor(floor(n/W)/B) full steps; the remainder of each epoch is dropped",
          "ceil(ceil(n/W)/B) steps; every training clip every epoch",
          "ceil(ceil(n/W)/B) steps: the sampler pads each rank's share with repeated "
          "clips and the loader keeps the last short batch"),
         "dropping clips wastes data and makes the epoch depend on W",
         "up to W*B-1 training clips left out per epoch: 17 of SSv2's 168,913 at W=8, B=4 "
         "(5,278 vs 5,279 steps)"),
    _row("selection split", "select_on", ("val", "val", "val"),
         ("the (head, epoch) with the best validation score is reported: chosen on the split "
          "that is reported", "as paper (--select_on heldout is opt-in: see results/README.md)",
          "as published: the best of the head grid on the validation split"),
         "both published codes choose on the reported split; clean keeps it so that its numbers "
         "stay comparable with theirs (heldout also trains on 10% fewer clips) and its recipe "
         "hashes stay",
         "simulated, 20 heads x 20 epochs of equal true accuracy 60%: the val max overstates "
         "it by 2.6 points at 1,530 val clips and 0.65 at 24,777; the held-out choice by "
         "0.0 (benchmarks/bench_selection_grid.py, results/README.md)"),
    _row("codec frame ids", "codec.codec_frame_ids", ("trunc", "round", "round"),
         ("np.linspace(0, n-1, 64, dtype=int): truncated",
          "rounded to the nearest frame",
          "no codec selection in V-JEPA 2: the clean value"),
         "rounding spreads the 64 frames symmetrically over the clip",
         "for clip lengths 65-1000: a median of 31 of 64 ids differ by one frame "
         "(10th-90th percentile 27-31)"),
    _row("codec zeroed frames", "codec.zero_frames", ("gop16", "unreferenced", "unreferenced"),
         ("the HEVC re-encode has an intra frame every 16 source frames: a sampled frame on "
          "one (at most 8 of them), and every repeat of an id but its last, get a zero map",
          "only frames without a predecessor (frame 0) and repeats of an id get a zero map",
          "no codec selection in V-JEPA 2: the clean value"),
         "the GOP grid is an artefact of the re-encode, not of the clip's content",
         "clips of 65-1000 frames: 1-8 (median 5) of 64 maps zero under `gop16`, 1 (frame 0) "
         "under `unreferenced`"),
    _row("codec motion floor", "codec.mv_floor", (1e-6, 1.0, 1.0),
         ("the motion map is divided by max(p95, 1e-6 px)",
          "divided by max(p95, 1 px)",
          "no codec selection in V-JEPA 2: the clean value"),
         "below one pixel the vectors are round-off; dividing by it makes noise salient",
         "on near-static frames the published map saturates to 1 wherever any vector is non-zero"),
    _row("codec map grid", "codec.map_grid", ("pixel", "cell", "cell"),
         ("every stage at pixel resolution: camera fit on at most 5000 subsampled pixels, "
          "3x3-pixel local-variance window, map stored as uint8 (truncated), resized with a "
          "cubic (a=-0.75) filter, re-quantised, cropped at floor((size-224)/2), patch sums",
          "on 8-pixel motion cells: camera fit on every cell with a vector, 3x3-cell window, "
          "float map pooled with the pixels' own resize and crop",
          "no codec selection in V-JEPA 2: the clean value"),
         "a 3x3-pixel window on a block-constant field sees only block edges; uint8 "
         "truncation and a map one pixel off the pixels' crop are artefacts",
         "given the published decoder's vectors and residuals (13 clips x 2 settings), our "
         "pixel-grid stages give the published 8-bit maps exactly (0 pixels differ on all 26); "
         "end to end, picks overlap the published ones with a median Jaccard of 0.67 under "
         "`pixel` and 0.37 under `cell` (real clips: 0.55 and 0.22)"),
    _row("codec map resolution", "codec.map_resolution", ("source", "map", "map"),
         ("the re-encode, its vectors and residual and every map stage at the source's "
          "resolution",
          "the frames are first area-downscaled to the size the pixels are resized to (shorter "
          "side 224 by default), and everything after runs at that size; frames that this would "
          "not shrink by a quarter of their pixels (320x240) or would enlarge are kept",
          "no codec selection in V-JEPA 2: the clean value"),
         "the map is pooled into patches of that resize: finer detail reaches the picks only "
         "through the per-pixel normalisation and the motion search, at 10x the pixels at "
         "1280x720",
         "picks vs `source` on 12 downscaled clips (8 generated, 640x360-1280x720; 4 real, "
         "640x480-768x576): median Jaccard 0.66 (0.36-0.95; real clips 0.59); the moving "
         "square's share of the picks is unchanged (within 0.02) on 5 of 6 generated clips and "
         "falls from 0.80 to 0.52 on one whose background pans by 2 px a frame (1.24 px at 224, "
         "which integer-pel search cannot follow); under `paper` the overlap would be 0.55 "
         "(0.25-0.80) and one clip would lose its square (0.29 to 0.02), so `paper` keeps the "
         "source's resolution"),
    _row("codec top-K ties", "codec.topk_ties", ("partition", "stable", "stable"),
         ("np.argpartition order among equal patch scores",
          "stable: the lower index first",
          "no codec selection in V-JEPA 2: the clean value"),
         "reproducible across numpy versions",
         "given the published maps, every pick that differs is a tie at the K-th score: 0-25 "
         "of 2,048 on 24 of 26 runs, 1,024 on an all-zero near-static clip"),
    *VJEPA2_ROWS,
)


ALL_DEVIATIONS: Tuple[Deviation, ...] = (*DEVIATIONS, *VJEPA2_DEVIATIONS)
# how the tables head each protocol's description, and each published code's
DOES_HEADER = {"paper": "published scripts (paper)", "clean": "clean instead",
               "vjepa2": "V-JEPA 2's code (vjepa2)"}
CODE_HEADER = {ONEVISION: "published scripts", VJEPA2: "V-JEPA 2's code"}


def rows() -> List[Behaviour]:
    return list(BEHAVIOURS)


def _holder(cfg, option: str) -> Tuple[Any, str]:
    """The object that carries ``option`` and the field name on it."""
    if option.startswith("codec."):
        return cfg.codec, option.split(".", 1)[1]
    return cfg, option


def _choices(holder, name: str):
    for f in dataclasses.fields(holder):
        if f.name == name:
            return f.metadata.get("choices")
    raise KeyError(f"protocol option {name!r} is not a config field")


def _given(cfg, holder, name: str) -> bool:
    """Whether the run set ``name`` itself (command line, recipe, caller): a value, and a
    source that names where it came from."""
    return getattr(holder, name) is not None and name in cfg.sources


def apply_protocol(cfg) -> None:
    """Give every behaviour option the run did not set itself the value of ``cfg.protocol``
    (for ``cfg.dataset``), unless that value is None; check the values."""
    info(cfg.protocol)
    for row in BEHAVIOURS:
        holder, name = _holder(cfg, row.option)
        value = row.value(cfg.protocol, cfg.dataset)
        if value is not None and not _given(cfg, holder, name):
            setattr(holder, name, value)
            cfg.sources[name] = origin(cfg.protocol)
        choices = _choices(holder, name)
        if choices and getattr(holder, name) not in choices:
            raise ConfigError(f"{row.flag} {getattr(holder, name)!r}: choose one of "
                              f"{', '.join(map(str, choices))}")


def resolve_codec(opts, protocol: str = DEFAULT):
    """A copy of CodecOptions ``opts`` with every unset (None) behaviour from ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    values = {r.option.split(".", 1)[1]: r.value(protocol) for r in BEHAVIOURS
              if r.option.startswith("codec.") and getattr(opts, r.option.split(".", 1)[1]) is None}
    return dataclasses.replace(opts, **values)


def departures(cfg) -> Dict[str, Any]:
    """Options whose resolved value differs from ``cfg.protocol``'s (set on their own), and
    deviations taken back to the published behaviour (``--val_sampling published``)."""
    out = {}
    for row in BEHAVIOURS:
        holder, name = _holder(cfg, row.option)
        wanted = row.value(cfg.protocol, cfg.dataset)
        if wanted is not None and getattr(holder, name) != wanted:
            out[name] = getattr(holder, name)
    for dev in ALL_DEVIATIONS:  # a deviation reverted on request departs from every protocol
        if dev.option and getattr(cfg, dev.option) != dev.keeps:
            out[dev.option] = getattr(cfg, dev.option)
    return out


def describe(cfg) -> Dict[str, Any]:
    """The record's ``protocol`` block: the name, every behaviour's value, and departures."""
    values = {}
    for row in BEHAVIOURS:
        holder, name = _holder(cfg, row.option)
        values[name] = getattr(holder, name)
    return {"name": cfg.protocol, "values": values, "departures": departures(cfg)}


def label(record: Dict[str, Any]) -> str:
    """``paper``, ``clean``, ``vjepa2``, ``paper*`` (with departures) or ``?`` from a run
    record."""
    block = record.get("protocol") or {}
    name = block.get("name") or (record.get("config") or {}).get("protocol") or "?"
    return name + ("*" if block.get("departures") else "")


def shown(value: Any) -> str:
    """A protocol value as the tables print it: ``code``, per dataset, or a dash for None."""
    if value is None:
        return "–"
    return f"`{value}`" if not isinstance(value, ByDataset) else f"`{value.default!r}`" + \
        str(value)[len(repr(value.default)):]


def _markdown_behaviours() -> List[str]:
    names = " | ".join(PROTOCOLS)
    does = " | ".join(DOES_HEADER.get(p, p) for p in PROTOCOLS)
    head = [f"| behaviour | flag | {names} | {does} | why | measured effect |",
            "|" + "---|" * (4 + 2 * len(PROTOCOLS))]
    return head + [f"| {r.name} | `{r.flag}` | "
                   + " | ".join(shown(r.values[p]) for p in PROTOCOLS) + " | "
                   + " | ".join(r.does[p] for p in PROTOCOLS) + f" | {r.why} | {r.effect} |"
                   for r in BEHAVIOURS]


def _markdown_deviations(code: str) -> List[str]:
    kept = ", ".join(following(code))
    head = [f"| difference | {CODE_HEADER[code]} | here ({kept}) | why | measured effect | "
            "flag |", "|---|---|---|---|---|---|"]
    return head + [f"| {d.name} | {d.published} | {d.ours} | {d.why} | {d.effect} | `{d.flag}` |"
                   for d in ALL_DEVIATIONS if d.code == code]


def markdown_tables() -> str:
    """The behaviours, then each published code's kept differences, as Markdown (``ls
    protocol --markdown`` and results/README.md)."""
    parts = [_markdown_behaviours()] + [_markdown_deviations(code) for code in PUBLISHED]
    return "\n\n".join("\n".join(part) for part in parts) + "\n"
