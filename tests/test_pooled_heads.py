"""Head kinds on pooled tokens (issue 22): ``knn`` against a brute-force reference (ties, k
larger than the train split), ``linear`` on separable features, several kinds in one run on
the demo data (one encoder pass; the leaderboard shows each kind), the flags and their hash."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_encoder import record as rec
from eval_encoder.config import ConfigError
from eval_encoder.demo import generate_dataset, save_tiny_encoder
from eval_encoder.distributed import DistEnv
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.heads import build_head, head_grid
from eval_encoder.probe.heads.options import check_kinds
from eval_encoder.probe.run import main as probe_main
from eval_encoder.probe.trainer import ProbeTrainer, make_heads
from eval_encoder.record import read_record
from eval_encoder.report.cli import main as leaderboard_main

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
FLAT = dict(pool="mean")  # a [B, 1, D] token is its own vector


# ----------------------------------------------------------------------------- kNN

def brute_force(train, labels, queries, k, temperature, classes):
    """DINO's weighted kNN with loops: cosine, the k most similar (ties: lower index), votes
    exp(cos / T) per label, each class's share of the votes."""
    out = []
    for q in queries:
        qn = q / np.linalg.norm(q)
        sims = [float(np.dot(qn, t / np.linalg.norm(t))) for t in train]
        order = sorted(range(len(train)), key=lambda i: (-sims[i], i))[:k]
        votes = np.zeros(classes)
        for i in order:
            votes[labels[i]] += math.exp(sims[i] / temperature)
        out.append(votes / votes.sum())
    return np.array(out)


def knn_shares(train, labels, queries, k, temperature, classes):
    head = build_head("knn", train.shape[1], classes, k=k, temperature=temperature, **FLAT)
    head.fit(torch.tensor(train, dtype=torch.float32), torch.tensor(labels))
    logits = head(torch.tensor(queries, dtype=torch.float32)[:, None, :])
    return logits.exp().numpy()


def test_knn_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    train, queries = rng.normal(size=(40, 16)), rng.normal(size=(9, 16))
    labels = rng.integers(0, 5, size=40)
    for k, t in ((1, 0.07), (7, 0.07), (20, 0.5), (40, 0.07)):
        np.testing.assert_allclose(knn_shares(train, labels, queries, k, t, 5),
                                   brute_force(train, labels, queries, k, t, 5), atol=1e-5)


