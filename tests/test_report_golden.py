"""Golden outputs: ``leaderboard`` in every text format and view, and ``compare`` of a fixed
pair, byte for byte against ``tests/golden/leaderboard/``, from fixed records.

Only the command line is imported from the library, so these files pin what a user sees
whatever the modules behind it are called. Record paths (the only thing that depends on where
the test runs) are written as ``<tmp>``. After a change that is meant to alter the output,
write the files afresh with ``EVAL_ENCODER_UPDATE_GOLDEN=1 pytest tests/test_report_golden.py``
and read their diff.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from eval_encoder.__main__ import main
from test_leaderboard import make_record, write_all
from test_stats import attach, predictions

GOLDEN = Path(__file__).resolve().parent / "golden" / "leaderboard"
UPDATE = os.environ.get("EVAL_ENCODER_UPDATE_GOLDEN") == "1"
PAPER = ("ssv2", "diving48", "perception_test", "charadesego", "epic_verb", "epic_noun", "k400",
         "hmdb51")
CLIPS = 400

# name -> leaderboard options; every one is rendered in each of FORMATS
VIEWS = {
    "plain": [],
    "reported": ["--reported"],
    "ci": ["--ci"],
    "ci_exact": ["--ci", "exact"],
    "reported_ci_gflops": ["--reported", "--ci", "--gflops"],
    "action_ci": ["--metric", "action", "--ci"],
    "mean_class_acc": ["--metric", "mean_class_acc"],
    "datasets": ["--datasets", "ssv2,demo"],
}
# name -> options, over the same records and V-JEPA 2 protocol runs beside them (a second
# table, with its own reported numbers)
VJEPA2_VIEWS = {
    "vjepa2_tables": [],
    "vjepa2_tables_reported": ["--reported"],
    "vjepa2_only_reported_ci": ["--protocol", "vjepa2", "--reported", "--ci"],
    "vjepa2_paper_only": ["--protocol", "paper"],
}
FORMATS = ("md", "csv", "tex")
COMPARES = {
    "rows": ["OneVision Encoder@8:paper", "OneVision Encoder@8:clean"],
    "rows_action": ["OneVision Encoder@8:paper", "OneVision Encoder@8:clean", "--metric", "action"],
    "runs": ["ov-paper-ssv2", "ov-clean-ssv2", "--resamples", "500"],
}


def _record(root: Path, run_id: str, dataset: str, right=None, seed=None, gflops=None, **kw):
    """A record named ``run_id``; with ``right``, a per-clip file whose first ``right`` of
    CLIPS clips are right (its top-1 then is 100 * right / CLIPS)."""
    top1 = kw.pop("top1", None)
    if right is not None:
        top1 = 100 * right / CLIPS
    rec = make_record(dataset, top1, **kw)
    rec["run_id"] = run_id
    if seed is not None:
        rec["config"] = {**rec["config"], "seed": seed}
    if gflops is not None:
        rec["compute"] = {"encoder": {"gflops_per_clip": gflops}}
    if right is None:
        return rec
    labels = np.arange(CLIPS) % 10
    hits = np.where(np.arange(CLIPS) < right, labels, (labels + 1) % 10)
    return attach(rec, root, predictions(labels, hits))


def _records(root: Path):
    ov = [228, 236, 231, 50, 248, 213, 336, 329]  # near the paper's 8-frame OneVision row
    clean = [233, 230, 240, 54, 252, 220, 340, 331]
    recs = [_record(root, f"ov-paper-{d}", d, r, method="OneVision Encoder", gflops=1660.4)
            for d, r in zip(PAPER, ov)]
    recs += [_record(root, f"ov-clean-{d}", d, r, method="OneVision Encoder", protocol="clean",
                     gflops=1660.4) for d, r in zip(PAPER, clean)]
    # 16 frames: a partial row, one dataset without a per-clip file, a failed run
    recs += [_record(root, "sig-ssv2", "ssv2", 210, method="SigLIP2", frames=16, arch="ViT-L/16",
                     res=256, gflops=4145.3),
             _record(root, "sig-diving48", "diving48", None, method="SigLIP2", frames=16,
                     arch="ViT-L/16", res=256, top1=61.3),
             _record(root, "sig-k400", "k400", method="SigLIP2", frames=16, arch="ViT-L/16",
                     res=256, status="failed", created="2026-01-02T00:00:00Z")]
    # three seeds of one cell, an older run of seed 2 (superseded), an extra dataset, and a
    # later run of another configuration in one cell (mixed)
    recs += [_record(root, f"mine-ssv2-s{s}", "ssv2", r, method="My Encoder", seed=s)
             for s, r in [(1, 200), (2, 220), (3, 240)]]
    recs.append(_record(root, "mine-ssv2-old", "ssv2", 380, method="My Encoder", seed=2,
                        created="2025-01-01T00:00:00Z"))
    recs.append(_record(root, "mine-demo", "demo", None, method="My Encoder", top1=75.0))
    recs.append(_record(root, "mine-k400-a", "k400", None, method="My Encoder", top1=60.0))
    other = _record(root, "mine-k400-b", "k400", None, method="My Encoder", top1=3.0,
                    created="2026-01-03T00:00:00Z")
    other["config_hash"] = "another"
    recs.append(other)
    # a protocol with a departure, and a record older than the protocol switch
    starred = _record(root, "dep-hmdb51", "hmdb51", None, method="Enc D", top1=70.0)
    starred["protocol"]["departures"] = {"round_pixels": False}
    old = _record(root, "old-hmdb51", "hmdb51", None, method="Enc Old", top1=66.0)
    del old["protocol"]
    old["config"] = {}
    recs += [starred, old]
    # a run that died before its encoder was built: labelled from its config, error multi-line
    failed = {k: v for k, v in _record(root, "cfg-ssv2", "ssv2", status="failed").items()
              if k not in ("method", "arch", "res", "frames", "token_budget")}
    failed["config"] = {"model_family": "sampling", "model_name": "tiny | one", "num_frames": 8,
                        "protocol": "paper", "input_size": 112}
    failed["error"] = "ConfigError: weights not cached\nsecond line"
    recs.append(failed)
    return recs


def _vjepa2_records(root: Path):
    """V-JEPA 2 protocol runs: a model row whose datasets read different frames (16 on SSv2,
    32 on Diving48, as the published configs), a partial row, one with a departure, and a
    dataset outside V-JEPA 2's reported two."""
    kw = dict(method="V-JEPA 2", arch="ViT-L/16", res=256, protocol="vjepa2")
    recs = [_record(root, "vj-l-ssv2", "ssv2", 290, frames=16, token_budget=4096, **kw),
            _record(root, "vj-l-diving48", "diving48", 352, frames=32, token_budget=8192, **kw),
            _record(root, "vj-l-k400", "k400", None, top1=84.5, frames=16, **kw)]
    recs.append(_record(root, "vj-g-ssv2", "ssv2", 306, method="V-JEPA 2", arch="ViT-g/16",
                        res=384, frames=64, protocol="vjepa2"))
    starred = _record(root, "vj-mine-ssv2", "ssv2", 250, method="My Encoder", frames=16,
                      protocol="vjepa2")
    starred["protocol"]["departures"] = {"probe_size": 1}
    return recs + [starred]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    return write_all(root, _records(root))


