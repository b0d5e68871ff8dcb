"""Image-encoder baselines applied frame by frame: CLIP, MetaCLIP, SigLIP, SigLIP2, DINOv2,
DINOv3, AIMv2 (families), every one built with timm.

One adapter serves them all (:class:`TimmFrameEncoder`): frames are folded into the batch,
timm's ``forward_features`` runs on chunks of frames (bounding memory), tokens are restored to
``[B, T*tokens, D]`` and the upstream sin/cos temporal encoding of each frame's position is
added to every token of that frame, prefix tokens included (as upstream's ``get_feature``).

Which tokens of a frame reach the head is the family's published layout (``token_layout`` in
:data:`FAMILIES`), because the published scripts handed the head what each transformers
wrapper returned: CLIP and MetaCLIP CLS + patches (without the final LayerNorm, which
transformers applies to the pooled token only), DINOv3 CLS + 4 registers + patches, DINOv2 the
patches (its wrapper drops CLS), SigLIP, SigLIP 2 and AIMv2 every token (they have no prefix).
``--token_layout patch|all`` overrides the family's layout; ``spec.tokens_per_frame`` stays the
patch grid and ``spec.prefix_tokens`` counts the prefix tokens kept per frame.

``--model_name`` is an upstream name from :data:`MODELS` or any timm architecture name (the
family then sets mean/std, the token layout and the checkpoint filter's arguments). Weights
never come from timm's own download: a ``--model_weight`` (file, folder or hub id through
:mod:`eval_encoder.encoders.weights`), or the table's default checkpoint looked up in the local
Hugging Face cache, or ``random`` when asked for explicitly. Checkpoints go through the timm
module's ``checkpoint_filter_fn``, so original formats (OpenAI CLIP, DINOv2/DINOv3, AIMv2) load
and position embeddings are resized (DINOv2 518 -> 224). A family may pass keyword arguments
to that filter (``checkpoint_filter_kwargs``): DINOv2 resizes its 37x37 position table to the
run's grid once at load with bicubic interpolation, ``align_corners=False`` and no
antialiasing, which is exactly the table transformers' ``Dinov2Embeddings.
interpolate_pos_encoding`` (4.57.3, the published requirement) computes at run time for that
input size (CLS entry unchanged); upstream ran transformers' Dinov2Model. timm's default
antialiases, which smooths the table and gives other features than the published ones.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import logging
import math
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from eval_encoder.config import ConfigError
from eval_encoder.compute import register_cost, timm_cost
from eval_encoder.encoders.base import (CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD,
                                        EncoderSpec, VideoEncoder)
from eval_encoder.encoders.weights import (check_weight_source, describe_key_mismatch,
                                           load_state_dict, resolve_weights)
from eval_encoder.registry import ENCODERS, Registry, RegistryError
from eval_encoder.text import did_you_mean

logger = logging.getLogger(__name__)

Triple = Tuple[float, float, float]
NO_WEIGHT = ("", "NULL", "None", "none")
# Checkpoint entries that a token encoder never uses (classifier / CLIP projection after
# pooling); everything else in a checkpoint must fit the model exactly.
UNUSED_CHECKPOINT_PREFIXES = ("head.",)
DEFAULT_FRAMES_PER_PASS = 64
# prefix tokens per frame each token layout keeps, given how many the model has
PREFIX_KEPT: Dict[str, Callable[[int], int]] = {"patch": lambda n: 0, "all": lambda n: n}
LAYOUT_WORDS = {"patch": "patch tokens", "all": "prefix + patch tokens"}
# transformers' Dinov2 interpolate_pos_encoding: F.interpolate(size=grid, mode="bicubic",
# align_corners=False) in float32, no antialias (timm's checkpoint_filter_fn antialiases by
# default; align_corners is left at F.interpolate's default, False)
HF_POS_EMBED_RESIZE = (("interpolation", "bicubic"), ("antialias", False))


# --------------------------------------------------------------------------- the tables

@dataclass(frozen=True)
class BaselineFamily:
    """A family's preprocessing and published token layout; ``__call__(cfg)`` is its ENCODERS
    factory."""

    name: str
    mean: Triple
    std: Triple
    title: str
    # the tokens of a frame the published scripts gave the head: "all" (prefix + patch tokens,
    # as the transformers wrapper returned them) or "patch" (the wrapper dropped the prefix)
    token_layout: str
    aliases: Tuple[str, ...] = ()
    # keyword arguments for the timm module's checkpoint_filter_fn (pairs; frozen, hashable)
    checkpoint_filter_kwargs: Tuple[Tuple[str, object], ...] = ()

    @property
    def description(self) -> str:
        return (f"{self.title} (timm, per frame, {LAYOUT_WORDS[self.token_layout]}; "
                "--model_name also takes a timm ViT name)")

    def __call__(self, cfg) -> "TimmFrameEncoder":
        return build_baseline(self.name, cfg)

    def describe_models(self) -> List[dict]:
        """Rows for ``python -m eval_encoder ls`` (from the table; nothing is built)."""
        return [describe(m) for m in models_of(self.name)]

    def check_model_name(self, name: str) -> None:
        """Raise (with suggestions) unless ``name`` is this family's table entry or a timm
        architecture name; nothing is built (registry.check_names)."""
        resolve_model(self.name, name)

    def check_weights(self, cfg) -> None:
        """The weight :func:`load_weights` would load is there (nothing is read or built)."""
        choice = (cfg.model_weight or "").strip()
        if choice != "random":
            _resolve(choice, resolve_model(self.name, cfg.model_name), cfg.allow_download,
                     check_weight_source)


@dataclass(frozen=True)
class BaselineModel:
    """An upstream model name: the timm architecture that runs it and its default checkpoint."""

    name: str
    family: str
    arch: str  # timm architecture
    weights: str  # default checkpoint: hub id looked up in the local cache ("" = none)
    embed_dim: int
    patch_size: int
    input_size: int
    # upstream fed CLIP's tokens before the final LayerNorm (transformers' CLIPVisionModel
    # applies post_layernorm to the pooled token only); timm applies it to all tokens
    final_norm: bool = True
    # the architecture's own prefix tokens (class + register), before any layout drops them
    num_prefix_tokens: int = 0
    note: str = ""

    @property
    def tokens_per_frame(self) -> int:
        return (self.input_size // self.patch_size) ** 2


# token_layout: upstream handed the head each wrapper's last_hidden_state (CLIP, MetaCLIP:
# CLS + patches; DINOv3: CLS + 4 registers + patches; SigLIP, SigLIP 2, AIMv2: patches, they
# have no prefix), except DINOv2, whose wrapper returns last_hidden_state[:, 1:]
FAMILIES: Dict[str, BaselineFamily] = {f.name: f for f in (
    BaselineFamily("clip", CLIP_MEAN, CLIP_STD, "OpenAI CLIP image tower", "all",
                   ("openai_clip",)),
    BaselineFamily("metaclip", CLIP_MEAN, CLIP_STD, "MetaCLIP image tower", "all",
                   ("meta_clip",)),
    BaselineFamily("siglip", HALF, HALF, "SigLIP image tower", "all"),
    BaselineFamily("siglip2", HALF, HALF, "SigLIP 2 image tower (fixed resolution)", "all",
                   ("siglip_v2",)),
    BaselineFamily("dinov2", IMAGENET_MEAN, IMAGENET_STD, "DINOv2", "patch", ("dino_v2",),
                   checkpoint_filter_kwargs=HF_POS_EMBED_RESIZE),
    BaselineFamily("dinov3", IMAGENET_MEAN, IMAGENET_STD, "DINOv3", "all", ("dino_v3",)),
    BaselineFamily("aimv2", CLIP_MEAN, CLIP_STD, "AIMv2 image encoder", "all", ("aim_v2",)),
)}

# CLIP and MetaCLIP were trained with QuickGELU, so their timm *_quickgelu_* variants give the
# original features; fixed-resolution SigLIP 2 checkpoints share SigLIP's architecture. The
# input sizes are the upstream runs' (DINOv2 and DINOv3 at 224, not their 518/256 defaults).
_B, _L = 768, 1024
MODELS: Registry[BaselineModel] = Registry("baseline model name")
for _m in (
    BaselineModel("clip_vit_base_patch16", "clip", "vit_base_patch16_clip_quickgelu_224",
                  "timm/vit_base_patch16_clip_224.openai", _B, 16, 224, final_norm=False,
                  num_prefix_tokens=1,
                  note="upstream: openai/clip-vit-base-patch16"),
    BaselineModel("clip_vit_large_patch14", "clip", "vit_large_patch14_clip_quickgelu_224",
                  "timm/vit_large_patch14_clip_224.openai", _L, 14, 224, final_norm=False,
                  num_prefix_tokens=1,
                  note="upstream: openai/clip-vit-large-patch14"),
    BaselineModel("metaclip_base16_fullcc", "metaclip", "vit_base_patch16_clip_quickgelu_224",
                  "timm/vit_base_patch16_clip_224.metaclip_2pt5b", _B, 16, 224, final_norm=False,
                  num_prefix_tokens=1,
                  note="upstream: facebook/metaclip-b16-fullcc2.5b"),
    BaselineModel("metaclip_large14_fullcc", "metaclip", "vit_large_patch14_clip_quickgelu_224",
                  "timm/vit_large_patch14_clip_224.metaclip_2pt5b", _L, 14, 224, final_norm=False,
                  num_prefix_tokens=1,
                  note="upstream: facebook/metaclip-l14-fullcc2.5b"),
    BaselineModel("metaclip2_large14", "metaclip", "vit_large_patch14_clip_quickgelu_224",
                  "timm/vit_large_patch14_clip_224.metaclip_2pt5b", _L, 14, 224, final_norm=False,
                  num_prefix_tokens=1,
                  note="kept as upstream: this name loads MetaCLIP 1 L/14 fullcc2.5b "
                       "(facebook/metaclip-l14-fullcc2.5b), not MetaCLIP 2; MetaCLIP 2 "
                       "checkpoints run through the hf family"),
    BaselineModel("siglip_base", "siglip", "vit_base_patch16_siglip_224",
                  "timm/vit_base_patch16_siglip_224.webli", _B, 16, 224,
                  note="upstream: google/siglip-base-patch16-224"),
    BaselineModel("siglip_large_patch16_256", "siglip", "vit_large_patch16_siglip_256",
                  "timm/vit_large_patch16_siglip_256.webli", _L, 16, 256,
                  note="upstream: google/siglip-large-patch16-256"),
    BaselineModel("siglip2_base", "siglip2", "vit_base_patch16_siglip_224",
                  "timm/vit_base_patch16_siglip_224.v2_webli", _B, 16, 224,
                  note="upstream: google/siglip2-base-patch16-224"),
    BaselineModel("siglip2_large_patch16_256", "siglip2", "vit_large_patch16_siglip_256",
                  "timm/vit_large_patch16_siglip_256.v2_webli", _L, 16, 256,
                  note="upstream: google/siglip2-large-patch16-256"),
    BaselineModel("dinov2_base", "dinov2", "vit_base_patch14_dinov2",
                  "timm/vit_base_patch14_dinov2.lvd142m", _B, 14, 224,
                  num_prefix_tokens=1,
                  note="upstream: facebook/dinov2-base; CLS dropped as upstream; 37x37 "
                       "pos-embed resized to the run's grid at load as transformers does at run "
                       "time (bicubic, no antialias)"),
    BaselineModel("dinov2_large", "dinov2", "vit_large_patch14_dinov2",
                  "timm/vit_large_patch14_dinov2.lvd142m", _L, 14, 224,
                  num_prefix_tokens=1,
                  note="upstream: facebook/dinov2-large; CLS dropped as upstream; 37x37 "
                       "pos-embed resized to the run's grid at load as transformers does at run "
                       "time (bicubic, no antialias)"),
    BaselineModel("dinov3_base", "dinov3", "vit_base_patch16_dinov3",
                  "timm/vit_base_patch16_dinov3.lvd1689m", _B, 16, 224, num_prefix_tokens=5,
                  note="facebook/dinov3-vitb16-pretrain-lvd1689m (4 registers), our "
                       "assumption: the published shells pass no DINOv3 checkpoint"),
    BaselineModel("dinov3_large", "dinov3", "vit_large_patch16_dinov3",
                  "timm/vit_large_patch16_dinov3.lvd1689m", _L, 16, 224, num_prefix_tokens=5,
                  note="facebook/dinov3-vitl16-pretrain-lvd1689m (4 registers), our "
                       "assumption: the published shells pass no DINOv3 checkpoint"),
    BaselineModel("aimv2_large_patch14_native_ap", "aimv2", "aimv2_large_patch14_224",
                  "timm/aimv2_large_patch14_224.apple_pt", _L, 14, 224,
                  note="upstream loads apple/aimv2-large-patch14-native, which timm lacks: "
                       "this builds timm's AIMv2-L/14 224 (apple_pt); the native checkpoint "
                       "runs through the hf family"),
):
    MODELS.register(_m.name, _m)


def family_info(name: str) -> BaselineFamily:
    """The baseline family called ``name`` (or one of its aliases)."""
    for fam in FAMILIES.values():
        if name == fam.name or name in fam.aliases:
            return fam
    raise RegistryError(f"{name!r} is not a baseline family; known: {', '.join(FAMILIES)}")


def models_of(family: str) -> List[BaselineModel]:
    """The table entries of one family, in name order."""
    return [m for _, m in MODELS.items() if m.family == family]


def describe(model: BaselineModel) -> dict:
    """A listing row for a table entry: width, tokens per frame (patch grid and the prefix
    tokens the family's layout keeps), input size, mean/std."""
    fam = FAMILIES[model.family]
    return {"family": model.family, "model_name": model.name, "timm_arch": model.arch,
            "embed_dim": model.embed_dim, "patch_size": model.patch_size,
            "input_size": model.input_size, "tokens_per_frame": model.tokens_per_frame,
            "prefix_tokens": PREFIX_KEPT[fam.token_layout](model.num_prefix_tokens),
            "token_layout": fam.token_layout, "mean": list(fam.mean), "std": list(fam.std),
            "default_weights": model.weights, "note": model.note}


# --------------------------------------------------------------------------- the adapter

def temporal_encoding(num_frames: int, dim: int, device=None) -> torch.Tensor:
    """Upstream's per-frame sin/cos encoding ``[T, D]``: position t, frequencies
    ``exp(-ln(10000) * 2i / D)``, sin and cos interleaved (sin0, cos0, sin1, cos1, ...)."""
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                      * (-math.log(10000.0) / dim))
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None] * freqs
    return torch.stack([pos.sin(), pos.cos()], dim=-1).flatten(1)[:, :dim]


