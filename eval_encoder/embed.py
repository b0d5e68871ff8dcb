"""``python -m eval_encoder embed``: an encoder's features for videos, written as a feature
store (``features/store.py``) that a killed run continues and torchrun ranks share.

The encoder and preprocessing flags are the probe's (the same parser, recipe and protocol);
clips go through the probe's evaluation view (``probe/data.py: eval_dataset``, the same
loader and transforms) and its encoder pass (``ProbeTrainer.tokens``: segments folded).
This module only wires those units together.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from eval_encoder import __version__
from eval_encoder import distributed as dist
from eval_encoder.config import ConfigError, ProbeConfig, require
from eval_encoder.encoders import build_encoder, check_names, check_weights
from eval_encoder.features.cache import encoder_digest, pixel_options
from eval_encoder.features.pool import TokenLayout, pool_tokens, resolve_pool
from eval_encoder.features.store import (
    ShardWriter,
    StoreError,
    entries,
    read_header,
    read_sidecars,
    same_features,
    write_header,
    write_index,
)
from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import CARD_ORIGIN, clip_source, eval_dataset, transform_spec
from eval_encoder.encoders.weights import weights_identity
from eval_encoder.probe.run import cap_decode_workers, check_encoder_flags
from eval_encoder.probe.trainer import ProbeTrainer
from eval_encoder.registry import RegistryError
from eval_encoder.video.loader import make_loader, pick_backend
from eval_encoder.video.manifest import (
    ManifestEntry,
    ManifestError,
    load_card,
    read_manifest,
    split_paths,
)
from eval_encoder.video.steps import chunk

log = logging.getLogger("eval_encoder.embed")

PROG = "python -m eval_encoder embed"
POOLS = ("none", "mean", "cls", "auto")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# header keys a resumed run must share with the folder's
SAME = ("encoder", "weights", "preprocessing", "pool", "views", "dtype", "inputs")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(PROG, description=__doc__.split("\n\n")[0], epilog=(
        "Encoder, preprocessing and data flags are the probe's (--model_family, --model_name, "
        "--model_weight, --num_frames, --input_size, --protocol, --dataset, --data_root, "
        "--batch_size, ...: `python -m eval_encoder probe --help` lists them)."))
    parser.add_argument("--video", nargs="+", metavar="PATH", help="video file(s) to embed")
    parser.add_argument("--videos", metavar="FILE", help="a text file of videos, one `path` or "
                        "`path,label` a line, paths relative to the file's folder")
    parser.add_argument("--split", choices=("train", "val"), default="val",
                        help="the --dataset manifest to embed (default: val)")
    parser.add_argument("--views", choices=("one", "all"), default="one",
                        help="one: the centre view of each clip; all: every temporal x spatial "
                        "view the protocol (or --num_temporal_crops/--num_spatial_crops) gives "
                        "the probe's evaluation (default: one)")
    parser.add_argument("--pool", choices=POOLS, default="none",
                        help="none: every token [N, D]; mean, cls, auto: one vector "
                        "(features/pool.py) (default: none)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                        help="stored precision (default: float32)")
    parser.add_argument("--out", help="the store folder (default: <save_report>/embed/"
                        "<dataset>-<split>-<model_name>, or videos-<model_name>)")
    parser.add_argument("--shard_mb", type=float, default=256.0,
                        help="features per shard file, in MiB (default: 256)")
    add_verbosity_flags(parser)
    return parser


@dataclass
class Inputs:
    """What to embed: manifest-style entries, the folder their paths are relative to, and a
    name for the default output folder."""

    entries: List[ManifestEntry]
    root: str
    name: str
    source: str
    dataset: bool = False  # from a dataset's manifest: its card's sizes apply


def video_list(path: str) -> List[ManifestEntry]:
    """``path`` or ``path,label`` lines (blank and ``#`` lines skipped); errors name the line."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, _, label = text.partition(",")
        try:
            out.append(ManifestEntry(name.strip(), int(label) if label.strip() else -1, number))
        except ValueError:
            raise ConfigError(f"{path}:{number}: label {label!r} is not an integer") from None
    require(bool(out), f"--videos {path}: no videos listed")
    return out


def resolve_inputs(cfg: ProbeConfig, args) -> Inputs:
    """The clips ``--video``, ``--videos`` or ``--dataset``/``--split`` name."""
    if args.video:
        items = [ManifestEntry(p, -1, i + 1) for i, p in enumerate(args.video)]
        return Inputs(items, "", "videos", "command line")
    if args.videos:
        require(os.path.isfile(args.videos), f"--videos {args.videos}: no such file")
        return Inputs(video_list(args.videos), os.path.dirname(os.path.abspath(args.videos)),
                      Path(args.videos).stem, os.path.abspath(args.videos))
    card = load_card(cfg.dataset)
    require(cfg.data_root is not None, "give --video, --videos, or --dataset with --data_root")
    root, train_csv, val_csv = split_paths(card, cfg.data_root, cfg.train_data_csv_path,
                                           cfg.val_data_csv_path)
    csv = train_csv if args.split == "train" else val_csv
    require(os.path.isfile(csv), f"manifest not found: {csv} (write it with `python -m "
            f"eval_encoder prepare {card.name} ...`)")
    return Inputs(read_manifest(csv, card.num_classes), root, f"{card.name}-{args.split}",
                  os.path.abspath(csv),
                  dataset=True)


def clip_ids(items: Sequence[ManifestEntry]) -> List[str]:
    """Each entry's id (its path, and segment); a repeated one gets ``#<line>``."""
    seen: Counter = Counter()
    out = []
    for e in items:
        seen[e.id] += 1
        out.append(e.id if seen[e.id] == 1 else f"{e.id}#{e.line}")
    return out


def check_files(inputs: Inputs) -> None:
    missing = [e for e in inputs.entries if not os.path.isfile(os.path.join(inputs.root, e.path))]
    require(not missing, f"{len(missing)} video(s) not found, first: "
            f"{os.path.join(inputs.root, missing[0].path) if missing else ''} "
            f"(listed in {inputs.source}" + (f" line {missing[0].line})" if missing else ")"))


def apply_card(cfg: ProbeConfig, inputs: Inputs) -> None:
    """The dataset card's input size and batch size, as the probe takes them, when the clips
    come from a dataset (or ``--dataset`` is given with videos)."""
    card = load_card(cfg.dataset) if inputs.dataset or "dataset" in cfg.sources else None
    for name, value in (("batch_size", getattr(card, "default_batch_size", None)),
                        ("input_size", getattr(card, "input_size", None))):
        if getattr(cfg, name) is None and value is not None:
            setattr(cfg, name, value)
            cfg.sources[name] = f"{CARD_ORIGIN} {card.path}"
    cfg.batch_size = cfg.batch_size or 8


def out_folder(cfg: ProbeConfig, args, inputs: Inputs) -> Path:
    if args.out:
        return Path(args.out)
    return Path(cfg.save_report) / "embed" / f"{inputs.name}-{cfg.model_name}"


def inputs_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def describe(cfg: ProbeConfig, encoder, args, ids: Sequence[str], views: int,
             inputs: Inputs) -> Dict:
    """The store's header: what the features are and how they were made."""
    spec = encoder.spec
    weights = weights_identity(encoder, cfg)
    if weights["weights_sha256"] is None:
        weights["weights_sha256"] = encoder_digest(encoder)
        weights["weights_note"] = "no weight file: sha256 of the parameters (encoder_digest)"
    try:
        pool = args.pool if args.pool == "none" else resolve_pool(args.pool, layout_of(cfg, spec))
    except ValueError as exc:
        raise ConfigError(f"--{exc}") from None
    tspec = asdict(transform_spec(cfg, spec))
    return as_json({"encoder": {"family": spec.family, "model_name": spec.model_name,
                        "embed_dim": spec.embed_dim, "prefix_tokens": spec.prefix_tokens,
                        "tokens_per_clip": cfg.num_tokens},
            "weights": weights, "preprocessing": dict(pixel_options(cfg, spec), transform=tspec,
                                                      protocol=cfg.protocol, seed=cfg.seed),
            "pool": pool, "views": {"asked": args.views, "per_clip": views},
            "dtype": args.dtype, "inputs": {"source": inputs.source, "clips": len(ids),
                                            "sha256": inputs_digest(ids)},
            "eval_encoder": __version__, "complete": False})


def as_json(value: Dict) -> Dict:
    """``value`` as it reads back from JSON (tuples as lists), so headers compare equal."""
    return json.loads(json.dumps(value))


def open_folder(folder: Path, header: Dict, env) -> None:
    """Rank 0 writes the header, or checks a resumed folder's; every rank learns the verdict."""
    problem = ""
    if env.is_main:
        old = read_header(folder)
        differ = same_features(old, header, SAME) if old is not None else []
        if differ:
            problem = (f"{folder} holds other features ({', '.join(differ)} differ from this "
                       "run's); give another --out, or remove the folder")
        elif old is None:
            write_header(folder, header)
    problem = dist.all_gather_objects(problem)[0]
    if problem:
        raise ConfigError(problem)


def pending_samples(folder: Path, ids: Sequence[str], views: int, env) -> List[int]:
    """Sample indices (clip x views + view) not in the folder yet, this rank's share: every
    rank reads the same folder before any writes (the gather waits for all)."""
    done = set(entries(read_sidecars(folder)))
    todo = [c * views + v for c, cid in enumerate(ids) for v in range(views)
            if (cid, v) not in done]
    seen = dist.all_gather_objects(len(todo))
    if len(set(seen)) != 1:
        raise StoreError(f"{folder}: ranks saw different finished clips ({seen}): is another "
                         "embed writing to this folder?")
    if done:
        log.info("%s: %d of %d clip views already written; continuing with %d", folder,
                 len(done), len(ids) * views, len(todo))
    return todo[env.rank::env.world_size]


def layout_of(cfg: ProbeConfig, spec) -> TokenLayout:
    """Where the prefix tokens are among a clip's tokens, for pooling."""
    return TokenLayout.of(spec, cfg.num_frames, cfg.num_segments or 1)


def features(trainer: ProbeTrainer, batch: Dict, pool: str, layout: TokenLayout,
             dtype: torch.dtype) -> torch.Tensor:
    """The batch's tokens as the probe computes them, pooled unless ``pool`` is none."""
    batch = {k: (v.to(trainer.env.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    tokens = trainer.tokens(batch, "val").float()
    if pool != "none":
        tokens = pool_tokens(tokens, pool, layout)
    return tokens.to(dtype).cpu()


def embed(cfg: ProbeConfig, args, env) -> Dict:
    """Embed every clip (view) once over the ranks; returns the header rank 0 writes."""
    inputs = resolve_inputs(cfg, args)
    check_files(inputs)
    apply_card(cfg, inputs)
    cap_decode_workers(cfg)
    encoder = build_encoder(cfg).to(env.device)
    check_encoder_flags(cfg, encoder.spec)
    spec, ids, folder = encoder.spec, clip_ids(inputs.entries), out_folder(cfg, args, inputs)
    ds = eval_dataset(cfg, inputs.entries, inputs.root, clip_source(cfg, spec),
                      views=args.views == "all")
    header = describe(cfg, encoder, args, ids, ds.views, inputs)
    open_folder(folder, header, env)
    mine = pending_samples(folder, ids, ds.views, env)
    batches = chunk(mine, cfg.batch_size)
    loader = make_loader(ds, lambda _epoch: batches, cfg.batch_size, transform_spec(cfg, spec),
                         pick_backend(cfg.loader, env.device), env.device,
                         cfg.dali_py_num_workers, cfg.dali_num_threads, cfg.seed,
                         getattr(ds.source, "extras_keys", ()))
    trainer = ProbeTrainer(encoder, [], env, 0.0, 0.0, 1, cfg.num_tokens, cfg.print_freq,
                           tokens_from=cfg.sources.get("num_tokens", "--num_tokens"),
                           segments=cfg.num_segments or 1)
    skipped = write_features(folder, loader, trainer, header, layout_of(cfg, spec), ids, ds,
                             env, args)
    return finish(folder, header, ids, ds.views, skipped, env)


def write_features(folder: Path, loader, trainer, header: Dict, layout: TokenLayout, ids, ds,
                   env, args) -> List:
    """This rank's clips through the encoder into its shards; the clips that failed."""
    writer = ShardWriter(folder, env.rank, int(args.shard_mb * (1 << 20)))
    skipped, start, rows = [], time.perf_counter(), 0
    bar = tqdm(loader, total=len(loader), desc="embed", leave=False, dynamic_ncols=True,
               disable=not (env.is_main and sys.stderr.isatty()))
    for batch in bar:
        skipped += batch.get("skipped", [])
        if "labels" not in batch:
            continue
        feats = features(trainer, batch, header["pool"], layout, DTYPES[header["dtype"]])
        writer.add([{"clip": ids[ds.clip_of(i)], "label": int(label), "view": i % ds.views}
                    for i, label in zip(batch["index"].tolist(), batch["labels"].tolist())], feats)
        rows += feats.shape[0]
    writer.flush()
    seconds = time.perf_counter() - start
    log.info("rank %d: %d clip views in %.1f s (%.3f s each)", env.rank, rows, seconds,
             seconds / max(rows, 1))
    return skipped


def finish(folder: Path, header: Dict, ids, views: int, skipped: List, env) -> Dict:
    """After every rank: the merged index and the completed header (rank 0)."""
    failed = [item for part in dist.all_gather_objects(skipped) for item in part]
    if env.is_main:
        order = [(cid, v) for cid in ids for v in range(views)]
        rows = write_index(folder, order)
        header = dict(read_header(folder) or header, rows=rows, skipped=failed,
                      complete=rows == len(order))
        write_header(folder, header)
        print(f"{rows}/{len(order)} clip views in {folder}"
              + (f" ({len(failed)} unreadable: see header.json)" if failed else ""))
    return header


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Command-line entry; 2 for a usage mistake (nothing written), 1 for a failed run."""
    setup_logging()
    args, rest = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        require(not (args.video and args.videos), "give --video or --videos, not both")
        cfg = parse_config(rest, prog=prog)
        setup_logging()
        check_names(cfg)
        check_weights(cfg)
    except (ConfigError, ManifestError, RegistryError) as exc:
        log.error("%s", exc)
        return 2
    try:
        embed(cfg, args, dist.init(cfg.device))
    except (ConfigError, ManifestError) as exc:
        log.error("%s", exc)
        return 2
    except (StoreError, RuntimeError, ValueError, OSError) as exc:
        log.error("embed failed: %s", exc)
        return 1
    finally:
        dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

