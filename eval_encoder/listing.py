"""``python -m eval_encoder ls``: encoder families, model names, datasets and recipes.

Model rows come from each family's own table (a factory with ``describe_models() -> [dict]``)
without building any model. Plain aligned text, or ``--json``. The exit status is 1 when a
dataset card or recipe could not be read (its row says why), else 0.
"""
from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from eval_encoder import resources
from eval_encoder.codec import versions as codec_versions
from eval_encoder.config import ConfigError, load_yaml
from eval_encoder.encoders.base import CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD
from eval_encoder.encoders.user import load_encoder_modules, load_entry_points
from eval_encoder.logs import add_verbosity_flags
from eval_encoder.parsing import ArgumentParser
from eval_encoder.protocol import (
    ALL_DEVIATIONS,
    BEHAVIOURS,
    PROTOCOLS,
    following,
    markdown_tables,
)
from eval_encoder.registry import ENCODERS
from eval_encoder.text import did_you_mean
from eval_encoder.video.manifest import ManifestError, cards_dir, known_datasets, load_card

SECTIONS = ("families", "models", "datasets", "recipes")
# listed only when asked for by name: long texts rather than a catalogue
EXTRA_SECTIONS = ("protocol", "codec")
RECIPE_KEYS = ("model_family", "model_name", "protocol", "num_frames", "input_size", "dataset", "datasets",
               "description")
UNREADABLE = "unreadable (see Problems)"
_NAMED_STATS = {CLIP_MEAN: "clip", CLIP_STD: "clip", IMAGENET_MEAN: "imagenet",
                IMAGENET_STD: "imagenet", HALF: "0.5"}


def recipes_dir() -> Path:
    """Where recipes live: $EVAL_ENCODER_PROBES, else the shipped ones (eval_encoder.resources)."""
    return resources.data_dir("probes")


def load_families(encoder_modules: Sequence[str] = ()) -> None:
    """Register every family: built-in ones, the hf backend, entry points, user modules."""
    importlib.import_module("eval_encoder.encoders")
    importlib.import_module("eval_encoder.encoders.hf_backend")

    load_encoder_modules(encoder_modules)
    load_entry_points()


def family_rows() -> List[dict]:
    """One row per registered family: name, aliases, number of listed models, description."""
    rows = []
    for name, factory in ENCODERS.items():
        describe = getattr(factory, "describe_models", None)
        doc = getattr(factory, "description", None) or (factory.__doc__ or "").strip()
        rows.append({"family": name, "aliases": list(ENCODERS.aliases_of(name)),
                     "models": len(describe()) if callable(describe) else None,
                     "description": doc.splitlines()[0] if doc else ""})
    return rows


def model_rows() -> List[dict]:
    """Every model name a family declares in its table (nothing is built)."""
    rows: List[dict] = []
    for _, factory in ENCODERS.items():
        describe = getattr(factory, "describe_models", None)
        if callable(describe):
            rows.extend(describe())
    return rows


def dataset_rows() -> List[dict]:
    """Every dataset card; a card that cannot be read gives a row with its error."""
    rows = []
    for name in known_datasets():
        try:
            card = load_card(name)
        except yaml.YAMLError as exc:  # load_card passes YAML errors through without the file
            rows.append({"name": name, "error": f"{cards_dir() / (name + '.yaml')}: not valid "
                                                f"YAML: {' '.join(str(exc).split())}"})
            continue
        except (ManifestError, ValueError, TypeError, OSError) as exc:
            rows.append({"name": name, "error": str(exc)})
            continue
        rows.append({"name": card.name, "version": card.version, "num_classes": card.num_classes,
                     "default_epochs": card.default_epochs,
                     "default_batch_size": card.default_batch_size, "metric": card.metric,
                     "train_manifest": card.train_manifest, "val_manifest": card.val_manifest})
    return rows


def recipe_rows() -> List[dict]:
    """Every recipe (probes/*.yaml) with its main keys; unreadable ones give their error."""
    rows = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        try:
            data = load_yaml(str(path))
        except ConfigError as exc:
            rows.append({"name": path.stem, "error": str(exc)})
            continue
        suite = data.get("suite") if isinstance(data.get("suite"), dict) else {}
        merged = {**{k: suite[k] for k in ("datasets", "description") if k in suite}, **data}
        row = {"name": path.stem, **{k: merged[k] for k in RECIPE_KEYS if k in merged}}
        if "model_family" in row:
            row["model_family"] = canonical_family(str(row["model_family"]))
        rows.append(row)
    return rows