class PerFrameEncoder(VideoEncoder):
    """Runs an image encoder on every frame and returns ``[B, T*tokens, D]`` tokens.

    Subclasses give :meth:`encode_images` (``[N, 3, H, W] -> [N, prefix + tokens, D]``).
    ``num_prefix_tokens=None`` infers the prefix as whatever precedes the patch tokens. Each
    frame keeps the last ``spec.prefix_tokens`` of its prefix tokens and all its patch tokens.
    """

    def __init__(self, spec: EncoderSpec, num_prefix_tokens: Optional[int],
                 frames_per_pass: int = DEFAULT_FRAMES_PER_PASS):
        super().__init__()
        if frames_per_pass < 1:
            raise ValueError(f"frames_per_pass must be >= 1, got {frames_per_pass}")
        self.spec = spec
        self.num_prefix_tokens = num_prefix_tokens
        self.frames_per_pass = frames_per_pass

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``batch["pixel_values"]`` [B, 3, T, S, S] -> float32 tokens [B, T*tokens, D]."""
        video = self._check_input(batch.get("pixel_values"))
        b, c, t, h, w = video.shape
        images = video.transpose(1, 2).reshape(b * t, c, h, w)
        with torch.no_grad():
            tokens = torch.cat([self._frame_tokens(chunk)
                                for chunk in images.split(self.frames_per_pass)])
            tokens = tokens.reshape(b, t, -1, tokens.shape[-1])
            # added to every token of a frame, prefix tokens included, in float32 as upstream
            # did (its bf16 tokens + fp32 encoding promoted)
            pe = temporal_encoding(t, tokens.shape[-1], tokens.device)
            return (tokens.float() + pe[None, :, None, :]).reshape(b, -1, tokens.shape[-1])

    def _frame_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Encode a chunk of frames; keep ``spec.prefix_tokens`` prefix and all patch tokens."""
        out = self.encode_images(images)
        want, keep = self.spec.tokens_per_frame, self.spec.prefix_tokens
        if out.dim() != 3:
            raise RuntimeError(f"{self.spec.family}/{self.spec.model_name}: image encoder "
                               f"returned {tuple(out.shape)}, not tokens [N, L, D]")
        prefix = out.shape[1] - want if self.num_prefix_tokens is None else self.num_prefix_tokens
        if prefix < keep or out.shape[1] - prefix != want:
            raise RuntimeError(
                f"{self.spec.family}/{self.spec.model_name}: image encoder returned "
                f"{tuple(out.shape)}; expected [N, {prefix} prefix + {want} patch tokens, D] "
                f"with at least the {keep} prefix tokens to keep")
        return out[:, prefix - keep:]

    def _check_input(self, video: Optional[torch.Tensor]) -> torch.Tensor:
        size = self.spec.input_size
        if video is None or video.dim() != 5 or video.shape[1] != 3 \
                or video.shape[-2:] != (size, size):
            shape = None if video is None else tuple(video.shape)
            raise ValueError(f"{self.spec.family}/{self.spec.model_name}: batch['pixel_values'] "
                             f"must be [B, 3, T, {size}, {size}], got {shape}")
        return video


