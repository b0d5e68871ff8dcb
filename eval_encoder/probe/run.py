"""The attentive-probe run: resolve the config, build data and encoder, train, score, record.

This is the one long driver; it only wires the units together (data: probe/data.py, training:
probe/training.py, the record: probe/records.py).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Dict, Optional, Sequence

from eval_encoder import distributed as dist
from eval_encoder import protocol
from eval_encoder import record as rec
from eval_encoder.codec.options import CodecOptionError
from eval_encoder.codec.reencode import require_reencoder
from eval_encoder.config import ConfigError, ProbeConfig, UsageMistake, require
from eval_encoder.encoders import build_encoder, check_names, check_weights
from eval_encoder.encoders.weights import weights_identity
from eval_encoder.flags import build_parser
from eval_encoder.livelog import backend_names, check_report_to
from eval_encoder.logs import setup_logging
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import (
    CARD_ORIGIN,
    Manifests,
    check_data,
    check_clips,
    check_steps,
    parse_manifests,
    training_entries,
    resolve_dataset,
)
from eval_encoder.probe.given import check_given_flags, load_given, score_given
from eval_encoder.probe.heads.options import check_head, check_kinds, describe_head
from eval_encoder.probe.heldout import HELDOUT
from eval_encoder.probe.heldout import check_flags as check_heldout
from eval_encoder.probe.kinds import one_of_each
from eval_encoder.probe.live import RunLog, open_run_log
from eval_encoder.probe.records import (
    Progress,
    attach_predictions,
    base_record,
    budget_text,
    failure_samples,
    fill_record,
    say_result,
    reported_by_kind,
    selection_of,
    summarise_heads,
    token_budget,
    write_outputs,
)
from eval_encoder.probe.refit import check_flags as check_refit
from eval_encoder.probe.refit import refit, refit_record
from eval_encoder.probe.sampling import check_flags, published_report, published_sampling
from eval_encoder.probe.trainer import (
    RunFailed,
)
from eval_encoder.probe.training import (
    check_knn_k,
    eval_epochs,
    prepare_training,
    remove_checkpoints,
    resume,
    semantic_config,
    train_and_score,
)
from eval_encoder.registry import RegistryError
from eval_encoder.resources import MissingData
from eval_encoder.video.loader import loader_workers
from eval_encoder.video.manifest import (
    ManifestError,
    load_card,
)

log = logging.getLogger("eval_encoder.run")


def check_encoder_flags(cfg: ProbeConfig, spec) -> None:
    """Upstream flags that describe the encoder must agree with what the encoder declares."""
    # like --embedding_size, --tubelet_size describes the encoder: given, it must agree
    require(cfg.tubelet_size == spec.tubelet_size or "tubelet_size" not in cfg.sources,
            f"--tubelet_size {cfg.tubelet_size} but {cfg.model_name} embeds tubelets of "
            f"{spec.tubelet_size} frame(s)")
    require(cfg.embedding_size in (None, spec.embed_dim),
            f"--embedding_size {cfg.embedding_size} but {cfg.model_name} returns {spec.embed_dim}-wide tokens")
    # upstream's --frames_token_num is the patch grid; prefix tokens (class, registers) come on top
    require(cfg.frames_token_num in (None, spec.tokens_per_frame) or spec.tokens_per_frame is None,
            f"--frames_token_num {cfg.frames_token_num} but {cfg.model_name} at {spec.input_size}px "
            f"gives {spec.tokens_per_frame} patch tokens per {step_text(spec)} (plus "
            f"{spec.prefix_tokens} prefix tokens given to the head)")
    require(cfg.num_temporal_crops >= 1 and cfg.num_spatial_crops >= 1, "crop counts must be >= 1")
    check_head(cfg, spec.embed_dim)  # e.g. ov takes one pooling block (--probe_size 1)
    for name in ("print_freq", "eval_freq", "num_frames"):
        require(getattr(cfg, name) >= 1, f"--{name} must be >= 1, got {getattr(cfg, name)}")
    require(0 <= cfg.max_skip_fraction < 1, "--max_skip_fraction must be in [0, 1)")
    check_input_size(cfg, spec)
    resolve_clip_shape(cfg, spec)
    cfg.embedding_size, cfg.input_size = spec.embed_dim, spec.input_size
    cfg.mean, cfg.std = list(spec.mean), list(spec.std)
    cfg.tubelet_size = spec.tubelet_size
    if spec.tokens_per_frame is not None:
        cfg.frames_token_num = spec.tokens_per_frame
    if spec.short_side is not None and cfg.short_side_size is None:
        take_encoder_short_side(cfg, spec)


def take_encoder_short_side(cfg: ProbeConfig, spec) -> None:
    """The shorter side of the encoder's own processor, for one centre view. Several spatial
    views keep the shorter side at the crop, so that each view covers it whole and the views
    move along the longer side only (V-JEPA 2's 3-view evaluation; the field's 3-crop test)."""
    if cfg.num_spatial_crops > 1:
        log.info("%d spatial views: the shorter side goes to the %d px crop, not to the %d px "
                 "of %s/%s's processor (its rule is for one centre view)",
                 cfg.num_spatial_crops, spec.input_size, spec.short_side, spec.family,
                 spec.model_name)
        return
    cfg.short_side_size = spec.short_side
    cfg.sources["short_side_size"] = "encoder spec: " + spec.origins.get(
        "short_side", f"{spec.family}/{spec.model_name}")


def step_text(spec) -> str:
    """What one temporal step of the encoder's tokens is: ``frame``, or ``tubelet of 2 frames``."""
    return "frame" if spec.tubelet_size == 1 else f"tubelet of {spec.tubelet_size} frames"


