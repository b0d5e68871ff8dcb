"""A probe run's data: the dataset card's defaults, both manifests checked before anything
heavy loads (every clip opens, few enough unreadable), the train and val datasets fed by the
clip source the encoder declares, and this rank's loaders under the step plan.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from eval_encoder import distributed as dist
from eval_encoder.config import ConfigError, ProbeConfig, require
from eval_encoder.probe.heldout import HELDOUT, split_entries
from eval_encoder.probe.trainer import (
    ProbeTrainer,
    RunFailed,
)
from eval_encoder.registry import CLIP_SOURCES
from eval_encoder.video import preflight
from eval_encoder.video.augment import DALI_AUGMENTS
from eval_encoder.video.dataset import ClipDataset
from eval_encoder.video.loader import make_loader, pick_backend, val_order
from eval_encoder.video.manifest import (
    DatasetCard,
    invisible_note,
    load_card,
    read_manifest,
    split_paths,
)
from eval_encoder.video.steps import StepPlan, StepPlanError, chunk, make_plan, train_batches
from eval_encoder.video.transforms import TransformSpec

log = logging.getLogger("eval_encoder.run")
CARD_ORIGIN = "dataset card"  # how a run's sources name a value the card supplied
MONITOR_STREAM = 7_402  # the monitor's own random stream beside the seed (any fixed number)


@dataclass
class Splits:
    card: DatasetCard
    video_root: str
    train_csv: str
    val_csv: str
    train: ClipDataset
    val: ClipDataset
    monitor: Optional[ClipDataset] = None  # a few training clips in eval mode (probe/monitor.py)
    heldout: Optional[ClipDataset] = None  # --select_on heldout: out of training (probe/heldout.py)


def resolve_dataset(cfg: ProbeConfig) -> DatasetCard:
    """Fill class count, epochs, batch size and input size from the dataset card where not
    given."""
    card = load_card(cfg.dataset)
    require(cfg.num_classes in (0, card.num_classes),
            f"--num_classes {cfg.num_classes} disagrees with datasets/{card.name}.yaml "
            f"({card.num_classes} classes)")
    cfg.num_classes = card.num_classes
    for name, value in (("batch_size", card.default_batch_size),
                        ("default_epoch", card.default_epochs), ("input_size", card.input_size)):
        if getattr(cfg, name) is None and value is not None:
            setattr(cfg, name, value)
            cfg.sources[name] = f"{CARD_ORIGIN} {card.path}"
    require(cfg.batch_size > 0, f"--batch_size must be positive, got {cfg.batch_size}")
    require(cfg.default_epoch > 0, f"--default_epoch must be positive, got {cfg.default_epoch}")
    return card


def check_data(cfg: ProbeConfig) -> None:
    """Usage mistakes about the data, found before anything is written or opened: no
    ``--data_root``, one that is not a folder, a manifest that is not there (ConfigError
    naming the path and the way out). The manifests' lines and clips are the run's to read."""
    card = load_card(cfg.dataset)
    holding = f"the folder holding {card.name}/{card.train_manifest}"
    require(cfg.data_root is not None, f"--data_root is required ({holding})")
    require(os.path.isdir(cfg.data_root),
            f"--data_root {cfg.data_root}: no such folder{invisible_note(cfg.data_root)} "
            f"(give {holding})")
    _, train_csv, val_csv = split_paths(card, cfg.data_root, cfg.train_data_csv_path,
                                        cfg.val_data_csv_path)
    for flag, path in (("--train_data_csv_path", train_csv), ("--val_data_csv_path", val_csv)):
        require(os.path.isfile(path),
                f"manifest not found: {path}{invisible_note(path)}; write it from the official "
                f"annotations with `python -m eval_encoder prepare {card.name} --out "
                f"{cfg.data_root} ...` (`prepare --help` lists the datasets it knows), or name "
                f"another file with {flag}")


def check_steps(cfg: ProbeConfig, trained: int, world: int) -> None:
    """The step plan over the ``trained`` clips the heads train on has a step per epoch
    (ConfigError naming the way out), checked from the manifest before the encoder loads."""
    try:
        plan = make_plan(cfg.global_batch_size, cfg.batch_size, world, cfg.drop_last)
        plan.steps(trained)
    except StepPlanError as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class Manifests:
    root: str
    train_csv: str
    val_csv: str
    train: list
    val: list


def read_manifests(cfg: ProbeConfig, card: DatasetCard) -> Manifests:
    """Read and check both manifests before anything heavy (encoder weights) is loaded."""
    return check_clips(cfg, card, parse_manifests(cfg, card))


def parse_manifests(cfg: ProbeConfig, card: DatasetCard) -> Manifests:
    """Both manifests' lines, checked (ManifestError naming the file and line)."""
    require(cfg.data_root is not None, "--data_root is required (the folder holding "
            f"{card.name}/{card.train_manifest})")
    root, train_csv, val_csv = split_paths(card, cfg.data_root, cfg.train_data_csv_path,
                                           cfg.val_data_csv_path)
    return Manifests(root, train_csv, val_csv, read_manifest(train_csv, card.num_classes),
                     read_manifest(val_csv, card.num_classes))


