"""The ``hf`` family's video models: transformers' clip-level encoders, whole clips at once.

    --model_family hf --model_name MCG-NJU/videomae-base        (or a folder)

``hf_backend.build_hf`` reads the checkpoint's config first and hands a config whose
``model_type`` is in :data:`VIDEO_KINDS` to :func:`build_video` (a table, not an if-chain):

* ``videomae`` (``VideoMAEModel``): tubelets of ``tubelet_size`` (2) frames x p x p, fixed
  sin/cos positions, no class token; ``[B, T, C, H, W]``.
* ``timesformer`` (``TimesformerModel``): per-frame patches, one class token per clip;
  ``[B, T, C, H, W]``. transformers returns the patch tokens patch by patch (each patch's T
  frames in a row); they are put back frame by frame here (the same tokens, reordered).
* ``vivit`` (``VivitModel``): tubelets of ``tubelet_size[0]`` (2) frames, one class token per
  clip; ``[B, T, C, H, W]``.
* ``xclip`` / ``xclip_vision_model``: X-CLIP's video tower, ``XCLIPVisionModel`` (from an
  ``XCLIPModel`` checkpoint its ``vision_model``). It encodes each frame as a CLIP image
  (``[B*T, C, H, W]``), its frames exchanging one message token per frame in every layer
  (cross-frame attention over ``config.num_frames`` frames). The head gets its
  ``last_hidden_state`` frame by frame: per frame the class token + the patch tokens (before
  ``post_layernorm``, which X-CLIP applies to the class token only). X-CLIP's multi-frame
  integration transformer, its projections and its prompt generator are not run: the video
  embedding X-CLIP matches with text is not what the head sees.
* ``vjepa2``: routed to the ``vjepa2`` family's encoder (``vjepa2.build_from_config``).

Frames and sizes (transformers 5's modeling code): none of the four interpolates positions over
time, so a clip must have the model's ``config.num_frames`` frames: VideoMAE's sin/cos table is
built for it, TimeSformer's divided space-time layers reshape by it, ViViT's table is learnt for
it, X-CLIP's message attention groups the batch by it. An explicit ``--num_frames`` that differs
is an error naming both; a default one yields. Only X-CLIP interpolates spatial positions
(``interpolate_pos_encoding``, as CLIP); VideoMAE refuses another size, TimeSformer's layers
reshape by ``config.image_size``, ViViT's ``interpolate_pos_encoding`` reshapes its space-time
table as if it were square and fails for more than one tubelet. So those three run at
``config.image_size``.

Preprocessing is the folder's video processor (``AutoVideoProcessor``), else its image
processor (``AutoImageProcessor``), else the table's processor class with its defaults. Its
rescale and mean/std become the suite's mean/std on [0, 1] pixels: ViViT's processor rescales
by 1/127.5, subtracts 1 and then normalises with 0.5/0.5, which is mean 0.75, std 0.25 here.
The shorter side follows the processor's resize before its centre crop. The processors resize
bilinearly; this suite resizes bicubically for every family.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

from eval_encoder.config import ConfigError
from eval_encoder.encoders import vjepa2
from eval_encoder.encoders.clip import ClipLayout, build_clip_encoder
from eval_encoder.encoders.hf_backend import VIDEO_BUILDERS, VIDEO_ROWS
from eval_encoder.encoders.weights import resolve_weights

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class VideoKind:
    """How one transformers video model runs on a clip and what its head gets."""

    model_class: str  # the transformers class loaded
    processor: str  # the processor class whose defaults apply when the folder has none
    input: str  # INPUTS key: how [B, T, C, H, W] goes in
    order: str = "frames"  # ORDERS key: how its last_hidden_state is put frame by frame
    clip_prefix: int = 0  # class tokens once per clip
    frame_prefix: int = 0  # class tokens per frame
    interpolates_size: bool = False  # interpolate_pos_encoding works on its clips
    tower: str = ""  # the submodule that is run ("" the model itself)
    offset: bool = False  # the processor subtracts 1 after rescaling (ViViT)
    default_stats: Optional[Tuple[tuple, tuple]] = None  # mean/std where the class has none
    note: str = ""


VIDEO_KINDS: Dict[str, VideoKind] = {
    "videomae": VideoKind("VideoMAEModel", "VideoMAEVideoProcessor", "clip",
                          note="tubelets, sin/cos positions, no class token"),
    "timesformer": VideoKind("TimesformerModel", "TimesformerVideoProcessor", "clip",
                             order="patch_major", clip_prefix=1,
                             note="divided space-time attention, 1 class token per clip"),
    "vivit": VideoKind("VivitModel", "VivitVideoProcessor", "clip", clip_prefix=1, offset=True,
                       note="tubelets, learnt positions, 1 class token per clip"),
    "xclip": VideoKind("XCLIPModel", "VideoMAEImageProcessor", "frames", frame_prefix=1,
                       interpolates_size=True, tower="vision_model",
                       default_stats=(CLIP_MEAN, CLIP_STD),
                       note="X-CLIP's vision tower: per frame class + patches, message tokens "
                            "across frames; no MIT, no projection"),
    "xclip_vision_model": VideoKind("XCLIPVisionModel", "VideoMAEImageProcessor", "frames",
                                    frame_prefix=1, interpolates_size=True,
                                    default_stats=(CLIP_MEAN, CLIP_STD),
                                    note="X-CLIP's vision tower saved alone"),
}


def _clip_input(model: nn.Module, clip: torch.Tensor, kwargs: dict) -> torch.Tensor:
    return model(pixel_values=clip, **kwargs).last_hidden_state


def _frames_input(model: nn.Module, clip: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """Frames as images ([B*T, C, H, W]); their tokens side by side, frame after frame."""
    out = model(pixel_values=clip.flatten(0, 1), **kwargs).last_hidden_state
    return out.reshape(clip.shape[0], -1, out.shape[-1])


INPUTS: Dict[str, Callable] = {"clip": _clip_input, "frames": _frames_input}


def _as_is(tokens: torch.Tensor, frames: int, prefix: int) -> torch.Tensor:
    return tokens


def patch_major_to_frames(tokens: torch.Tensor, frames: int, prefix: int) -> torch.Tensor:
    """[prefix, (patch, frame)] -> [prefix, (frame, patch)]: TimeSformer's order to frames."""
    head, rest = tokens[:, :prefix], tokens[:, prefix:]
    b, n, d = rest.shape
    rest = rest.reshape(b, n // frames, frames, d).transpose(1, 2).reshape(b, n, d)
    return torch.cat([head, rest], dim=1)


ORDERS: Dict[str, Callable] = {"frames": _as_is, "patch_major": patch_major_to_frames}


class HFClipModule(nn.Module):
    """A transformers video model as a clip module: [B, T, C, H, W] -> tokens frame by frame."""

    def __init__(self, model: nn.Module, kind: VideoKind, interpolate: bool):
        super().__init__()
        self.model = model
        self.kind = kind
        self._kwargs = {"interpolate_pos_encoding": True} if interpolate else {}

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        tokens = INPUTS[self.kind.input](self.model, clip, self._kwargs)
        return ORDERS[self.kind.order](tokens, clip.shape[1], self.kind.clip_prefix)


# --------------------------------------------------------------------------- building

def build_video(cfg, transformers, source: str, config) -> nn.Module:
    """The encoder of a transformers video checkpoint (its config read already)."""
    if config.model_type == "vjepa2":
        return _build_vjepa2(cfg, transformers, source, config)
    kind = VIDEO_KINDS[config.model_type]
    random_init = (cfg.model_weight or "").strip() == "random"
    model = _load(transformers, kind, source, config, cfg, random_init)
    vcfg = model.config
    proc, origin = read_processor(transformers, source, kind, cfg.allow_download)
    layout, native = video_layout(cfg, kind, vcfg, proc, origin)
    module = HFClipModule(model, kind, layout.input_size != native)
    logger.info("hf/%s: %s, %d frames at %d px, tubelets of %d, %d tokens per clip",
                cfg.model_name, type(model).__name__, layout.num_frames, layout.input_size,
                layout.tubelet_size, layout.tokens)
    weights = "random" if random_init else source
    encoder = build_clip_encoder("hf", cfg, module, layout, weights,
                                 int(getattr(vcfg, "num_hidden_layers", 0)))
    encoder.spec = away_from_native(encoder.spec, cfg, native)
    return encoder


def away_from_native(spec, cfg, native: int):
    """The spec with the run's input size noted in ``overrides`` when it is not the model's
    own (X-CLIP's positions interpolated), as a record and the run's warning say it."""
    if spec.input_size == native:
        return spec
    origin = (getattr(cfg, "sources", None) or {}).get("input_size", "command line")
    note = f"{origin} (family default {native}; position embeddings interpolated)"
    return dataclasses.replace(spec, overrides={**spec.overrides, "input_size": note})


def _build_vjepa2(cfg, transformers, source: str, config) -> nn.Module:
    """A V-JEPA 2 checkpoint through ``hf``: the ``vjepa2`` family's encoder, the same code."""
    vjepa2.check_flags(cfg)
    folder = None if (cfg.model_weight or "").strip() == "random" \
        else resolve_weights(source, cfg.allow_download)
    return vjepa2.build_from_config(cfg, transformers, folder, config)


def _load(transformers, kind: VideoKind, source: str, config, cfg, random_init: bool):
    """The table's class from ``source`` (local files unless --allow_download, never remote
    code), or random weights (seeded); its tower when the table names one."""
    cls = getattr(transformers, kind.model_class)
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = cls(config)
        logger.warning("hf/%s: random weights (--model_weight random, seed %d)",
                       cfg.model_name, cfg.seed)
    else:
        model = _from_pretrained(cls, source, config, cfg.allow_download, kind.tower)
    return getattr(model, kind.tower) if kind.tower else model


def _from_pretrained(cls, source: str, config, allow_download: bool, tower: str) -> nn.Module:
    try:
        model, info = cls.from_pretrained(source, config=config, trust_remote_code=False,
                                          local_files_only=not allow_download,
                                          dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError) as exc:
        how = "" if allow_download else " (only local files are read; --allow_download fetches)"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"hf: cannot load {source!r} as {cls.__name__}{how}: {reason}") from exc
    keys = [*info.get("missing_keys", []), *[str(k[0]) if isinstance(k, tuple) else str(k)
                                             for k in info.get("mismatched_keys", [])]]
    bad = sorted(k for k in keys if k.startswith(tower))
    if bad:
        raise ConfigError(f"hf: {source!r} does not hold every weight of its {cls.__name__} "
                          f"({len(bad)} missing or mismatched, e.g. {bad[:5]}); refusing a "
                          "partly random encoder")
    return model