def resolve_clip_shape(cfg: ProbeConfig, spec) -> None:
    """The frames and tokens per clip the run uses, as the encoder declares them, so that the
    record's config says what ran (a codec run: 64 frames, K tokens) and every batch is
    checked against them (a plugin whose spec and forward disagree fails at its first batch)."""
    if spec.num_frames and spec.num_frames != cfg.num_frames:
        cfg.sources["num_frames"] = f"encoder spec ({cfg.num_frames} asked: the family takes " \
                                    f"{spec.num_frames})"
        cfg.num_frames = spec.num_frames
    require(cfg.num_frames % spec.tubelet_size == 0, f"--num_frames {cfg.num_frames}: "
            f"{spec.family}/{spec.model_name} embeds tubelets of {spec.tubelet_size} frames, so a "
            f"clip must hold a multiple of {spec.tubelet_size} frames")
    budget = token_budget(cfg, spec)
    require(cfg.num_tokens in (None, budget), f"--num_tokens {cfg.num_tokens} but "
            f"{spec.model_name} gives {budget} tokens per clip ({budget_text(cfg, spec)})")
    if cfg.num_tokens is None:
        cfg.num_tokens = budget
        cfg.sources["num_tokens"] = budget_text(cfg, spec)


def check_input_size(cfg: ProbeConfig, spec) -> None:
    """An input size the run asked for must be the one the encoder runs at: a recipe's or the
    command line's is an error, the dataset card's or the protocol's (defaults) a warning."""
    if cfg.input_size in (None, spec.input_size):
        return
    origin = cfg.sources.get("input_size", "command line")
    said = (f"{spec.family}/{spec.model_name} runs at {spec.input_size} px, not at the "
            f"{cfg.input_size} px from {origin}: its family does not take --input_size")
    require(origin.startswith(CARD_ORIGIN) or origin == protocol.origin(cfg.protocol), said)
    log.warning("%s; frames are resized to %d px", said, spec.input_size)


def say_input_size(spec) -> None:
    """One warning when the encoder runs away from its own input size (the record's
    ``encoder.spec.overrides.input_size`` says it too): the cost and the tokens change."""
    note = spec.overrides.get("input_size")
    if note:
        log.warning("%s/%s runs at %d px, not at its native size: input size from %s; %s "
                    "patch tokens per %s, positions (embeddings interpolated, or RoPE) on that "
                    "grid", spec.family, spec.model_name, spec.input_size, note,
                    spec.tokens_per_frame, step_text(spec))


