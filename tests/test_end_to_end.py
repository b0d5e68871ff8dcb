"""End to end: the upstream command line on the generated demo data, with torchrun and gloo."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from eval_encoder.demo import generate, probe_command, save_tiny_encoder
from eval_encoder.probe.run import main as probe_main
from eval_encoder.record import read_record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return generate(out), save_tiny_encoder(out)


def _records(report: Path):
    return [read_record(p) for p in sorted((report / "runs").rglob("*.json"))]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def test_torchrun_two_ranks_score_odd_val_set_once(demo, tmp_path):
    data, weights = demo
    report = tmp_path / "report"
    cmd = probe_command(data, weights, report, nproc=2,
                        extra=["--default_lr_list", "0.001", "0.0003", "0.0001", "--default_epoch", "1"])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = _records(report)
    assert record["status"] == "complete" and record["world_size"] == 2
    val = record["samples"]["val"]
    assert val["expected"] == 7 and val["scored"] == 7 and val["skipped"] == []
    # three learning rates, three heads, and still one encoder pass per batch
    assert len(record["heads"]) == 3
    assert record["encoder_passes"]["train"] == record["batches"]["train"]
    assert record["encoder_passes"]["val"] == record["batches"]["val"]
    assert record["reported"]["chosen_on"] == "val"
    assert 0 <= record["reported"]["top1"] <= 100
    assert record["config"]["model_family"] == "llava_vit_sampling"
    assert record["encoder"]["family"] == "sampling"
    assert len(record["dataset"]["val_manifest_sha256"]) == 64
    _check_record_describes_encoder_and_compute(record, weights, world_size=2)
    line = (report / "report_attentive_probe_ov_encoder_tiny.txt").read_text().strip()
    assert line == f"demo {record['reported']['top1']}"


def _check_record_describes_encoder_and_compute(record, weights: Path, world_size: int):
    """Issue 13's record fixes and the compute block (issue 14), on a real run."""
    import hashlib

    from eval_encoder.compute import ViTShape

    assert "sources" in record and "sources" not in record["config"]
    assert "codec" not in record["config"]  # a sampling run reads no codec selection
    assert record["arch"] == "ViT-2x128/14"  # the tiny encoder's shape; no arch_label given
    enc = record["encoder"]
    weight_file = Path(weights) / "model.safetensors"
    digest = hashlib.sha256(weight_file.read_bytes()).hexdigest()
    assert enc["weights_path"] == str(Path(weights).resolve())
    assert enc["weight_files"] == [{"name": "model.safetensors",
                                    "bytes": weight_file.stat().st_size, "sha256": digest}]
    assert enc["weights_sha256"] == hashlib.sha256(
        f"model.safetensors {digest}\n".encode()).hexdigest()
    assert 400_000 < enc["parameters"] < 600_000
    comp = record["compute"]
    frames, tokens = record["frames"], record["token_budget"]
    assert comp["tokens_per_clip"] == tokens == comp["encoder"]["tokens_encoded"]
    assert comp["encoder"]["flops_method"] == "analytic"
    assert comp["encoder"]["gflops_per_clip"] > sum(
        v for k, v in comp["encoder"]["gflops_by_part"].items() if k != "attention")
    assert frames * 256 == tokens and ViTShape.plain(2, 128, 256, 14).arch == record["arch"]
    train, val = comp["train"], comp["val"]
    assert train["clips"] == record["samples"]["train"]["expected"] - (
        record["samples"]["train"]["expected"] % record["batch"]["global_batch"]
        if record["batch"]["drop_last"] else 0)
    assert val["clips"] == record["samples"]["val"]["scored"]
    for split in (train, val):
        assert split["clips_per_s"] > 0 and 0 <= split["loader_wait_share"] <= 1
    assert comp["memory"]["host_peak_rss_mib"] > 100
    assert comp["memory"]["device_peak_allocated_mib"] is None  # CPU run
    assert record["world_size"] == world_size


