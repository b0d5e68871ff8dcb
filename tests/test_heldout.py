"""``--select_on heldout`` (issue 24): the held-out slice (stratified, from the seed and the
manifest, the same on any world size), its disjointness from the clips the heads train on
(traced per batch), the choice made on it before validation, both numbers in the record,
the leaderboard's two selections, and the optimism it removes (by simulation)."""
from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from eval_encoder.config import ConfigError
from eval_encoder.probe import data as probe_data
from eval_encoder.probe import trainer as probe_trainer
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.heldout import (
    check_flags,
    chosen_snapshots,
    class_quota,
    heldout_indices,
    heldout_report,
    split_entries,
)
from eval_encoder.probe.records import choose
from eval_encoder.record import config_hash, read_record
from eval_encoder.report.selection import select_records, selection_view
from eval_encoder.stats.grid import simulate_grid
from eval_encoder.video.loader import val_order
from eval_encoder.video.manifest import ManifestEntry


def _entries(sizes):
    """A manifest with ``sizes[c]`` clips of class c, classes interleaved."""
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    order = np.random.default_rng(5).permutation(len(labels))
    return [ManifestEntry(f"v/{i}.mp4", labels[j], i + 1) for i, j in enumerate(order)]


# ----------------------------------------------------------------------------- the slice

def test_each_class_gives_its_share_at_least_one_never_its_last():
    assert [class_quota(n, 0.1) for n in (0, 1, 2, 3, 10, 14, 15, 30, 200)] == \
        [0, 0, 1, 1, 1, 1, 2, 3, 20]
    assert class_quota(2, 0.9) == 1 and class_quota(10, 0.5) == 5
    entries = _entries([1, 2, 3, 30, 200])
    train, held = split_entries(entries, 0.1, seed=1)
    per_class = Counter(e.label for e in held)
    assert per_class == {1: 1, 2: 1, 3: 3, 4: 20}  # class 0 (one clip) keeps it
    assert {e.path for e in train} | {e.path for e in held} == {e.path for e in entries}
    assert not {e.path for e in train} & {e.path for e in held}
    assert [e.line for e in held] == sorted(e.line for e in held)  # manifest order