@pytest.fixture(scope="module")
def vjepa2_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("golden_vjepa2")
    return write_all(root, _records(root) + _vjepa2_records(root))


def _run(capsys, argv) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def _check(name: str, text: str, tmp: Path) -> None:
    data = text.replace(str(tmp), "<tmp>").encode("utf-8")
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.is_file(), f"{path} is missing (EVAL_ENCODER_UPDATE_GOLDEN=1 writes it)"
    assert data.decode("utf-8") == path.read_bytes().decode("utf-8"), name


@pytest.mark.parametrize("view", list(VIEWS))
def test_leaderboard_matches_golden(runs, capsys, view):
    for fmt in FORMATS:
        text = _run(capsys, ["leaderboard", "--runs", str(runs), *VIEWS[view], "--format", fmt])
        _check(f"{view}.{fmt}", text, runs.parent)


@pytest.mark.parametrize("view", list(VJEPA2_VIEWS))
def test_vjepa2_tables_match_golden(vjepa2_runs, capsys, view):
    for fmt in FORMATS:
        text = _run(capsys, ["leaderboard", "--runs", str(vjepa2_runs), *VJEPA2_VIEWS[view],
                             "--format", fmt])
        _check(f"{view}.{fmt}", text, vjepa2_runs.parent)


@pytest.mark.parametrize("name", list(COMPARES))
def test_compare_matches_golden(runs, capsys, name):
    text = _run(capsys, ["compare", *COMPARES[name], "--runs", str(runs)])
    _check(f"compare_{name}.txt", text, runs.parent)


def test_every_golden_file_is_checked():
    """No stale file: each one belongs to a view and format, or to a comparison."""
    views = [*VIEWS, *VJEPA2_VIEWS]
    want = {f"{v}.{f}" for v in views for f in FORMATS} | {f"compare_{c}.txt" for c in COMPARES}
    assert {p.name for p in GOLDEN.iterdir()} == want
