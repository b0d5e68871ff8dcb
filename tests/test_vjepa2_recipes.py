"""V-JEPA 2's frozen evaluation as recipes: every shipped recipe resolves to its protocol's
column on each of its datasets, and a vjepa2 recipe runs end to end on demo data (a tiny
random V-JEPA 2), its table printed by ``leaderboard`` beside the reported cells, its heads
scored again by ``--val_only`` to the same numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eval_encoder import listing, protocol
from eval_encoder.probe.args import parse_config
from eval_encoder.listing import recipes_dir

transformers = pytest.importorskip("transformers")
vj = pytest.importorskip("eval_encoder.encoders.vjepa2")

VJEPA2_RECIPES = {"vjepa2_large_patch16_256", "vjepa2_giant_patch16_384",
                  "ov_encoder_large_vjepa2"}


def _recipe(name: str) -> str:
    return str(recipes_dir() / f"{name}.yaml")


def test_recipes_name_their_protocols():
    rows = {r["name"]: r["protocol"] for r in listing.recipe_rows()}
    assert {n for n, p in rows.items() if p == "vjepa2"} == VJEPA2_RECIPES
    assert all(p == "paper" for n, p in rows.items() if n not in VJEPA2_RECIPES)


@pytest.mark.parametrize("name", sorted(VJEPA2_RECIPES))
@pytest.mark.parametrize("dataset", ["ssv2", "diving48", "k400"])
def test_vjepa2_recipes_resolve_to_the_published_configs(name, dataset):
    """The configs' head, grid, schedule and batch per step; departures only where the
    recipe says so (ViT-g/16's own configs, OneVision's 224 px)."""
    cfg = parse_config(["--config", _recipe(name), "--dataset", dataset])
    assert (cfg.probe_head, cfg.probe_size, cfg.probe_num_heads, cfg.lr_schedule,
            cfg.final_lr, cfg.warmup, cfg.smoothing) == ("vjepa2", 4, 16, "cosine", 0.0, 0.0, 0.0)
    heads = len(cfg.default_lr_list) * len(cfg.default_weight_decay)
    assert heads == (3 if dataset == "diving48" else 20)
    expected = {"vjepa2_large_patch16_256": {},
                "ov_encoder_large_vjepa2": {"input_size": 224},
                "vjepa2_giant_patch16_384": {"input_size": 384, **{
                    "ssv2": {"num_frames": 64, "frame_step": 2, "global_batch_size": 128},
                    "k400": {"global_batch_size": 64}}.get(dataset, {})}}[name]
    assert protocol.departures(cfg) == expected


def test_a_head_kind_under_another_protocol_is_a_departure_with_its_own_options():
    """The protocol's head options yield to the kind asked for: OneVision's head under vjepa2
    is one block (a departure), V-JEPA 2's under paper has its 4 blocks and 16 heads."""
    ov = parse_config(["--protocol", "vjepa2", "--probe_head", "ov"])
    assert (ov.probe_size, ov.probe_num_heads) == (1, None)
    assert protocol.departures(ov) == {"probe_head": "ov", "probe_size": 1,
                                       "probe_num_heads": None}
    paper = parse_config(["--protocol", "paper", "--probe_head", "vjepa2"])
    assert (paper.probe_size, paper.probe_num_heads) == (4, 16)
    assert protocol.departures(paper) == {"probe_head": "vjepa2"}
    assert paper.sources["probe_size"] == "head kind vjepa2"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Demo data and a tiny random V-JEPA 2 folder as transformers saves one."""
    from eval_encoder.demo import generate_dataset

    out = tmp_path_factory.mktemp("vjepa2_recipe")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=6, seed=0)
    torch.manual_seed(0)
    config = transformers.VJEPA2Config(**vj.SIZES["vjepa2_tiny"].config_values())
    transformers.VJEPA2Model(config).save_pretrained(out / "tiny")
    transformers.VJEPA2VideoProcessor(crop_size=32).save_pretrained(out / "tiny")
    return out


def _run(tiny, report, *extra):
    from eval_encoder.probe.run import main as probe_main

    return probe_main([
        "--config", _recipe("vjepa2_large_patch16_256"), "--dataset", "demo",
        "--model_name", "vjepa2_tiny", "--model_weight", str(tiny / "tiny"),
        "--data_root", str(tiny / "data"), "--num_frames", "4", "--frame_step", "2",
        "--input_size", "32", "--default_epoch", "2", "--global_batch_size", "4",
        "--batch_size", "4", "--default_lr_list", "0.005", "0.001",
        "--default_weight_decay", "0.01", "--loader", "torch", "--dali_py_num_workers", "0",
        "--monitor_clips", "0", "--save_report", str(report), *extra])


def test_a_vjepa2_recipe_runs_scores_again_and_shows_in_its_table(tiny, monkeypatch, capsys):
    from eval_encoder.record import read_record
    from eval_encoder.report.cli import main as leaderboard

    from eval_encoder.probe import run as run_mod

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(run_mod, "remove_checkpoints", lambda checkpointer: None)
    report = tiny / "report"
    assert _run(tiny, report, "--select", "last") == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["protocol"]["name"] == "vjepa2"
    assert record["probe_head"]["kind"] == "vjepa2"
    assert record["probe_head"]["options"]["depth"] == 4
    assert record["samples"]["val"]["scored"] == record["samples"]["val"]["expected"] == 6
    assert record["compute"]["val_views_per_clip"] == 3
    # 3 views along the longer side of a shorter side resized to the crop, as published: the
    # processor's 256/224 rule (36 px for a 32 px crop) is for one centre view
    assert record["config"]["short_side_size"] is None and record["config"]["input_size"] == 32

    capsys.readouterr()
    assert leaderboard(["--runs", str(report / "runs"), "--protocol", "vjepa2", "--reported"]) == 0
    table = capsys.readouterr().out
    ours = next(line for line in table.splitlines() if "V-JEPA 2" in line and "vjepa2" in line)
    assert "ViT-L/16" in ours
    assert "73.7" in table and "77.3" in table  # the reported rows beside it

    # --val_only of the last checkpoint: the same numbers for every head, the same
    # probabilities for every clip (its 2 segments folded, its 3 views fused as in training)
    (checkpoint,) = (report / "checkpoints").rglob("e0001-end.pt")
    again = tiny / "again"
    assert _run(tiny, again, "--val_only", "--resume_checkpoint", str(checkpoint),
                "--select", "last") == 0
    (scored,) = [read_record(str(p)) for p in (again / "runs").rglob("*.json")]
    assert [h["name"] for h in scored["heads"]] == [h["name"] for h in record["heads"]]
    for a, b in zip(scored["heads"], record["heads"]):
        assert (a["top1"], a["top5"]) == (b["last_top1"], b["last_top5"])
    trained, given = (np.load(next((r / "runs").rglob("*.predictions.npz")))
                      for r in (report, again))
    assert (trained["id"] == given["id"]).all() and (trained["top5"] == given["top5"]).all()
    np.testing.assert_allclose(given["top5_prob"], trained["top5_prob"], atol=1e-6)