def test_the_slice_is_the_seeds_and_the_manifests_only():
    labels = [e.label for e in _entries([4, 9, 17, 50])]
    first = heldout_indices(labels, 0.2, seed=3)
    assert first == heldout_indices(list(labels), 0.2, seed=3)  # again (a resume): the same
    assert first != heldout_indices(labels, 0.2, seed=4)
    # a class's draw is its own: another class's clips do not move it
    fewer = [c if c != 3 else 2 for c in labels]
    assert [i for i in first if labels[i] in (0, 1)] == \
        [i for i in heldout_indices(fewer, 0.2, seed=3) if labels[i] in (0, 1)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_rank_holds_out_the_same_clips_and_scores_each_once(world, monkeypatch):
    entries = _entries([5, 7, 11])
    slices = []
    for rank in range(world):  # each rank computes the slice from what it reads
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        slices.append(split_entries(entries, 0.1, seed=1)[1])
    assert all(s == slices[0] for s in slices)
    n, views = len(slices[0]), 3
    scored = Counter(i // views for r in range(world) for i in val_order(n, views, r, world))
    assert scored == {c: views for c in range(n)}  # every clip, every view, on one rank


def test_its_flags_need_heldout_and_it_refuses_what_cannot_choose_on_it():
    check_flags(parse_config(["--dataset", "demo", "--select_on", "heldout"]))
    with pytest.raises(ConfigError, match="only with --select_on heldout"):
        check_flags(parse_config(["--dataset", "demo", "--heldout_fraction", "0.2"]))
    with pytest.raises(ConfigError, match="val_sampling published"):
        check_flags(parse_config(["--dataset", "demo", "--select_on", "heldout",
                                  "--val_sampling", "published"]))


def test_val_keeps_every_hash_and_heldout_is_a_new_configuration():
    base = parse_config(["--dataset", "demo"])
    for name in ("paper", "clean", "vjepa2"):
        cfg = parse_config(["--dataset", "demo", "--protocol", name])
        assert cfg.select_on == "val" and cfg.sources["select_on"] == f"protocol {name}"
    held = parse_config(["--dataset", "demo", "--select_on", "heldout"])
    assert config_hash(held.to_dict()) != config_hash(base.to_dict())
    again = parse_config(["--dataset", "demo", "--select_on", "val", "--protocol", "paper"])
    assert config_hash(again.to_dict()) == config_hash(base.to_dict())


# ----------------------------------------------------------------------------- the choice

def _row(name, history, kind="ov", status="ok"):
    """A record's head row (as probe/records.py's head_row makes it) of ``history``."""
    scored = [e for e in history if e.get("top1") is not None]
    best = max(scored, key=lambda e: e["top1"], default={})
    last = scored[-1] if scored else {}
    return {"name": name, "kind": kind, "status": status, "history": history,
            "best_top1": best.get("top1"), "best_top5": best.get("top5"),
            "best_epoch": best.get("epoch"), "last_top1": last.get("top1"),
            "last_top5": last.get("top5")}


def test_the_choice_is_the_best_held_out_snapshot_and_the_record_has_both_numbers():
    rows = [_row("a", [{"epoch": 0, "heldout_top1": 50.0, "top1": 70.0, "top5": 90.0},
                       {"epoch": 1, "heldout_top1": 80.0, "top1": 60.0, "top5": 91.0}]),
            _row("b", [{"epoch": 0, "heldout_top1": 80.0, "top1": 75.0, "top5": 92.0},
                       {"epoch": 1, "heldout_top1": 40.0, "top1": 65.0, "top5": 93.0}])]
    reported, block = heldout_report(rows, "best_val")
    assert (reported["head"], reported["epoch"], reported["top1"]) == ("a", 1, 60.0)  # first of equals
    assert reported["chosen_on"] == "heldout" and reported["heldout_top1"] == 80.0
    assert (block["val_max"]["head"], block["val_max"]["epoch"]) == ("b", 0)
    assert block["gap_top1"] == pytest.approx(15.0)
    last, _ = heldout_report(rows, "last")
    assert (last["head"], last["epoch"]) == ("a", 1)
    # only the chosen snapshot scored on val: no val max to give
    rows[1]["history"][0].pop("top1")
    assert heldout_report(rows, "best_val")[1]["val_max"] is None


def test_each_kind_chooses_among_its_own_heads_before_any_val_score():
    heads = [SimpleNamespace(status="ok", kind=k, history=h) for k, h in (
        ("ov", [{"epoch": 0, "heldout_top1": 10.0}, {"epoch": 1, "heldout_top1": 30.0}]),
        ("ov", [{"epoch": 0, "heldout_top1": 20.0}, {"epoch": 1, "heldout_top1": 25.0}]),
        ("knn", [{"epoch": 1, "heldout_top1": 5.0}]))]
    assert chosen_snapshots(heads, "best_val") == [(1, 0), (1, 2)]


def _equal_heads(rng, heads, epochs, n_val, n_held, p):
    """Head rows whose every snapshot has true accuracy ``p``: val and held-out top-1 are
    binomial draws, independent between the splits."""
    return [_row(f"h{h}", [{"epoch": e, "top1": 100 * rng.binomial(n_val, p) / n_val,
                            "top5": 100.0, "heldout_top1": 100 * rng.binomial(n_held, p) / n_held}
                           for e in range(epochs)]) for h in range(heads)]


def test_on_equal_heads_val_selection_is_optimistic_and_heldout_is_not():
    p, seeds = 0.6, 200
    val, held = [], []
    for seed in range(seeds):
        rows = _equal_heads(np.random.default_rng(seed), 5, 4, 300, 60, p)
        val.append(choose(rows, "best_val")["top1"])
        held.append(heldout_report(rows, "best_val")[0]["top1"])
    val, held = np.array(val), np.array(held)
    assert val.mean() > held.mean() + 3  # 20 snapshots on 300 clips: about 5 points
    error = held.std(ddof=1) / math.sqrt(seeds)
    assert abs(held.mean() - 100 * p) < 3 * error  # unbiased within its interval
    assert (val >= held).all()


def test_the_simulated_grid_max_is_optimistic_and_the_held_out_choice_is_not():
    g = simulate_grid(20, 20, 1_530, 357, replicates=2_000, seed=0)
    assert 2.0 < g.val_max.mean < 3.2
    assert abs(g.heldout.mean) < 3 * g.heldout.error + 1e-9
    big = simulate_grid(20, 20, 24_777, 16_891, replicates=2_000, seed=0)
    assert 0.4 < big.val_max.mean < 0.9 and big.val_max.mean < g.val_max.mean
    assert simulate_grid(20, 20, 1_530, 357, replicates=500, seed=1) == \
        simulate_grid(20, 20, 1_530, 357, replicates=500, seed=1)


# ----------------------------------------------------------------------------- the leaderboard

def _record(chosen_on, top1, val_max=None):
    reported = {"head": "a", "epoch": 0, "top1": top1, "top5": 99.0, "chosen_on": chosen_on}
    if val_max is not None:
        reported["val_max"] = {"head": "b", "epoch": 1, "top1": val_max, "top5": 99.0,
                               "chosen_on": "val"}
    return {"status": "complete", "reported": reported, "predictions": {"file": "x.npz"},
            "predictions_val_max": {"file": "y.npz"}}


def test_the_selections_table_the_held_out_choice_or_the_val_max():
    held, plain, bare = (_record("heldout", 60.0, 64.0), _record("val", 70.0),
                         _record("heldout", 61.0))
    assert selection_view(held, None) is held and selection_view(held, "heldout") is held
    as_val = selection_view(held, "val")
    assert as_val["reported"]["top1"] == 64.0 and as_val["predictions"]["file"] == "y.npz"
    assert selection_view(plain, "val") is plain and selection_view(plain, "heldout") is None
    assert selection_view(bare, "val") is None
    kept, notes = select_records([held, plain], "heldout")
    assert kept == [held] and "1 run(s) left out" in notes[0]


# ----------------------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from eval_encoder.demo import generate_dataset, save_tiny_encoder

    out = tmp_path_factory.mktemp("heldout")
    generate_dataset(out / "data", "demo", train_per_class=4, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


def _run(demo, report, monkeypatch, *extra):
    from eval_encoder.probe.run import main as probe_main

    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    code = probe_main(["--model_family", "sampling", "--model_name", "ov_encoder_tiny",
                       "--model_weight", str(weights), "--dataset", "demo", "--data_root",
                       str(data), "--num_frames", "2", "--default_epoch", "2",
                       "--default_lr_list", "1e-3", "1e-4", "--batch_size", "4",
                       "--dali_py_num_workers", "0", "--monitor_clips", "0",
                       "--select_on", "heldout", "--save_report", str(report), *extra])
    assert code == 0
    (path,) = (report / "runs").rglob("*.json")
    return read_record(str(path)), path


def test_a_heldout_run_never_trains_on_its_slice_and_records_both_numbers(
        demo, tmp_path, monkeypatch):
    seen, made = [], {}
    real_splits, real_accumulate = probe_data.build_splits, probe_trainer.ProbeTrainer.accumulate

    def build_splits(*args, **kwargs):
        made["splits"] = real_splits(*args, **kwargs)
        return made["splits"]

    def accumulate(self, batch):  # every training batch the heads see
        seen.extend(made["splits"].train.entries[c].path for c in batch["clip_index"].tolist())
        return real_accumulate(self, batch)

    monkeypatch.setattr("eval_encoder.probe.training.build_splits", build_splits)
    monkeypatch.setattr(probe_trainer.ProbeTrainer, "accumulate", accumulate)
    record, path = _run(demo, tmp_path / "report", monkeypatch)
    splits = made["splits"]
    held = {e.path for e in splits.heldout.entries}
    assert len(held) == 4 and not held & set(seen)  # one clip of each of the 4 classes
    assert set(seen) == {e.path for e in splits.train.entries}  # every other clip trains
    manifest = probe_data.read_manifest(splits.train_csv, 4)
    assert held == {manifest[i].path for i in
                    heldout_indices([e.label for e in manifest], 0.1, seed=1)}
    assert record["samples"]["train"]["expected"] == 12
    assert record["samples"]["heldout"]["scored"] == 4
    reported, block = record["reported"], record["selection"]
    assert reported["chosen_on"] == "heldout" and block["select_on"] == "heldout"
    assert block["chosen"]["top1"] == reported["top1"] and block["val_max"] is not None
    assert block["gap_top1"] == pytest.approx(block["val_max"]["top1"] - reported["top1"])
    assert block["gap_top1"] >= 0
    assert record["samples"]["val"]["scored"] == 7 and record["encoder_passes"]["val"] == 2
    assert record["encoder_passes"]["heldout"] == 2  # one batch of 4 clips, two epochs
    cost = record["compute"]["heldout"]
    assert cost["clip_views_encoded"] == 8 and 0 < cost["encoded_share"] < 1
    for entry in (h for row in record["heads"] for h in row["history"]):
        assert "heldout_top1" in entry and "top1" in entry
    folder = path.parent
    assert (folder / record["predictions"]["file"]).is_file()
    assert (folder / record["predictions_val_max"]["file"]).is_file()
    assert record["protocol"]["departures"] == {"select_on": "heldout"}
    from eval_encoder.report.cli import make_boards

    for selection, value in (("heldout", reported["top1"]), ("val", block["val_max"]["top1"])):
        (board,) = make_boards(str(tmp_path / "report" / "runs"), selection=selection, ci="exact")
        assert board.table["demo"].dropna().iloc[0] == pytest.approx(value, abs=0.05)


def test_without_the_val_max_val_scores_the_chosen_snapshot_only(demo, tmp_path, monkeypatch):
    record, _ = _run(demo, tmp_path / "report", monkeypatch, "--heldout_val_max", "off")
    scored = [(row["name"], e["epoch"]) for row in record["heads"] for e in row["history"]
              if e.get("top1") is not None]
    reported = record["reported"]
    assert scored == [(reported["head"], reported["epoch"])]
    assert record["selection"]["val_max"] is None and record["selection"]["gap_top1"] is None
    assert record["samples"]["val"]["scored"] == 7 and record["encoder_passes"]["val"] == 2
    assert "predictions_val_max" not in record


def _complete(report):
    records = [read_record(str(p)) for p in (report / "runs").rglob("*.json")]
    return [r for r in records if r["status"] == "complete"]


def _comparable(record):
    return ([{k: h[k] for k in ("name", "status", "history")} for h in record["heads"]],
            record["reported"], record["selection"])


def test_a_run_broken_after_an_epoch_resumes_to_the_same_choice(demo, tmp_path, monkeypatch):
    ref, _ = _run(demo, tmp_path / "ref", monkeypatch)
    real = probe_trainer.ProbeTrainer.train_epoch
    broken = {"once": True}

    def train_epoch(self, loader, epoch, *args, **kwargs):
        if epoch == 1 and broken.pop("once", False):
            raise RuntimeError("killed after epoch 0")
        return real(self, loader, epoch, *args, **kwargs)

    monkeypatch.setattr(probe_trainer.ProbeTrainer, "train_epoch", train_epoch)
    from eval_encoder.probe.run import main as probe_main

    report = tmp_path / "broken"
    with pytest.raises(AssertionError):  # the first run fails (exit code 1)
        _run(demo, report, monkeypatch)
    assert not broken and not _complete(report)
    data, weights = demo
    assert probe_main(["--model_family", "sampling", "--model_name", "ov_encoder_tiny",
                       "--model_weight", str(weights), "--dataset", "demo", "--data_root",
                       str(data), "--num_frames", "2", "--default_epoch", "2",
                       "--default_lr_list", "1e-3", "1e-4", "--batch_size", "4",
                       "--dali_py_num_workers", "0", "--monitor_clips", "0",
                       "--select_on", "heldout", "--save_report", str(report)]) == 0
    (resumed,) = _complete(report)
    assert resumed["resumed_from"]["epoch"] == 1
    assert _comparable(resumed) == _comparable(ref)


@pytest.mark.slow
def test_two_gloo_processes_hold_out_and_choose_as_one(demo, tmp_path, monkeypatch):
    import os
    import subprocess

    from eval_encoder.demo import probe_command

    extra = ["--num_frames", "2", "--default_epoch", "2", "--default_lr_list", "1e-3", "1e-4",
             "--batch_size", "2", "--global_batch_size", "4", "--dali_py_num_workers", "0",
             "--monitor_clips", "0", "--select_on", "heldout", "--dataset", "demo"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    records = []
    for nproc in (1, 2):
        report = tmp_path / f"w{nproc}"
        out = subprocess.run(probe_command(*demo, report, nproc=nproc, extra=extra), env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        (record,) = _complete(report)
        records.append(record)
    assert records[1]["world_size"] == 2
    assert _comparable(records[0]) == _comparable(records[1])
    assert records[1]["samples"]["heldout"]["scored"] == 4
