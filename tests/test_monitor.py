"""Something to watch during a long run: a fixed few training clips scored in eval mode after
each epoch, in each head's history and one log line, never in the reported number."""
from __future__ import annotations

import pytest

from eval_encoder.demo import generate_dataset, save_tiny_encoder
from eval_encoder.probe.data import monitor_entries
from eval_encoder.probe.run import main as probe_main
from eval_encoder.record import read_record


def test_the_monitor_clips_are_drawn_once_from_the_seed():
    entries = list(range(100))
    first = monitor_entries(entries, 8, seed=1)
    assert first == monitor_entries(entries, 8, seed=1) == sorted(first) and len(first) == 8
    assert monitor_entries(entries, 8, seed=2) != first
    assert monitor_entries(entries[:5], 8, seed=1) == entries[:5]  # fewer clips: all of them
    assert monitor_entries(entries, 0, seed=1) == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("monitor")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


def _run(tiny, report, monitor, monkeypatch):
    data, weights = tiny
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    code = probe_main(["--model_family", "sampling", "--model_name", "ov_encoder_tiny",
                       "--model_weight", str(weights), "--dataset", "demo", "--data_root",
                       str(data), "--num_frames", "2", "--default_epoch", "2",
                       "--default_lr_list", "1e-3", "1e-4", "--batch_size", "4",
                       "--dali_py_num_workers", "0", "--monitor_clips", str(monitor),
                       "--save_report", str(report)])
    assert code == 0
    (path,) = (report / "runs").rglob("*.json")
    return read_record(str(path))


def test_the_monitor_is_watched_and_never_reported(tiny, tmp_path, monkeypatch, capfd):
    watched = _run(tiny, tmp_path / "watched", 4, monkeypatch)
    said = capfd.readouterr()
    plain = _run(tiny, tmp_path / "plain", 0, monkeypatch)
    assert watched["monitor"]["clips"] == 4 and "monitor" not in plain
    assert watched["encoder_passes"]["monitor"] > 0 == plain["encoder_passes"]["monitor"]
    for head in watched["heads"]:
        assert [("monitor_top1" in e) for e in head["history"]] == [True, True]
    # the same training and the same reported number, with or without the monitor
    strip = [[{k: v for k, v in e.items() if k != "monitor_top1"} for e in h["history"]]
             for h in watched["heads"]]
    assert strip == [h["history"] for h in plain["heads"]]
    assert watched["reported"] == plain["reported"]
    assert watched["config_hash"] == plain["config_hash"]  # a runtime option
    lines = [line for line in (said.out + said.err).splitlines() if " monitor: top-1 " in line]
    assert len(lines) == 2 and "(head lr=0.001,wd=0)" in lines[0]
    assert "on 4 training clips in eval mode" in lines[0]
    assert "never the reported number" in lines[0]