def cap_decode_workers(cfg: ProbeConfig) -> None:
    """Cap ``--dali_py_num_workers`` to this rank's CPUs once per run, so that the cap is
    said once (not by each loader) and the record holds the number used, with why."""
    workers = loader_workers(cfg.dali_py_num_workers)
    if workers != cfg.dali_py_num_workers:
        origin = cfg.sources.get("dali_py_num_workers", "default")
        cfg.sources["dali_py_num_workers"] = (f"{origin} ({cfg.dali_py_num_workers}, capped to "
                                              "this process's share of the CPUs)")
        cfg.dali_py_num_workers = workers


def preflight(cfg: ProbeConfig, env, progress: Progress):
    """The dataset card and manifests, and what they decide before the encoder loads: a step
    per epoch, a validation draw that scores clips, the re-encoder of ``--codec_pixels
    reencoded``. A mistake found here is a UsageMistake (no record; exit 2)."""
    cap_decode_workers(cfg)
    try:
        card = resolve_dataset(cfg)
        progress.manifests = parse_manifests(cfg, card)
        published = usable_data(cfg, env, progress.manifests)
    except (ConfigError, ManifestError, CodecOptionError) as exc:
        raise UsageMistake(str(exc)) from None
    check_clips(cfg, card, progress.manifests)  # opens them: a failure here is recorded
    return card, published


def usable_data(cfg: ProbeConfig, env, manifests: Manifests):
    """The published draw (None unless asked for), once the split sizes are checked."""
    if cfg.codec.codec_pixels == "reencoded":
        require_reencoder()
    if not cfg.val_only:
        trained = len(training_entries(cfg, manifests.train)[0])
        check_steps(cfg, trained, env.world_size)
        check_knn_k(cfg, trained)
    return published_sampling(cfg, len(manifests.val), eval_epochs(cfg))


def train_run(cfg: ProbeConfig, env, record: Dict, requested_hash: str,
              progress: Progress) -> None:
    """Build, train, score and fill the record of one run (see :func:`run`)."""
    card, published = preflight(cfg, env, progress)
    encoder = build_encoder(cfg).to(env.device)
    check_encoder_flags(cfg, encoder.spec)
    if env.is_main:
        say_input_size(encoder.spec)
    training = prepare_training(cfg, card, progress.manifests, encoder, env, requested_hash)
    training.published = published
    progress.training = training
    training.live_id = record["run_id"]
    record["resumed_from"] = resume(cfg, training, env, requested_hash)
    training.live = open_run_log(cfg, env, record, training, training.live_id)
    train_and_score(cfg, training)
    fill_record(record, cfg, training.splits, encoder, training.trainer)
    record["batch"] = training.plan.describe()
    record["checkpoints"] = training.checkpointer.describe()
    record["heads"], record["reported"] = summarise_heads(training.trainer, cfg.select,
                                                          cfg.select_on)
    if cfg.select_on == HELDOUT:
        record["selection"] = selection_of(record["heads"], cfg.select)
    by_kind = reported_by_kind(record["heads"], cfg.select, cfg.select_on)
    if by_kind is not None:
        record["reported_by_kind"] = by_kind
    if cfg.refit:  # the chosen head trained again on every training clip (probe/refit.py)
        done = refit(cfg, training, progress.manifests.train, record["reported"])
        refit_record(record, done, training.trainer)
    record["probe_head"] = describe_head(cfg, encoder.spec.embed_dim,
                                         training.trainer.heads[0].module, spec=encoder.spec,
                                         modules=one_of_each(training.trainer.heads))
    if published is not None:  # chosen, and reported, on the published draw's accuracy
        record["reported"], record["val_sampling"] = published_report(
            record["heads"], cfg.select, published)
    if env.is_main:
        attach_predictions(record, cfg, training)
        record["encoder"].update(weights_identity(encoder, cfg))
    record["status"] = "complete"


