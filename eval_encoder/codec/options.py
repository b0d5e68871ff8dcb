"""Options of codec-style patch selection, with the upstream flag names and defaults.

Every field here that changes the selected indices is part of the cache key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class CodecOptions:
    patch_size: int = _f(14, "selection grid patch size (the encoder's patch size)")
    K_keep: int = _f(2048, "patches kept per clip from the 64-frame grid")
    mv_compensate: str = _f("similarity", "camera-motion removal",
                            choices=["none", "median", "mean", "similarity", "affine"])
    mv_use_inconsistency: bool = _f(False, "score motion by its local variance (inconsistency) "
                                           "instead of its magnitude")
    mv_incon_ksize: int = _f(3, "odd window (>= 3, in 8-pixel motion cells) of that variance")
    res_use_grad: bool = _f(False, "use the residual's gradient magnitude instead of |r|")
    fuse_mode: str = _f("weighted", "how motion and residual energy are fused",
                        choices=["weighted", "max", "sum", "geomean"])
    w_mv: float = _f(1.0, "weight of motion energy in the weighted fusion")
    w_res: float = _f(1.0, "weight of residual energy in the weighted fusion")
    center_prior: float = _f(0.3, "weight of the centred Gaussian prior (0: off)")
    center_sigma: float = _f(0.35, "sigma of the centre prior, as a fraction of min(H, W)")
    static_fallback: int = _f(1, "1: near-static clips take uniform frames whole")
    static_abs_thresh: float = _f(126.0, "static test: absolute energy threshold")
    static_rel_thresh: float = _f(0.38, "static test: relative energy threshold")
    static_uniform_frames: int = _f(4, "frames taken whole by the static fallback")
    mv_reference: str = _f("source", "motion of each sampled frame against its source-rate "
                           "predecessor, or against the previous sampled frame",
                           choices=["source", "sampled"])
    codec_frame_ids: Optional[str] = _f(None, "64 frame ids from linspace: truncated (published) "
                                        "or rounded; default: from --protocol",
                                        choices=["trunc", "round"])
    zero_frames: Optional[str] = _f(None, "frames whose map is zero: 'gop16' (published: sampled "
                                    "frames on a 16-frame GOP's intra frame, first 8, and repeated "
                                    "ids) or 'unreferenced' (no predecessor, repeats); default: "
                                    "from --protocol", choices=["gop16", "unreferenced"])
    mv_floor: Optional[float] = _f(None, "floor (px) of the motion map's 95th-percentile "
                                   "normaliser; default: from --protocol")
    map_grid: Optional[str] = _f(None, "'pixel': every map stage at pixel resolution as published "
                                 "(8-bit map, cubic a=-0.75 resize); 'cell': on 8-pixel motion "
                                 "cells, float, resampled like the pixels; default: from --protocol",
                                 choices=["pixel", "cell"])
    map_resolution: Optional[str] = _f(None, "resolution of the re-encode, vectors, residual and "
                                       "map: the source's, or the map's own (shorter side "
                                       "area-downscaled to the resize size, never upscaled); "
                                       "default: from --protocol", choices=["source", "map"])
    topk_ties: Optional[str] = _f(None, "top-K order among equal scores: numpy's argpartition "
                                  "(published) or stable (lower index first); default: from "
                                  "--protocol", choices=["partition", "stable"])
    cache_dir: Optional[str] = _f(None, "folder for cached patch indices (.npy)")


# options that do not change the indices (left out of the cache key)
NOT_IN_KEY = ("cache_dir",)


class CodecOptionError(ValueError):
    """A codec option value that cannot be used, naming the option."""


def make_options(protocol: str = "paper", **values) -> CodecOptions:
    """CodecOptions from keyword values, unset behaviours from ``protocol`` (paper | clean);
    an unknown name or a bad value raises CodecOptionError."""
    from dataclasses import fields

    known = {f.name for f in fields(CodecOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, known, n=1) for u in unknown]
        said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                         for u, h in zip(unknown, hints))
        raise CodecOptionError(f"unknown codec option {said}; known: {', '.join(sorted(known))}")
    from eval_encoder.protocol import resolve_codec

    opts = resolve_codec(CodecOptions(**values), protocol)
    check_options(opts)
    return opts


def check_options(opts: CodecOptions) -> None:
    """Raise CodecOptionError for values the selection cannot use (nothing is coerced)."""
    checks = [
        (opts.patch_size > 0, "patch_size", "must be positive"),
        (opts.K_keep > 0, "K_keep", "must be positive"),
        (opts.mv_compensate in ("none", "median", "mean", "similarity", "affine"), "mv_compensate",
         "must be none, median, mean, similarity or affine"),
        (opts.mv_incon_ksize >= 3 and opts.mv_incon_ksize % 2 == 1, "mv_incon_ksize",
         "must be odd and >= 3"),
        (opts.fuse_mode in ("weighted", "max", "sum", "geomean"), "fuse_mode",
         "must be weighted, max, sum or geomean"),
        (opts.w_mv >= 0 and opts.w_res >= 0 and opts.w_mv + opts.w_res > 0, "w_mv/w_res",
         "must be >= 0 and not both 0"),
        (opts.center_prior >= 0, "center_prior", "must be >= 0"),
        (opts.center_sigma > 0, "center_sigma", "must be > 0"),
        (opts.static_fallback in (0, 1), "static_fallback", "must be 0 or 1"),
        (opts.static_uniform_frames >= 1, "static_uniform_frames", "must be >= 1"),
        (opts.mv_reference in ("source", "sampled"), "mv_reference", "must be source or sampled"),
        (opts.codec_frame_ids in ("trunc", "round"), "codec_frame_ids", "must be trunc or round"),
        (opts.zero_frames in ("gop16", "unreferenced"), "zero_frames",
         "must be gop16 or unreferenced"),
        (opts.mv_floor is not None and opts.mv_floor > 0, "mv_floor", "must be > 0"),
        (opts.map_grid in ("pixel", "cell"), "map_grid", "must be pixel or cell"),
        (opts.topk_ties in ("partition", "stable"), "topk_ties", "must be partition or stable"),
        (opts.map_resolution in ("source", "map"), "map_resolution", "must be source or map"),
    ]
    for ok, name, why in checks:
        if not ok:
            value = getattr(opts, name, (opts.w_mv, opts.w_res))
            raise CodecOptionError(f"codec option {name}={value!r} {why}")