class TimmFrameEncoder(PerFrameEncoder):
    """The one adapter for every timm per-frame image encoder (see the module docstring)."""

    def __init__(self, model: nn.Module, spec: EncoderSpec, weights: str,
                 frames_per_pass: int = DEFAULT_FRAMES_PER_PASS):
        super().__init__(spec, int(model.num_prefix_tokens), frames_per_pass)
        self.model = model
        # where the weights came from (a resolved path or "random"), for the run record
        self.weights = weights

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(images)


# --------------------------------------------------------------------------- building

register_cost(TimmFrameEncoder)(timm_cost)


def build_baseline(family: str, cfg, frames_per_pass: int = DEFAULT_FRAMES_PER_PASS,
                   **timm_kwargs) -> TimmFrameEncoder:
    """Build the frozen per-frame encoder for ``cfg.model_name`` in ``family``.

    ``timm_kwargs`` go to ``timm.create_model`` (tests shrink models with ``depth=1,
    embed_dim=64, num_heads=2``). ``cfg.input_size``/``cfg.mean``/``cfg.std`` override the
    family's values and are noted in ``spec.overrides``.
    """
    fam = family_info(family)
    check_per_frame_flags(cfg)
    entry = resolve_model(fam.name, cfg.model_name)
    size = cfg.input_size or entry.input_size
    with torch.random.fork_rng(devices=[]):  # random weights are the seed's, run after run
        torch.manual_seed(cfg.seed)
        model = create_timm_model(entry.arch, size, **timm_kwargs)
    check_patch_multiple(size, int(model.patch_embed.patch_size[0]))
    weights = load_weights(model, entry, cfg, dict(fam.checkpoint_filter_kwargs))
    if not entry.final_norm:
        model.norm = nn.Identity()
    spec = EncoderSpec(family=fam.name, model_name=cfg.model_name,
                       embed_dim=int(getattr(model, "embed_dim", model.num_features)),
                       patch_size=int(model.patch_embed.patch_size[0]),
                       input_size=entry.input_size, mean=fam.mean, std=fam.std)
    spec = spec.with_overrides(cfg.sources, input_size=cfg.input_size,
                               mean=as_triple(cfg.mean, "mean"),
                               std=as_triple(cfg.std, "std"))
    _warn_if_timm_stats_differ(entry, spec)
    spec = token_spec(spec, model, fam, cfg.token_layout)
    logger.info("%s/%s: timm %s at %d px, %d prefix + %d patch tokens/frame, weights %s",
                fam.name, cfg.model_name, entry.arch, size, spec.prefix_tokens,
                spec.tokens_per_frame, weights)
    return TimmFrameEncoder(model, spec, weights, frames_per_pass).freeze()


