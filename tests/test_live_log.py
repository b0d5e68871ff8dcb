"""``--report_to tensorboard wandb``: the live logs of a demo run hold every head's loss and lr
at each optimiser step, the validation scores of every evaluation, the epochs' clips/s and
the record's summary, read back with TensorBoard's and W&B's own formats; logging changes
no number and not the config hash; a missing package stops the run before it writes
anything; a resumed run continues the same logs."""
from __future__ import annotations

import glob
import json
import logging
import struct
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from eval_encoder import record as rec
from eval_encoder.demo import generate_dataset, save_tiny_encoder
from eval_encoder.livelog import tag_name
from eval_encoder.probe import live as live_mod
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.run import main as probe_main
from eval_encoder.record import read_record

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from wandb.proto import wandb_internal_pb2 as wandb_pb  # noqa: E402

EPOCHS, STEPS = 2, 3  # 12 training clips in batches of 4 (paper: full batches only)
HEADS = ["lr_0.001_wd_0", "lr_0.0001_wd_0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("live_log")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """W&B offline, its own folders in the test's, one process."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _flags(tiny, report, *extra):
    data, weights = tiny
    return ["--model_family", "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
            str(weights), "--dataset", "demo", "--data_root", str(data), "--num_frames", "2",
            "--batch_size", "4", "--dali_py_num_workers", "0", "--monitor_clips", "0",
            "--default_epoch", str(EPOCHS), "--default_lr_list", "1e-3", "1e-4",
            "--save_report", str(report), *extra]


def _records(report):
    return [read_record(str(p)) for p in sorted((report / "runs").rglob("*.json"))]


def tensorboard_scalars(folder) -> dict:
    """tag -> [(step, value)] as TensorBoard shows them (orphaned steps purged)."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def wandb_records(path):
    """The records of a ``.wandb`` file (W&B's leveldb-style log of protobuf records)."""
    data, pos, part = Path(path).read_bytes(), 7, b""  # 7: the ':W&B' header
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, size, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # the zero padding at a block's end
            pos += left
            continue
        part += data[pos + 7:pos + 7 + size]
        pos += 7 + size
        if kind in (1, 4):  # a full record, or the last piece of one
            yield wandb_pb.Record.FromString(part)
            part = b""


def wandb_history(run_folder) -> dict:
    """key -> [(global_step, value)] of the run's history, and its summary updates."""
    (path,) = glob.glob(str(Path(run_folder) / "run-*.wandb"))
    history, summary = defaultdict(list), {}
    for r in wandb_records(path):
        if r.WhichOneof("record_type") == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                   for i in r.history.item}
            for key, value in row.items():
                if not key.startswith("_") and key != "global_step":
                    history[key].append((row["global_step"], value))
        elif r.WhichOneof("record_type") == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json)
                            for u in r.summary.update})
    return history, summary


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """The same run without and with live logs."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("runs")
    mp.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        mp.setenv(var, str(base / "wandb-home"))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        mp.delenv(var, raising=False)
    assert probe_main(_flags(tiny, base / "plain")) == 0
    assert probe_main(_flags(tiny, base / "live", "--report_to", "tensorboard", "wandb")) == 0
    mp.undo()
    (plain,), (live,) = _records(base / "plain"), _records(base / "live")
    return plain, live, base / "live"


def test_logging_changes_no_number_and_not_the_config_hash(runs, tiny):
    plain, live, _ = runs
    assert live["config_hash"] == plain["config_hash"]
    assert [h["history"] for h in live["heads"]] == [h["history"] for h in plain["heads"]]
    assert live["reported"] == plain["reported"]
    assert "live_logs" not in plain and set(live["live_logs"]) == {"tensorboard", "wandb"}
    hashes = {rec.config_hash(parse_config(_flags(tiny, Path("r"), *extra)).to_dict())
              for extra in ([], ["--report_to", "wandb"], ["--report_to", "none"],
                            ["--report_to", "tensorboard", "wandb", "--wandb_project", "x"])}
    assert len(hashes) == 1


def _expected(record):
    """tag -> the values the record says the run measured, by global step."""
    want = {}
    for head in record["heads"]:
        for m in ("top1", "top5"):
            want[f"val/{m}/{tag_name(head['name'])}"] = [
                ((e["epoch"] + 1) * STEPS, e[m]) for e in head["history"]]
    return want


def test_tensorboard_holds_every_step_evaluation_and_epoch(runs):
    _, live, report = runs
    folder = Path(live["live_logs"]["tensorboard"])
    assert folder == report / "logs" / "demo" / live["run_id"] / "tensorboard"
    scalars = tensorboard_scalars(folder)
    steps = list(range(1, EPOCHS * STEPS + 1))
    assert live["batches"]["train"] == len(steps)  # one micro-batch per step, one process
    for head in HEADS:
        assert [s for s, _ in scalars[f"train/loss/{head}"]] == steps
        assert [s for s, _ in scalars[f"train/lr/{head}"]] == steps
    assert scalars["train/lr/lr_0.001_wd_0"][0][1] == pytest.approx(1e-3)
    losses = [v for _, v in scalars["train/loss/lr_0.001_wd_0"]]
    epoch_mean = sum(losses[:STEPS]) / STEPS  # full batches: the mean of the step means
    assert epoch_mean == pytest.approx(live["heads"][0]["history"][0]["train_loss"], rel=1e-5)
    for tag, values in _expected(live).items():
        assert [s for s, _ in scalars[tag]] == [s for s, _ in values]
        assert [v for _, v in scalars[tag]] == pytest.approx([v for _, v in values], rel=1e-6)
    for tag in ("train/clips_per_s", "train/loader_wait_share"):
        assert [s for s, _ in scalars[tag]] == [STEPS * (e + 1) for e in range(EPOCHS)]
    assert 0 <= scalars["train/loader_wait_share"][0][1] <= 1
    assert scalars["reported/top1"] == [(len(steps), pytest.approx(live["reported"]["top1"]))]


def test_wandb_offline_run_holds_the_same_and_the_summary(runs):
    _, live, report = runs
    folder = Path(live["live_logs"]["wandb"])
    assert folder.parent == report / "logs" / "demo" / live["run_id"] / "wandb"
    assert folder.name.startswith("offline-run-") and folder.name.endswith(live["run_id"])
    history, summary = wandb_history(folder)
    steps = list(range(1, EPOCHS * STEPS + 1))
    for head in HEADS:
        assert [s for s, _ in history[f"train/loss/{head}"]] == steps
        assert [s for s, _ in history[f"train/lr/{head}"]] == steps
    for tag, values in _expected(live).items():
        assert history[tag] == [(s, pytest.approx(v)) for s, v in values]
    assert [s for s, _ in history["train/clips_per_s"]] == [STEPS, 2 * STEPS]
    assert summary["reported/top1"] == pytest.approx(live["reported"]["top1"])
    assert summary["reported/head"] == live["reported"]["head"]
    assert summary["reported/epoch"] == live["reported"]["epoch"]
    assert summary["wall_time_s"] == live["wall_time_s"]


def test_a_missing_package_stops_the_run_before_it_writes_anything(tiny, tmp_path,
                                                                   monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    report = tmp_path / "report"
    with caplog.at_level(logging.ERROR):
        assert probe_main(_flags(tiny, report, "--report_to", "tensorboard", "wandb")) == 2
    assert "pip install 'eval-encoder[wandb]'" in caplog.text
    assert not report.exists() or not any(report.rglob("*"))


def test_an_unknown_backend_is_refused_with_a_suggestion(tiny, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert probe_main(_flags(tiny, tmp_path / "r", "--report_to", "tensorbord")) == 2
    assert "did you mean" in caplog.text.lower() and "tensorboard" in caplog.text


def test_a_resumed_run_continues_the_same_logs(tiny, tmp_path, monkeypatch):
    """A crash after step 4 (its checkpoint not saved: the newest is epoch 0's end); the
    rerun logs steps 4-6 into the same folders; TensorBoard shows each step once."""
    step = live_mod.RunLog.step

    def crashing(self, epoch, s):
        step(self, epoch, s)
        if self.global_step(epoch, s) == 4:
            raise RuntimeError("crash after step 4")

    report = tmp_path / "report"
    flags = _flags(tiny, report, "--report_to", "tensorboard", "wandb",
                   "--checkpoint_every_min", "1000")
    monkeypatch.setattr(live_mod.RunLog, "step", crashing)
    assert probe_main(flags) == 1
    monkeypatch.setattr(live_mod.RunLog, "step", step)
    assert probe_main(flags) == 0
    failed, done = sorted(_records(report), key=lambda r: r["status"] == "complete")
    assert done["resumed_from"]["epoch"] == 1 and done["resumed_from"]["step"] == 0
    assert done["live_logs"]["tensorboard"] == failed["live_logs"]["tensorboard"]
    assert failed["run_id"] in done["live_logs"]["tensorboard"]
    scalars = tensorboard_scalars(done["live_logs"]["tensorboard"])
    for head in HEADS:
        assert [s for s, _ in scalars[f"train/loss/{head}"]] == list(range(1, 7))
    runs = sorted(glob.glob(str(Path(done["live_logs"]["wandb"]).parent / "offline-run-*")))
    assert len(runs) == 2 and done["live_logs"]["wandb"] in runs
    first, _ = wandb_history(failed["live_logs"]["wandb"])
    second, _ = wandb_history(done["live_logs"]["wandb"])
    assert [s for s, _ in first[f"train/loss/{HEADS[0]}"]] == [1, 2, 3, 4]
    assert [s for s, _ in second[f"train/loss/{HEADS[0]}"]] == [4, 5, 6]


def test_the_demo_says_a_missing_package_once_before_it_generates_or_launches(tmp_path,
                                                                              monkeypatch, capsys):
    """The demo checks --report_to itself: one line and exit 2, not a torchrun traceback."""
    from eval_encoder.demo import main as demo_main

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(SystemExit) as exc:
        demo_main(["--out", str(tmp_path / "demo"), "--nproc_per_node", "2", "--report_to",
                   "wandb"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("pip install 'eval-encoder[wandb]'") == 1, err
    assert not (tmp_path / "demo").exists()
