"""Leaderboard from hand-written run records: averages, partial marks, deltas, formats,
the reported table, and the record-version gate."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval_encoder.report.board import build_board
from eval_encoder.report.cli import build_parser, main, make_board
from eval_encoder.report.names import PAPER_DATASETS, LeaderboardError
from eval_encoder.report.plots import (METHOD_COLOURS, OTHER_COLOURS, method_colour, plot_board,
                                       plot_compute)
from eval_encoder.report.records import UPGRADERS, _base_hash, load_records
from eval_encoder.report.render import gflops_text, render, to_markdown
from eval_encoder.report.reported import check_reported_avgs, load_reported
from eval_encoder.record import SCHEMA, SCHEMA_VERSION, write_record

PAPER = PAPER_DATASETS
SHIPPED = Path(__file__).resolve().parents[1] / "results" / "paper_attentive_probe.csv"
_counter = iter(range(10**6))


def make_record(dataset, top1=None, method="Enc A", frames=8, arch="ViT-L/14", res=224,
                status="complete", created="2026-01-01T00:00:00Z", token_budget=2048,
                protocol="paper"):
    """A schema-v1 run record as the trainer writes it (only the fields that matter filled)."""
    n = next(_counter)
    complete = status == "complete"
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "run_id": f"{created.replace(':', '')}-{dataset}-{n:06d}",
        "status": status, "error": None if complete else "RuntimeError: out of memory",
        "created": created, "wall_time_s": 12.5,
        "dataset": {"name": dataset, "version": "1", "num_classes": 4},
        "encoder": {"family": "x", "model_name": "y", "model_weight": "random", "spec": {}},
        "method": method, "arch": arch, "res": res, "frames": frames, "token_budget": token_budget,
        "heads": [],
        "reported": ({"head": "lr1e-4_wd0", "top1": top1, "top5": 99.0, "epoch": 3,
                      "selection": "best_val", "chosen_on": "val", "note": ""}
                     if complete else {}),
        "protocol": {"name": protocol, "values": {}, "departures": {}},
        "config": {"protocol": protocol}, "config_hash": "abc", "world_size": 1,
    }


def write_all(root: Path, records) -> Path:
    for rec in records:
        write_record(rec, str(root))
    return root / "runs"


def full_row(method, scores, frames=8, **kw):
    return [make_record(d, s, method=method, frames=frames, **kw) for d, s in zip(PAPER, scores)]


SCORES_A = [50.0, 40.0, 60.0, 10.0, 55.0, 45.0, 80.0, 70.0]  # mean 51.25


def test_average_only_over_complete_rows_and_partial_marked(tmp_path):
    runs = write_all(tmp_path, full_row("Enc A", SCORES_A)
                     + full_row("Enc B", [51.0, 41.0, 61.0], frames=8))
    board = build_board(load_records(runs))
    t = board.table.set_index("method")
    assert t.loc["Enc A", "avg"] == pytest.approx(51.25)
    assert bool(t.loc["Enc A", "complete"]) and t.loc["Enc A", "n_done"] == 8
    assert math.isnan(t.loc["Enc B", "avg"]) and t.loc["Enc B", "n_done"] == 3
    md = to_markdown(board)
    assert "| Enc A | ViT-L/14 | 224 | paper | 51.2 | 50.0 | 40.0 |" in md  # 51.25 printed to one decimal
    assert "| Enc B | ViT-L/14 | 224 | paper | partial (3/8) | 51.0 | 41.0 | 61.0 |  |" in md
    assert "partial (n/8)" in md


def test_frame_blocks_latest_complete_wins_and_failures_shown(tmp_path):
    recs = full_row("Enc A", SCORES_A)
    recs.append(make_record("ssv2", 30.0, created="2025-01-01T00:00:00Z"))  # older: superseded
    recs.append(make_record("ssv2", status="failed", created="2027-01-01T00:00:00Z"))  # complete kept
    recs.append(make_record("ssv2", 33.0, frames=16, created="2026-01-01T00:00:00Z"))
    recs.append(make_record("k400", status="failed", frames=16))
    board = build_board(load_records(write_all(tmp_path, recs)))
    t = board.table
    assert list(t["frames"]) == [8, 16]
    assert t.loc[0, "ssv2"] == 50.0 and t.loc[0, "failed"] == ""
    assert t.loc[1, "failed"] == "k400"
    md = to_markdown(board)
    assert md.index("**8 Frames**") < md.index("**16 Frames**")
    assert "| Enc A | ViT-L/14 | 224 | paper | partial (1/8) | 33.0 |  |  |  |  |  |  | fail | |" not in md
    assert "| partial (1/8) | 33.0 |  |  |  |  |  | fail |  |" in md
    assert "fail: the latest run of that dataset failed" in md


def test_deltas_against_reported(tmp_path):
    ov = [57.5, 59.0, 57.7, 12.4, 62.0, 53.3, 84.0, 82.2]  # paper: 57.0 59.4 57.7 12.4 61.9 53.3 84.4 82.2
    runs = write_all(tmp_path, full_row("OneVision Encoder", ov)
                     + [make_record("ssv2", 55.0, method="My Encoder")])
    board = make_board(str(runs), reported=True)
    t = board.table
    delta = t[(t.source == "delta")]
    assert list(delta["method"]) == ["OneVision Encoder"]  # only matched rows get a delta
    row = delta.iloc[0]
    assert row["ssv2"] == pytest.approx(0.5) and row["diving48"] == pytest.approx(-0.4)
    assert row["avg"] == pytest.approx(sum(ov) / 8 - 58.5)
    md = to_markdown(board)
    assert "| ↳ paper |  |  | paper | 58.5 | 57.0 | 59.4 |" in md
    assert "| ↳ Δ |  |  |  | +0.0 | +0.5 | -0.4 | +0.0 | +0.0 | +0.1 | +0.0 | -0.4 | +0.0 |" in md
    # measured-only rows come after the paper's rows of their block, unpaired
    block8 = md.split("**16 Frames**")[0]
    assert block8.index("OneVision Encoder-Codec") < block8.index("My Encoder")
    assert "| My Encoder | ViT-L/14 | 224 | paper | partial (1/8) | 55.0 |" in md


def test_formats_csv_roundtrip_and_tex(tmp_path):
    recs = full_row("Enc_A & co", SCORES_A) + [make_record("demo", 75.0, method="Enc_A & co")]
    board = build_board(load_records(write_all(tmp_path, recs)))
    assert board.extras == ["demo"]
    frame = pd.read_csv(io.StringIO(render(board, "csv")))
    assert list(frame.columns[:6]) == ["frames", "method", "arch", "res", "protocol", "source"]
    assert frame.loc[0, "demo"] == 75.0 and frame.loc[0, "avg"] == 51.25  # extra not in AVG
    tex = render(board, "tex")
    assert r"\multicolumn{14}{c}{\textit{8 Frames}}" in tex
    assert r"Enc\_A \& co & ViT-L/14 & 224 & paper & 51.2 &" in tex
    assert tex.count(r"\\") >= 3 and tex.strip().endswith(r"\end{tabular}")
    with pytest.raises(LeaderboardError, match="unknown format"):
        render(board, "html")


def test_custom_benchmark_datasets(tmp_path):
    recs = [make_record("demo", 60.0), make_record("demo2", 70.0)]
    board = build_board(load_records(write_all(tmp_path, recs)), datasets=["demo", "demo2"])
    assert board.table.loc[0, "avg"] == 65.0 and board.columns == ["demo", "demo2"]
    with pytest.raises(LeaderboardError, match="eight datasets"):
        build_board([], datasets=["demo"], reported=load_reported())


def test_reported_only_renders_exactly_the_shipped_numbers():
    board = make_board("/nonexistent/runs", reported=True)
    with open(SHIPPED, encoding="utf-8") as fh:
        shipped = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    out = pd.read_csv(io.StringIO(render(board, "csv")), dtype=str, keep_default_na=False)
    assert len(out) == len(shipped) == 12
    for got, want in zip(out.to_dict("records"), shipped):  # same order, same strings
        for col in ["frames", "method", "arch", "res", "avg", *PAPER]:
            assert got[col] == want[col], (col, got, want)
    md_rows = [line for line in to_markdown(board).splitlines()
               if line.startswith("| ") and "Frames" not in line and "Method" not in line]
    for line, want in zip(md_rows, shipped):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == want["method"] and cells[1] == want["arch"] and cells[2] == want["res"]
        assert cells[3] == "paper" and cells[4].split(" ")[0] == want["avg"]
        assert cells[5:] == [want[d] for d in PAPER]


def test_reported_avg_check_flags_only_dinov3_16():
    checked = check_reported_avgs(load_reported())
    flagged = checked[checked.avg_flag]
    assert [(r.frames, r.method) for r in flagged.itertuples()] == [(16, "DINOv3")]
    assert flagged.iloc[0]["avg_mean"] == pytest.approx(57.6375)
    md = to_markdown(build_board([], reported=load_reported()))
    assert "| DINOv3 | ViT-L | 224 | paper | 57.7 † |" in md
    assert "57.6375 (57.6 at one decimal)" in md


def test_reported_csv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "rep.csv"
    text = SHIPPED.read_text(encoding="utf-8").replace("57.9,53.2", "57.9,n/a", 1)
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(LeaderboardError, match=r"rep\.csv:8: column 'diving48': 'n/a'"):
        load_reported(bad)


def test_record_versions_and_fields_are_checked(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "ssv2"
    folder.mkdir(parents=True)
    rec = make_record("ssv2", 50.0)
    for version, pattern in [(SCHEMA_VERSION + 1, "not supported"), (0, "no upgrade from it")]:
        path = folder / "r.json"
        path.write_text(json.dumps({**rec, "schema_version": version}))
        with pytest.raises(ValueError, match=pattern) as err:
            load_records(tmp_path / "runs")
        assert str(path) in str(err.value)
    old = {**rec, "schema_version": 0, "top1_old": 42.0}
    del old["method"]
    (folder / "r.json").write_text(json.dumps(old))
    monkeypatch.setitem(UPGRADERS, 0, lambda d: {**d, "method": "Upgraded"})
    assert load_records(tmp_path / "runs")[0]["method"] == "Upgraded"
    (folder / "r.json").write_text(json.dumps({**rec, "reported": {"top1": None}}))
    with pytest.raises(LeaderboardError, match=r"r\.json: field 'reported'"):
        load_records(tmp_path / "runs")


def test_cli_writes_table_and_plot(tmp_path, capsys):
    runs = write_all(tmp_path, full_row("OneVision Encoder", SCORES_A)
                     + full_row("Enc B", [51.0, 41.0], frames=16)
                     + [make_record("k400", status="failed", method="Enc B", frames=16)])
    out, png = tmp_path / "board.md", tmp_path / "board.png"
    assert main(["--runs", str(runs), "--reported", "--out", str(out), "--plot", str(png)]) == 0
    assert "↳ Δ" in out.read_text() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runs / "ssv2" / "broken.json"
    bad.write_text("{not json")
    assert main(["--runs", str(runs)]) == 2
    assert "broken.json: not a JSON run record" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    board = build_board([], reported=load_reported())
    with pytest.raises(LeaderboardError, match=r"needs matplotlib.*pip install"):
        plot_board(board, str(tmp_path / "x.png"))


def test_codec_budget_goes_to_its_frame_block_and_unlabelled_failures_are_placed(tmp_path):
    codec = make_record("ssv2", 58.0, method="OneVision Encoder-Codec", frames=64, token_budget=4096)
    codec["encoder"]["spec"] = {"tokens_per_frame": None, "input_size": 224, "patch_size": 14}
    failed = make_record("k400", method="X", status="failed")
    for key in ("method", "arch", "res", "frames", "token_budget"):
        del failed[key]  # the trainer stopped before its encoder was built
    failed["config"] = {"method_label": "OneVision Encoder-Codec", "arch_label": "ViT-L/14",
                        "input_size": 224, "num_frames": 16, "model_family": "codec"}
    board = build_board(load_records(write_all(tmp_path, [codec, failed])))
    (row,) = board.table.to_dict("records")
    assert row["frames"] == 16 and row["ssv2"] == 58.0 and row["failed"] == "k400"


def test_failed_run_of_a_recipe_joins_the_row_of_its_complete_runs(tmp_path):
    config = {"method_label": "OneVision Encoder-Codec", "model_family": "ov_encoder_codec",
              "model_name": "ov_encoder_large", "model_weight": "w", "num_frames": 64,
              "input_size": None, "codec": {"K_keep": 2048}}
    done = make_record("ssv2", 58.0, method="OneVision Encoder-Codec", frames=64, token_budget=2048)
    done["encoder"]["spec"] = {"tokens_per_frame": None, "input_size": 224, "patch_size": 14}
    done["config"] = dict(config, input_size=224)  # the trainer stores the resolved size
    failed = {k: v for k, v in make_record("k400", status="failed").items()
              if k not in ("method", "arch", "res", "frames", "token_budget")}
    failed["config"] = config  # died before the encoder was built: no labels, no size
    other = dict(failed, config=dict(config, codec={"K_keep": 4096}),
                 dataset={"name": "hmdb51"}, run_id="other")
    board = build_board(load_records(write_all(tmp_path, [done, failed, other])))
    rows = board.table.to_dict("records")
    assert [(r["frames"], r["res"], r["failed"]) for r in rows] == [(8, "224", "k400"), (64, "", "hmdb51")]


def test_failed_run_with_codec_options_joins_its_sampling_row(tmp_path):
    """A complete sampling record leaves the codec options out of its config; a run of the
    same recipe that died before building its encoder still has them."""
    config = {"method_label": "OV", "model_family": "sampling", "model_name": "ov_encoder_large",
              "model_weight": "w", "num_frames": 8, "input_size": None}
    done = make_record("ssv2", 58.0, method="OV", frames=8, res=224)
    done["config"] = dict(config, input_size=224)
    failed = {k: v for k, v in make_record("k400", status="failed").items()
              if k not in ("method", "arch", "res", "frames", "token_budget")}
    failed["config"] = dict(config, codec={"K_keep": 2048})
    board = build_board(load_records(write_all(tmp_path, [done, failed])))
    (row,) = board.table.to_dict("records")
    assert row["res"] == "224" and row["ssv2"] == 58.0 and row["failed"] == "k400"


def test_a_cell_with_runs_of_different_configurations_is_marked(tmp_path):
    from eval_encoder.report.board import build_board
    from eval_encoder.report.render import to_markdown

    def record(created, top1, chash):
        return {"schema": "eval_encoder.run_record", "schema_version": 1, "run_id": f"r{created}",
                "status": "complete", "created": f"2026-01-01T00:00:0{created}Z",
                "dataset": {"name": "ssv2"}, "method": "M", "arch": "A", "res": 224, "frames": 8,
                "token_budget": 2048, "reported": {"top1": top1}, "config_hash": chash}

    board = build_board([record(1, 60.0, "aaa"), record(2, 3.0, "bbb")])
    text = to_markdown(board)
    assert "3.0 *" in text and "more than one configuration" in text
    same = to_markdown(build_board([record(1, 60.0, "aaa"), record(2, 61.0, "aaa")]))
    assert "61.0" in same and "*" not in same.replace("**", "")


def test_protocol_is_part_of_the_row_and_only_paper_rows_get_deltas(tmp_path):
    recs = (full_row("OneVision Encoder", SCORES_A)
            + full_row("OneVision Encoder", [s + 1 for s in SCORES_A], protocol="clean"))
    reported = load_reported(SHIPPED)
    board = build_board(load_records(write_all(tmp_path, recs)), reported=reported)
    t = board.table
    mine = t[(t.method == "OneVision Encoder") & (t.frames == 8)]
    assert sorted(zip(mine.source, mine.protocol)) == [
        ("delta", "paper"), ("measured", "clean"), ("measured", "paper"), ("reported", "paper")]
    assert not mine["mixed"].astype(bool).any()  # two protocols are two rows, not one mixed cell
    md = to_markdown(board)
    assert "| OneVision Encoder | ViT-L/14 | 224 | clean | 52.2 |" in md
    assert "| OneVision Encoder | ViT-L/14 | 224 | paper | 51.2 |" in md


def test_departures_and_old_records_are_marked(tmp_path):
    starred = full_row("Enc A", SCORES_A)
    for rec in starred:
        rec["protocol"]["departures"] = {"round_pixels": False}
    old = full_row("Enc B", SCORES_A)
    for rec in old:
        del rec["protocol"]
        rec["config"] = {}
    md = to_markdown(build_board(load_records(write_all(tmp_path, starred + old))))
    assert "| Enc A | ViT-L/14 | 224 | paper* | 51.2 |" in md and "paper*/clean*:" in md
    assert "| Enc B | ViT-L/14 | 224 | unstated | 51.2 |" in md and "- unstated:" in md


# ----------------------------------------------------------------------------- intervals, metrics, seeds
def _with_file(root, rec, right, n=400, ids=None, seed=None, classes=10):
    """``rec`` with a per-clip file of ``n`` clips, the first ``right`` of them right."""
    from test_stats import attach, predictions

    labels = np.arange(n) % classes
    top1 = np.where(np.arange(n) < right, labels, (labels + 1) % classes)
    if seed is not None:
        rec["config"] = {**rec["config"], "seed": seed}
    return attach(rec, root, predictions(labels, top1, ids, classes=classes))


def _cells(md, method):
    line = next(x for x in md.splitlines() if x.startswith(f"| {method} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_ci_renders_intervals_in_md_csv_and_tex(tmp_path):
    from eval_encoder import stats

    recs = [_with_file(tmp_path, make_record(d, 100 * r / 400), r)
            for d, r in zip(PAPER, [200, 160, 240, 8, 220, 180, 320, 280])]
    runs = write_all(tmp_path, recs)
    board = make_board(str(runs), ci="exact")
    exact = stats.clopper_pearson(200, 400)  # ssv2: 200 of 400 right
    cells = _cells(render(board, "md"), "Enc A")
    assert cells[5] == f"50.0 ±{(exact.hi - exact.lo) / 2:.1f}ᵉ"  # symmetric at 50%, marked
    assert cells[4].startswith("50.2 ±")  # AVG (50.25): bootstrap
    frame = pd.read_csv(io.StringIO(render(board, "csv")))
    assert frame.loc[0, "ssv2_lo"] == pytest.approx(exact.lo, abs=1e-4)
    assert frame.loc[0, "ssv2_hi"] == pytest.approx(exact.hi, abs=1e-4)
    assert (frame.loc[0, "ssv2_ci"], frame.loc[0, "avg_ci"]) == ("exact", "bootstrap")
    assert frame.loc[0, "avg_lo"] < 50.25 < frame.loc[0, "avg_hi"]
    tex = render(board, "tex")
    assert r"Enc A & ViT-L/14 & 224 & paper & 50.2 $\pm$" in tex and r"50.0 $\pm$" in tex
    assert "exact Clopper-Pearson" in tex and "AVG" in tex
    # 8 of 400 (charadesego): the sides differ by more than 20%, both are shown
    low = stats.clopper_pearson(8, 400)
    assert cells[8] == f"2.0 +{low.hi - 2.0:.1f}/-{2.0 - low.lo:.1f}ᵉ" == "2.0 +1.9/-1.1ᵉ"
    boot = render(make_board(str(runs), ci="bootstrap"), "md")
    assert "bootstrap percentile interval over the validation clips (2,000 resamples" in boot
    # under --ci bootstrap too: 8 right of 400 is under the small-share rule
    assert _cells(boot, "Enc A")[8] == "2.0 +1.9/-1.1ᵉ" and ": charadesego" in boot


def test_records_without_predictions_show_no_interval_said_once(tmp_path):
    recs = ([_with_file(tmp_path, make_record(d, 50.0), 200) for d in PAPER[:4]]
            + [make_record(d, 50.0) for d in PAPER[4:]])  # older records: no file
    md = render(make_board(str(write_all(tmp_path, recs)), ci="bootstrap"), "md")
    cells = _cells(md, "Enc A")
    assert cells[4] == "50.0" and re.fullmatch(r"50\.0 ±4\.\d", cells[5]) and cells[9] == "50.0"
    assert md.count("no interval: records without per-clip predictions") == 1
    assert "epic_noun, epic_verb, hmdb51, k400" in md


def test_seeds_show_mean_and_sd_and_other_configs_stay_mixed(tmp_path):
    ids = [f"c{i}" for i in range(400)]
    recs = [_with_file(tmp_path, make_record("ssv2", 100 * r / 400), r, ids=ids, seed=s)
            for s, r in [(1, 200), (2, 220), (3, 240)]]
    rerun = _with_file(tmp_path, make_record("ssv2", 90.0, created="2025-01-01T00:00:00Z"), 360,
                       ids=ids, seed=2)  # an older run of seed 2: superseded
    runs = write_all(tmp_path, recs + [rerun])
    plain = render(make_board(str(runs), datasets=["ssv2"]), "md")
    assert _cells(plain, "Enc A")[5] == "55.0 (3 seeds)" and "(n seeds): the mean" in plain
    board = make_board(str(runs), datasets=["ssv2"], ci="bootstrap")
    cell = _cells(render(board, "md"), "Enc A")[5]
    assert re.fullmatch(r"55\.0 ±\d\.\d \(sd 5\.0, 3 seeds\)", cell)
    row = board.table.iloc[0]
    assert row["ssv2_sd"] == pytest.approx(5.0) and row["ssv2_seeds"] == 3
    assert row["avg_sd"] == pytest.approx(5.0) and row["avg_lo"] < 55.0 < row["avg_hi"]
    other = make_record("ssv2", 10.0, created="2027-01-01T00:00:00Z")
    other["config"] = {"protocol": "paper", "seed": 1, "lr": 0.1}  # another configuration
    mixed = render(build_board(load_records(runs) + [other], ["ssv2"]), "md")
    assert _cells(mixed, "Enc A")[5] == "10.0 *" and "more than one configuration" in mixed


def test_metric_column_from_records_or_files_and_undeclared_cells(tmp_path):
    recs = [_with_file(tmp_path, make_record("ssv2", 50.0), 200),
            _with_file(tmp_path, make_record("k400", 50.0), 200)]
    recs[1]["metrics"] = {"top1": 50.0, "top5": 80.0, "mean_class_acc": 47.5}
    runs = write_all(tmp_path, recs)
    board = make_board(str(runs), metric="mean_class_acc", datasets=["ssv2", "k400"])
    t = board.table.iloc[0]
    assert t["ssv2"] == pytest.approx(50.0) and t["k400"] == 47.5  # computed / as recorded
    md = render(make_board(str(runs), metric="map", datasets=["ssv2", "k400"]), "md")
    assert _cells(md, "Enc A")[4:] == ["partial (0/2)", "", ""]
    # ssv2's card does not declare map, nor do k400's record's metrics
    assert "empty: map is not among the metrics declared for k400, ssv2" in md
    with pytest.raises(LeaderboardError, match="the paper reports top-1 only"):
        make_board(str(runs), reported=True, metric="top5")


def test_action_column_from_verb_and_noun_runs(tmp_path):
    recs = [_with_file(tmp_path, make_record("epic_verb", 75.0), 300),
            _with_file(tmp_path, make_record("epic_noun", 50.0), 200)]
    runs = write_all(tmp_path, recs)
    board = make_board(str(runs), metric="action", ci="bootstrap")
    assert board.extras == ["epic_action"]
    assert board.table.loc[0, "epic_action"] == pytest.approx(50.0)  # the first 200 clips
    md = render(board, "md")
    assert "Epic Action" in md and "verb and noun both right" in md
    assert main(["--runs", str(runs), "--metric", "action", "--ci", "--plot",
                    str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_help_of_the_new_options_renders():
    from eval_encoder.report import compare

    text = build_parser().format_help()
    assert "--ci [{bootstrap,exact}]" in text and "95% interval" in text and "--metric" in text
    assert "RUN_OR_ROW_A" in compare.build_parser().format_help()


# ----------------------------------------------------------------------------- plots and compute
def _with_gflops(records, gflops):
    for rec in records:
        rec["compute"] = {"encoder": {"gflops_per_clip": gflops}}
    return records


def test_method_colours_are_fixed_whatever_the_plot_holds():
    assert method_colour("OneVision Encoder") == METHOD_COLOURS["OneVision Encoder"]
    other = method_colour("My Encoder (clean)")
    assert other in OTHER_COLOURS and other == method_colour("My Encoder (clean)")
    assert not set(OTHER_COLOURS) & set(METHOD_COLOURS.values())
    # a spread of names uses more than one fallback colour
    assert len({method_colour(f"enc{i}") for i in range(40)}) > len(OTHER_COLOURS) // 2


def _scatter_colours(fig):
    from matplotlib.colors import to_hex

    found = set()
    for ax in fig.axes:
        for coll in ax.collections:
            for rgba in [*coll.get_facecolors(), *coll.get_edgecolors()]:
                if rgba[3] > 0 and to_hex(rgba) != "#ffffff":
                    found.add(to_hex(rgba))
    return found


def test_plot_colours_units_ticks_and_range(tmp_path):
    near_top = [99.5, 98.0, 97.0, 99.9, 95.0, 94.0, 93.0, 92.0]
    one = build_board(load_records(write_all(tmp_path / "a", full_row("Mine", near_top))))
    two = build_board(load_records(write_all(
        tmp_path / "b", full_row("Other", SCORES_A) + full_row("Mine", near_top, frames=16))))
    fig_one = plot_board(one, str(tmp_path / "one.png"))
    fig_two = plot_board(two, str(tmp_path / "two.png"))
    mine = method_colour("Mine")
    assert mine in _scatter_colours(fig_one) and mine in _scatter_colours(fig_two)
    assert _scatter_colours(fig_one) == {mine}
    panels = [ax for ax in fig_two.axes if ax.get_visible()]
    for ax in panels:
        assert ax.get_xlim()[1] <= 100.0
        # every row, not only the bottom one, shows its x numbers
        assert any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())
    labels = {ax.get_xlabel() for ax in panels if ax.get_xlabel()}
    assert labels == {"top-1 accuracy (%)"}


def test_gflops_column_and_dash_for_records_without_compute(tmp_path):
    recs = (_with_gflops(full_row("Enc A", SCORES_A), 1660.4)
            + full_row("Enc B", SCORES_A, frames=16))
    board = build_board(load_records(write_all(tmp_path, recs)))
    assert "GFLOPs" not in render(board, "md") and "gflops" not in render(board, "csv")
    board.gflops = True
    md = render(board, "md")
    assert "| Protocol | GFLOPs/clip | AVG |" in md
    assert "| Enc A | ViT-L/14 | 224 | paper | 1660 | 51.2 |" in md
    assert "| Enc B | ViT-L/14 | 224 | paper | – | 51.2 |" in md
    assert "paper & 1660 & 51.2" in render(board, "tex")
    assert "paper & -- & 51.2" in render(board, "tex")
    frame = pd.read_csv(io.StringIO(render(board, "csv")))
    assert frame["gflops"].tolist()[0] == 1660.4 and math.isnan(frame["gflops"].tolist()[1])
    assert gflops_text(1.8326) == "1.83" and gflops_text(41.23) == "41.2"


def test_accuracy_against_compute_plot(tmp_path, capsys):
    recs = (_with_gflops(full_row("OneVision Encoder", SCORES_A), 1660.4)
            + _with_gflops(full_row("OneVision Encoder", [s + 2 for s in SCORES_A], frames=16),
                           4145.3)
            + _with_gflops(full_row("Small", [10.0, 20.0]), 40.0)  # partial: dataset panels only
            + full_row("No compute", SCORES_A))
    runs = write_all(tmp_path, recs)
    png = tmp_path / "compute.png"
    assert main(["--runs", str(runs), "--reported", "--gflops", "--plot_compute", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| OneVision Encoder | ViT-L/14 | 224 | paper | 1660 |" in capsys.readouterr().out
    board = make_board(str(runs), reported=True)
    fig = plot_compute(board, str(png))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert list(panels)[:2] == ["AVG", "SSV2"]
    avg = panels["AVG"]
    assert avg.get_xscale() == "log" and avg.get_ylabel() == "top-1 accuracy (%)"
    assert avg.get_ylim()[1] <= 100.0
    # AVG: one line for OneVision (8 and 16 frames); Small has no AVG, No compute no GFLOPs
    xs = sorted(float(x) for line in avg.get_lines() for x in line.get_xdata())
    assert xs == [1660.4, 4145.3]
    ssv2 = sorted(float(x) for line in panels["SSV2"].get_lines() for x in line.get_xdata())
    assert ssv2 == [40.0, 1660.4, 4145.3]
    # the paper's numbers: rings at the measured rows' GFLOPs
    rings = [c for c in avg.collections if (c.get_facecolors()[:, :3] == 1).all()]
    assert len(rings) == 2
    empty = build_board(load_records(write_all(tmp_path / "none", full_row("X", SCORES_A))))
    with pytest.raises(LeaderboardError, match="GFLOPs per clip"):
        plot_compute(empty, str(tmp_path / "none.png"))


def test_records_with_and_without_codec_options_share_a_cell(tmp_path):
    """Sampling records now leave the codec options out of their config; older ones kept
    them. Runs of one configuration must not look like two (a "mixed" cell)."""
    base = {"protocol": "paper", "seed": 1, "model_name": "m"}
    old = make_record("ssv2", 50.0, created="2026-01-01T00:00:00Z")
    new = make_record("ssv2", 52.0, created="2026-01-02T00:00:00Z")
    for rec in (old, new):
        rec["encoder"]["spec"] = {"clip_source": "frames", "tokens_per_frame": 256}
    old["config"] = dict(base, codec={"K_keep": 2048}, sources={"seed": "default"})
    new["config"] = dict(base)
    board = build_board(load_records(write_all(tmp_path, [old, new])))
    md = render(board, "md")
    assert "| 52.0 |" in md and "more than one configuration" not in md
    codec_old, codec_new = dict(old), dict(new)
    for rec in (codec_old, codec_new):
        rec["encoder"] = {"spec": {"clip_source": "codec"}}
    codec_new["config"] = dict(base, codec={"K_keep": 4096})
    assert _base_hash(codec_old) != _base_hash(codec_new)  # codec options matter there


def _two_tables(tmp_path):
    recs = full_row("Enc A", SCORES_A)
    recs += [make_record("ssv2", 72.0, method="V-JEPA 2", arch="ViT-L/16", res=256, frames=16,
                         protocol="vjepa2"),
             make_record("diving48", 88.0, method="V-JEPA 2", arch="ViT-L/16", res=256,
                         frames=32, protocol="vjepa2")]
    return write_all(tmp_path, recs)


def test_vjepa2_reported_numbers_are_the_readmes():
    from eval_encoder.protocol import PUBLISHED
    from eval_encoder.report.reported import reported_csv

    published = PUBLISHED["vjepa2"]
    rep = load_reported(reported_csv(published), published)
    cells = {(r.arch, r.res): (r.ssv2, r.diving48) for r in rep.itertuples()}
    assert cells == {("ViT-L/16", "256"): (73.7, 89.0), ("ViT-g/16", "384"): (77.3, 90.2)}
    assert rep["avg"].isna().all() and (rep["protocol"] == "vjepa2").all()
    assert not check_reported_avgs(rep, published.datasets)["avg_flag"].any()


def test_a_table_per_published_code_and_one_by_protocol(tmp_path):
    from eval_encoder.report.cli import make_boards

    runs = _two_tables(tmp_path)
    boards = make_boards(str(runs), reported=True)
    assert [b.published.name for b in boards] == ["onevision", "vjepa2"]
    vj = boards[1]
    assert vj.datasets == ["ssv2", "diving48"]
    row = vj.table[(vj.table.source == "measured")].iloc[0]
    assert (row["frames"], row["ssv2"], row["diving48"], row["avg"]) == (0, 72.0, 88.0, 80.0)
    delta = vj.table[vj.table.source == "delta"].iloc[0]
    assert round(delta["ssv2"], 6) == -1.7 and round(delta["diving48"], 6) == -1.0
    (paper,) = make_boards(str(runs), protocol="paper")
    assert set(paper.table["protocol"]) == {"paper"}
    (only,) = make_boards(str(runs), protocol="vjepa2")
    assert set(only.table["method"]) == {"V-JEPA 2"}


def test_options_that_need_one_table_say_so(tmp_path, capsys):
    runs = _two_tables(tmp_path)
    for extra, said in ((["--reported", "--reported_csv", "x.csv"], "choose one with --protocol"),
                        (["--plot", str(tmp_path / "p.png")], "choose one with --protocol")):
        assert main(["--runs", str(runs), *extra]) == 2
        assert said in capsys.readouterr().err
    assert main(["--runs", str(runs), "--protocol", "vjepa2", "--reported",
                 "--val_optimism"]) == 2
    assert "explains the OneVision paper's numbers" in capsys.readouterr().err
    assert main(["--runs", str(runs), "--protocol", "vjepa2", "--reported", "--datasets",
                 "ssv2"]) == 2
    assert "V-JEPA 2 frozen evaluation numbers are over ssv2, diving48" in \
        capsys.readouterr().err