def check_clips(cfg: ProbeConfig, card: DatasetCard, out: Manifests) -> Manifests:
    """Every clip opens with a video stream, or few enough do not (``--max_skip_fraction``):
    RunFailed listing them otherwise."""
    root = out.root
    splits = {"train": out.train, "val": out.val}
    # every clip opens with a video stream? (cached; each rank checks a share, as torchrun set)
    failed = preflight.failures_by_split(
        {name: [os.path.join(root, e.path) for e in entries] for name, entries in splits.items()},
        cache=preflight.cache_file(cfg.save_report, card.name),
        shard=(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))),
        gather=dist.all_gather_objects)
    try:
        for name, entries in splits.items():
            check_files_exist(entries, root, name, cfg.max_skip_fraction, failed[name])
    except RunFailed as exc:  # the failed record says how many clips each split has
        for name, entries in splits.items():
            exc.samples.setdefault(name, {})["expected"] = len(entries)
        raise
    return out


def clip_source(cfg: ProbeConfig, spec):
    """The clip source the encoder declares, set up for the run."""
    source_cls = CLIP_SOURCES.get(spec.clip_source)
    return source_cls(num_frames=spec.num_frames or cfg.num_frames,
                      decode_threads=cfg.decord_num_threads, cfg=cfg, spec=spec)


def eval_dataset(cfg: ProbeConfig, entries: list, root: str, source,
                 views: bool = True) -> ClipDataset:
    """The evaluation view of ``entries`` (the validation split's, and ``embed``'s): every
    temporal x spatial view the run asks for, or with ``views`` off one (the centre) view."""
    temporal, spatial = (cfg.num_temporal_crops, cfg.num_spatial_crops) if views else (1, 1)
    return ClipDataset(entries, root, source, train=False, seed=cfg.seed,
                       temporal_views=temporal, spatial_views=spatial)


def build_splits(cfg: ProbeConfig, card: DatasetCard, m: Manifests, spec) -> Splits:
    """The train and val datasets, fed by the clip source the encoder declares."""
    source = clip_source(cfg, spec)
    entries, held = training_entries(cfg, m.train)
    train = ClipDataset(entries, m.root, source, train=True, seed=cfg.seed,
                        augment=cfg.train_augment or "ov")
    val = eval_dataset(cfg, m.val, m.root, source)
    watched = monitor_entries(entries, cfg.monitor_clips, cfg.seed)
    monitor = ClipDataset(watched, m.root, source, train=False, seed=cfg.seed) if watched else None
    heldout = eval_dataset(cfg, held, m.root, source) if held else None
    return Splits(card, m.root, m.train_csv, m.val_csv, train, val, monitor, heldout)


def training_entries(cfg: ProbeConfig, entries: list):
    """(the clips the heads train on, the held-out clips): all and none unless --select_on
    heldout takes its slice out (probe/heldout.py)."""
    if cfg.select_on != HELDOUT:
        return list(entries), []
    train, held = split_entries(entries, cfg.heldout_fraction, cfg.seed)
    require(held, f"--select_on heldout: no class of the {len(entries)} training clips has two "
            "clips, so none can be held out")
    return train, held