# --------------------------------------------------------------------------- preprocessing

def read_processor(transformers, source: str, kind: VideoKind, allow_download: bool
                   ) -> Tuple[Any, str]:
    """The checkpoint's video processor, else its image processor, else the table's class
    defaults; and where it came from."""
    for auto in ("AutoVideoProcessor", "AutoImageProcessor"):
        try:
            proc = getattr(transformers, auto).from_pretrained(
                source, local_files_only=not allow_download, trust_remote_code=False)
            return proc, f"{type(proc).__name__} config of {source}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.debug("hf: %s of %s: %s", auto, source, exc)
    logger.info("hf: no processor config in %s; using %s defaults", source, kind.processor)
    proc = getattr(transformers, kind.processor)()
    if kind.default_stats:
        proc.image_mean, proc.image_std = map(list, kind.default_stats)
        return proc, f"{kind.processor} defaults with CLIP mean/std (no processor config)"
    return proc, f"transformers {transformers.__version__} {kind.processor} defaults"


def _side(size, *keys: str) -> Optional[int]:
    for key in keys:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        if value:
            return int(value)
    return None


def suite_stats(proc, kind: VideoKind) -> Tuple[tuple, tuple]:
    """The processor's rescale and normalisation as mean/std on [0, 1] pixels: it computes
    ``(x * r - offset - m) / s`` on 0..255, which is ``(x / 255 - (offset + m) / (255 r)) /
    (s / (255 r))``."""
    scale = 255.0 * float(getattr(proc, "rescale_factor", 1 / 255) or 1 / 255)
    shift = 1.0 if getattr(proc, "offset", kind.offset) else 0.0
    mean = tuple((shift + float(m)) / scale for m in proc.image_mean)
    std = tuple(float(s) / scale for s in proc.image_std)
    return mean, std


