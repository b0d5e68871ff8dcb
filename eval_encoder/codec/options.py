"""Options of codec-style patch selection: made from keyword values under a protocol, and
checked. The fields (upstream flag names and defaults) are
:class:`eval_encoder.config.CodecOptions`; every one that changes the selected indices is part
of the cache key.
"""
from __future__ import annotations

import difflib
from dataclasses import fields

from eval_encoder.config import CodecOptions
from eval_encoder.protocol import resolve_codec

__all__ = ["CodecOptionError", "CodecOptions", "NOT_IN_KEY", "check_options", "make_options"]


# options that do not change the indices (left out of the cache key)
NOT_IN_KEY = ("cache_dir",)


class CodecOptionError(ValueError):
    """A codec option value that cannot be used, naming the option."""


def make_options(protocol: str = "paper", **values) -> CodecOptions:
    """CodecOptions from keyword values, unset behaviours from ``protocol`` (paper | clean);
    an unknown name or a bad value raises CodecOptionError."""
    known = {f.name for f in fields(CodecOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = [difflib.get_close_matches(u, known, n=1) for u in unknown]
        said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                         for u, h in zip(unknown, hints))
        raise CodecOptionError(f"unknown codec option {said}; known: {', '.join(sorted(known))}")
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
        (opts.codec_pixels in ("source", "reencoded"), "codec_pixels",
         "must be source or reencoded"),
    ]
    for ok, name, why in checks:
        if not ok:
            value = getattr(opts, name, (opts.w_mv, opts.w_res))
            raise CodecOptionError(f"codec option {name}={value!r} {why}")
