"""The ``vjepa2`` family: V-JEPA 2 video encoders (transformers' ``VJEPA2Model``), whole clips.

    --model_family vjepa2 --model_name vjepa2_large_patch16_256 --num_frames 16

The sizes are a table (:data:`SIZES`, ``python -m eval_encoder ls models --family vjepa2``):
ViT-L/16, ViT-H/16 and ViT-g/16 at 256 px and ViT-g/16 at 384 px, each with its Hugging Face
id (``facebook/vjepa2-vitl-fpc64-256`` and siblings), which is the default ``--model_weight``.
``--model_weight`` is a local folder (``config.json`` + weights) or a hub id read from the
local hub cache; it is fetched only with ``--allow_download``, and never with remote code.
``--model_weight random`` builds the named size from the table with random weights (seeded).

The whole clip goes through the encoder at once, ``pixel_values`` [B, 3, T, S, S] ->
``last_hidden_state`` [B, T/2 * (S/16)^2, D]: a 3D convolution embeds tubelets of 2 frames x
16 x 16 pixels, there is no class or register token, and the encoder's final LayerNorm is
applied (as transformers and upstream's frozen evaluation give it). Only the encoder runs: the
predictor that ``VJEPA2Model.forward`` would also run is dropped at load.

Which clips it takes (transformers 5's ``modeling_vjepa2``): positions are 3D RoPE computed
from each token's index, with ``config.crop_size / patch_size`` tokens per row and per column.
* Frames: any multiple of the tubelet (2, 4, ..., 64, 128): the temporal position is the
  tubelet's index, unbounded (``frames_per_clip`` = 64 only says what it was trained on; past
  64 frames positions are ones training never saw). An odd count would have its last frame
  dropped by the convolution (1 frame: transformers repeats it), so it is refused here.
* Sizes: any multiple of 16, square, provided the RoPE grid matches the input. transformers
  takes the grid from ``config.crop_size``, not from the input: another size with the
  checkpoint's crop_size gives every token a wrong (h, w) position without an error. This
  family therefore sets ``crop_size`` to the run's size before building the model (nothing
  learnt depends on it), as upstream builds its ViT at the evaluation's resolution.

Preprocessing is the checkpoint's own video processor (``AutoVideoProcessor``,
``VJEPA2VideoProcessor``): mean/std (ImageNet), the crop (256 or 384) and the resize of the
shorter side to ``int(crop * 256 / 224)`` (292, 438) before the centre crop. A folder without a
processor config (and ``random``) takes the class's defaults at the model's crop size. Where each
came from is in ``spec.origins`` (the record's ``encoder.spec``). The run's input size is
``--input_size`` (recipe, command line, or the dataset card's default), else the processor's
crop; the shorter side follows the processor's rule at that size unless ``--short_side_size``.
The processor resizes bilinearly; this suite's pipeline resizes bicubically for every family.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from eval_encoder.compute import register_cost, vjepa2_cost
from eval_encoder.config import ConfigError, ProbeConfig, require
from eval_encoder.encoders.base import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, VideoEncoder
from eval_encoder.encoders.baselines import NO_WEIGHT, as_triple, check_patch_multiple
from eval_encoder.encoders.hf_backend import import_transformers
from eval_encoder.encoders.weights import check_weight_source, resolve_weights
from eval_encoder.registry import ENCODERS
from eval_encoder.text import did_you_mean

logger = logging.getLogger(__name__)

FAMILY = "vjepa2"
# --attn_implementation -> transformers' attn_implementation (None: the library's default,
# sdpa); flash_attention_2 needs half-precision weights and these load in float32
ATTENTION: Dict[str, Optional[str]] = {"auto": None, "sdpa": "sdpa"}
LISTED_FRAMES = 16  # ``ls models`` shows the tokens of a clip of this many frames


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class VJEPA2Size:
    """A named V-JEPA 2 encoder: its ``VJEPA2Config`` values and where its weights are."""

    name: str
    hub_id: str  # default --model_weight ("" = none published)
    upstream: str  # the torch.hub name in facebookresearch/vjepa2 (hubconf.py)
    arch: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    mlp_ratio: float
    crop_size: int
    patch_size: int = 16
    tubelet_size: int = 2
    # further VJEPA2Config values (the tiny size shrinks the predictor it never runs)
    extra: Tuple[Tuple[str, Any], ...] = ()
    note: str = ""

    def config_values(self) -> Dict[str, Any]:
        """Keyword arguments of ``transformers.VJEPA2Config`` for this size."""
        keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio",
                "crop_size", "patch_size", "tubelet_size")
        return {**{k: getattr(self, k) for k in keys}, **dict(self.extra)}

    @property
    def tokens_per_frame(self) -> int:
        """Patch tokens of one tubelet (one temporal step) at the size's own crop."""
        return (self.crop_size // self.patch_size) ** 2

    def tokens_per_clip(self, frames: int) -> int:
        return frames // self.tubelet_size * self.tokens_per_frame


# Shapes: upstream's src/models/vision_transformer.py (vit_large, vit_huge,
# vit_giant_xformers: 22 heads, MLP 48/11) and the hub configs; every size was pretrained on
# 64-frame clips ("fpc64")
_TINY_PREDICTOR = (("pred_hidden_size", 32), ("pred_num_hidden_layers", 1),
                   ("pred_num_attention_heads", 2), ("frames_per_clip", 4))
SIZES: Dict[str, VJEPA2Size] = {s.name: s for s in (
    VJEPA2Size("vjepa2_large_patch16_256", "facebook/vjepa2-vitl-fpc64-256", "vjepa2_vit_large",
               "ViT-L/16", 1024, 24, 16, 4.0, 256),
    VJEPA2Size("vjepa2_huge_patch16_256", "facebook/vjepa2-vith-fpc64-256", "vjepa2_vit_huge",
               "ViT-H/16", 1280, 32, 16, 4.0, 256),
    VJEPA2Size("vjepa2_giant_patch16_256", "facebook/vjepa2-vitg-fpc64-256", "vjepa2_vit_giant",
               "ViT-g/16", 1408, 40, 22, 48 / 11, 256),
    VJEPA2Size("vjepa2_giant_patch16_384", "facebook/vjepa2-vitg-fpc64-384",
               "vjepa2_vit_giant_384", "ViT-g/16", 1408, 40, 22, 48 / 11, 384),
    VJEPA2Size("vjepa2_tiny", "", "", "ViT-2x64/16", 64, 2, 2, 4.0, 32, extra=_TINY_PREDICTOR,
               note="2 layers, 64 wide, 32 px; random weights for tests and demos"),
)}


def size_of(name: str) -> VJEPA2Size:
    """The table entry called ``name``; otherwise a ConfigError that points from a hub id or
    an upstream torch.hub name to its entry, or lists the close names."""
    if name in SIZES:
        return SIZES[name]
    named = {s.hub_id: s.name for s in SIZES.values() if s.hub_id}
    named.update({s.upstream: s.name for s in SIZES.values() if s.upstream})
    if name in named:
        hint = (f" {name} is {named[name]}: --model_name {named[name]} (its weights, "
                f"{SIZES[named[name]].hub_id}, are the default --model_weight).")
    else:
        hint = did_you_mean(name, [*SIZES, *named], cutoff=0.6)
    raise ConfigError(f"unknown V-JEPA 2 model name {name!r}.{hint} Known: {', '.join(SIZES)}")


def describe(entry: VJEPA2Size) -> dict:
    """A listing row: width, patch, tubelet, input size, tokens per tubelet and per 16-frame
    clip, the processor's default mean/std, the hub id."""
    where = f"{entry.hub_id} (torch.hub {entry.upstream})" if entry.hub_id else "no weights"
    return {"family": FAMILY, "model_name": entry.name, "arch": entry.arch,
            "embed_dim": entry.hidden_size, "patch_size": entry.patch_size,
            "tubelet_size": entry.tubelet_size, "input_size": entry.crop_size,
            "tokens_per_frame": entry.tokens_per_frame,
            "tokens_per_clip_16f": entry.tokens_per_clip(LISTED_FRAMES),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "default_weights": entry.hub_id,
            "note": entry.note or f"{entry.arch}, {entry.num_hidden_layers} layers, "
                                  f"{entry.num_attention_heads} heads, 3D RoPE; {where}"}


# --------------------------------------------------------------------------- the encoder

class VJEPA2Encoder(VideoEncoder):
    """Frozen V-JEPA 2 encoder over whole clips: tokens [B, T/t * (S/p)^2, D]."""

    def __init__(self, encoder: nn.Module, spec: EncoderSpec, config, weights: str):
        super().__init__()
        self.encoder = encoder  # transformers' VJEPA2Encoder (embeddings, layers, LayerNorm)
        self.spec = spec
        self.config = config  # its VJEPA2Config, read by the cost model
        self.weights = weights  # where the weights came from, for the run record

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``batch["pixel_values"]`` [B, 3, T, S, S] -> ``last_hidden_state`` [B, N, D]."""
        video = self._check_input(batch.get("pixel_values"))
        # transformers takes [B, T, C, H, W]
        return self.encoder(pixel_values_videos=video.transpose(1, 2)).last_hidden_state

    def _check_input(self, video: Optional[torch.Tensor]) -> torch.Tensor:
        size, name = self.spec.input_size, f"{FAMILY}/{self.spec.model_name}"
        if video is None or video.dim() != 5 or video.shape[1] != 3 \
                or tuple(video.shape[-2:]) != (size, size):
            shape = None if video is None else tuple(video.shape)
            raise ValueError(f"{name}: batch['pixel_values'] must be [B, 3, T, {size}, {size}], "
                             f"got {shape}")
        check_frames(int(video.shape[2]), self.spec.tubelet_size, name)
        return video


register_cost(VJEPA2Encoder)(vjepa2_cost)


def check_frames(frames: int, tubelet: int, name: str) -> None:
    """A clip must be whole tubelets: ``frames`` a positive multiple of ``tubelet``."""
    if frames < tubelet or frames % tubelet:
        raise ConfigError(f"{name} takes clips of a multiple of {tubelet} frames (tubelets of "
                          f"{tubelet}), not {frames} frames: give --num_frames such as "
                          f"{frames - frames % tubelet + tubelet}")


# --------------------------------------------------------------------------- building

def build_vjepa2(cfg: ProbeConfig) -> VJEPA2Encoder:
    """The family's factory: the named size, its weights, its processor's preprocessing, at
    the run's input size (module docstring)."""
    entry = size_of(cfg.model_name)
    check_flags(cfg)
    transformers = import_transformers()
    folder = weight_folder(cfg, entry)
    return build_from_config(cfg, transformers, folder, read_config(transformers, folder, entry))


def build_from_config(cfg: ProbeConfig, transformers, folder: Optional[Path],
                      config) -> VJEPA2Encoder:
    """The encoder of a ``VJEPA2Config`` read already, with the weights of ``folder`` (random
    for None); the ``hf`` family routes a V-JEPA 2 checkpoint here too."""
    check_frames(cfg.num_frames, int(config.tubelet_size), f"{FAMILY}/{cfg.model_name}")
    spec = vjepa2_spec(cfg, config, read_processor(transformers, folder, int(config.crop_size)))
    config.crop_size = spec.input_size  # the RoPE grid: S/p positions per row and column
    model = (random_model(transformers, config, cfg) if folder is None
             else load_model(transformers, folder, config, cfg.attn_implementation))
    weights = f"random (seed {cfg.seed})" if folder is None else str(folder)
    logger.info("%s/%s: transformers %s at %d px, tubelets of %d frames, %d tokens each, "
                "weights %s", FAMILY, cfg.model_name, type(model).__name__, spec.input_size,
                spec.tubelet_size, spec.tokens_per_frame, weights)
    return VJEPA2Encoder(model.encoder, spec, config, weights).freeze()


def check_flags(cfg: ProbeConfig) -> None:
    """Flags of other families that V-JEPA 2 cannot honour."""
    require(cfg.attn_implementation in ATTENTION,
            f"--attn_implementation {cfg.attn_implementation}: the {FAMILY} family loads float32 "
            f"weights and runs transformers' attention; choose {' or '.join(ATTENTION)}")
    require(cfg.target_frames == 64,
            f"--target_frames {cfg.target_frames}: V-JEPA 2's temporal RoPE positions are its "
            "tubelets' indices; it has no frame-index grid to map onto")


def weight_source(cfg: ProbeConfig, entry: VJEPA2Size) -> Optional[str]:
    """What ``--model_weight`` names: a folder or hub id, the size's hub id when not given,
    None for ``random``."""
    given = (cfg.model_weight or "").strip()
    if given == "random":
        return None
    source = entry.hub_id if given in NO_WEIGHT else given
    if not source:
        raise ConfigError(f"{entry.name} has no published weights: pass --model_weight (a "
                          "folder with config.json and its weights) or random")
    return source


def weight_folder(cfg: ProbeConfig, entry: VJEPA2Size) -> Optional[Path]:
    """The local folder of the weights (the hub cache's snapshot for a hub id, fetched only
    with --allow_download); None for random weights."""
    source = weight_source(cfg, entry)
    if source is None:
        return None
    path = resolve_weights(source, cfg.allow_download)
    if not path.is_dir():
        raise ConfigError(f"--model_weight {source}: a V-JEPA 2 checkpoint is a folder "
                          "(config.json + model.safetensors) or a hub id, not a single file")
    return path


def read_config(transformers, folder: Optional[Path], entry: VJEPA2Size):
    """The checkpoint's ``VJEPA2Config`` (its config.json), or the table's for random weights."""
    if folder is None:
        return transformers.VJEPA2Config(**entry.config_values())
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True,
                                                         trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: no readable transformers config.json ({exc})") from None
    if getattr(config, "model_type", None) != FAMILY:
        raise ConfigError(f"{folder}: config.json describes a {config.model_type!r} model, not "
                          f"V-JEPA 2 ({FAMILY})")
    _compare_with_name(config, entry, folder)
    return config


def _compare_with_name(config, entry: VJEPA2Size, folder: Path) -> None:
    """Warn when config.json disagrees with the shape the model name promises."""
    named = entry.config_values()
    diff = {k: (v, getattr(config, k, None)) for k, v in named.items()
            if not k.startswith(("pred_", "frames_")) and getattr(config, k, None) != v}
    if diff:
        logger.warning("%s/config.json differs from --model_name %s (name, file): %s; using the "
                       "file", folder, entry.name, diff)


def random_model(transformers, config, cfg: ProbeConfig) -> nn.Module:
    """``VJEPA2Model`` of ``config`` with random weights, the same on every rank (seeded in a
    private RNG state)."""
    attn = ATTENTION[cfg.attn_implementation]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = transformers.AutoModel.from_config(
            config, trust_remote_code=False, **({"attn_implementation": attn} if attn else {}))
    logger.warning("%s/%s: random weights (--model_weight random, seed %d)", FAMILY,
                   cfg.model_name, cfg.seed)
    return model


def load_model(transformers, folder: Path, config, attn_flag: str) -> nn.Module:
    """``VJEPA2Model`` from a local folder in float32 (never remote code, never a download:
    a hub id was resolved to its cached folder first); refuses missing encoder weights."""
    attn = ATTENTION[attn_flag]
    try:
        model, info = transformers.VJEPA2Model.from_pretrained(
            folder, config=config, local_files_only=True, trust_remote_code=False,
            dtype=torch.float32, output_loading_info=True,
            **({"attn_implementation": attn} if attn else {}))
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{folder}: cannot load VJEPA2Model weights: {reason}") from exc
    bad = _missing_encoder_keys(info)
    if bad:
        raise ConfigError(f"{folder} does not hold every encoder weight ({len(bad)} missing or "
                          f"mismatched, e.g. {bad[:5]}); refusing a partly random encoder")
    return model


def _missing_encoder_keys(info: Dict[str, Any]) -> List[str]:
    """Encoder parameters that transformers had to initialise (the predictor is not run)."""
    keys = [*info.get("missing_keys", []),
            *[str(k[0]) if isinstance(k, tuple) else str(k)
              for k in info.get("mismatched_keys", [])]]
    return sorted(k for k in keys if k.startswith("encoder."))


# --------------------------------------------------------------------------- preprocessing

def read_processor(transformers, folder: Optional[Path], crop: int) -> Tuple[Any, str]:
    """The model's video processor and where it came from: the folder's processor config,
    else ``VJEPA2VideoProcessor``'s defaults at the model's crop size."""
    if folder is not None:
        try:
            proc = transformers.AutoVideoProcessor.from_pretrained(
                folder, local_files_only=True, trust_remote_code=False)
            return proc, f"{type(proc).__name__} config in {folder}"
        except (OSError, ValueError) as exc:
            logger.info("%s: no video processor config in %s (%s); using the class defaults",
                        FAMILY, folder, str(exc).splitlines()[0] if str(exc) else exc)
    proc = transformers.VJEPA2VideoProcessor(crop_size=crop)
    where = "" if folder is None else f", no processor config in {folder}"
    return proc, (f"transformers {transformers.__version__} VJEPA2VideoProcessor defaults at "
                  f"crop {crop}{where}")


def _side(size, key: str) -> Optional[int]:
    """``size[key]`` of a processor's size (a dict or transformers' SizeDict), or None."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def short_side_at(proc, crop: int) -> Optional[int]:
    """The shorter side the processor resizes to before cropping ``crop``: its own rule,
    asked of the processor class at that crop (VJEPA2VideoProcessor: int(crop * 256 / 224))."""
    if crop != _side(proc.crop_size, "height"):
        proc = type(proc)(crop_size=crop)
    if not (getattr(proc, "do_resize", True) and getattr(proc, "do_center_crop", True)):
        return None
    return _side(proc.size, "shortest_edge")


def _resample_name(proc) -> str:
    """The processor's resize filter by name (a saved config holds PIL's number)."""
    from transformers.image_utils import PILImageResampling

    value = getattr(proc, "resample", None)
    try:
        return PILImageResampling(int(value)).name.lower()
    except (TypeError, ValueError):
        return str(value)


def vjepa2_spec(cfg: ProbeConfig, config, processor: Tuple[Any, str]) -> EncoderSpec:
    """The spec: the processor's mean/std and crop as the family's own, the run's input size,
    mean and std applied over them (noted in ``overrides``), the tubelet and its token grid."""
    proc, origin = processor
    patch, native = int(config.patch_size), _side(proc.crop_size, "height") or int(config.crop_size)
    if native != int(config.crop_size):
        logger.warning("%s: the video processor crops %d px, config.json says crop_size %d; "
                       "using the processor's", FAMILY, native, config.crop_size)
    spec = EncoderSpec(family=FAMILY, model_name=cfg.model_name, embed_dim=int(config.hidden_size),
                       patch_size=patch, input_size=native, mean=tuple(proc.image_mean),
                       std=tuple(proc.image_std), tubelet_size=int(config.tubelet_size))
    spec = spec.with_overrides(cfg.sources, input_size=cfg.input_size,
                               mean=as_triple(cfg.mean, "mean"), std=as_triple(cfg.std, "std"))
    size = check_patch_multiple(spec.input_size, patch)
    short = short_side_at(proc, size)
    origins = {"mean": origin, "std": origin, "input_size": origin,
               "short_side": f"{origin}: shorter side {short} for crop {size} "
                             f"({_resample_name(proc)} resize there; this suite resizes bicubic)"}
    return replace(spec, tokens_per_frame=(size // patch) ** 2, short_side=short, origins=origins)


# --------------------------------------------------------------------------- registration

class VJEPA2Family:
    """The ``vjepa2`` family's ENCODERS factory."""

    description = ("V-JEPA 2 video encoders (transformers VJEPA2Model, extra [hf]): whole clips, "
                   "tubelets of 2 frames, 3D RoPE")

    def __call__(self, cfg: ProbeConfig) -> VJEPA2Encoder:
        return build_vjepa2(cfg)

    def check_model_name(self, name: str) -> None:
        """Raise with suggestions unless ``name`` is in the table (registry.check_names)."""
        size_of(name)

    def check_weights(self, cfg: ProbeConfig) -> None:
        """The weights the build would load are there: a folder, or a hub id in the local
        cache (or fetchable with --allow_download); nothing is read or built."""
        source = weight_source(cfg, size_of(cfg.model_name))
        if source is not None:
            check_weight_source(source, cfg.allow_download, weight_file=False)

    def describe_models(self) -> List[dict]:
        """Rows for ``python -m eval_encoder ls`` (from the table; nothing is built)."""
        return [describe(s) for s in SIZES.values()]


ENCODERS.register(FAMILY, VJEPA2Family())
