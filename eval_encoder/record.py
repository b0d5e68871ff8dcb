"""Self-describing run records (JSON), one per run, written atomically.

Schema (``schema_version`` 1) -- the leaderboard reads only records, never logs:

  schema, schema_version, run_id, status ("complete" | "failed"), error (message or null),
  created (UTC ISO time), wall_time_s,
  dataset   {name, version, num_classes, train_manifest, val_manifest,
             train_manifest_sha256, val_manifest_sha256}
  protocol  {name ("paper" | "clean" | "vjepa2"), values {behaviour option: value},
             departures {...}}
  encoder   {family, model_name, model_weight (as given), weights (what the encoder says it
             loaded), parameters (its parameter count), spec{family, model_name, embed_dim,
             patch_size, input_size, mean, std, clip_source, num_frames, tokens_per_frame (per
             frame, or per tubelet), prefix_tokens, clip_prefix_tokens (once per clip: TimeSformer's
             and ViViT's class token), overrides, tubelet_size (frames per temporal
             patch: 1, V-JEPA 2's 2), short_side (the model's own resize before the crop, or
             null), origins (where the family read its preprocessing)},
             weights_path (absolute, or null: random / nothing local), weights_sha256 (a
             file's sha256; a folder's: sha256 of its weight files' "<relative path> <sha256>"
             lines in sorted order), weight_files[{name, bytes, sha256}], weights_note}
             (digests cached by path, size, mtime_ns and inode in
             <save_report>/cache/weight_sha256.json)
  method, arch, res, frames, token_budget      (leaderboard row labels; arch is the recipe's
             arch_label, else the encoder's shape, e.g. "ViT-L/14")
  heads     [{name, kind, lr, weight_decay, status, best_top1, best_top5, best_epoch,
              last_top1, last_top5, history[{epoch, train_loss, top1, top5, monitor_top1}]}]
             (a knn head: lr and weight_decay null, one history entry, under the last epoch)
  monitor   {clips, split, note}: the few training clips scored in eval mode after each epoch
             (each head's history monitor_top1; progress only, never reported or chosen on)
            (epochs count from 0 here, in ``best_epoch``, ``reported.epoch``, the log's
            ``epoch 0 (1 of 10)`` and the checkpoint names ``e0000-...``, as they always have
            in records)
  reported  {head, top1, top5, epoch, selection, chosen_on, note}: of the first head kind;
            under --select_on heldout also heldout_top1, val_max {head, epoch, top1, top5,
            heldout_top1} and gap_top1; with --refit also refit {lr, weight_decay, kind, epochs,
            train_clips, steps, train_loss} and grid_snapshot {head, epoch, top1, top5}
  selection (--select_on heldout only) {select_on, chosen, val_max, gap_top1, note, and
            refit_top1 with --refit}; predictions_val_max, metrics_val_max: the val-max head's
  reported_by_kind (a run of several kinds only) {kind: reported of that kind's heads; a later
    kind's with its own predictions {file, sha256, head, epoch, clips} and metrics}
  probe_head {kind ("ov" | "vjepa2" | "linear" | "knn" | a user's), options {depth,
             num_heads, mlp_ratio, pool, k, ...: as built; null: the kind decides from the
             width}, width, parameters (one head's); kinds {kind: the same} with several}
  val_only  (only under --val_only: heads scored without training; see
             eval_encoder/probe/given.py) {heads_from {path, sha256, format ("vjepa2 probe
             checkpoint" | "state_dict" | "safetensors" | "eval_encoder checkpoint"), heads,
             epoch (the file's, when it says) or position, config_hash and config_differences
             (our checkpoint's options that differ from the run's)}, note}. Such a record's
             heads are [{name, status, top1, top5}], reported.epoch and predictions.epoch are
             null, reported.selection is "val_only" (chosen_on "val", or "none" for one head),
             and it has no batch, checkpoints, resumed_from, monitor, samples.train,
             compute.train, encoder_passes.train or batches.train
  metrics   {top1, top5, mean_class_acc, map (where the card declares it)} of the reported head
  val_sampling (only under --val_sampling published; see eval_encoder/probe/sampling.py)
            {mode, world_size, batch, batch_from, clips, per_rank_share, items_per_evaluation,
             evaluations_per_head, evaluation_epochs, seeds, evaluation,
             reported {head, epoch, evaluation, seeds, items, published_top1, published_top5,
                       exact_top1, exact_top5}}; each head's history entries then also hold
             published_top1, published_top5, published_items, and ``reported`` is chosen on
             (and reports) published_top1
  predictions {file (<run_id>.predictions.npz beside the record), sha256, head, epoch, clips}
  live_logs (only with --report_to) {tensorboard: folder, wandb: run folder}: the live logs'
             files (rank 0's; a resumed run's continue those of the run it resumes)
  batch     {global_batch, micro_batch, world_size, accumulation_steps, drop_last}
  checkpoints {dir, saves, last_bytes, copies_bytes (the head copies files beside them; 0
             or absent: none kept, or a record made before they were kept apart), seconds};
             resumed_from {path, epoch, step} or null (the position continued from: steps
             done in that epoch)
  samples   {train|val: {expected, scored, skipped[{index, path, reason}], flags{name: count},
             truncated[{index, clip, path, frames_used, packets}]}}  (a failed record keeps
             what was known: expected, and every clip skipped so far, with its reason)
  encoder_passes {train, val}, batches {train, val}   (summed over ranks)
  compute   {tokens_per_clip (to the head: every segment's, with --num_segments),
             val_views_per_clip,
             encoder {arch, flops_method ("analytic" | "counter" | null), tokens_encoded,
                      sequences, gflops_per_clip (one view; 2 FLOPs per multiply-add, matrix
                      products only: see eval_encoder/compute.py), gflops_by_part{...}},
             gflops_per_val_clip (x views),
             train|val {clips, seconds (slowest rank), clips_per_s (all ranks),
                        loader_wait_s (slowest rank), loader_wait_share (time waiting for the
                        next batch / loop time, over ranks)}  (this process's life: a resumed
                        run counts from the resume),
             memory {host_peak_rss_mib, loader_workers_peak_rss_mib, device_peak_allocated_mib,
                     device_peak_reserved_mib} (the largest rank's; device figures on CUDA only),
             heldout, refit (with --select_on heldout, --refit: the clip views, seconds and
             shares of the run each phase encoded)}
  config (resolved, every value; without ``sources``, and without ``codec`` once the encoder
             is known not to read it), sources (where each value came from), config_hash (of
             the full resolved config, runtime options left out)
  versions {eval_encoder (this package's version), python, torch, ...},
  git_commit (the checkout's commit, '+dirty' with uncommitted changes; null for an installed
             copy, whose versions.eval_encoder says what ran), world_size, device
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional

from eval_encoder import __version__, resources
from eval_encoder.config import results_root
from eval_encoder.files import atomic_path

log = logging.getLogger(__name__)

SCHEMA = "eval_encoder.run_record"
SCHEMA_VERSION = 1

# options that change how a run executes but not what it measures
RUNTIME_KEYS = frozenset({
    "data_root", "save_report", "print_freq", "loader", "device", "dali_num_threads",
    "dali_py_num_workers", "decord_num_threads", "rank", "local_rank", "world_size",
    "global_rank", "config", "sources", "eval_mode", "allow_download", "checkpoint_dir",
    "resume_checkpoint", "checkpoint_every_min", "nnodes", "node_rank", "rdzv_backend",
    "rdzv_endpoint", "monitor_clips", "feature_cache", "report_to", "wandb_project",
})


# Options added after records were made, with the value that reproduces what those records
# measured: at that value an option is left out of the hash, so earlier records keep their
# hash (a suite does not rerun them); any other value is a new configuration. Keys are
# (section, option): "" for a top-level option, "codec" for a codec option.
HASH_NEUTRAL = {("codec", "map_resolution"): "source", ("codec", "codec_pixels"): "source",
                ("", "codec_version"): None, ("", "val_sampling"): "exact",
                ("", "published_world_size"): 8, ("", "published_batch_size"): None,
                # V-JEPA 2's protocol (issue 21): the OneVision protocols' sampling and views
                ("", "frame_step"): 0, ("", "num_segments"): 1, ("", "eval_window"): "centre",
                ("", "view_fusion"): "logits", ("", "train_augment"): "ov",
                # head kinds, schedules and scoring without training (issue 21)
                ("", "probe_head"): "ov", ("", "probe_num_heads"): None,
                ("", "lr_schedule"): "linear", ("", "start_lr"): None, ("", "warmup"): 0.0,
                ("", "final_lr"): 0.0, ("", "wd_schedule"): "constant",
                ("", "final_weight_decay"): None, ("", "val_only"): False,
                ("", "probe_checkpoint"): None,
                # pooled head kinds: linear and kNN probes (issue 22)
                ("", "probe_pool"): "auto", ("", "knn_k"): [20], ("", "knn_temperature"): 0.07,
                # honest selection: a held-out slice of the training manifest (issue 24)
                ("", "select_on"): "val", ("", "heldout_fraction"): 0.1,
                ("", "heldout_val_max"): True, ("", "refit"): False}


def config_hash(config: Dict[str, Any]) -> str:
    """Hash of every option that changes the result (runtime-only options left out, and the
    later options of :data:`HASH_NEUTRAL` at their earlier behaviour)."""
    semantic = _without_neutral({k: v for k, v in config.items() if k not in RUNTIME_KEYS}, "")
    if isinstance(semantic.get("codec"), dict):
        semantic["codec"] = _without_neutral({k: v for k, v in semantic["codec"].items()
                                              if k != "cache_dir"}, "codec")
    text = json.dumps(semantic, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_neutral(options: Dict[str, Any], section: str) -> Dict[str, Any]:
    """``options`` without those at their :data:`HASH_NEUTRAL` value."""
    missing = object()
    return {k: v for k, v in options.items() if HASH_NEUTRAL.get((section, k), missing) != v}


def config_block(cfg, codec: bool = True) -> Dict[str, Any]:
    """The record's ``config``: every resolved value, without ``sources`` (the record keeps
    those once, at its top level) and, for a run whose encoder reads no codec selection
    (``codec=False``), without the ``codec`` options. The config hash is still computed
    from the full config, so it does not change with what the record shows."""
    out = cfg.to_dict()
    out.pop("sources", None)
    if not codec:
        out.pop("codec", None)
    return out


def new_run_id(dataset: str) -> str:
    """``<UTC time to the microsecond>-<dataset>-<64 random bits>``: sorts by time, and two
    runs (other processes, other machines) never share one."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{dataset}-{uuid.uuid4().hex[:16]}"


