"""The named protocols as data: every behaviour in which the published scripts and our
corrections differ is one row here, and code asks for the resolved value, never for the name.

``paper`` reproduces the published OneVision-Encoder attentive-probe scripts in every
deterministic respect that moves a number; ``clean`` keeps our corrections where they are
corrections. A row's option can still be set on its own (command line or recipe), which wins
over the protocol. Differences that no protocol reverts (validation coverage, clip
substitution, ...) are listed in :data:`DEVIATIONS`; both tables are printed by
``python -m eval_encoder ls protocol`` and reproduced in ``results/README.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from eval_encoder.config import ConfigError

PROTOCOLS = ("paper", "clean")
DEFAULT = "paper"
REPORTED = "paper"  # the protocol that produced the paper's reported numbers
UNSTATED = "unstated"  # label of records written before protocols existed


@dataclass(frozen=True)
class Behaviour:
    """A behaviour the protocol switches: the option that carries it and its value per protocol."""

    name: str
    option: str  # a ProbeConfig field, or "codec.<CodecOptions field>"
    paper: Any
    clean: Any
    published: str  # what the published scripts do
    ours: str  # what the clean value does instead
    why: str
    effect: str  # the measured effect of the difference

    def value(self, protocol: str) -> Any:
        return getattr(self, protocol)

    @property
    def flag(self) -> str:
        return "--" + self.option.split(".")[-1]


UNRELEASED = "<data_root>/<dataset>/*_new.csv lists, never released"


@dataclass(frozen=True)
class Deviation:
    """A difference from the published scripts that every protocol keeps."""

    name: str
    published: str
    ours: str
    why: str
    effect: str
    flag: str = "none"
    # a ProbeConfig field that can take the published behaviour instead, and the value that
    # keeps ours: any other value is a departure from the protocol (see :func:`departures`)
    option: str = ""
    keeps: Any = None


BEHAVIOURS: Tuple[Behaviour, ...] = (
    Behaviour(
        "pixel rounding", "round_pixels", True, False,
        "frames stay uint8 through resize, crop and each colour op (DALI on uint8)",
        "float32 from decode to normalisation",
        "8-bit rounding and clipping of the cubic overshoot are an artefact of the pipeline",
        "5 real clips, 8 frames at 224: mean 0.16-0.27 levels (of 255), max 8-24 levels at "
        "sharp edges; 0.01-0.54% of values move by more than half a level"),
    Behaviour(
        "brightness jitter", "brightness_mode", "multiply", "shift",
        "U(-0.125, 0.125) passed as DALI's multiplicative `brightness`: a negative draw "
        "turns the clip black",
        "the same draw as an additive shift of the 0..255 range",
        "a black training clip carries no signal; the range was meant as a shift",
        "40.7% of 4,000 drawn training clips all black under `multiply` (0.8 x P(draw <= 0), "
        "plus draws so small that every pixel rounds to 0); none under `shift`"),
    Behaviour(
        "steps per epoch", "drop_last", True, False,
        "floor(floor(n/W)/B) full steps; the remainder of each epoch is dropped",
        "ceil(ceil(n/W)/B) steps; every training clip every epoch",
        "dropping clips wastes data and makes the epoch depend on W",
        "up to W*B-1 training clips left out per epoch: 17 of SSv2's 168,913 at W=8, B=4 "
        "(5,278 vs 5,279 steps)"),
    Behaviour(
        "codec frame ids", "codec.codec_frame_ids", "trunc", "round",
        "np.linspace(0, n-1, 64, dtype=int): truncated",
        "rounded to the nearest frame",
        "rounding spreads the 64 frames symmetrically over the clip",
        "for clip lengths 65-1000: a median of 31 of 64 ids differ by one frame "
        "(10th-90th percentile 27-31)"),
    Behaviour(
        "codec zeroed frames", "codec.zero_frames", "gop16", "unreferenced",
        "the HEVC re-encode has an intra frame every 16 source frames: a sampled frame on "
        "one (at most 8 of them), and every repeat of an id but its last, get a zero map",
        "only frames without a predecessor (frame 0) and repeats of an id get a zero map",
        "the GOP grid is an artefact of the re-encode, not of the clip's content",
        "clips of 65-1000 frames: 1-8 (median 5) of 64 maps zero under `gop16`, 1 (frame 0) "
        "under `unreferenced`"),
    Behaviour(
        "codec motion floor", "codec.mv_floor", 1e-6, 1.0,
        "the motion map is divided by max(p95, 1e-6 px)",
        "divided by max(p95, 1 px)",
        "below one pixel the vectors are round-off; dividing by it makes noise salient",
        "on near-static frames the published map saturates to 1 wherever any vector is non-zero"),
    Behaviour(
        "codec map grid", "codec.map_grid", "pixel", "cell",
        "every stage at pixel resolution: camera fit on at most 5000 subsampled pixels, "
        "3x3-pixel local-variance window, map stored as uint8 (truncated), resized with a "
        "cubic (a=-0.75) filter, re-quantised, cropped at floor((size-224)/2), patch sums",
        "on 8-pixel motion cells: camera fit on every cell with a vector, 3x3-cell window, "
        "float map pooled with the pixels' own resize and crop",
        "a 3x3-pixel window on a block-constant field sees only block edges; uint8 "
        "truncation and a map one pixel off the pixels' crop are artefacts",
        "given the published decoder's vectors and residuals (13 clips x 2 settings), our "
        "pixel-grid stages give the published 8-bit maps exactly (0 pixels differ on all 26); "
        "end to end, picks overlap the published ones with a median Jaccard of 0.67 under "
        "`pixel` and 0.37 under `cell` (real clips: 0.55 and 0.22)"),
    Behaviour(
        "codec map resolution", "codec.map_resolution", "source", "map",
        "the re-encode, its vectors and residual and every map stage at the source's "
        "resolution",
        "the frames are first area-downscaled to the size the pixels are resized to (shorter "
        "side 224 by default), and everything after runs at that size; frames that this would "
        "not shrink by a quarter of their pixels (320x240) or would enlarge are kept",
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
    Behaviour(
        "codec top-K ties", "codec.topk_ties", "partition", "stable",
        "np.argpartition order among equal patch scores",
        "stable: the lower index first",
        "reproducible across numpy versions",
        "given the published maps, every pick that differs is a tie at the K-th score: 0-25 "
        "of 2,048 on 24 of 26 runs, 1,024 on an all-zero near-static clip"),
)


# The data: the published train/val lists (``<data_root>/<dataset>/*_new.csv``) were never
# released, so every dataset's lists are ours, written by ``prepare`` from the official
# annotations. Sizes: the publisher's, and what ``prepare`` wrote from official files where
# they could be had here (the file named in the row).
DATA: Tuple[Deviation, ...] = (
    Deviation(
        "data: SSv2", UNRELEASED,
        "every labelled clip of the official train.json and validation.json (validation as "
        "val; the test file has no labels); class = the template without brackets",
        "the official split, as every SSv2 evaluation uses it",
        "168,913 train / 24,777 val written from the official lists (the publisher's figures "
        "too)"),
    Deviation(
        "data: Diving48", UNRELEASED,
        "Diving48 V2 labels: Diving48_V2_train.json, and Diving48_V2_test.json as val",
        "V2 corrected V1's labels; the published probe names diving48 without a version",
        "15,027 train / 1,970 val by the publisher (not run here: no copy of the V2 files); V1 "
        "is not offered"),
    Deviation(
        "data: Perception Test", UNRELEASED,
        "action-localisation segments, one line per annotated action, in seconds "
        "(microsecond timestamps), train and valid by each video's split",
        "the benchmark's action labels are on segments of long videos",
        "73,503 segments in 11,353 videos over all splits by the publisher (per split not run "
        "here); the challenge files cover part of valid, all_valid.json all of it: which files "
        "are given decides the val split"),
    Deviation(
        "data: EPIC-Kitchens-100", UNRELEASED,
        "action segments of EPIC_100_train.csv / EPIC_100_validation.csv by exact frame numbers, "
        "labelled verb_class (epic_verb) or noun_class (epic_noun)",
        "the official split; frames are exact where the timestamps are rounded",
        "67,217 train by the publisher; 9,668 val written from EPIC_100_validation.csv "
        "(epic-kitchens-100-annotations ea8b404), the publisher's figure"),
    Deviation(
        "data: HMDB51", UNRELEASED,
        "split 1 of the three official splits (id 1 train, 2 val; id 0 left out)",
        "the usual single-split protocol; the original reports the mean of three splits",
        "3,570 train / 1,530 val written from the official split-1 files (the publisher's "
        "figures); splits 2 and 3 are not offered"),
    Deviation(
        "data: Kinetics-400", UNRELEASED,
        "the official train / validate CSVs, every clip found on disk (missing ones reported)",
        "clips disappear from YouTube: the lists are whatever copy the user has",
        "19,906 val written from the official kinetics-400_val.csv (246,534 train in the "
        "CVDF copy); published copies keep 97.5-99.5% of the clips"),
    Deviation(
        "data: Charades-Ego", UNRELEASED,
        "first-person videos (train_only1st, test_only1st), one single-label segment per "
        "(video, action) annotation, overlapping segments kept",
        "a single-label probe needs per-action segments; the egocentric benchmarks use the "
        "first-person files (EgoVLP and LaViLa test whole videos, multi-label, by mAP)",
        "68,536 action instances over both views by the publisher (not run here); the "
        "published code also names only1st/only3rd sets, so the paper's view is not known",
        "prepare --view, --overlap"),
)


DEVIATIONS: Tuple[Deviation, ...] = (
    Deviation(
        "validation coverage",
        "each rank permutes the whole list with its own seed and takes a slice, dropping "
        "the remainder: clips are scored 0..W times",
        "clips strided over ranks, no padding: every clip scored exactly once",
        "a measurement bug, not protocol",
        "with W=8, about 34% of validation clips unscored per evaluation; the best of E such "
        "evaluations (E = the card's epochs) beats a head that never changes by an expected "
        "+0.47 points on SSv2 (N=24,777, B=4, E=10), +2.18 Diving48 (1,970, 4, 30), +1.01 "
        "Perception Test (9,000 assumed, 4, 30), +0.53 Charades-Ego (9,000 assumed, 16, 10), "
        "+0.73 EPIC verb and +0.76 EPIC noun (9,668, 16, 10), +0.38 K400 (20,000, 16, 10), "
        "+1.87 HMDB51 (1,530, 2, 30), at the paper's OneVision Encoder numbers (Monte Carlo, "
        "error at most 0.01; results/val_sampling_optimism.csv)",
        "--val_sampling published", option="val_sampling", keeps="exact"),
    Deviation(
        "training shards",
        "each rank permutes the list with seed+rank: a clip is seen 0..W times per epoch",
        "one permutation per epoch shared by all ranks, split between them",
        "the same clip twice in an epoch while another is never seen is noise, and W-dependent",
        "with W=8, about 34% of training clips unseen in a given epoch upstream"),
    Deviation(
        "broken clips",
        "a clip that fails to decode is replaced by the first clip of the list",
        "skipped, counted and listed in the record; past --max_skip_fraction the run fails",
        "a silent substitution changes the data without a trace",
        "none on readable data", "--max_skip_fraction"),
    Deviation(
        "learning-rate sweep",
        "the encoder is re-loaded and re-run for every learning rate",
        "every (lr, wd) head trains on one encoder pass per batch",
        "the encoder is frozen: the tokens are the same",
        "none beyond data order and augmentation draws (shared by all heads here)"),
    Deviation(
        "randomness",
        "head init unseeded; frame offsets from numpy's global generator in each worker; "
        "per-rank permutations seeded seed+rank",
        "every draw keyed by (seed, epoch, sample), whatever the worker or rank",
        "runs repeat exactly", "none (a seed changes the draws, not their law)", "--seed"),
    Deviation(
        "validation head precision",
        "head logits under bf16 autocast",
        "validation logits in float32 before views are averaged",
        "bf16 logits round to 3 significant digits before the argmax",
        "rounding level"),
    Deviation(
        "decoder",
        "decord",
        "PyAV (FFmpeg); frames counted from packets",
        "one maintained decoder for every path",
        "none on well-formed files (same decoded frames)"),
    Deviation(
        "codec stream",
        "the dataset is re-encoded once to HEVC (libx265, CRF 23, GOP 16, no B-frames, one "
        "reference); pixels and vectors both come from that file",
        "each sampled frame is re-encoded in memory to H.264 right after its source "
        "predecessor (one reference, QP 20) and its vectors and luma residual are read back; "
        "the frames are the original file's, or the HEVC copy's under --codec_pixels reencoded "
        "(next row)",
        "any input codec works and no re-encoded copy of the dataset is needed; FFmpeg "
        "exports H.264 vectors but not HEVC ones",
        "picks vs the published ones on the same videos, 13 clips x 2 settings: median "
        "Jaccard 0.67 (real clips 0.55); the suite's earlier 64-frame re-encode: 0.37 (0.17); "
        "from the original files instead of the HEVC copies: 0.68 (0.45)",
        "--mv_reference sampled"),
    Deviation(
        "codec pixels",
        "the encoder's pixels, and the frames the motion comes from, are decoded from that "
        "HEVC copy (libx265, preset fast, CRF 23, GOP 16, yuv420p, even size)",
        "decoded from the original file (`source`); `reencoded` makes the copy of each clip "
        "with those settings through PyAV (a segment alone, from its first frame), keeps it in "
        "`<cache_dir>/hevc` and decodes pixels and selection frames from it",
        "the copy is a lossy step of the published data preparation, not of the method; it "
        "costs a clip's first read 6-14x and a disk copy of the dataset, our copy is not the "
        "published file either (x265 build, frame for frame), and the recipes' records were "
        "made without it",
        "13 clips of 128 frames (6 generated, 320x240-1280x720; 5 made from photographs, a "
        "camera gliding by fractions of a pixel, 480x360): the 224 crops differ by 1.0-2.8 "
        "levels (mean absolute), PSNR 36.5-43.3 dB; picks overlap (Jaccard) 0.90-0.95 on the "
        "generated clips, 0.40-0.66 (paper) and 0.23-0.63 (clean) on the photo clips, where an "
        "H.264 re-encode of the same frames at CRF 10 already gives 0.45-0.67 and 0.26-0.70 "
        "(the background's picks follow compression noise) and the moving cut-out's share of "
        "the picks moves by at most 0.06. One thread: the copy costs 14-27x a plain 64-frame "
        "decode (1.2 s at 320x240, 3.2 s at 640x360, 11 s at 1280x720), a first read 6-14x, "
        "a later read from the copy 1.1-2.6x",
        "--codec_pixels"),
    Deviation(
        "map resize",
        "cv2.resize (INTER_CUBIC) on the 8-bit map, which the published OpenCV build runs "
        "through Intel IPP",
        "Keys a = -0.75 weights in float32 and IPP's float32 arithmetic, written here",
        "no OpenCV dependency; IPP's own weights are not published",
        "0-586 of 3.2 million map pixels per clip differ by one level on 26 runs; no pick "
        "changes"),
    Deviation(
        "intra frames past the eighth",
        "sampled ids on the GOP grid beyond the first 8 are decoded as P frames without "
        "vectors: their map is the intra-prediction residual, halved by the fusion",
        "such frames get their real source-rate motion map (our stream has no intra frame "
        "there)",
        "an artefact of the HEVC GOP: no input clip has intra frames on that grid",
        "only clips where more than 8 sampled ids are multiples of 16 (e.g. 14 of 64 "
        "frames of a 337-frame clip)"),
    Deviation(
        "top-K tie order",
        "np.argpartition of numpy 1.26 (the published environment)",
        "np.argpartition of the installed numpy (2.x here) under --topk_ties partition",
        "numpy does not promise an order among equal values; the installed numpy decides",
        "on a tie-heavy near-static clip 1,024 of 2,048 picks differ between numpy 1.26 and "
        "2.4; none where the K-th score is unique", "--topk_ties stable"),
    Deviation(
        "pixel rounding ties",
        "DALI on GPU rounds exact halves to even",
        "the torch path and DALI on CPU round halves away from zero",
        "DALI's CPU and GPU conversions differ; no GPU here to match",
        "1.6e-5 of resized values (those exactly on .5) differ by one level"),
    Deviation(
        "AIMv2 checkpoint",
        "apple/aimv2-large-patch14-native through transformers, from an internal path, at 224 "
        "px (aimv2_large_patch14_native_ap since 89169af; apple/aimv2-large-patch14-224 before)",
        "our assumption: the recipe runs timm's AIMv2-L/14 224 (apple_pt); the native "
        "checkpoint runs through --model_family hf",
        "timm has no native-resolution AIMv2 checkpoint",
        "not measured (no weights here)", "--model_family hf"),
    Deviation(
        "DINOv3 checkpoint",
        "the shells pass no checkpoint, and the DINOv3 wrapper refuses to build without one "
        "since 5f1ea80 (2025-12-25); before, it loaded an internal copy of DINOv3 ViT-L/16 "
        "LVD-1689M",
        "our assumption: timm's vit_large_patch16_dinov3.lvd1689m (that model, with its 4 "
        "registers)",
        "the released shells cannot load DINOv3 at all",
        "not measured (no weights here)", "--model_weight"),
    Deviation(
        "resize of the shorter side",
        "--short_side_size parsed but ignored (the shorter side goes to the crop size)",
        "honoured; by default the crop size, as published",
        "a parsed flag must act",
        "none at the default", "--short_side_size"),
    *DATA,
)


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


def apply_protocol(cfg) -> None:
    """Fill every behaviour option still unset (None) from ``cfg.protocol``; check the values."""
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {cfg.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    for row in BEHAVIOURS:
        holder, name = _holder(cfg, row.option)
        if getattr(holder, name) is None:
            setattr(holder, name, row.value(cfg.protocol))
            cfg.sources[name] = f"protocol {cfg.protocol}"
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
        if getattr(holder, name) != row.value(cfg.protocol):
            out[name] = getattr(holder, name)
    for dev in DEVIATIONS:  # a deviation reverted on request departs from both protocols
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
    """``paper``, ``clean``, ``paper*`` (with departures) or ``?`` from a run record."""
    block = record.get("protocol") or {}
    name = block.get("name") or (record.get("config") or {}).get("protocol") or "?"
    return name + ("*" if block.get("departures") else "")


def markdown_tables() -> str:
    """Both tables as Markdown (``ls protocol --format md`` and results/README.md)."""
    head = ["| behaviour | flag | paper | clean | published scripts | clean instead | why | "
            "measured effect |", "|---|---|---|---|---|---|---|---|"]
    body = [f"| {r.name} | `{r.flag}` | `{r.paper}` | `{r.clean}` | {r.published} | {r.ours} | "
            f"{r.why} | {r.effect} |" for r in BEHAVIOURS]
    dev = ["| difference | published scripts | here (both protocols) | why | measured effect | "
           "flag |", "|---|---|---|---|---|---|"]
    dev += [f"| {d.name} | {d.published} | {d.ours} | {d.why} | {d.effect} | `{d.flag}` |"
            for d in DEVIATIONS]
    return "\n".join(head + body + ["", *dev]) + "\n"