def monitor_entries(entries: list, n: int, seed: int) -> list:
    """``n`` training clips (all, when fewer) drawn once from the seed, in manifest order: the
    same clips on any world size and at every epoch."""
    if n <= 0 or not entries:
        return []
    rng = np.random.default_rng([seed, MONITOR_STREAM])
    picked = rng.choice(len(entries), size=min(n, len(entries)), replace=False)
    return [entries[i] for i in sorted(picked.tolist())]


def build_loaders(cfg: ProbeConfig, splits: Splits, spec, env):
    """Train and val loaders over this rank's batches (video/steps.py, video/loader.py), the
    step plan, and the backend."""
    tspec = transform_spec(cfg, spec)
    require(cfg.drop_last is not None, "drop_last is unset: the protocol was not resolved "
            "(it fills drop_last from --protocol)")
    backend = pick_backend(cfg.loader, env.device)
    require(backend != "dali" or (cfg.train_augment or "ov") in DALI_AUGMENTS,
            f"--train_augment {cfg.train_augment} runs in the torch loader only (the DALI "
            "pipeline has no RandAugment or random resized crop): use --loader torch (or auto)")
    cfg.sources.setdefault("loader_backend", backend)
    extras = list(getattr(splits.train.source, "extras_keys", ()))  # declared by the source
    n_train, n_val, views = len(splits.train), len(splits.val.entries), splits.val.views
    try:
        plan = make_plan(cfg.global_batch_size, cfg.batch_size, env.world_size, cfg.drop_last)
        plan.steps(n_train)  # fail before training
    except StepPlanError as exc:
        raise ConfigError(str(exc)) from None
    for warning in batch_warnings(plan, n_train, n_val * views):
        log.warning("%s", warning)
    if cfg.global_batch_size is None:
        log.info("global batch %d = --batch_size %d x %d processes: results depend on the world "
                 "size (--global_batch_size makes them independent of it)", plan.global_batch,
                 cfg.batch_size, env.world_size)

    def train_batches_of(epoch):  # validation never drops: every clip is scored once
        return train_batches(n_train, epoch, env.rank, plan, cfg.seed)

    def val_batches(_epoch):
        return chunk(val_order(n_val, views, env.rank, env.world_size), cfg.batch_size)

    def monitor_batches(_epoch):
        return chunk(val_order(len(splits.monitor), 1, env.rank, env.world_size), cfg.batch_size)

    common = dict(batch_size=cfg.batch_size, tspec=tspec, backend=backend, device=env.device,
                  workers=cfg.dali_py_num_workers, dali_threads=cfg.dali_num_threads,
                  seed=cfg.seed, extras_keys=extras)
    # a few clips an epoch: decoded in this process, no more worker processes for them
    monitor = (make_loader(splits.monitor, monitor_batches, **dict(common, workers=0))
               if splits.monitor is not None else None)
    return (make_loader(splits.train, train_batches_of, **common),
            make_loader(splits.val, val_batches, **common), monitor), plan, backend


def eval_view_loader(cfg: ProbeConfig, splits: Splits, spec, env):
    """The train clips in the evaluation view (the validation transform, one view each: the
    temporal and spatial centre), this rank's share, every clip on one rank only: what the
    train vectors of a kNN head come from (probe/pooled.py)."""
    data = ClipDataset(splits.train.entries, splits.video_root, splits.train.source, train=False,
                       seed=cfg.seed)

    def batches(_epoch):
        return chunk(val_order(len(data), 1, env.rank, env.world_size), cfg.batch_size)

    backend = cfg.sources.get("loader_backend") or pick_backend(cfg.loader, env.device)
    return make_loader(data, batches, batch_size=cfg.batch_size, tspec=transform_spec(cfg, spec),
                       backend=backend, device=env.device, workers=cfg.dali_py_num_workers,
                       dali_threads=cfg.dali_num_threads, seed=cfg.seed,
                       extras_keys=list(getattr(splits.train.source, "extras_keys", ())))


