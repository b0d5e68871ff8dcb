"""Encoder families. Importing this package registers every built-in family explicitly."""
from __future__ import annotations

# registration: every built-in family
from eval_encoder.encoders import (baselines, codec, hf_backend, hf_video,  # noqa: F401
                                   sampling, vjepa2)
from eval_encoder.encoders.base import EncoderSpec, VideoEncoder
from eval_encoder.encoders.clip import ClipLayout, register_clip_encoder
from eval_encoder.encoders.user import load_encoder_modules, load_entry_points
from eval_encoder.registry import ENCODERS, register_encoder

__all__ = ["ClipLayout", "EncoderSpec", "VideoEncoder", "build_encoder", "check_names",
           "check_weights", "register_clip_encoder", "register_encoder"]


def build_encoder(cfg) -> VideoEncoder:
    """Build the frozen encoder named by ``cfg.model_family`` / ``cfg.model_name``.

    User modules (``--encoder_module``) and installed entry points are imported first, so
    their ``@register_encoder`` families are found like the built-in ones.
    """
    load_encoder_modules(cfg.encoder_module)
    load_entry_points()
    factory = ENCODERS.get(cfg.model_family)
    encoder = factory(cfg)
    if not isinstance(getattr(encoder, "spec", None), EncoderSpec):
        raise TypeError(f"encoder family {cfg.model_family!r} returned {type(encoder).__name__} "
                        "without an EncoderSpec in .spec")
    return encoder.freeze() if isinstance(encoder, VideoEncoder) else encoder


def check_names(cfg) -> None:
    """Fail before anything is written when ``--model_family`` or ``--model_name`` is unknown.

    Users' families are loaded first (``--encoder_module``, entry points), so they are known
    like the built-in ones. Each family says which model names it takes through an optional
    ``check_model_name(name)`` on its factory, which raises with suggestions (OneVision sizes;
    the baselines' table or any timm architecture). A family without one (``hf``: any hub id
    or folder; users' own) takes any name.
    """
    load_encoder_modules(cfg.encoder_module)
    load_entry_points()
    factory = ENCODERS.get(cfg.model_family)
    check = getattr(factory, "check_model_name", None)
    if callable(check):
        check(cfg.model_name)


def check_weights(cfg) -> None:
    """Fail before anything is written when ``--model_weight`` names nothing usable.

    Each family says how its weights are found through an optional ``check_weights(cfg)`` on
    its factory, which looks for them without reading them or building the model (the
    OneVision families and the image baselines: a file, a folder with its weight file, a hub
    id in the local cache; ``hf``: a given file, folder or cached hub id). A family without
    one (users' own, unless they add it) is checked when it loads. Call after
    :func:`check_names`, which loads users' families.
    """
    check = getattr(ENCODERS.get(cfg.model_family), "check_weights", None)
    if callable(check):
        check(cfg)