def video_layout(cfg, kind: VideoKind, vcfg, proc, origin: str) -> Tuple[ClipLayout, int]:
    """The clip layout from the model's config and its processor, and the model's own size
    (positions are interpolated where the two differ: X-CLIP at another size)."""
    tubelet, patch = tubelet_and_patch(vcfg)
    native = int(vcfg.image_size)
    size = cfg.input_size if kind.interpolates_size and cfg.input_size else native
    if size % patch:
        raise ConfigError(f"--input_size {size}: hf/{cfg.model_name} has {patch} px patches; "
                          f"give a multiple of {patch}")
    crop = _side(proc.crop_size or {}, "height") or native
    short = _side(proc.size or {}, "shortest_edge", "height")
    short = round(short * size / crop) if short and getattr(proc, "do_center_crop", True) else None
    mean, std = suite_stats(proc, kind)
    origins = {"mean": origin, "std": origin, "short_side": f"{origin}: shorter side {short} "
               f"for crop {size} (bilinear there; this suite resizes bicubic)",
               "num_frames": f"config.json num_frames {vcfg.num_frames}",
               "input_size": f"config.json image_size {native}"}
    layout = ClipLayout(num_frames=int(vcfg.num_frames), input_size=size, patch_size=patch,
                        mean=mean, std=std, tubelet_size=tubelet, prefix_tokens=kind.frame_prefix,
                        clip_prefix_tokens=kind.clip_prefix, short_side=short, origins=origins)
    return layout, native