def heldout_loader(cfg: ProbeConfig, splits: Splits, spec, env):
    """The held-out clips in the evaluation view (every view validation takes), this rank's
    share, each clip on one rank only (None: no held-out slice)."""
    if splits.heldout is None:
        return None
    n, views = len(splits.heldout.entries), splits.heldout.views

    def batches(_epoch):
        return chunk(val_order(n, views, env.rank, env.world_size), cfg.batch_size)

    backend = cfg.sources.get("loader_backend") or pick_backend(cfg.loader, env.device)
    return make_loader(splits.heldout, batches, batch_size=cfg.batch_size,
                       tspec=transform_spec(cfg, spec), backend=backend, device=env.device,
                       workers=cfg.dali_py_num_workers, dali_threads=cfg.dali_num_threads,
                       seed=cfg.seed,
                       extras_keys=list(getattr(splits.train.source, "extras_keys", ())))


def batch_warnings(plan: StepPlan, n_train: int, n_val: int) -> List[str]:
    """What a batch larger than a split means: the training steps an epoch then has, and
    that validation runs in one batch per process (``n_val``: clips x views)."""
    out = []
    if plan.global_batch > n_train:
        out.append(f"the global batch {plan.global_batch} ({plan.world} processes x "
                   f"{plan.accumulation} micro-batches of --batch_size {plan.micro}) is larger "
                   f"than the {n_train} training clips: {plan.steps(n_train)} optimiser "
                   f"step(s) per epoch, of {n_train} clips")
    per_rank = -(-n_val // plan.world)
    if plan.micro > per_rank:
        out.append(f"--batch_size {plan.micro} is larger than the {per_rank} validation "
                   f"clip views per process ({n_val} over {plan.world}): 1 validation batch "
                   "per process")
    return out


def check_files_exist(entries, root: str, split: str, limit: float,
                      failed: Optional[Dict[str, str]] = None) -> None:
    """Fail before any training when more clips cannot be read than the run may skip.

    ``failed`` ({path: reason}, from the preflight) defaults to the clips whose file is
    missing. The error names the first few; ``exc.samples[split]["skipped"]`` lists all,
    for the failed record.
    """
    paths = [os.path.join(root, e.path) for e in entries]
    if failed is None:
        failed = {p: f"file not found{invisible_note(p)}" for p in paths if not os.path.isfile(p)}
    listed = [{"clip": i, "line": e.line, "path": p, "reason": failed[p]}
              for i, (e, p) in enumerate(zip(entries, paths)) if p in failed]
    if len(listed) > limit * len(entries):
        exc = RunFailed(preflight.limit_message(split, len(listed), len(entries), limit, listed))
        exc.samples = {split: {"expected": len(entries), "skipped": listed}}
        raise exc
    if listed:
        log.warning("%d %s clips cannot be read (first: %s: %s); they will be skipped and "
                    "listed in the record", len(listed), split, listed[0]["path"],
                    listed[0]["reason"])


def transform_spec(cfg: ProbeConfig, spec) -> TransformSpec:
    """The encoder's crop and normalisation, with the protocol's pixel rounding and brightness."""
    short = cfg.short_side_size or spec.input_size
    require(short >= spec.input_size, f"--short_side_size {short} is smaller than the crop {spec.input_size}")
    for name in ("round_pixels", "brightness_mode"):
        require(getattr(cfg, name) is not None, f"{name} is unset: the protocol was not resolved "
                f"(it fills {name} from --protocol)")
    return TransformSpec(input_size=spec.input_size, short_side=short,
                         mean=tuple(spec.mean), std=tuple(spec.std),
                         round_pixels=cfg.round_pixels, brightness_mode=cfg.brightness_mode)


def skip_check(trainer: ProbeTrainer, split: str, clips: int, views: int, limit: float) -> None:
    """Fail (on every rank) once a split has more unreadable clips than allowed."""
    merged = {}
    for part in dist.all_gather_objects(trainer.counters.skipped.get(split, {})):
        merged.update(part)
    trainer.counters.skipped[split] = merged
    lost = {index // views for index in merged}  # one failed view loses its whole clip
    if len(lost) > limit * clips:
        listed = [dict(v, clip=k // views) for k, v in sorted(merged.items())]
        exc = RunFailed(preflight.limit_message(split, len(lost), clips, limit, listed))
        exc.samples = {split: {"expected": clips, "skipped": listed}}  # all, for the record
        raise exc