def token_spec(spec: EncoderSpec, model: nn.Module, fam: BaselineFamily,
               layout: str) -> EncoderSpec:
    """``spec`` with the patch grid and the prefix tokens kept per frame: the family's
    published layout, or ``layout`` (``--token_layout patch|all``) noted as an override."""
    if layout not in ("family", *PREFIX_KEPT):
        raise ConfigError(f"--token_layout {layout!r}: choose family, {', '.join(PREFIX_KEPT)}")
    grid = model.patch_embed.grid_size
    have = int(model.num_prefix_tokens)
    spec = replace(spec, tokens_per_frame=int(grid[0] * grid[1]),
                   prefix_tokens=PREFIX_KEPT[fam.token_layout](have))
    chosen = PREFIX_KEPT[layout](have) if layout in PREFIX_KEPT else None
    return spec.with_overrides(prefix_tokens=chosen)


def check_per_frame_flags(cfg) -> None:
    """Flags of the OneVision families that per-frame image encoders cannot honour."""
    if cfg.attn_implementation == "flash":
        raise ConfigError("--attn_implementation flash: the timm image encoders use timm's own "
                          "attention (scaled_dot_product_attention); leave the flag at auto")
    if cfg.target_frames != 64:
        raise ConfigError(f"--target_frames {cfg.target_frames}: image encoders have no temporal "
                          "RoPE grid; their frames get a sin/cos encoding of their order")