def val_only_run(cfg: ProbeConfig, env, record: Dict, requested_hash: str,
                 progress: Progress) -> None:
    """Score the heads given to ``--val_only`` once on the validation split, without
    training, and fill the record (see eval_encoder/probe/given.py)."""
    if backend_names(cfg.report_to):
        log.warning("--report_to: a --val_only run trains nothing; nothing is logged live")
    card, _ = preflight(cfg, env, progress)
    encoder = build_encoder(cfg).to(env.device)
    check_encoder_flags(cfg, encoder.spec)
    if env.is_main:
        say_input_size(encoder.spec)
    given = load_given(cfg, encoder.spec.embed_dim, card.num_classes, env.device,
                       semantic_config(cfg), spec=encoder.spec)
    score_given(cfg, card, progress.manifests, encoder, env, given, record)
    record["status"] = "complete"


def live_log(progress: Progress) -> RunLog:
    """The run's live log (a no-op before training was built, or without --report_to)."""
    return progress.training.live if progress.training is not None else RunLog.off()


def run(cfg: ProbeConfig, requested_hash: str) -> Dict:
    """Run one probe configuration end to end; returns the record (rank 0 writes it)."""
    start = time.time()
    env = dist.init(cfg.device)
    record = base_record(cfg, requested_hash, env, start)
    progress = Progress()
    try:
        (val_only_run if cfg.val_only else train_run)(cfg, env, record, requested_hash,
                                                      progress)
    except UsageMistake:  # found before the encoder loaded: said, and nothing written
        raise
    except Exception as exc:  # any failure still leaves a record saying why, then re-raises
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["wall_time_s"] = round(time.time() - start, 2)
        failure_samples(record, progress, exc)
        live_log(progress).close()
        if env.is_main:
            write_outputs(record, cfg)
        else:  # rank 0 may only see the broken connection: say here what broke
            log.error("rank %d failed: %s", env.rank, record["error"])
        raise
    record["wall_time_s"] = round(time.time() - start, 2)
    if env.is_main:
        path = write_outputs(record, cfg)
        live_log(progress).finish(record)
        if progress.training is not None:  # a run that trained: its checkpoints go
            remove_checkpoints(progress.training.checkpointer)
        say_result(record, cfg, path)
    return record


def main(argv: Optional[Sequence[str]] = None, prog: str = "attentive_probe.py",
         base: Optional[Dict] = None) -> int:
    """Command-line entry: parse, run, exit non-zero with a one-line reason on failure."""
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv and not base:  # nothing asked for: say how, rather than run the defaults
        build_parser(prog).print_usage()
        print(f"{prog}: give at least --dataset and --data_root (--help lists every flag)")
        return 2
    try:
        cfg = parse_config(argv, prog=prog, base=base)
        setup_logging()  # with the level -v/-q asked for
        load_card(cfg.dataset)  # a misspelt dataset leaves no record under its misspelt name
        check_names(cfg)  # nor does a misspelt family or model name
        check_head(cfg)  # nor a head option its kind does not take
        check_kinds(cfg)  # nor kinds a mode cannot score (knn under --val_only)
        check_given_flags(cfg)  # nor --val_only without the heads to score
        check_flags(cfg)  # nor flags of a validation draw the run does not make
        check_heldout(cfg)  # nor held-out flags without --select_on heldout
        check_refit(cfg)  # nor --refit without a held-out choice, or of a kind that trains nothing
        check_data(cfg)  # nor a data root or manifest that is not there
        check_weights(cfg)  # nor weights that are not there (before any clip is opened)
        check_report_to(cfg.report_to)  # nor live logs whose package is not installed
    except (ConfigError, ManifestError, RegistryError, MissingData) as exc:
        log.error("%s", exc)
        return 2
    requested = rec.config_hash(cfg.to_dict())
    try:
        run(cfg, requested)
    except UsageMistake as exc:
        log.error("%s", exc)
        return 2
    except (RunFailed, ConfigError, ValueError, RuntimeError, KeyError, OSError) as exc:
        log.error("run failed: %s", exc)
        return 1
    finally:
        dist.shutdown()
    return 0
