"""``--refit`` (issue 24): after the choice on held-out clips, the chosen (lr, wd) trained
again from its grid seed on every training clip (held-out ones included, traced per batch)
for the chosen epochs, scored once on val and reported beside the grid snapshot's score; a
run killed in the refit phase trains it again from its start, to the same record."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from eval_encoder.config import ConfigError
from eval_encoder.probe import refit as probe_refit
from eval_encoder.probe import trainer as probe_trainer
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import read_manifest
from eval_encoder.probe.refit import check_flags
from eval_encoder.record import config_hash, read_record


def test_refit_needs_heldout_and_a_trained_kind_and_off_keeps_the_hash():
    with pytest.raises(ConfigError, match="needs --select_on heldout"):
        check_flags(parse_config(["--dataset", "demo", "--refit"]))
    with pytest.raises(ConfigError, match="trains nothing"):
        check_flags(parse_config(["--dataset", "demo", "--select_on", "heldout", "--refit",
                                  "--probe_head", "knn"]))
    check_flags(parse_config(["--dataset", "demo", "--select_on", "heldout", "--refit"]))
    held = parse_config(["--dataset", "demo", "--select_on", "heldout"])
    off = parse_config(["--dataset", "demo", "--select_on", "heldout", "--refit", "off"])
    on = parse_config(["--dataset", "demo", "--select_on", "heldout", "--refit"])
    assert config_hash(off.to_dict()) == config_hash(held.to_dict()) != config_hash(on.to_dict())


def test_without_heldout_the_command_line_refuses_it(capsys):
    from eval_encoder.probe.run import main as probe_main

    assert probe_main(["--dataset", "demo", "--data_root", "/nonexistent", "--refit"]) == 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from eval_encoder.demo import generate_dataset, save_tiny_encoder

    out = tmp_path_factory.mktemp("refit")
    generate_dataset(out / "data", "demo", train_per_class=4, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


def _args(demo, report):
    data, weights = demo
    return ["--model_family", "sampling", "--model_name", "ov_encoder_tiny",
            "--model_weight", str(weights), "--dataset", "demo", "--data_root", str(data),
            "--num_frames", "2", "--default_epoch", "2", "--default_lr_list", "1e-3", "1e-4",
            "--batch_size", "4", "--dali_py_num_workers", "0", "--monitor_clips", "0",
            "--select_on", "heldout", "--refit", "--save_report", str(report)]


def _run(demo, report, monkeypatch):
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    code = probe_main(_args(demo, report))
    records = [read_record(str(p)) for p in (report / "runs").rglob("*.json")]
    return code, [r for r in records if r["status"] == "complete"], report


def _refitting(trainer) -> bool:
    return trainer.heads[0].name.startswith(probe_refit.REFIT)


def test_refit_trains_on_every_training_clip_for_the_chosen_epochs_and_reports_it(
        demo, tmp_path, monkeypatch):
    seen, evaluated, made = [], [], {}
    real_whole, real_accumulate = probe_refit.whole_train, probe_trainer.ProbeTrainer.accumulate
    real_evaluate = probe_trainer.ProbeTrainer.evaluate

    def whole_train(*args):
        made["data"] = real_whole(*args)
        return made["data"]

    def accumulate(self, batch):  # every training batch the refit head sees
        if _refitting(self):
            seen.extend((self.epoch, made["data"].entries[c].path)
                        for c in batch["clip_index"].tolist())
        return real_accumulate(self, batch)

    def evaluate(self, loader, views, modules, desc="val", *args, **kwargs):
        if _refitting(self):
            evaluated.append((desc, kwargs.get("split", "val"), len(modules)))
        return real_evaluate(self, loader, views, modules, desc, *args, **kwargs)

    seeds = {}
    real_make = probe_trainer.make_heads

    def make_heads(grid, *args, **kwargs):  # (lr, wd) -> the seed of its head, per phase
        phase = "refit" if "grid" in seeds else "grid"
        seeds.setdefault(phase, {}).update(
            {tuple(lr_wd): args[5] + i for i, lr_wd in enumerate(grid)})
        return real_make(grid, *args, **kwargs)

    monkeypatch.setattr("eval_encoder.probe.kinds.make_heads", make_heads)
    monkeypatch.setattr(probe_refit, "make_heads", make_heads)
    monkeypatch.setattr(probe_refit, "whole_train", whole_train)
    monkeypatch.setattr(probe_trainer.ProbeTrainer, "accumulate", accumulate)
    monkeypatch.setattr(probe_trainer.ProbeTrainer, "evaluate", evaluate)
    code, (record,), report = _run(demo, tmp_path / "report", monkeypatch)
    assert code == 0
    reported, refit = record["reported"], record["reported"]["refit"]
    manifest = read_manifest(record["dataset"]["train_manifest"], 4)
    epochs = reported["epoch"] + 1
    assert refit["epochs"] == epochs and refit["train_clips"] == len(manifest) == 16
    # every clip of the training manifest, the 4 held-out ones included, once per epoch
    per_epoch = Counter(e for e, _ in seen)
    assert sorted(per_epoch) == list(range(epochs))
    for epoch in range(epochs):
        assert Counter(p for e, p in seen if e == epoch) == Counter(m.path for m in manifest)
    assert record["samples"]["heldout"]["expected"] == 4
    # the chosen head's (lr, wd) and kind, scored once on val (one module, every clip)
    chosen = next(h for h in record["heads"] if h["name"] == reported["head"])
    assert (refit["lr"], refit["wd"], refit["kind"]) == (chosen["lr"], chosen["weight_decay"],
                                                         chosen["kind"])
    assert evaluated == [("val (refit)", "val", 1)]
    (lr_wd, seed), = seeds["refit"].items()  # the grid's seed rule for that (lr, wd)
    assert lr_wd == (refit["lr"], refit["wd"]) and seeds["grid"][lr_wd] == seed
    cost = record["compute"]["refit"]
    assert cost["encoder_passes"] == {"train": 4 * epochs, "val": 2}
    assert 0 < cost["encoded_share"] < 1 and 0 < cost["time_share"] < 1
    # the record keeps the selection and the grid snapshot's val score beside the refit one
    selection = record["selection"]
    assert selection["chosen"]["head"] == reported["head"]
    assert reported["grid_snapshot"]["top1"] == selection["chosen"]["top1"]
    assert selection["refit_top1"] == reported["top1"] and reported["chosen_on"] == "heldout"
    # the predictions file is the refit head's: its top-1 is the reported one
    pred = np.load(next((report / "runs").rglob(record["predictions"]["file"])))
    assert 100 * np.mean(pred["top5"][:, 0] == pred["label"]) == pytest.approx(reported["top1"])
    assert any(str(n).startswith("refit ") for n in pred["all_names"])


def test_a_run_killed_in_the_refit_restarts_it_to_the_same_record(demo, tmp_path, monkeypatch):
    _, (ref,), _ = _run(demo, tmp_path / "ref", monkeypatch)
    real = probe_trainer.ProbeTrainer.train_epoch
    broken = {"once": True}

    def train_epoch(self, loader, epoch, *args, **kwargs):
        if _refitting(self) and epoch == ref["reported"]["epoch"] and broken.pop("once", False):
            raise RuntimeError("killed in the refit phase")
        return real(self, loader, epoch, *args, **kwargs)

    monkeypatch.setattr(probe_trainer.ProbeTrainer, "train_epoch", train_epoch)
    code, done, report = _run(demo, tmp_path / "broken", monkeypatch)
    assert code == 1 and not done and not broken
    code, (resumed,), _ = _run(demo, report, monkeypatch)
    assert code == 0 and resumed["resumed_from"]["epoch"] == 2  # the grid's end
    assert resumed["reported"] == ref["reported"] and resumed["selection"] == ref["selection"]


@pytest.mark.slow
def test_two_gloo_processes_refit_as_one(demo, tmp_path):
    import os
    import subprocess

    from eval_encoder.demo import probe_command

    extra = ["--num_frames", "2", "--default_epoch", "2", "--default_lr_list", "1e-3", "1e-4",
             "--batch_size", "2", "--global_batch_size", "4", "--dali_py_num_workers", "0",
             "--monitor_clips", "0", "--select_on", "heldout", "--refit", "--dataset", "demo"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    records = []
    for nproc in (1, 2):
        report = tmp_path / f"w{nproc}"
        out = subprocess.run(probe_command(*demo, report, nproc=nproc, extra=extra), env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        (record,) = [read_record(str(p)) for p in (report / "runs").rglob("*.json")]
        records.append(record)
    assert records[1]["world_size"] == 2
    assert records[0]["reported"] == records[1]["reported"]
    assert records[1]["compute"]["refit"]["encoder_passes"]["val"] == 4  # 7 clips, 2 ranks x 2