def _warn_if_timm_stats_differ(entry: BaselineModel, spec: EncoderSpec) -> None:
    """A timm checkpoint whose own mean/std differ from the ones used is worth a warning."""
    import timm

    pretrained = timm.models.get_pretrained_cfg(entry.arch) if "." in entry.arch else None
    if pretrained is None:
        return
    close = all(abs(a - b) < 1e-4 for a, b in zip((*pretrained.mean, *pretrained.std),
                                                   (*spec.mean, *spec.std)))
    if not close:
        logger.warning("%s: timm's pretrained config for %s normalises with mean %s std %s, "
                       "but this run uses %s %s (family %s); pass --mean/--std if that is wrong",
                       spec.model_name, entry.arch, pretrained.mean, pretrained.std, spec.mean,
                       spec.std, spec.family)


def check_patch_multiple(size: int, patch: int) -> int:
    """``size`` itself; a ConfigError unless it is a whole number of patches."""
    if size <= 0 or size % patch:
        raise ConfigError(f"--input_size {size} is not a positive multiple of the patch size "
                          f"{patch}")
    return size


def as_triple(values: Optional[Sequence[float]], what: str) -> Optional[Triple]:
    """``--mean``/``--std`` as a 3-tuple of floats (None when not given)."""
    if values is None:
        return None
    if len(values) != 3:
        raise ConfigError(f"--{what} needs 3 values (one per channel), got {list(values)}")
    return tuple(float(v) for v in values)