def tubelet_and_patch(vcfg) -> Tuple[int, int]:
    """(frames, pixels) of a temporal and spatial patch: ViViT's tubelet_size is [t, p, p],
    VideoMAE's an int next to patch_size, per-frame models have none (1)."""
    tubelet = getattr(vcfg, "tubelet_size", 1)
    if isinstance(tubelet, (list, tuple)):
        return int(tubelet[0]), int(tubelet[1])
    return int(tubelet), int(vcfg.patch_size)


def describe_kinds() -> list:
    """``ls models --family hf`` rows, one per video config class (nothing is built)."""
    rows = [{"family": "hf", "model_name": f"<{kind.model_class} id or folder>",
             "prefix_tokens": kind.frame_prefix, "clip_prefix_tokens": kind.clip_prefix,
             "note": f"video ({name}): {kind.note}; frames fixed at config.num_frames; size "
                     f"{'interpolated' if kind.interpolates_size else 'fixed'}"}
            for name, kind in VIDEO_KINDS.items()]
    rows.append({"family": "hf", "model_name": "<VJEPA2Model id or folder>",
                 "note": "video (vjepa2): the vjepa2 family's encoder, any even frame count"})
    return rows


VIDEO_BUILDERS.update({name: build_video for name in (*VIDEO_KINDS, "vjepa2")})
VIDEO_ROWS.append(describe_kinds)