def canonical_family(name: str) -> str:
    """The registered family behind an alias (``chunk_wise_sampling`` -> ``sampling``); a name
    no loaded family knows stays as written (it fails when that recipe runs)."""
    return ENCODERS.canonical(name) if name in ENCODERS else name


def codec_rows() -> List[dict]:
    """The published versions of the codec settings, every dataset's values apart."""
    return [{"name": v.name, "shell": v.shell, "probe": v.probe, "note": v.note,
             **{k: codec_versions.cell(v, k) for k in codec_versions.VARYING}}
            for v in codec_versions.VERSIONS]


def protocol_rows() -> List[dict]:
    """The protocol table: behaviours the protocols switch (each protocol's value), then the
    differences from each published code that its protocols keep."""
    switched = [{"kind": "switched", "name": r.name, "flag": r.flag,
                 **{p: _value_text(r.values[p]) for p in PROTOCOLS},
                 "does": dict(r.does), "why": r.why, "effect": r.effect} for r in BEHAVIOURS]
    kept = [{"kind": f"kept ({', '.join(following(d.code))})", **asdict(d),
             **{p: ("ours" if p in following(d.code) else "") for p in PROTOCOLS}}
            for d in ALL_DEVIATIONS]
    return switched + kept


def _value_text(value) -> str:
    return "-" if value is None else str(value)


def _protocol_details(rows: List[dict]) -> str:
    """What each protocol row means, one indented paragraph per row."""
    out = []
    for r in rows:
        if r["kind"] == "switched":
            said = "\n".join(f"    {p}: {text}" for p, text in r["does"].items())
        else:
            said = f"    published: {r['published']}\n    here: {r['ours']}"
        out.append(f"  {r['name']} ({r['kind']}; {r['flag']}):\n{said}\n"
                   f"    why: {r['why']}\n    measured: {r['effect']}")
    return "Details\n" + "\n".join(out)


def _codec_details(rows: List[dict]) -> str:
    """What each published codec version did beyond its values."""
    return "Details\n" + "\n".join(f"  {r['name']}: {r['note']}" for r in rows)


# per section: extra text after its table
DETAILS = {"protocol": _protocol_details, "codec": _codec_details}
# per section: its Markdown form (``--markdown``; results/README.md holds the same text)
MARKDOWN = {"protocol": markdown_tables, "codec": codec_versions.markdown_table}


def _stats(values) -> Optional[str]:
    if not values:
        return None
    key = tuple(float(v) for v in values)
    return _NAMED_STATS.get(key) or ",".join(f"{v:.3f}" for v in key)


def _tokens(row: dict):
    """Tokens per frame given to the head, prefix tokens spelled out: "257 (1 prefix + 256
    patches)"; rows without prefix tokens show the patch grid alone."""
    patches, prefix = row.get("tokens_per_frame"), row.get("prefix_tokens") or 0
    if patches is None or not prefix:
        return patches
    return f"{patches + prefix} ({prefix} prefix + {patches} patches)"


def _clip_tokens(row: dict):
    """Tokens a clip of 16 frames gives the head: 16 / tubelet x (patch + prefix tokens) per
    frame or tubelet; none for a token budget (codec's K)."""
    patches = row.get("tokens_per_frame")
    if not isinstance(patches, int):
        return None
    return (row.get("clip_prefix_tokens") or 0) + 16 // (row.get("tubelet_size") or 1) * (
        patches + (row.get("prefix_tokens") or 0))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)


