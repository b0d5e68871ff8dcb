"""Scoring given heads without training (``--val_only``).

The heads come from ``--probe_checkpoint`` -- a published V-JEPA 2 probe checkpoint (its
``evals/video_classification_frozen/eval.py`` saves ``{"classifiers": [state_dict, ...], "opt":
..., "epoch": ...}``, the state_dicts of DistributedDataParallel modules, keys under
``module.``), a plain state_dict (``.pt``) or a safetensors file (one head, or several under
``classifiers.<i>.``) -- or from our own checkpoint, ``--resume_checkpoint``. Every file is
read with ``torch.load(weights_only=True)`` or safetensors. Each head is built as the run's
kind (``--probe_head`` and its flags) and loaded strictly, then every head is scored once on
the validation split. The record says ``val_only``, where the heads came from and nothing of a
training that did not happen.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn

from eval_encoder import checkpoint as ckpt
from eval_encoder import record as rec
from eval_encoder.config import ConfigError, ProbeConfig, require
from eval_encoder.files import file_sha256
from eval_encoder.probe.data import Splits, build_loaders, build_splits
from eval_encoder.probe.heads import build_head
from eval_encoder.probe.heads.options import describe_head, head_options
from eval_encoder.probe.predictions import PredictionStore, Scored
from eval_encoder.probe.predictions import compute as compute_metrics
from eval_encoder.encoders.weights import weights_identity
from eval_encoder.probe.records import fill_record
from eval_encoder.probe.trainer import ProbeTrainer, accuracy
from eval_encoder.probe.training import score_val

log = logging.getLogger("eval_encoder.run")

State = Dict[str, torch.Tensor]
DDP_PREFIX = "module."


@dataclass
class GivenHeads:
    """The heads to score, their names, and where they came from (the record's
    ``val_only.heads_from``)."""

    names: List[str]
    modules: List[nn.Module]
    source: Dict[str, Any]


def check_given_flags(cfg: ProbeConfig) -> None:
    """Usage mistakes, found before anything is written: heads named without ``--val_only``,
    ``--val_only`` without heads or with two sources, a file that is not there."""
    require(cfg.val_only or cfg.probe_checkpoint is None,
            f"--probe_checkpoint {cfg.probe_checkpoint}: heads to score are read with "
            "--val_only only (training starts from new heads)")
    if not cfg.val_only:
        return
    sources = [f for f in ("probe_checkpoint", "resume_checkpoint") if getattr(cfg, f)]
    require(len(sources) == 1, "--val_only scores the heads of one file: give --probe_checkpoint "
            "(a published V-JEPA 2 probe, a state_dict or safetensors file) or --resume_checkpoint "
            f"(our checkpoint), not {' and '.join('--' + s for s in sources) or 'neither'}")
    path = getattr(cfg, sources[0])
    require(Path(path).is_file(), f"--{sources[0]} {path}: no such file")
    require(cfg.val_sampling == "exact", "--val_sampling published measures the evaluations of "
            "a training run; --val_only makes one evaluation (use --val_sampling exact)")


# ----------------------------------------------------------------------------- reading

def _unwrapped(state: State) -> State:
    """A state_dict without DistributedDataParallel's ``module.`` prefix (all keys or none)."""
    if state and all(k.startswith(DDP_PREFIX) for k in state):
        return {k[len(DDP_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def _split_classifiers(state: State) -> List[Tuple[str, State]]:
    """One flat state_dict -> its heads: several under ``classifiers.<i>.``, else one."""
    heads: Dict[int, State] = {}
    for key, value in state.items():
        parts = key.split(".", 2)
        if len(parts) < 3 or parts[0] != "classifiers" or not parts[1].isdigit():
            return [("head", state)]
        heads.setdefault(int(parts[1]), {})[parts[2]] = value
    return [(f"classifiers[{i}]", heads[i]) for i in sorted(heads)]


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _published(obj: Dict) -> List[Tuple[str, State]]:
    return [(f"classifiers[{i}]", s) for i, s in enumerate(obj["classifiers"])]


# what a torch file holds -> (format name, test, its heads); the first that fits is used
TORCH_FORMATS: List[Tuple[str, Callable[[Any], bool], Callable[[Any], List]]] = [
    ("vjepa2 probe checkpoint",
     lambda o: isinstance(o, dict) and isinstance(o.get("classifiers"), (list, tuple)),
     _published),
    ("state_dict", _is_tensor_dict, _split_classifiers),
]


def read_probe_file(path: str) -> Tuple[List[Tuple[str, State]], Dict[str, Any]]:
    """The heads of a ``--probe_checkpoint`` file as (name, state_dict), and what it is."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return _split_classifiers(load_file(path)), {"format": "safetensors"}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a foreign or damaged file
        raise ConfigError(f"--probe_checkpoint {path}: not a weights-only torch file "
                          f"({type(exc).__name__}: {exc})") from None
    for name, fits, heads in TORCH_FORMATS:
        if fits(obj):
            epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
            return heads(obj), {"format": name, "epoch": epoch}
    raise ConfigError(f"--probe_checkpoint {path}: holds no heads (a published V-JEPA 2 probe "
                      "checkpoint has a 'classifiers' list; a state_dict maps names to tensors)")


def read_our_checkpoint(cfg: ProbeConfig, config: Dict[str, Any]
                        ) -> Tuple[List[Tuple[str, State]], Dict[str, Any]]:
    """The live heads of our checkpoint ``--resume_checkpoint``, and where it stood; options
    that differ from this run's are listed (the heads are scored as they are)."""
    path = Path(cfg.resume_checkpoint)
    try:
        state = ckpt.load(path)
    except ckpt.CheckpointError as exc:
        raise ConfigError(str(exc)) from None
    differences = ckpt.config_differences(json.loads(state["config"]), config)
    heads = [(h["name"], h["module"]) for h in state["heads"] if h["status"] == "ok"]
    return heads, {"format": "eval_encoder checkpoint", "position": list(state["position"]),
                   "config_hash": state["config_hash"], "config_differences": differences}


def load_given(cfg: ProbeConfig, dim: int, num_classes: int, device: torch.device,
               config: Dict[str, Any], spec: Any = None) -> GivenHeads:
    """Read the given heads and build each as the run's kind (strict load); ``config``: this
    run's semantic options, to list where our checkpoint's differ."""
    if cfg.probe_checkpoint:
        path, (states, source) = cfg.probe_checkpoint, read_probe_file(cfg.probe_checkpoint)
    else:
        path, (states, source) = cfg.resume_checkpoint, read_our_checkpoint(cfg, config)
    require(bool(states), f"{path}: no head to score")
    modules = [_built(cfg, dim, num_classes, path, name, state, spec).to(device)
               for name, state in states]
    source.update({"path": str(Path(path).resolve()), "sha256": file_sha256(path),
                   "heads": len(modules)})
    for line in source.get("config_differences", [])[:12]:
        log.warning("%s was trained with another option: %s", path, line)
    return GivenHeads([name for name, _ in states], modules, source)


def _built(cfg: ProbeConfig, dim: int, num_classes: int, path: str, name: str,
           state: State, spec: Any = None) -> nn.Module:
    """One head of the run's kind holding ``state``; a ConfigError naming the file, the head
    and the flags when it does not fit."""
    module = build_head(cfg.probe_head, dim, num_classes, **head_options(cfg, spec=spec))
    try:
        module.load_state_dict(_unwrapped(state), strict=True)
    except RuntimeError as exc:
        head = describe_head(cfg, dim, spec=spec)
        raise ConfigError(f"{path}: head {name} does not fit --probe_head {head['kind']} "
                          f"{head['options']} at width {dim} with {num_classes} classes: "
                          f"{exc}") from None
    return module


# ----------------------------------------------------------------------------- the record

def val_only_block(given: GivenHeads) -> Dict[str, Any]:
    """The record's ``val_only``: where the heads came from."""
    return {"heads_from": given.source,
            "note": "no training: the given heads were scored once on the validation split"}


def given_rows(given: GivenHeads, scores: List[Dict[str, float]]):
    """The record's ``heads`` (name, status, top1, top5) and ``reported``: the best head,
    chosen on the validation split when there are several."""
    rows = [{"name": n, "status": "ok", **s} for n, s in zip(given.names, scores)]
    chosen = max(rows, key=lambda r: r["top1"])
    several = len(rows) > 1
    note = (f"best of {len(rows)} given heads, chosen on the validation split that is "
            "reported (optimistic by the selection)" if several else "the one given head")
    return rows, {"head": chosen["name"], "top1": chosen["top1"], "top5": chosen["top5"],
                  "epoch": None, "selection": "val_only",
                  "chosen_on": "val" if several else "none", "note": note}


def drop_training(record: Dict[str, Any]) -> None:
    """Take out of a record what only a training run has (the train split's samples, compute,
    encoder passes and batches)."""
    record.get("samples", {}).pop("train", None)
    record.get("compute", {}).pop("train", None)
    for block in ("encoder_passes", "batches"):
        for split in ("train", "monitor"):
            record.get(block, {}).pop(split, None)


def write_predictions(record: Dict[str, Any], cfg: ProbeConfig, splits: Splits,
                      given: GivenHeads, scored: Scored) -> None:
    """The per-clip predictions of every given head beside the record (the reported head's
    in full; names ``<head>@0``: no epochs), and the reported head's metrics."""
    store = PredictionStore()
    store.add(scored, [(0, j) for j in range(len(given.modules))])
    owner = (0, given.names.index(record["reported"]["head"]))
    folder = rec.records_dir(cfg.save_report, splits.card.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.predictions.npz"
    name, digest = store.write(str(path), owner, splits.val.entries, given.names)
    chosen = store.by_owner[owner]
    record["predictions"] = {"file": name, "sha256": digest, "head": record["reported"]["head"],
                             "epoch": None, "clips": len(chosen)}
    record["metrics"] = compute_metrics(chosen, splits.card.metrics)


def _scoring(cfg: ProbeConfig, card, manifests, encoder, env):
    """The splits, the validation loader and a trainer without heads that scores with it."""
    splits = build_splits(cfg, card, manifests, encoder.spec)
    splits.monitor = None  # nothing trains: nothing to watch
    loaders, _, _ = build_loaders(cfg, splits, encoder.spec, env)
    trainer = ProbeTrainer(encoder, [], env, cfg.smoothing, cfg.clip_grad, card.num_classes,
                           cfg.num_tokens, cfg.print_freq,
                           tokens_from=cfg.sources.get("num_tokens", "--num_tokens"),
                           segments=cfg.num_segments or 1, fusion=cfg.view_fusion or "logits")
    return splits, loaders[1], trainer


def score_given(cfg: ProbeConfig, card, manifests, encoder, env, given: GivenHeads,
                record: Dict[str, Any]) -> None:
    """Score every given head once on the validation split and fill the record."""
    spec = encoder.spec
    splits, val_loader, trainer = _scoring(cfg, card, manifests, encoder, env)
    log.info("%s on %s: %d given heads (%s) scored on %d val clips, no training",
             cfg.model_name, card.name, len(given.modules), given.source["path"],
             len(splits.val.entries))
    scored = score_val(cfg, trainer, val_loader, splits, given.modules,
                       f"val ({len(given.modules)} given heads)")
    fill_record(record, cfg, splits, encoder, trainer)
    drop_training(record)
    scores = [accuracy(scored, j) for j in range(len(given.modules))]
    record["heads"], record["reported"] = given_rows(given, scores)
    record["val_only"] = val_only_block(given)
    record["probe_head"] = describe_head(cfg, spec.embed_dim, given.modules[0], spec=spec)
    if env.is_main:
        write_predictions(record, cfg, splits, given, scored)
        record["encoder"].update(weights_identity(encoder, cfg))
