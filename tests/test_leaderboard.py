"""Leaderboard from hand-written run records: averages, partial marks, deltas, formats,
the reported table, and the record-version gate."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from eval_encoder import leaderboard as lb
from eval_encoder.record import SCHEMA, SCHEMA_VERSION, write_record

PAPER = lb.PAPER_DATASETS
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
    board = lb.build_board(lb.load_records(runs))
    t = board.table.set_index("method")
    assert t.loc["Enc A", "avg"] == pytest.approx(51.25)
    assert bool(t.loc["Enc A", "complete"]) and t.loc["Enc A", "n_done"] == 8
    assert math.isnan(t.loc["Enc B", "avg"]) and t.loc["Enc B", "n_done"] == 3
    md = lb.to_markdown(board)
    assert "| Enc A | ViT-L/14 | 224 | paper | 51.2 | 50.0 | 40.0 |" in md  # 51.25 printed to one decimal
    assert "| Enc B | ViT-L/14 | 224 | paper | partial (3/8) | 51.0 | 41.0 | 61.0 |  |" in md
    assert "partial (n/8)" in md


def test_frame_blocks_latest_complete_wins_and_failures_shown(tmp_path):
    recs = full_row("Enc A", SCORES_A)
    recs.append(make_record("ssv2", 30.0, created="2025-01-01T00:00:00Z"))  # older: superseded
    recs.append(make_record("ssv2", status="failed", created="2027-01-01T00:00:00Z"))  # complete kept
    recs.append(make_record("ssv2", 33.0, frames=16, created="2026-01-01T00:00:00Z"))
    recs.append(make_record("k400", status="failed", frames=16))
    board = lb.build_board(lb.load_records(write_all(tmp_path, recs)))
    t = board.table
    assert list(t["frames"]) == [8, 16]
    assert t.loc[0, "ssv2"] == 50.0 and t.loc[0, "failed"] == ""
    assert t.loc[1, "failed"] == "k400"
    md = lb.to_markdown(board)
    assert md.index("**8 Frames**") < md.index("**16 Frames**")
    assert "| Enc A | ViT-L/14 | 224 | paper | partial (1/8) | 33.0 |  |  |  |  |  |  | fail | |" not in md
    assert "| partial (1/8) | 33.0 |  |  |  |  |  | fail |  |" in md
    assert "fail: the latest run of that dataset failed" in md


def test_deltas_against_reported(tmp_path):
    ov = [57.5, 59.0, 57.7, 12.4, 62.0, 53.3, 84.0, 82.2]  # paper: 57.0 59.4 57.7 12.4 61.9 53.3 84.4 82.2
    runs = write_all(tmp_path, full_row("OneVision Encoder", ov)
                     + [make_record("ssv2", 55.0, method="My Encoder")])
    board = lb.make_board(str(runs), reported=True)
    t = board.table
    delta = t[(t.source == "delta")]
    assert list(delta["method"]) == ["OneVision Encoder"]  # only matched rows get a delta
    row = delta.iloc[0]
    assert row["ssv2"] == pytest.approx(0.5) and row["diving48"] == pytest.approx(-0.4)
    assert row["avg"] == pytest.approx(sum(ov) / 8 - 58.5)
    md = lb.to_markdown(board)
    assert "| ↳ paper |  |  | paper | 58.5 | 57.0 | 59.4 |" in md
    assert "| ↳ Δ |  |  |  | +0.0 | +0.5 | -0.4 | +0.0 | +0.0 | +0.1 | +0.0 | -0.4 | +0.0 |" in md
    # measured-only rows come after the paper's rows of their block, unpaired
    block8 = md.split("**16 Frames**")[0]
    assert block8.index("OneVision Encoder-Codec") < block8.index("My Encoder")
    assert "| My Encoder | ViT-L/14 | 224 | paper | partial (1/8) | 55.0 |" in md


def test_formats_csv_roundtrip_and_tex(tmp_path):
    recs = full_row("Enc_A & co", SCORES_A) + [make_record("demo", 75.0, method="Enc_A & co")]
    board = lb.build_board(lb.load_records(write_all(tmp_path, recs)))
    assert board.extras == ["demo"]
    frame = pd.read_csv(io.StringIO(lb.render(board, "csv")))
    assert list(frame.columns[:6]) == ["frames", "method", "arch", "res", "protocol", "source"]
    assert frame.loc[0, "demo"] == 75.0 and frame.loc[0, "avg"] == 51.25  # extra not in AVG
    tex = lb.render(board, "tex")
    assert r"\multicolumn{14}{c}{\textit{8 Frames}}" in tex
    assert r"Enc\_A \& co & ViT-L/14 & 224 & paper & 51.2 &" in tex
    assert tex.count(r"\\") >= 3 and tex.strip().endswith(r"\end{tabular}")
    with pytest.raises(lb.LeaderboardError, match="unknown format"):
        lb.render(board, "html")


def test_custom_benchmark_datasets(tmp_path):
    recs = [make_record("demo", 60.0), make_record("demo2", 70.0)]
    board = lb.build_board(lb.load_records(write_all(tmp_path, recs)), datasets=["demo", "demo2"])
    assert board.table.loc[0, "avg"] == 65.0 and board.columns == ["demo", "demo2"]
    with pytest.raises(lb.LeaderboardError, match="eight datasets"):
        lb.build_board([], datasets=["demo"], reported=lb.load_reported())


def test_reported_only_renders_exactly_the_shipped_numbers():
    board = lb.make_board("/nonexistent/runs", reported=True)
    with open(SHIPPED, encoding="utf-8") as fh:
        shipped = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    out = pd.read_csv(io.StringIO(lb.render(board, "csv")), dtype=str, keep_default_na=False)
    assert len(out) == len(shipped) == 12
    for got, want in zip(out.to_dict("records"), shipped):  # same order, same strings
        for col in ["frames", "method", "arch", "res", "avg", *PAPER]:
            assert got[col] == want[col], (col, got, want)
    md_rows = [line for line in lb.to_markdown(board).splitlines()
               if line.startswith("| ") and "Frames" not in line and "Method" not in line]
    for line, want in zip(md_rows, shipped):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == want["method"] and cells[1] == want["arch"] and cells[2] == want["res"]
        assert cells[3] == "paper" and cells[4].split(" ")[0] == want["avg"]
        assert cells[5:] == [want[d] for d in PAPER]


def test_reported_avg_check_flags_only_dinov3_16():
    checked = lb.check_reported_avgs(lb.load_reported())
    flagged = checked[checked.avg_flag]
    assert [(r.frames, r.method) for r in flagged.itertuples()] == [(16, "DINOv3")]
    assert flagged.iloc[0]["avg_mean"] == pytest.approx(57.6375)
    md = lb.to_markdown(lb.build_board([], reported=lb.load_reported()))
    assert "| DINOv3 | ViT-L | 224 | paper | 57.7 † |" in md
    assert "57.6375 (57.6 at one decimal)" in md


def test_reported_csv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "rep.csv"
    text = SHIPPED.read_text(encoding="utf-8").replace("57.9,53.2", "57.9,n/a", 1)
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(lb.LeaderboardError, match=r"rep\.csv:8: column 'diving48': 'n/a'"):
        lb.load_reported(bad)


def test_record_versions_and_fields_are_checked(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "ssv2"
    folder.mkdir(parents=True)
    rec = make_record("ssv2", 50.0)
    for version, pattern in [(SCHEMA_VERSION + 1, "not supported"), (0, "no upgrade from it")]:
        path = folder / "r.json"
        path.write_text(json.dumps({**rec, "schema_version": version}))
        with pytest.raises(ValueError, match=pattern) as err:
            lb.load_records(tmp_path / "runs")
        assert str(path) in str(err.value)
    old = {**rec, "schema_version": 0, "top1_old": 42.0}
    del old["method"]
    (folder / "r.json").write_text(json.dumps(old))
    monkeypatch.setitem(lb.UPGRADERS, 0, lambda d: {**d, "method": "Upgraded"})
    assert lb.load_records(tmp_path / "runs")[0]["method"] == "Upgraded"
    (folder / "r.json").write_text(json.dumps({**rec, "reported": {"top1": None}}))
    with pytest.raises(lb.LeaderboardError, match=r"r\.json: field 'reported'"):
        lb.load_records(tmp_path / "runs")


def test_cli_writes_table_and_plot(tmp_path, capsys):
    runs = write_all(tmp_path, full_row("OneVision Encoder", SCORES_A)
                     + full_row("Enc B", [51.0, 41.0], frames=16)
                     + [make_record("k400", status="failed", method="Enc B", frames=16)])
    out, png = tmp_path / "board.md", tmp_path / "board.png"
    assert lb.main(["--runs", str(runs), "--reported", "--out", str(out), "--plot", str(png)]) == 0
    assert "↳ Δ" in out.read_text() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runs / "ssv2" / "broken.json"
    bad.write_text("{not json")
    assert lb.main(["--runs", str(runs)]) == 2
    assert "broken.json: not a JSON run record" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    board = lb.build_board([], reported=lb.load_reported())
    with pytest.raises(lb.LeaderboardError, match=r"needs matplotlib.*pip install"):
        lb.plot_board(board, str(tmp_path / "x.png"))


def test_codec_budget_goes_to_its_frame_block_and_unlabelled_failures_are_placed(tmp_path):
    codec = make_record("ssv2", 58.0, method="OneVision Encoder-Codec", frames=64, token_budget=4096)
    codec["encoder"]["spec"] = {"tokens_per_frame": None, "input_size": 224, "patch_size": 14}
    failed = make_record("k400", method="X", status="failed")
    for key in ("method", "arch", "res", "frames", "token_budget"):
        del failed[key]  # the trainer stopped before its encoder was built
    failed["config"] = {"method_label": "OneVision Encoder-Codec", "arch_label": "ViT-L/14",
                        "input_size": 224, "num_frames": 16, "model_family": "codec"}
    board = lb.build_board(lb.load_records(write_all(tmp_path, [codec, failed])))
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
    board = lb.build_board(lb.load_records(write_all(tmp_path, [done, failed, other])))
    rows = board.table.to_dict("records")
    assert [(r["frames"], r["res"], r["failed"]) for r in rows] == [(8, "224", "k400"), (64, "", "hmdb51")]


def test_a_cell_with_runs_of_different_configurations_is_marked(tmp_path):
    from eval_encoder.leaderboard import build_board, to_markdown

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
    reported = lb.load_reported(SHIPPED)
    board = lb.build_board(lb.load_records(write_all(tmp_path, recs)), reported=reported)
    t = board.table
    mine = t[(t.method == "OneVision Encoder") & (t.frames == 8)]
    assert sorted(zip(mine.source, mine.protocol)) == [
        ("delta", "paper"), ("measured", "clean"), ("measured", "paper"), ("reported", "paper")]
    assert not mine["mixed"].astype(bool).any()  # two protocols are two rows, not one mixed cell
    md = lb.to_markdown(board)
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
    md = lb.to_markdown(lb.build_board(lb.load_records(write_all(tmp_path, starred + old))))
    assert "| Enc A | ViT-L/14 | 224 | paper* | 51.2 |" in md and "paper*/clean*:" in md
    assert "| Enc B | ViT-L/14 | 224 | unstated | 51.2 |" in md and "- unstated:" in md