def format_table(headers: Sequence[str], rows: List[Sequence]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [list(map(str, headers))] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


# per section: (header, row key or function of the row)
COLUMNS: Dict[str, List[Tuple[str, object]]] = {
    "families": [("family", "family"), ("aliases", "aliases"), ("models", "models"),
                 ("description", "description")],
    "models": [("family", "family"), ("model_name", "model_name"), ("width", "embed_dim"),
               ("patch", "patch_size"), ("input", "input_size"),
               ("tokens/frame", _tokens), ("tubelet", lambda r: r.get("tubelet_size") or 1),
               ("tokens/16f", _clip_tokens), ("mean", lambda r: _stats(r.get("mean"))),
               ("std", lambda r: _stats(r.get("std"))), ("timm arch", "timm_arch")],
    "datasets": [("dataset", "name"), ("version", "version"), ("classes", "num_classes"),
                 ("epochs", "default_epochs"), ("batch", "default_batch_size"),
                 ("metric", "metric"), ("train", "train_manifest"), ("val", "val_manifest")],
    "recipes": [("recipe", "name"), ("family", "model_family"), ("model", "model_name"),
                ("protocol", "protocol"), ("frames", "num_frames"),
                ("datasets", lambda r: r.get("datasets", r.get("dataset")))],
    "protocol": [("behaviour", "name"), ("kind", "kind"), ("flag", "flag"),
                 *((name, name) for name in PROTOCOLS)],
    "codec": [("version", "name"), ("shell", "shell"),
              *((option, option) for option in codec_versions.VARYING)],
}


def _row(section: str, row: dict) -> list:
    """The table cells of one row; an unreadable file shows its name and a pointer."""
    columns = COLUMNS[section]
    if "error" in row:
        return [row["name"], *[""] * (len(columns) - 2), UNREADABLE]
    return [key(row) if callable(key) else row.get(key) for _, key in columns]


def render_text(data: Dict[str, List[dict]]) -> str:
    """The human-readable listing of the sections present in ``data``."""
    blocks = []
    for section, rows in data.items():
        headers = [h for h, _ in COLUMNS[section]]
        body = format_table(headers, [_row(section, r) for r in rows]) if rows else "  (none)"
        blocks.append(f"{section.capitalize()} ({len(rows)})\n{body}")
        if section in DETAILS and rows:
            blocks.append(DETAILS[section](rows))
    notes = model_notes(data.get("models", []))
    if notes:
        blocks.append("Notes\n" + "\n".join(notes))
    problems = [f"  {r['name']}: {r['error']}" for rows in data.values() for r in rows
                if "error" in r]
    if problems:
        blocks.append("Problems\n" + "\n".join(problems))
    return "\n\n".join(blocks)


def model_notes(rows: List[dict]) -> List[str]:
    """One line per distinct model note; a model name that several families share (the
    OneVision sizes of sampling and codec) is noted once, naming those families."""
    families: Dict[Tuple[str, str], List[str]] = {}
    for r in rows:
        if r.get("note"):
            families.setdefault((r["model_name"], r["note"]), []).append(r["family"])
    return [f"  {name} ({', '.join(fams)}): {note}" if len(fams) > 1 else f"  {name}: {note}"
            for (name, note), fams in families.items()]


def collect(sections: Sequence[str]) -> Dict[str, List[dict]]:
    """The rows of each requested section, in :data:`SECTIONS` order."""
    makers = {"families": family_rows, "models": model_rows, "datasets": dataset_rows,
              "recipes": recipe_rows, "protocol": protocol_rows, "codec": codec_rows}
    return {s: makers[s]() for s in (*SECTIONS, *EXTRA_SECTIONS) if s in sections}


def build_parser() -> argparse.ArgumentParser:
    """The ``ls`` command line."""
    parser = ArgumentParser(
        "python -m eval_encoder ls", description="List encoder families, model names, "
        "dataset cards and probe recipes.")
    parser.add_argument("sections", nargs="*",
                        metavar="{" + ",".join((*SECTIONS, *EXTRA_SECTIONS)) + "}",
                        help="what to list (default: " + ", ".join(SECTIONS) + ")")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--markdown", action="store_true",
                        help="with protocol or codec: the Markdown tables of results/README.md")
    parser.add_argument("--family", help="only this family's models (name or alias)")
    parser.add_argument("--encoder_module", nargs="+", default=[],
                        help="import these modules first, so their encoders are listed too")

    add_verbosity_flags(parser)  # -v/-q
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry of ``python -m eval_encoder ls``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    known = (*SECTIONS, *EXTRA_SECTIONS)
    unknown = [s for s in args.sections if s not in known]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(known)}."
                     f"{did_you_mean(unknown[0], known)}")
    if args.markdown:
        wanted = [s for s in args.sections if s in MARKDOWN] or ["protocol"]
        print("\n".join(MARKDOWN[s]() for s in wanted), end="")
        return 0
    load_families(args.encoder_module)
    data = collect(args.sections or SECTIONS)
    if args.family and "models" in data:
        family = ENCODERS.canonical(args.family)
        data["models"] = [r for r in data["models"] if r["family"] == family]
    print(json.dumps(data, indent=2) if args.json else render_text(data))
    failed = any("error" in r for rows in data.values() for r in rows)
    return 1 if failed else 0