# library -> the distributions that may provide it (the first installed one is reported)
VERSIONED = {"torch": ("torch",), "torchvision": ("torchvision",), "timm": ("timm",),
             "transformers": ("transformers",), "av": ("av",), "numpy": ("numpy",),
             "nvidia.dali": ("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110")}


def software_versions() -> Dict[str, str]:
    """Versions of Python and the libraries that can change a number, read from the installed
    distributions' metadata (importing them only to read a version would cost seconds)."""
    from importlib import metadata

    out = {"eval_encoder": __version__, "python": platform.python_version()}
    for name, dists in VERSIONED.items():
        out[name] = "absent"
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def git_commit() -> Optional[str]:
    """The commit of the code that ran (with '+dirty' for uncommitted changes), if in git.

    An installed copy has none, even inside someone's clone (a venv in a checkout)."""
    here = resources.source_checkout()
    if here is None:
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def records_dir(save_report: str, dataset: str) -> Path:
    return runs_dir(save_report) / dataset


def runs_dir(save_report: Optional[str] = None) -> Path:
    """``<save_report>/runs``, where records are written and ``leaderboard`` reads them
    (``save_report`` None: the default results root, :func:`~eval_encoder.config.results_root`)."""
    return Path(results_root() if save_report is None else save_report) / "runs"


