"""The slurm launcher on a real one-node SLURM cluster (tests/slurm_cluster.py, started here
unless CI started it already): a two-dataset demo suite runs as two jobs and is tabled; a job
told that its time limit is near requeues itself and resumes from its checkpoint; a cancelled
job gets a failed record that says so. Skipped, with the reason, where SLURM cannot start."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from eval_encoder.record import read_record
from eval_encoder.suite import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    try:  # started here, or the one CI (or another test session) started: a lease on it
        started = slurm_cluster.start(install=False)
    except slurm_cluster.Unavailable as exc:
        pytest.skip(f"no SLURM cluster here: {exc}")
    patch = pytest.MonkeyPatch()
    patch.setenv("SLURM_CONF", str(started.conf))
    patch.setenv("OMP_NUM_THREADS", "1")  # the jobs inherit the suite's environment
    yield started
    patch.undo()
    slurm_cluster.stop()  # the lease back; the last holder stops the daemons


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from eval_encoder.demo import generate, save_tiny_encoder

    out = tmp_path_factory.mktemp("slurm_demo")
    return generate(out), save_tiny_encoder(out)


def _recipe(folder: Path, demo, datasets, **extra) -> Path:
    data = {"model_family": "llava_vit_sampling", "model_name": "ov_encoder_tiny",
            "model_weight": str(demo[1]), "embedding_size": 128, "num_frames": 2,
            "batch_size": 2, "default_epoch": 1, "default_lr_list": [1e-3],
            "method_label": "Tiny OV", "arch_label": "ViT-T",
            "suite": {"datasets": list(datasets), "launcher": "slurm"}, **extra}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _args(recipe: Path, demo, report: Path, *more: str):
    return [str(recipe), "--data_root", str(demo[0]), "--save_report", str(report),
            "--device", "cpu", "--loader", "torch", "--dali_py_num_workers", "0",
            "--poll_s", "0.5", *more]


def _state(report: Path) -> dict:
    return json.loads((report / "suite" / "tiny" / "state.json").read_text())["datasets"]


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_two_dataset_suite_runs_as_two_slurm_jobs(cluster, demo, tmp_path, capsys):
    report = tmp_path / "report"
    args = _args(_recipe(tmp_path, demo, ("demo", "demo2")), demo, report)
    assert cli.main(args) == 0, capsys.readouterr().out[-3000:]
    out = capsys.readouterr().out
    records = {p.parent.name: read_record(str(p)) for p in (report / "runs").rglob("*.json")}
    assert sorted(records) == ["demo", "demo2"]
    assert all(r["status"] == "complete" and r["nodes"][0]["host"] for r in records.values())
    cells = " | ".join(f"{records[d]['reported']['top1']:.1f}" for d in ("demo", "demo2"))
    (row,) = [line for line in out.splitlines() if line.startswith("| Tiny OV | ViT-T | 224 | paper |")]
    assert row.endswith(f"{cells} |")
    # it ends with its records and the command that shows them
    assert out.splitlines()[-1] == (f"show it: python -m eval_encoder leaderboard --runs "
                                    f"{report / 'runs'}")
    state = _state(report)
    assert [state[d]["status"] for d in ("demo", "demo2")] == ["complete", "complete"]
    for name, entry in state.items():  # one job each, its log beside its batch script
        assert f"{name}: slurm job {entry['job']}, log {entry['log']}" in out
        assert entry["log"].endswith(f"{name}.{entry['job']}.log")
        assert "srun ended with status 0" in Path(entry["log"]).read_text()
        assert (report / "suite" / "tiny" / f"{name}.sbatch").is_file()
    assert cli.main(["status", str(tmp_path / "tiny.yaml"), "--save_report", str(report)]) == 0
    assert capsys.readouterr().out.count("complete") == 2
    assert cli.main(args) == 0  # a rerun submits nothing
    assert capsys.readouterr().out.count("already complete") == 2
    assert _state(report) == state


def test_a_job_near_its_time_limit_requeues_itself_and_resumes(cluster, demo, tmp_path, capsys):
    report = tmp_path / "report"
    recipe = _recipe(tmp_path, demo, ("demo",), default_epoch=10, checkpoint_every_min=0)
    assert cli.main(_args(recipe, demo, report, "--no_wait")) == 0
    assert "submitted: job" in capsys.readouterr().out
    job = _state(report)["demo"]["job"]
    _wait_for(lambda: any(not p.name.endswith("s0000000.pt")
                          for p in (report / "checkpoints").rglob("e0001-s*.pt")),
              120, "a checkpoint inside epoch 1")
    # what SLURM sends --signal=B:USR1@<s> before the time limit: the script requeues the job
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    collect = ["collect", str(recipe), "--save_report", str(report), "--wait", "--poll_s", "0.5"]
    assert cli.main(collect) == 0, capsys.readouterr().out[-3000:]
    (path,) = (report / "runs" / "demo").glob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["resumed_from"]["epoch"] >= 1
    log = Path(_state(report)["demo"]["log"]).read_text()
    assert f"SIGUSR1: requeueing job {job}" in log and f"job {job}, start 1" in log
    assert "| Tiny OV |" in capsys.readouterr().out


def test_a_cancelled_job_gets_a_failed_record_saying_why(cluster, demo, tmp_path, capsys):
    report = tmp_path / "report"
    recipe = _recipe(tmp_path, demo, ("demo2",), default_epoch=3)
    assert cli.main(_args(recipe, demo, report, "--no_wait")) == 0
    job = _state(report)["demo2"]["job"]
    capsys.readouterr()
    assert cli.main(_args(recipe, demo, report, "--no_wait")) == 0  # not submitted twice
    assert f"slurm job {job} of an earlier suite is running it: following it" in \
        capsys.readouterr().out and _state(report)["demo2"]["job"] == job
    subprocess.run(["scancel", job], check=True)
    capsys.readouterr()
    collect = ["collect", str(recipe), "--save_report", str(report), "--wait", "--poll_s", "0.5"]
    assert cli.main(collect) == 1
    out = capsys.readouterr().out
    (path,) = (report / "runs" / "demo2").glob("*.json")
    record = read_record(str(path))
    entry = _state(report)["demo2"]
    assert record["status"] == "failed" and entry["status"] == "failed"
    assert f"SLURM job {job} ended CANCELLED" in record["error"] and entry["log"] in record["error"]
    assert record["launch"]["state"] == "CANCELLED" and record["launch"]["log"] == entry["log"]
    assert "tiny: demo2 failed" in out


@pytest.mark.benchmark
def test_measure_slurm_against_a_local_suite(cluster, demo, tmp_path, capsys):
    """Submission to first record on this SLURM, and the SLURM path's overhead against a
    local suite of the same demo datasets (single runs; `pytest -m benchmark -s`)."""
    lines = []
    for datasets in (("demo",), ("demo", "demo2")):
        folder = tmp_path / "_".join(datasets)
        folder.mkdir()
        recipe = _recipe(folder, demo, datasets)
        took = {}
        for launcher in ("local", "slurm"):
            report = folder / launcher
            extra = ["--launcher", "local"] if launcher == "local" else ["--poll_s", "0.2"]
            start = time.monotonic()
            assert cli.main(_args(recipe, demo, report)[:-2] + extra) == 0
            took[launcher] = time.monotonic() - start
        capsys.readouterr()
        state = _state(folder / "slurm")
        submitted = min(e["started"] for e in state.values())
        first = min(os.path.getmtime(e["record"]) for e in state.values()) - submitted
        lines.append(f"{'+'.join(datasets)}: local suite {took['local']:.1f} s, slurm suite "
                     f"{took['slurm']:.1f} s (overhead {took['slurm'] - took['local']:+.1f} s), "
                     f"submission to first record {first:.1f} s")
    with capsys.disabled():
        print("\n" + "\n".join(lines), file=sys.stderr)