def resolve_model(family: str, name: str) -> BaselineModel:
    """The table entry for ``name``, or an ad-hoc entry for a timm architecture name."""
    import timm

    if name in MODELS:
        entry = MODELS.get(name)
        if entry.family != family:
            raise ConfigError(f"model name {name!r} belongs to family {entry.family!r}, not "
                              f"{family!r}: use --model_family {entry.family}")
        return entry
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise RegistryError(_unknown_model_message(family, name))
    pretrained = timm.models.get_pretrained_cfg(name)
    size = pretrained.input_size[-1] if pretrained else 224
    hub = (pretrained.hf_hub_id or "") if pretrained else ""
    return BaselineModel(name=name, family=family, arch=name, weights=hub, embed_dim=0,
                         patch_size=0, input_size=int(size), note="timm architecture")


def _unknown_model_message(family: str, name: str) -> str:
    import timm

    own = [m.name for m in models_of(family)]
    hint = did_you_mean(name, [*MODELS, *timm.list_models()], cutoff=0.6)
    return (f"unknown model name {name!r} for family {family!r}.{hint} Known: "
            f"{', '.join(own)}; or any timm architecture name (see timm.list_models())")


def create_timm_model(arch: str, input_size: int, **timm_kwargs) -> nn.Module:
    """A randomly initialised timm token model at ``input_size`` (never downloads)."""
    import timm

    kwargs = dict(pretrained=False, num_classes=0, img_size=input_size)
    kwargs.update(timm_kwargs)
    try:
        model = timm.create_model(arch, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"timm architecture {arch!r} cannot be built as a token encoder at "
                          f"{input_size} px ({exc})") from None
    if not hasattr(model, "forward_features") or not hasattr(model, "num_prefix_tokens") \
            or not hasattr(getattr(model, "patch_embed", None), "grid_size"):
        raise ConfigError(f"timm architecture {arch!r} is not a ViT-style token model "
                          "(needs forward_features, num_prefix_tokens and patch_embed.grid_size)")
    return model