def leaderboard_command(save_report: str) -> str:
    """The ``leaderboard`` command that shows the records under ``save_report``, from the
    folder this process runs in: bare for the default results root, else with ``--runs``."""
    command = "python -m eval_encoder leaderboard"
    if Path(save_report).resolve() == Path(results_root()).resolve():
        return command
    return f"{command} --runs {shlex.quote(str(runs_dir(save_report)))}"


class RecordExists(FileExistsError):
    """A record file with this run id is already there; records are never overwritten."""


def write_record(record: Dict[str, Any], save_report: str, replace: bool = False) -> Path:
    """Write the record to ``<save_report>/runs/<dataset>/<run_id>.json`` atomically.

    An existing record of the same run id is never overwritten (RecordExists) unless
    ``replace`` is asked for: the complete file is hard-linked into place, which fails when
    the name is taken, so two writers cannot both succeed and a reader never sees half a file.
    """
    path = records_dir(save_report, record["dataset"]["name"]) / f"{record['run_id']}.json"
    with atomic_path(path, prefix=".tmp-", suffix=".json",
                     publish=os.replace if replace else _link_new) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
    return path


def _link_new(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise RecordExists(f"run record {path} exists already: refusing to overwrite it (run id "
                           "collision, or a record written twice)") from None


def samples_at_failure(expected: Dict[str, int], skipped: Dict[str, Dict[int, Dict]],
                       from_error: Dict[str, Dict]) -> Dict[str, Dict]:
    """The ``samples`` section of a failed record: what was known when the run broke.

    ``expected`` clips per split, the clips ``skipped`` so far on this process ({index:
    item}), and what the error itself carries (a skip-limit failure lists every unreadable
    clip over all ranks) -- the error's account wins where both speak. Empty when nothing
    is known (the run broke before reading its manifests).
    """
    out = {}
    for split in ("train", "val"):
        if split not in expected and split not in from_error and not skipped.get(split):
            continue
        part = {"expected": expected.get(split),
                "skipped": [item for _, item in sorted(skipped.get(split, {}).items())]}
        part.update({k: v for k, v in from_error.get(split, {}).items() if v is not None})
        out[split] = part
    return out


def read_record(path: str) -> Dict[str, Any]:
    """Load a record; another schema or a newer version is refused with a clear message."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON run record ({exc})") from None
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an eval_encoder run record (schema {data.get('schema')!r})")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: record schema version {version} is not supported by this "
                         f"version of eval_encoder (reads version {SCHEMA_VERSION})")
    return data
