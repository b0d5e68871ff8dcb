"""Where a ``--model_weight`` points and how a weight file is read.

Shared by every encoder family. ``--model_weight`` is a local folder, a local file, or a
Hugging Face hub id resolved through the local hub cache (downloaded only with
``--allow_download``). Files are read without pickle: safetensors directly, ``.bin``/``.pt``
through ``torch.load(weights_only=True)``. Wrappers left by training code
(``{"state_dict": ...}``, ``{"model": ...}``, DDP's ``module.``, ``torch.compile``'s
``_orig_mod.``) are removed so every family sees plain parameter names.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import torch

from eval_encoder.config import ConfigError
from eval_encoder.files import file_sha256, write_atomic

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# Suffixes that mark a value as a file name, so a missing one is reported as a missing file
# instead of being looked up on the hub.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# Folder layouts we read, in order of preference (single file before shards, safetensors first).
FOLDER_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Containers that training scripts wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model", "module")


def resolve_weights(model_weight: str, allow_download: bool = False,
                    cache_dir: Optional[PathLike] = None) -> Path:
    """Turn ``--model_weight`` into a local path (a folder or a single file).

    A path that exists is returned as is. Otherwise the value is a Hugging Face hub id,
    looked up in the local hub cache (``cache_dir`` or the default one); with
    ``allow_download`` it may be fetched. Anything unusable raises ConfigError saying what
    to pass instead. ``"random"`` is not a weight: callers handle it before calling this.
    """
    value = (model_weight or "").strip()
    if value in ("", "NULL", "None", "none"):
        raise ConfigError(
            f"no encoder weights given (--model_weight {model_weight!r}): pass --model_weight "
            "with a local folder, a weight file or a Hugging Face hub id, or 'random' for "
            "random initialisation")
    if value == "random":
        raise ConfigError("--model_weight 'random' means random initialisation; it has no file")
    path = Path(os.path.expanduser(value))
    if path.exists():
        return path
    if _looks_like_local_path(value):
        raise ConfigError(f"--model_weight {value!r}: no such file or folder")
    return _from_hub(value, allow_download, cache_dir)


def check_weight_source(model_weight: str, allow_download: bool = False,
                        weight_file: bool = True) -> None:
    """Find what ``--model_weight`` names without reading it, so that a run refuses a missing
    weight before it writes or opens anything: a local file, a folder (holding one of
    FOLDER_WEIGHT_FILES when ``weight_file``), or a hub id in the local Hugging Face cache.
    Nothing is downloaded here: with ``allow_download`` a hub id not cached yet is left to the
    run, which fetches it. Raises ConfigError as :func:`resolve_weights` does."""
    try:
        path = resolve_weights(model_weight, allow_download=False)
    except ConfigError:
        if allow_download and _is_hub_id((model_weight or "").strip()):
            return
        raise
    if weight_file and path.is_dir():
        find_weight_file(path)


def _is_hub_id(value: str) -> bool:
    return value not in ("", "NULL", "None", "none", "random") and not _looks_like_local_path(value)


def _looks_like_local_path(value: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else can only be a local path."""
    if value.startswith(("/", ".", "~")) or value.count("/") > 1 or "\\" in value:
        return True
    return value.lower().endswith(WEIGHT_SUFFIXES)


def _from_hub(repo_id: str, allow_download: bool, cache_dir: Optional[PathLike]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    expected = (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled,
                hf_errors.HFValidationError, hf_errors.RepositoryNotFoundError,
                hf_errors.GatedRepoError, hf_errors.RevisionNotFoundError,
                hf_errors.HfHubHTTPError, OSError)
    try:
        folder = snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=not allow_download)
    except expected as exc:
        how = ("it could not be downloaded" if allow_download else
               "it is not in the local Hugging Face cache and --allow_download is off")
        raise ConfigError(
            f"--model_weight {repo_id!r} is not a local file or folder, and as a hub id {how} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Pass a "
            "local folder (config.json + model.safetensors) or weight file with --model_weight, "
            "or add --allow_download to fetch the hub id") from exc
    logger.info("model weight %s resolved to %s", repo_id, folder)
    return Path(folder)


def find_weight_file(folder: PathLike) -> Path:
    """The weight file (or shard index) of a Hugging Face style folder; raises if none."""
    folder = Path(folder)
    for name in FOLDER_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else []
    raise ConfigError(f"{folder}: no weight file; expected one of {', '.join(FOLDER_WEIGHT_FILES)}"
                      f" (found: {', '.join(present) or 'nothing'})")


