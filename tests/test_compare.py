"""``compare``: runs and rows named on the command line, a paired comparison with known counts,
and refusals (different validation manifests, clips in one file only, unknown rows)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eval_encoder.report import compare as cmp
from eval_encoder.__main__ import COMMANDS
from test_leaderboard import make_record, write_all
from test_stats import attach, predictions

IDS = [f"clips/{i:03d}.mp4" for i in range(100)]


def run(tmp_path, dataset, hit, method, ids=IDS, manifest="m" * 64, created="2026-01-01T00:00:00Z"):
    """A complete record with ``hit`` clips right (labels 1..), its file beside it."""
    hit = np.asarray(hit, dtype=bool)
    labels = np.arange(hit.size) % 7
    rec = make_record(dataset, 100 * hit.mean(), method=method, created=created)
    rec["dataset"]["val_manifest_sha256"] = manifest
    return attach(rec, tmp_path, predictions(labels, np.where(hit, labels, (labels + 1) % 7), ids))


# A right on 58 clips, B on 52: both on 50, A only on 8, B only on 2
A_HITS = np.r_[np.ones(58, bool), np.zeros(42, bool)]
B_HITS = np.r_[np.ones(50, bool), np.zeros(8, bool), np.ones(2, bool), np.zeros(40, bool)]


def test_two_runs_by_path_and_run_id(tmp_path, capsys):
    a, b = run(tmp_path, "ssv2", A_HITS, "Enc A"), run(tmp_path, "ssv2", B_HITS, "Enc B")
    runs = write_all(tmp_path, [a, b])
    path_a = runs / "ssv2" / f"{a['run_id']}.json"
    assert cmp.main([str(path_a), b["run_id"], "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    p = 2 * sum(math.comb(10, k) for k in range(3)) / 2 ** 10  # McNemar by hand: 0.109
    assert "SSV2" in out and "58.0" in out and "52.0" in out and "+6.0" in out
    assert f"{p:.3f}" in out and "      8      2" in out
    assert out.strip().endswith("A is better on 1 of 1 dataset; significant at 0.05 on 0.")


def test_rows_average_and_the_closing_sentence(tmp_path):
    strong = np.r_[np.ones(90, bool), np.zeros(10, bool)]
    weak = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    recs = [run(tmp_path, "ssv2", strong, "Enc A"), run(tmp_path, "ssv2", weak, "Enc B"),
            run(tmp_path, "k400", A_HITS, "Enc A"), run(tmp_path, "k400", B_HITS, "Enc B"),
            run(tmp_path, "hmdb51", weak, "Enc A"), run(tmp_path, "hmdb51", strong, "Enc B"),
            run(tmp_path, "diving48", weak, "Enc A")]  # B has no diving48: left out
    runs = write_all(tmp_path, recs)
    a, b = cmp.resolve("Enc A@8:paper", runs), cmp.resolve("Enc B", runs)
    result = cmp.compare(a, b)
    assert [line.dataset for line in result.lines] == ["ssv2", "k400", "hmdb51"]
    assert [line.significant for line in result.lines] == [True, False, True]
    diff, interval = result.avg
    assert diff == pytest.approx((50 + 6 - 50) / 3)
    assert interval.lo < diff < interval.hi
    assert cmp.summary(result) == ("A is better on 2 of 3 datasets; significant at 0.05 on 1. "
                                   "B is better on 1; significant on 1.")
    text = cmp.render(result)
    assert "AVG" in text and "Enc A (8 frames, paper; 4 datasets)" in text
    assert "not compared: diving48 (A only)" in text


def test_refuses_different_manifests_naming_dataset_and_hashes(tmp_path, capsys):
    recs = [run(tmp_path, "k400", A_HITS, "Enc A", manifest="a" * 64),
            run(tmp_path, "k400", B_HITS, "Enc B", manifest="b" * 64)]
    runs = write_all(tmp_path, recs)
    assert cmp.main(["Enc A", "Enc B", "--runs", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "cannot compare k400: the validation manifests differ" in err
    assert "a" * 64 in err and "b" * 64 in err


def test_refuses_clips_in_one_file_only(tmp_path, capsys):
    recs = [run(tmp_path, "k400", A_HITS, "Enc A"),
            run(tmp_path, "k400", B_HITS[:99], "Enc B", ids=IDS[:99])]
    runs = write_all(tmp_path, recs)
    assert cmp.main(["Enc A", "Enc B", "--runs", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "k400: 1 clip(s) are in one file only" in err and "'clips/099.mp4'" in err


def test_unknown_or_ambiguous_rows_and_old_records(tmp_path, capsys):
    recs = [run(tmp_path, "k400", A_HITS, "Enc A"),
            make_record("k400", 50.0, method="Enc A", frames=16)]  # no predictions file
    runs = write_all(tmp_path, recs)
    assert cmp.main(["Enc", "Enc A@8", "--runs", str(runs)]) == 2
    assert "rows: 'Enc A@16:paper', 'Enc A@8:paper'" in capsys.readouterr().err
    assert cmp.main(["Enc A", "Enc A@8", "--runs", str(runs)]) == 2
    assert "names 2 leaderboard rows" in capsys.readouterr().err
    assert cmp.main(["Enc A@16", "Enc A@8", "--runs", str(runs)]) == 2
    assert "no per-clip predictions" in capsys.readouterr().err


def test_action_line_from_verb_and_noun_runs(tmp_path):
    recs = [run(tmp_path, d, h, m) for d, h, m in [
        ("epic_verb", A_HITS, "Enc A"), ("epic_noun", A_HITS, "Enc A"),
        ("epic_verb", B_HITS, "Enc B"), ("epic_noun", np.ones(100, bool), "Enc B")]]
    runs = write_all(tmp_path, recs)
    result = cmp.compare(cmp.resolve("Enc A", runs), cmp.resolve("Enc B", runs), metric="action")
    (action,) = result.derived
    assert action.dataset == "epic_action"
    assert (action.result.a, action.result.b) == pytest.approx((58.0, 52.0))
    assert "(not in AVG)" in cmp.render(result)


def test_compare_is_a_command():
    assert COMMANDS["compare"][0] == "eval_encoder.report.compare"
