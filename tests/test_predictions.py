"""Per-clip predictions beside every record, and the metrics computed from them."""
import hashlib
import json

import numpy as np
import pytest

from eval_encoder.probe.predictions import (Scored, average_precision, mean_ap, mean_class_acc,
                                            top1, top5)


def _one(labels, top, probs=None):
    top = np.asarray(top, dtype=np.int16)[:, None, :]
    return Scored(np.arange(len(labels)), np.asarray(labels), top,
                  np.zeros(top.shape, np.float32),
                  None if probs is None else np.asarray(probs, np.float16)[:, None, :])


def test_accuracy_and_mean_per_class_accuracy_by_hand():
    s = _one([0, 0, 0, 1], [[0, 1], [0, 1], [1, 0], [0, 1]])
    assert top1(s) == 50.0 and top5(s) == 100.0
    assert mean_class_acc(s) == pytest.approx(100 * (2 / 3 + 0 / 1) / 2)


def test_average_precision_on_a_hand_worked_example():
    # scores rank the clips 3, 0, 2, 1; positives are clips 0 and 2 -> precisions 1/2, 2/3
    scores = np.array([0.8, 0.1, 0.4, 0.9])
    positive = np.array([True, False, True, False])
    assert average_precision(scores, positive) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_average_precision_agrees_with_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    scores = np.random.default_rng(0).random(50)
    positive = np.random.default_rng(1).random(50) < 0.3
    assert average_precision(scores, positive) == pytest.approx(
        sklearn.average_precision_score(positive, scores))


def test_map_averages_the_classes_present():
    probs = [[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]]
    s = _one([0, 1, 1], [[0, 1], [1, 0], [0, 1]], probs)
    ap0 = average_precision(np.array([0.9, 0.2, 0.6]), np.array([True, False, False]))
    ap1 = average_precision(np.array([0.1, 0.8, 0.4]), np.array([False, True, True]))
    assert mean_ap(s) == pytest.approx(100 * (ap0 + ap1) / 2, rel=1e-3)  # float16 storage
    with pytest.raises(ValueError, match="probability"):
        mean_ap(_one([0], [[0, 1]]))


@pytest.mark.slow
def test_a_run_writes_its_per_clip_file_and_metrics(tmp_path, monkeypatch):
    from eval_encoder.demo import generate, probe_command, save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main
    from eval_encoder.record import read_record
    from eval_encoder.video.manifest import read_manifest

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "demo.yaml").write_text("name: demo\nnum_classes: 4\ntrain_manifest: train_new.csv\n"
                                     "val_manifest: val_new.csv\ndefault_epochs: 1\n"
                                     "default_batch_size: 4\nmetrics: [top1, top5, "
                                     "mean_class_acc, map]\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    data, weights = generate(tmp_path), save_tiny_encoder(tmp_path)
    report = tmp_path / "report"
    cmd = probe_command(data, weights, report, nproc=1, extra=["--default_epoch", "2"])
    assert probe_main(cmd[2:]) == 0
    (path,) = (report / "runs" / "demo").glob("*.json")
    record = read_record(str(path))
    info = record["predictions"]
    file = path.parent / info["file"]
    assert hashlib.sha256(file.read_bytes()).hexdigest() == info["sha256"]
    arrays = np.load(file, allow_pickle=False)
    entries = read_manifest(str(data / "demo" / "val_new.csv"), 4)
    assert list(arrays["id"]) == [e.path for e in entries] and info["clips"] == 7
    assert list(arrays["line"]) == [e.line for e in entries]
    assert arrays["top5"].shape == (7, 4) and arrays["prob"].shape == (7, 4)
    assert arrays["all_top1"].shape == (7, 2 * 2)  # 2 heads x 2 evaluation epochs
    hits = 100.0 * np.mean(arrays["top5"][:, 0] == arrays["label"])
    assert hits == pytest.approx(record["reported"]["top1"])
    assert set(record["metrics"]) == {"top1", "top5", "mean_class_acc", "map"}
    assert record["metrics"]["top1"] == pytest.approx(record["reported"]["top1"])
    assert np.allclose(arrays["top5_prob"].sum(axis=1), 1.0, atol=1e-3)  # 4 classes: all of them
    assert json.loads(path.read_text())["predictions"]["head"] == record["reported"]["head"]