def load_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read the weights at ``path``: a folder, a weight file, or a ``*.index.json`` of shards."""
    path = Path(path)
    if path.is_dir():
        path = find_weight_file(path)
    if path.name.endswith(".index.json"):
        return _load_sharded(path)
    return load_state_dict_file(path)


def _load_sharded(index_path: Path) -> Dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{index_path}: not a shard index with a 'weight_map' ({exc})") from None
    merged: Dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        part = load_state_dict_file(index_path.parent / shard)
        clash = sorted(set(part) & set(merged))
        if clash:
            raise ConfigError(f"{index_path}: key {clash[0]!r} appears in more than one shard")
        merged.update(part)
    return merged


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read one weight file into a flat ``{name: tensor}`` dict on the CPU.

    ``.safetensors`` is read with safetensors; anything else with
    ``torch.load(weights_only=True)`` (no pickle code runs). ``{"state_dict": ...}`` /
    ``{"model": ...}`` wrappers and ``module.`` / ``_orig_mod.`` prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many types; report which file and why
            raise ConfigError(f"{path}: cannot be read as a weights-only torch file "
                              f"({type(exc).__name__}: {exc})") from None
    return strip_prefixes(_unwrap(raw, path))


def _unwrap(obj, path: Path) -> Dict[str, torch.Tensor]:
    """Descend through single wrapper keys until the dict holds tensors."""
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None or any(torch.is_tensor(v) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ConfigError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not torch.is_tensor(v)]
    if bad:
        raise ConfigError(f"{path}: entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}, not a "
                          f"tensor ({len(bad)} such entries); is this a training checkpoint?")
    return obj


def strip_prefixes(state_dict: Dict[str, torch.Tensor],
                   prefixes: Iterable[str] = ("module.",)) -> Dict[str, torch.Tensor]:
    """Remove leading DDP ``module.`` prefixes and ``_orig_mod.`` segments anywhere.

    ``torch.compile`` inserts ``_orig_mod.`` at the level of the compiled submodule, so it
    can sit in the middle of a name; ``module.`` is only removed at the front, where DDP
    puts it, so a real submodule called ``module`` deeper down keeps its name.
    """
    prefixes = tuple(prefixes)
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key.replace("_orig_mod.", "")
        while new.startswith(prefixes):
            new = new[len(next(p for p in prefixes if new.startswith(p))):]
        if new in out:
            raise ConfigError(f"two checkpoint entries map to {new!r} after removing prefixes "
                              f"(one of them is {key!r})")
        out[new] = value
    return out


def describe_key_mismatch(missing: List[str], unexpected: List[str], limit: int = 10) -> str:
    """A readable summary of missing/unexpected keys for strict-loading errors."""
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            shown = ", ".join(sorted(keys)[:limit])
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{len(keys)} {label} key(s): {shown}{more}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- identity
# which weights a run loaded: path, and the sha256 of each weight file (WEIGHT_SUFFIXES; the
# files of a folder make its digest), remembered by file identity between runs
HASH_CACHE_VERSION = 1


def weight_hash_cache(save_report: str) -> Path:
    """Where the sha256 of weight files are remembered (by file identity) between runs."""
    return Path(save_report) / "cache" / "weight_sha256.json"


def weight_files(path: Path) -> List[Path]:
    """The weight files of a file (itself) or a folder (every weight file under it, sorted by
    relative path, so a folder's digest does not depend on the order the disk lists them)."""
    if path.is_file():
        return [path]
    return sorted((p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)),
                  key=lambda p: p.relative_to(path).as_posix())


def _identity(path: Path) -> Dict[str, int]:
    st = path.stat()  # follows links: a hub cache's snapshot links name their blobs
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _load_hash_cache(cache: Path) -> Dict[str, Dict[str, Any]]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("weight hash cache %s is unreadable (%s); hashing afresh", cache, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != HASH_CACHE_VERSION:
        return {}
    return data.get("files") or {}


def cached_sha256(files: List[Path], cache: Optional[Path]) -> Dict[Path, str]:
    """sha256 of each file, read from ``cache`` when its path, size, mtime and inode are
    unchanged and computed (then remembered) otherwise."""
    known = _load_hash_cache(cache) if cache else {}
    out, changed = {}, False
    for f in files:
        key, ident = str(f.resolve()), _identity(f)
        hit = known.get(key)
        if hit is None or {k: hit.get(k) for k in ident} != ident:
            logger.info("sha256 of %s (%.1f MB)", f, ident["size"] / 1e6)
            known[key], changed = dict(ident, sha256=file_sha256(str(f))), True
        out[f] = known[key]["sha256"]
    if cache and changed:
        write_atomic(cache, json.dumps({"version": HASH_CACHE_VERSION, "files": known},
                                       indent=1, sort_keys=True) + "\n")
    return out


def describe_weights(loaded: Optional[str], cache: Optional[Path]) -> Dict[str, Any]:
    """``path`` (absolute), ``sha256`` and ``files`` of the weights an encoder loaded.

    A file's digest is its sha256; a folder's is the sha256 of its weight files' ``<relative
    path> <sha256>`` lines in sorted order. ``loaded`` is what the encoder reports (a local
    path, a hub id, ``random``); nothing local to hash gives a null path and digest.
    """
    local = _local_weights(loaded)
    if local is None:
        return {"path": None, "sha256": None, "files": [],
                "note": f"no local weight file to hash ({loaded or 'not reported'})"}
    files = weight_files(local)
    digests = cached_sha256(files, cache)
    names = [f.relative_to(local).as_posix() if local.is_dir() else f.name for f in files]
    if local.is_file():
        digest = digests[local]
    else:
        lines = "".join(f"{n} {digests[f]}\n" for n, f in zip(names, files))
        digest = hashlib.sha256(lines.encode()).hexdigest()
    return {"path": str(local), "sha256": digest,
            "files": [{"name": n, "bytes": f.stat().st_size, "sha256": digests[f]}
                      for n, f in zip(names, files)]}


def _local_weights(loaded: Optional[str]) -> Optional[Path]:
    """The absolute local path of ``loaded``: a path as it is, a hub id through the local hub
    cache (never downloading); None for random weights or anything not found."""
    if not loaded or loaded == "random" or loaded.startswith("random "):
        return None
    path = Path(os.path.expanduser(loaded))
    if not path.exists():
        try:
            path = resolve_weights(loaded, allow_download=False)
        except (ConfigError, ImportError):
            return None
    return path.resolve()


def weights_identity(encoder, cfg) -> Dict:
    """``weights_path`` (absolute), ``weights_sha256`` and ``weight_files`` of what the encoder
    loaded; digests are remembered by file identity under ``<save_report>/cache``."""
    found = describe_weights(getattr(encoder, "weights", None), weight_hash_cache(cfg.save_report))
    out = {"weights_path": found["path"], "weights_sha256": found["sha256"],
           "weight_files": found["files"]}
    if "note" in found:
        out["weights_note"] = found["note"]
    return out
