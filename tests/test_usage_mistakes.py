"""Usage mistakes leave nothing behind: no --data_root, a data root or manifest that is not
there, no weights or weights that are not there stop the probe with exit 2 and a message
naming the path and the way out, before any record, cache or clip; a suite checks the same
for every dataset before it launches anything. A real failure (a damaged weight file) still
writes a failed record."""
from __future__ import annotations

import json
import shutil

import pytest

from eval_encoder.probe.run import main as probe_main
from eval_encoder.suite import cli as suite_cli
from test_suite import write_recipe


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from eval_encoder.demo import generate, save_tiny_encoder

    folder = tmp_path_factory.mktemp("usage")
    return generate(folder), save_tiny_encoder(folder)


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _probe(tmp_path, *argv, data=None, weights=None):
    """Run the probe in this process; (exit status, stderr, what it left under the report)."""
    report = tmp_path / "report"
    base = ["--dataset", "demo", "--model_family", "sampling", "--model_name", "ov_encoder_tiny",
            "--num_frames", "2", "--default_epoch", "1", "--default_lr_list", "0.001",
            "--save_report", str(report), "--loader", "torch", "--dali_py_num_workers", "0"]
    base += ["--data_root", str(data)] if data is not None else []
    base += ["--model_weight", str(weights)] if weights is not None else []
    return probe_main([*base, *argv]), sorted(str(p.relative_to(report))
                                              for p in report.rglob("*")) if report.exists() else []


@pytest.mark.parametrize("case, expected", [
    ("no data root", "--data_root is required (the folder holding demo/train_new.csv)"),
    ("data root absent", "no such folder (give the folder holding demo/train_new.csv)"),
    ("manifest absent", "manifest not found: "),
    ("no weights", "no encoder weights given (--model_weight 'NULL')"),
    ("weight file absent", "no such file or folder"),
    ("folder without weights", "no weight file; expected one of model.safetensors"),
    ("baseline weight absent", "--model_weight '/nowhere/vit.safetensors': no such file"),
])
def test_a_usage_mistake_exits_2_and_writes_nothing(case, expected, demo, tmp_path, capsys):
    data, weights = demo
    kw = {"data": data, "weights": weights}
    argv = []
    if case == "no data root":
        kw["data"] = None
    elif case == "data root absent":
        kw["data"] = tmp_path / "no_such_root"
    elif case == "manifest absent":
        argv = ["--val_data_csv_path", "val_typo.csv"]
    elif case == "no weights":
        kw["weights"] = None
    elif case == "weight file absent":
        kw["weights"] = tmp_path / "missing.safetensors"
    elif case == "folder without weights":
        (tmp_path / "empty").mkdir()
        kw["weights"] = tmp_path / "empty"
    else:
        argv = ["--model_family", "siglip2", "--model_name", "test_vit"]
        kw["weights"] = "/nowhere/vit.safetensors"
    code, left = _probe(tmp_path, *argv, **kw)
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err[-2000:]
    assert left == []  # no record, no preflight cache, no checkpoint folder
    assert "preflight" not in err and "run failed" not in err  # no clip was opened


@pytest.mark.parametrize("case, argv, expected", [
    ("batch over the split", ["--protocol", "paper", "--batch_size", "32"],
     "floor(16/32) = 0 full steps"),
    ("a draw that scores nothing", ["--val_sampling", "published"],
     "7 validation clips over W=8 ranks"),
    ("a manifest line that cannot be read", ["--val_data_csv_path", "bad.csv"],
     "bad.csv:2: expected 'path,label'"),
])
def test_a_mistake_the_manifests_show_exits_2_before_any_clip_or_record(case, argv, expected,
                                                                       demo, tmp_path, capsys):
    """Found from the manifests' lines, before the encoder loads and before any clip is
    opened: said with the way out, and no record, checkpoint or preflight cache is left."""
    data, weights = demo
    lines = (data / "demo" / "val_new.csv").read_text().splitlines()
    (data / "demo" / "bad.csv").write_text("\n".join([lines[0], "only_a_path.mp4"]) + "\n")
    code, left = _probe(tmp_path, *argv, data=data, weights=weights)
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err[-2000:]
    assert left == [] and "run failed" not in err


def test_a_missing_manifest_names_the_way_out(demo, tmp_path, capsys):
    data, weights = demo
    code, _ = _probe(tmp_path, "--train_data_csv_path", "train_typo.csv", data=data,
                     weights=weights)
    err = capsys.readouterr().err
    assert code == 2 and f"{data}/demo/train_typo.csv" in err
    assert "python -m eval_encoder prepare demo" in err and "--train_data_csv_path" in err


def test_a_damaged_weight_file_is_a_run_failure_with_its_record(demo, tmp_path, capsys):
    data, weights = demo
    broken = tmp_path / "broken"
    shutil.copytree(weights, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    code, left = _probe(tmp_path, data=data, weights=broken)
    assert code == 1 and "run failed" in capsys.readouterr().err
    (record,) = [p for p in left if p.startswith("runs/demo/") and p.endswith(".json")]
    data = json.loads((tmp_path / "report" / record).read_text())
    assert data["status"] == "failed" and "model.safetensors" in data["error"]


def _suite(tmp_path, capsys, data, weights, *extra):
    recipe = write_recipe(tmp_path, datasets=("demo", "demo2"), model_weight=str(weights))
    report = tmp_path / "report"
    code = suite_cli.main([str(recipe), "--data_root", str(data), "--save_report", str(report),
                           "--device", "cpu", *extra])
    return code, capsys.readouterr(), report


def test_a_suite_with_a_data_root_that_is_not_there_starts_nothing(demo, tmp_path, capsys):
    _, weights = demo
    code, io, report = _suite(tmp_path, capsys, tmp_path / "no_such_root", weights)
    assert code == 2 and "no_such_root: no such folder; nothing was started" in io.err
    assert not report.exists()


def test_a_suite_names_each_dataset_that_cannot_run_and_those_that_can(demo, tmp_path, capsys):
    data, weights = demo
    partial = tmp_path / "partial"
    shutil.copytree(data / "demo", partial / "demo")  # demo2 was never prepared
    code, io, report = _suite(tmp_path, capsys, partial, weights)
    assert code == 2 and "nothing was started" in io.err
    assert f"  demo2: manifest not found: {partial}/demo2/train_new.csv" in io.err
    assert "the datasets that can run: --datasets demo" in io.err
    assert not report.exists()
    code, io, report = _suite(tmp_path, capsys, data, tmp_path / "no_weights")
    assert code == 2 and "  demo, demo2: --model_weight" in io.err  # one line for both
    assert "no dataset can run" in io.err and not report.exists()