def test_knn_ties_take_the_lower_train_index():
    # one-hot train vectors, repeated under other labels: exactly equal similarities
    train = np.eye(4)[[0, 1, 0, 2, 1, 3, 0]]
    labels = np.array([0, 1, 2, 0, 2, 1, 1])
    queries = np.array([[1.0, 1.0, 0.0, 0.0], [2.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    for k in range(1, 8):
        np.testing.assert_allclose(knn_shares(train, labels, queries, k, 0.07, 3),
                                   brute_force(train, labels, queries, k, 0.07, 3), atol=1e-6)
    # k = 1 on a tie between train clips 0 (label 0) and 1 (label 1): clip 0 votes alone
    assert knn_shares(train, labels, queries[:1], 1, 0.07, 3)[0].argmax() == 0


def test_knn_k_larger_than_the_train_clips_is_an_error():
    head = build_head("knn", 4, 2, k=5, **FLAT)
    with pytest.raises(ValueError, match="--knn_k 5: more neighbours than the 3 train clips"):
        head.fit(torch.eye(4)[:3], torch.tensor([0, 1, 0]))


def test_knn_has_no_state_to_save():
    head = build_head("knn", 4, 2, k=1, **FLAT)
    head.fit(torch.eye(4), torch.tensor([0, 1, 0, 1]))
    assert head.state_dict() == {} and not list(head.parameters())


# ----------------------------------------------------------------------------- linear

class Tokens(torch.nn.Module):
    def __init__(self, tokens):
        super().__init__()
        self.tokens = tokens

    def forward(self, batch):
        return self.tokens


def test_linear_heads_separate_separable_features():
    torch.manual_seed(0)
    classes, dim, n = 4, 32, 64
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, dim) * 3
    tokens = centres[labels][:, None, :] + 0.3 * torch.randn(n, 6, dim)  # 6 tokens per clip
    heads = make_heads(head_grid([1e-2, 3e-2], [0.0, 1e-4]), dim, classes, steps=60,
                       min_lr=1e-6, device=ENV.device, seed=0, kind="linear", options=FLAT)
    trainer = ProbeTrainer(Tokens(tokens), heads, ENV, 0.0, 5.0, classes)
    for step in range(60):
        trainer.train_step({"labels": labels, "skipped": []}, 0, step)
    for h in heads:
        h.module.eval()
        assert (h.module(tokens).argmax(1) == labels).float().mean().item() == 1.0, h.name


def test_linear_heads_run_as_one_bank_equal_to_each_head():
    from eval_encoder.probe.heads import bank_logits

    torch.manual_seed(1)
    heads = [build_head("linear", 8, 3, **FLAT) for _ in range(3)]
    tokens = torch.randn(5, 4, 8)
    fused = bank_logits(heads, tokens)
    for j, h in enumerate(heads):
        torch.testing.assert_close(fused[:, j], h(tokens))


# ----------------------------------------------------------------------------- flags

def test_flags_of_several_kinds_and_their_hash():
    plain = rec.config_hash(parse_config([]).to_dict())
    assert rec.config_hash(parse_config(["--probe_head", "ov", "--knn_k", "20"] * 0).to_dict()) \
        == plain
    cfg = parse_config(["--probe_head", "ov", "linear", "knn", "--knn_k", "10", "20"])
    assert cfg.probe_head == ["ov", "linear", "knn"] and cfg.knn_k == [10, 20]
    assert rec.config_hash(cfg.to_dict()) != plain
    assert parse_config(["--probe_head", "ov"]).probe_head == "ov"  # one kind: a string
    with pytest.raises(ConfigError, match="--knn_k 5: head kind 'ov' has no k option"):
        parse_config(["--knn_k", "5"])
    with pytest.raises(ConfigError, match="a kind named twice"):
        parse_config(["--probe_head", "ov", "ov"])
    with pytest.raises(ConfigError, match="knn has none"):
        check_kinds(parse_config(["--probe_head", "knn", "--val_only"]))


def test_the_vjepa2_protocol_row_departs_for_a_list_of_kinds():
    from eval_encoder import protocol

    cfg = parse_config(["--protocol", "vjepa2", "--probe_head", "vjepa2", "knn"])
    assert protocol.departures(cfg)["probe_head"] == ["vjepa2", "knn"]
    assert "probe_head" not in protocol.departures(parse_config(["--protocol", "vjepa2"]))


# ----------------------------------------------------------------------------- a run

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("pooled")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


def _flags(tiny, report, *extra):
    data, weights = tiny
    return ["--model_family", "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
            str(weights), "--dataset", "demo", "--data_root", str(data), "--num_frames", "2",
            "--batch_size", "4", "--dali_py_num_workers", "0", "--monitor_clips", "0",
            "--default_epoch", "2", "--save_report", str(report), *extra]


def _record(report):
    (path,) = sorted((Path(report) / "runs").rglob("*.json"))
    return read_record(str(path))


@pytest.fixture
def no_launcher(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_three_kinds_share_one_encoder_pass_and_fill_a_table_each(tiny, tmp_path, capsys,
                                                                    no_launcher):
    report = tmp_path / "three"
    assert probe_main(_flags(tiny, report, "--probe_head", "ov", "linear", "knn", "--knn_k",
                             "3", "5")) == 0
    record = _record(report)
    names = [h["name"] for h in record["heads"]]
    assert names == ["ov lr=0.0001,wd=0", "linear lr=0.0001,wd=0", "knn k=3", "knn k=5"]
    assert [h["kind"] for h in record["heads"]] == ["ov", "linear", "knn", "knn"]
    assert list(record["reported_by_kind"]) == ["ov", "linear", "knn"]
    assert record["reported"] == record["reported_by_kind"]["ov"]
    assert record["reported_by_kind"]["knn"]["head"] in ("knn k=3", "knn k=5")
    # training: 12 clips / 4 per batch x 2 epochs; knn: one pass over the train split
    assert record["encoder_passes"]["train"] == 6 and record["encoder_passes"]["knn_train"] == 3
    assert record["encoder_passes"]["val"] == 2  # every kind scored in one validation pass
    assert record["samples"]["val"]["scored"] == 7
    assert set(record["probe_head"]["kinds"]) == {"ov", "linear", "knn"}
    capsys.readouterr()
    assert leaderboard_main(["--runs", str(report / "runs")]) == 0
    out = capsys.readouterr().out
    for kind in ("ov", "linear", "knn"):
        assert f"- {kind} heads" in out
    assert leaderboard_main(["--runs", str(report / "runs"), "--probe_head", "linear"]) == 0
    out = capsys.readouterr().out
    linear = record["reported_by_kind"]["linear"]["top1"]
    assert f"{linear:.1f}" in out and "reported linear head" in out and "### " not in out
    _every_kind_has_its_predictions(record, report, capsys)


def _every_kind_has_its_predictions(record, report, capsys):
    """A later kind's reported head has its own per-clip file: its top-1 is the record's, so
    intervals and ``compare --probe_head`` read that kind's clips."""
    from eval_encoder.report.compare import main as compare_main

    folder = next((report / "runs").iterdir())
    for kind in ("linear", "knn"):
        entry = record["reported_by_kind"][kind]
        assert entry["predictions"]["file"] == f"{record['run_id']}.{kind}.predictions.npz"
        arrays = np.load(folder / entry["predictions"]["file"], allow_pickle=False)
        top1 = 100.0 * float(np.mean(arrays["top5"][:, 0] == arrays["label"]))
        assert top1 == pytest.approx(entry["top1"]) == pytest.approx(entry["metrics"]["top1"])
        assert entry["predictions"]["head"] == entry["head"] and len(arrays["label"]) == 7
    capsys.readouterr()
    assert leaderboard_main(["--runs", str(report / "runs"), "--probe_head", "knn", "--ci",
                             "exact"]) == 0
    assert "Clopper-Pearson" in capsys.readouterr().out
    path = str(folder / f"{record['run_id']}.json")
    assert compare_main([path, path, "--probe_head", "linear"]) == 0
    out = capsys.readouterr().out
    linear = record["reported_by_kind"]["linear"]["top1"]
    assert re.search(rf"demo\s+7\s+{linear:.1f}\s+{linear:.1f}\s+\+0\.0", out), out
    assert compare_main([path, path, "--probe_head", "vjepa2"]) == 2
    assert "has no vjepa2 head (its kinds: ov, linear, knn)" in capsys.readouterr().err
    _the_run_page_has_each_kinds_classes(record, report, folder)


def _the_run_page_has_each_kinds_classes(record, report, folder):
    """The report's run page: a per-class table per kind, each from that kind's file."""
    from chromium import parse, table_rows
    from eval_encoder.report.site import main as report_main

    site = report / "site"
    assert report_main(["--runs", str(report / "runs"), "--out", str(site), "--resamples",
                        "20"]) == 0
    page = (site / "runs" / "demo" / f"{record['run_id']}.html").read_text(encoding="utf-8")
    assert "Per-class accuracy (ov heads)" in page and "Per-class accuracy (knn heads)" in page
    (table,) = parse(page).find_all("table", id="classes-linear")
    shown = {int(row[0].split()[0]): (int(row[1]), int(row[2])) for row in table_rows(table)}
    arrays = np.load(folder / record["reported_by_kind"]["linear"]["predictions"]["file"])
    hit = arrays["top5"][:, 0] == arrays["label"]
    assert shown == {int(c): (int((arrays["label"] == c).sum()),
                              int(hit[arrays["label"] == c].sum()))
                     for c in np.unique(arrays["label"])}


def test_knn_alone_trains_nothing(tiny, tmp_path, no_launcher):
    report = tmp_path / "knn"
    assert probe_main(_flags(tiny, report, "--probe_head", "knn", "--knn_k", "1", "12")) == 0
    record = _record(report)
    assert record["encoder_passes"]["train"] == 0 and record["encoder_passes"]["knn_train"] == 3
    assert [h["name"] for h in record["heads"]] == ["knn k=1", "knn k=12"]
    assert "reported_by_kind" not in record and record["probe_head"]["kind"] == "knn"


def test_knn_k_over_the_train_split_fails_before_training(tiny, tmp_path, no_launcher, caplog):
    assert probe_main(_flags(tiny, tmp_path / "big", "--probe_head", "knn", "--knn_k",
                             "13")) == 2
    assert "--knn_k 13: more neighbours than the 12 train clips" in caplog.text
    assert not (tmp_path / "big" / "runs").exists()  # a usage mistake: no record


def _torchrun(tiny, report, nproc):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "eval_encoder.attentive_probe",
           *_flags(tiny, report, "--probe_head", "knn", "--knn_k", "1", "5", "--device", "cpu")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return _record(report)


def test_knn_gives_the_same_numbers_on_one_and_two_processes(tiny, tmp_path):
    one, two = (_torchrun(tiny, tmp_path / f"w{n}", n) for n in (1, 2))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert [(h["name"], h["best_top1"], h["best_top5"]) for h in one["heads"]] == \
        [(h["name"], h["best_top1"], h["best_top5"]) for h in two["heads"]]
    files = [np.load(Path(r["_path"]).parent / r["predictions"]["file"]) if "_path" in r else
             np.load(next((tmp_path / w / "runs").rglob("*.npz"))) for r, w in
             ((one, "w1"), (two, "w2"))]
    for key in ("clip", "top5", "top5_prob", "all_top1"):
        np.testing.assert_array_equal(files[0][key], files[1][key])
    assert json.dumps(one["reported"]) == json.dumps(two["reported"])


def test_a_broken_run_of_pooled_kinds_resumes_to_the_same_numbers(tiny, tmp_path, no_launcher,
                                                                   monkeypatch):
    from eval_encoder.probe import training as training_mod

    flags = ["--probe_head", "linear", "knn", "--knn_k", "3", "--default_lr_list", "1e-3",
             "--checkpoint_every_min", "0", "--eval_freq", "1"]
    assert probe_main(_flags(tiny, tmp_path / "clean", *flags)) == 0
    monitor = training_mod.score_monitor

    def broken(trainer, loader, epoch):
        if epoch == 1:
            raise RuntimeError("killed")
        monitor(trainer, loader, epoch)

    monkeypatch.setattr(training_mod, "score_monitor", broken)
    assert probe_main(_flags(tiny, tmp_path / "resumed", *flags)) == 1
    monkeypatch.setattr(training_mod, "score_monitor", monitor)
    for path in (tmp_path / "resumed" / "runs").rglob("*.json"):
        path.unlink()  # the failed run's record
    assert probe_main(_flags(tiny, tmp_path / "resumed", *flags)) == 0
    clean, resumed = _record(tmp_path / "clean"), _record(tmp_path / "resumed")
    assert resumed["resumed_from"]["epoch"] == 1
    assert [(h["name"], h["history"]) for h in clean["heads"]] == \
        [(h["name"], h["history"]) for h in resumed["heads"]]
    def numbers(record):  # the files' names carry the run id
        return {k: {**v, "predictions": (v.get("predictions") or {}).get("clips")}
                for k, v in record["reported_by_kind"].items()}

    assert numbers(clean) == numbers(resumed)