def _copy_demo(data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(data / "demo", root / "demo")
    return root


def _run_single(root: Path, weights: Path, report: Path, *extra: str) -> int:
    cmd = probe_command(root, weights, report, nproc=1,
                        extra=["--default_epoch", "1", "--default_lr_list", "0.001", *extra])
    return probe_main(cmd[2:])  # in process: [python, script, flags...]


def test_broken_clip_is_skipped_and_listed_never_replaced(demo, tmp_path, monkeypatch):
    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = _copy_demo(data, tmp_path)
    first_val = (root / "demo" / "val_new.csv").read_text().splitlines()[0].split(",")[0]
    (root / "demo" / first_val).write_bytes(b"broken" * 100)
    report = tmp_path / "report"
    assert _run_single(root, weights, report, "--max_skip_fraction", "0.2") == 0
    (record,) = _records(report)
    val = record["samples"]["val"]
    assert val["expected"] == 7 and val["scored"] == 6
    assert len(val["skipped"]) == 1 and val["skipped"][0]["clip"] == 0
    assert first_val in val["skipped"][0]["path"] and val["skipped"][0]["reason"]


def test_too_many_broken_clips_fail_with_a_record(demo, tmp_path, monkeypatch):
    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = _copy_demo(data, tmp_path)
    first_val = (root / "demo" / "val_new.csv").read_text().splitlines()[0].split(",")[0]
    (root / "demo" / first_val).unlink()
    report = tmp_path / "report"
    assert _run_single(root, weights, report) == 1  # default limit 1% of 7 clips
    (record,) = _records(report)
    assert record["status"] == "failed"
    assert "could not be read" in record["error"] and "file not found" in record["error"]


def test_bad_manifest_line_fails_before_training(demo, tmp_path, monkeypatch, capsys):
    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = _copy_demo(data, tmp_path)
    manifest = root / "demo" / "train_new.csv"
    manifest.write_text(manifest.read_text() + "videos/x.mp4,17\n")
    report = tmp_path / "report"
    assert _run_single(root, weights, report) == 2  # a usage mistake: said, nothing written
    assert f"{manifest}:17: label 17 outside the dataset's 4 classes" in capsys.readouterr().err
    assert not (report / "runs").exists()


def test_unknown_family_fails_with_suggestion_before_any_record(demo, tmp_path, monkeypatch,
                                                                capsys):
    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    report = tmp_path / "report"
    assert _run_single(data, weights, report, "--model_family", "llava_vit_sampler") == 2
    assert not _records(report)  # no record (and no leaderboard column) for a typo
    err = capsys.readouterr().err
    assert "Did you mean" in err and "llava_vit_sampling" in err


def test_user_encoder_from_readme_runs_end_to_end(demo, tmp_path, monkeypatch):
    data, _ = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    example = Path(__file__).resolve().parents[1] / "examples" / "my_encoders.py"
    report = tmp_path / "report"
    code = probe_main([
        "--encoder_module", str(example), "--model_family", "my_patch_encoder", "--model_name", "tiny",
        "--model_weight", "random", "--dataset", "demo", "--data_root", str(data), "--num_frames", "2",
        "--default_epoch", "1", "--batch_size", "4", "--dali_py_num_workers", "0",
        "--input_size", "64",  # the example's own size (the demo card's is 224)
        "--save_report", str(report)])
    assert code == 0
    (record,) = _records(report)
    assert record["encoder"]["family"] == "my_patch_encoder"
    assert record["samples"]["val"]["scored"] == 7
    assert record["encoder"]["spec"]["input_size"] == 64


def test_baseline_family_runs_through_the_same_trainer(demo, tmp_path, monkeypatch):
    data, _ = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    report = tmp_path / "report"
    code = probe_main([
        "--model_family", "siglip2", "--model_name", "test_vit", "--model_weight", "random",
        "--input_size", "64", "--num_frames", "2", "--dataset", "demo", "--data_root", str(data),
        "--default_epoch", "1", "--batch_size", "4", "--dali_py_num_workers", "0",
        "--save_report", str(report)])
    assert code == 0
    (record,) = _records(report)
    spec = record["encoder"]["spec"]
    assert record["encoder"]["family"] == "siglip2" and spec["mean"] == [0.5, 0.5, 0.5]
    assert "input_size" in spec["overrides"]
    assert record["samples"]["val"]["scored"] == 7


def test_one_validation_pass_at_the_end_gives_the_per_epoch_numbers(demo, tmp_path, monkeypatch):
    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    records = {}
    for mode in ("epoch", "end"):
        report = tmp_path / mode
        assert _run_single(data, weights, report, "--eval_mode", mode, "--default_epoch", "3",
                           "--default_lr_list", "0.001", "0.0001") == 0
        (records[mode],) = _records(report)
    by_mode = {m: [[(e["epoch"], e["top1"], e["top5"]) for e in h["history"]] for h in r["heads"]]
               for m, r in records.items()}
    assert by_mode["end"] == by_mode["epoch"]
    # the validation clips are encoded once instead of once per evaluated epoch
    val_batches = records["end"]["batches"]["val"]
    assert records["end"]["encoder_passes"]["val"] == val_batches
    assert records["epoch"]["encoder_passes"]["val"] == 3 * val_batches
    assert records["end"]["config_hash"] == records["epoch"]["config_hash"]


@pytest.mark.parametrize("flag", ["--print_freq", "--eval_freq", "--num_frames"])
def test_zero_counts_are_refused_before_training(demo, tmp_path, monkeypatch, capsys, flag):
    data, weights = demo
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    report = tmp_path / "report"
    with pytest.raises(SystemExit) as exit_:  # refused while parsing: no record, no encoder
        _run_single(data, weights, report, flag, "0")
    assert exit_.value.code == 2 and not _records(report)
    assert f"argument {flag}: must be >= 1, got 0" in capsys.readouterr().err


def test_no_arguments_prints_usage_and_a_misspelt_dataset_writes_nothing(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert probe_main([]) == 2
    assert "usage:" in capsys.readouterr().out
    assert probe_main(["--dataset", "ssv22", "--data_root", str(tmp_path)]) == 2
    assert not any(tmp_path.rglob("*.json"))  # no record under runs/ssv22/