# --------------------------------------------------------------------------- weights

def load_weights(model: nn.Module, entry: BaselineModel, cfg,
                 filter_kwargs: Optional[dict] = None) -> str:
    """Load ``cfg.model_weight`` (or the entry's default checkpoint) into ``model``.

    Returns where the weights came from. ``random`` keeps the random initialisation (only
    when asked for); anything that cannot be found or does not fit raises ConfigError.
    ``filter_kwargs`` go to the timm module's ``checkpoint_filter_fn`` (the family's).
    """
    choice = (cfg.model_weight or "").strip()
    if choice == "random":
        logger.warning("%s: random weights (--model_weight random, seed %d)", entry.name,
                       cfg.seed)
        return "random"
    path = _resolve(choice, entry, cfg.allow_download)
    choice = choice if choice not in NO_WEIGHT else entry.weights
    state = load_state_dict(path)
    state = checkpoint_filter(model, **(filter_kwargs or {}))(state, model)
    strict_load(model, state, f"{choice} ({path})" if str(path) != choice else choice, entry.arch)
    return str(path)


def _resolve(choice: str, entry: BaselineModel, allow_download: bool,
             resolve: Callable = resolve_weights):
    """Resolve ``--model_weight`` with ``resolve`` (or check it is there, with
    ``check_weight_source``); without one, the entry's default checkpoint (cache only)."""
    if choice not in NO_WEIGHT:
        return resolve(choice, allow_download)
    if not entry.weights:
        raise ConfigError(f"{entry.name}: no --model_weight given and no default checkpoint "
                          "known; pass a file, folder or hub id (or 'random')")
    if resolve is resolve_weights:
        logger.info("%s: no --model_weight, using the default checkpoint %s", entry.name,
                    entry.weights)
    try:
        return resolve(entry.weights, allow_download)
    except ConfigError as exc:
        raise ConfigError(f"{entry.name}: no --model_weight given, and its default checkpoint "
                          f"{entry.weights} cannot be used: {exc}") from exc


def checkpoint_filter(model: nn.Module, **kwargs) -> Callable[[dict, nn.Module], dict]:
    """The timm module's ``checkpoint_filter_fn`` (format conversion, pos-embed resizing) with
    ``kwargs`` bound; a ConfigError when that filter does not take them."""
    module = importlib.import_module(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:  # nothing to convert or resize: the checkpoint must fit as it is
        return lambda state, _model: state
    unknown = [k for k in kwargs if k not in inspect.signature(fn).parameters]
    if unknown:
        raise ConfigError(f"{module.__name__}.checkpoint_filter_fn takes no {unknown}: this "
                          "timm architecture cannot resize its position table as the family needs")
    return functools.partial(fn, **kwargs)


def strict_load(model: nn.Module, state: Dict[str, torch.Tensor], origin: str, arch: str) -> None:
    """Load ``state`` into ``model``: every parameter present, every shape equal."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected
                  and not k.startswith(UNUSED_CHECKPOINT_PREFIXES)]
    if missing or unexpected:
        hf = any(k.startswith(("vision_model.", "embeddings.", "encoder.layer")) for k in state)
        hint = (" It looks like a transformers checkpoint: load it with --model_family hf "
                "--model_name <folder or hub id>." if hf else "")
        raise ConfigError(f"--model_weight {origin} does not fit timm {arch}: "
                          f"{describe_key_mismatch(missing, unexpected)}.{hint}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise ConfigError(f"--model_weight {origin} does not fit timm {arch}: shape mismatch "
                          f"(checkpoint vs model) {'; '.join(wrong[:5])}")
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


for _fam in FAMILIES.values():
    ENCODERS.register(_fam.name, _fam, aliases=_fam.aliases)
