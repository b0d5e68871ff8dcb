"""``suite --parallel N``: up to N datasets at once, each on its own share of the GPUs
(CUDA_VISIBLE_DEVICES) or CPUs (taskset, OMP_NUM_THREADS), each with its own log and record;
and for real, two demo datasets side by side on this machine's CPUs."""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from eval_encoder.config import ConfigError
from eval_encoder.launch import LocalLauncher, Topology
from eval_encoder.record import read_record
from eval_encoder.suite import cli, recipes, runner
from test_suite import FakeTrainer, write_recipe


class OverlapTrainer(FakeTrainer):
    """A fake trainer that takes a while and notes when each run starts and ends."""

    def __init__(self, **behaviour):
        super().__init__(**behaviour)
        self.spans = {}
        self.lock = threading.Lock()

    def __call__(self, cmd, log_path):
        start = time.monotonic()
        time.sleep(0.4)
        with self.lock:
            result = super().__call__(cmd, log_path)
            dataset = self.calls[-1][0]
        self.spans[dataset] = (start, time.monotonic())
        return result


def _run(tmp_path, parallel, nproc=1, extra=(), datasets=("ucf101", "hmdb51", "k400"), **kw):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=datasets)))
    fake = OverlapTrainer(**kw)
    topology = Topology(nproc)
    launcher = LocalLauncher({"parallel": parallel}, topology, runner=fake)
    outcomes = runner.run_suite(recipe, "/data", str(tmp_path / "r"), extra=list(extra),
                               launcher=launcher, topology=topology)
    return outcomes, fake


def test_parallel_runs_overlap_each_on_its_share_of_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    outcomes, fake = _run(tmp_path, 2, extra=["--device", "cpu"], hmdb51="crash")
    assert [(o.dataset, o.status) for o in outcomes] == [
        ("ucf101", "complete"), ("hmdb51", "failed"), ("k400", "complete")]
    first, second = fake.spans["ucf101"], fake.spans["hmdb51"]
    assert second[0] < first[1] and first[0] < second[1]  # at the same time
    prefixes = {d: cmd[:cmd.index(sys.executable)] for d, cmd in fake.calls}
    assert prefixes["ucf101"] == ["/usr/bin/taskset", "-c", "0,1", "env", "OMP_NUM_THREADS=2"]
    assert prefixes["hmdb51"] == ["/usr/bin/taskset", "-c", "2,3", "env", "OMP_NUM_THREADS=2"]
    assert prefixes["k400"] in prefixes.values()  # a share freed by an ended run
    logs = sorted(p.name for p in (tmp_path / "r" / "suite" / "tiny").glob("*.log"))
    assert logs == ["hmdb51.log", "k400.log", "ucf101.log"]  # kept apart
    crashed = read_record(str(outcomes[1].record_path))
    assert crashed["dataset"]["name"] == "hmdb51" and "exited with status 1" in crashed["error"]


def test_parallel_runs_share_the_gpus_by_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    outcomes, fake = _run(tmp_path, 2, nproc=2, datasets=("ucf101", "hmdb51"))
    assert [o.status for o in outcomes] == ["complete", "complete"]
    envs = sorted(cmd[1] for _, cmd in fake.calls)
    assert envs == ["CUDA_VISIBLE_DEVICES=0,1", "CUDA_VISIBLE_DEVICES=2,3"]
    assert all("--nproc_per_node=2" in cmd for _, cmd in fake.calls)
    with pytest.raises(ConfigError, match="needs 6 GPUs; 4 are visible"):
        _run(tmp_path, 3, nproc=2)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset (util-linux) is not installed")
def test_two_demo_datasets_run_side_by_side(tmp_path, capsys, monkeypatch):
    from eval_encoder.demo import generate, save_tiny_encoder

    data, weights = generate(tmp_path / "demo"), save_tiny_encoder(tmp_path / "demo")
    recipe = write_recipe(tmp_path, datasets=("demo", "demo2"), model_weight=str(weights),
                          embedding_size=128)
    report = tmp_path / "report"
    args = [str(recipe), "--data_root", str(data), "--save_report", str(report), "--device",
            "cpu", "--loader", "torch", "--dali_py_num_workers", "0", "--parallel", "2"]
    assert cli.main(args) == 0, capsys.readouterr().out[-3000:]
    out = capsys.readouterr().out
    assert out.count("complete in") == 2 and "| Tiny OV | ViT-T | 224 |" in out
    for name in ("demo", "demo2"):
        (path,) = (report / "runs" / name).glob("*.json")
        assert read_record(str(path))["status"] == "complete"
        assert f"run record: {path}" in (report / "suite" / "tiny" / f"{name}.log").read_text()
    assert "loaded OneVision encoder" not in out  # the trainers' output went to their logs


def test_parallel_is_a_local_setting_checked_early(tmp_path):
    with pytest.raises(ConfigError, match="--parallel must be >= 1"):
        LocalLauncher({"parallel": 0}, Topology())
    assert LocalLauncher({"parallel": 3}, Topology()).capacity == 3


def test_a_stopped_parallel_suite_stops_every_trainer(tmp_path):
    """Ctrl-C (or SIGTERM) while two runs go on: both trainers' groups are stopped."""
    import signal
    import subprocess
    import sys
    import textwrap

    pids = tmp_path / "pids"
    pids.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from eval_encoder.launch import LocalLauncher, Topology
        from eval_encoder.launch.process import stream_process
        from eval_encoder.suite.recipes import load_recipe
        from eval_encoder.suite.runner import run_suite
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_suite import write_recipe
        recipe = load_recipe(str(write_recipe(Path({str(tmp_path)!r}), datasets=("ucf101", "hmdb51"))))
        child = ("import os, sys, time; from pathlib import Path; "
                 "Path({str(pids)!r}, str(os.getpid())).touch(); time.sleep(300)")
        runner = lambda cmd, log: stream_process([sys.executable, "-c", child], log, echo=False)
        launcher = LocalLauncher({{"parallel": 2}}, Topology(), runner=runner)
        run_suite(recipe, "/data", {str(tmp_path / "r")!r}, launcher=launcher)
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, str(driver)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2:
        assert time.monotonic() < end and proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    children = [int(p.name) for p in pids.iterdir()]
    os.kill(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0 and "interrupted: its trainers were stopped" in out, out[-3000:]
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")
                and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
