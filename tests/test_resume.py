"""Runs that survive: checkpoints (atomic, pruned, checked), exact resume after kill -9 of every
process of a 2-rank run, and the same numbers for 1, 2 and 3 processes at one global batch."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from eval_encoder import checkpoint as ckpt
from eval_encoder.demo import generate, probe_command, save_tiny_encoder
from eval_encoder.record import read_record


# --- checkpoint files ---------------------------------------------------------------------------

def _state(value: float) -> dict:
    return {"weights": torch.full((3,), value), "config_hash": "abc", "config": "{}",
            "world_size": 2}


def test_saves_are_atomic_pruned_and_read_newest_first(tmp_path):
    for epoch, step in [(0, 1), (0, 2), (1, 0)]:
        path, size = ckpt.save(tmp_path, ckpt.Position(epoch, step), _state(epoch + step))
        assert size > 0 and path.exists()
    assert [p.name for p in ckpt.find(tmp_path)] == ["e0001-s0000000.pt", "e0000-s0000002.pt"]
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary file left behind
    path, state = ckpt.newest_usable(tmp_path)
    assert path.name == "e0001-s0000000.pt" and torch.equal(state["weights"], torch.ones(3))


def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path, caplog):
    ckpt.save(tmp_path, ckpt.Position(0, 1), _state(1.0))
    newest, _ = ckpt.save(tmp_path, ckpt.Position(0, 2), _state(2.0))
    newest.write_bytes(newest.read_bytes()[:100])  # a write cut short by a crash
    path, state = ckpt.newest_usable(tmp_path)
    assert path.name == "e0000-s0000001.pt" and state["weights"][0] == 1.0
    assert "damaged" in caplog.text and newest.name in caplog.text


def test_another_configuration_or_world_size_is_refused_saying_what_differs(tmp_path):
    state = {"config_hash": "old", "config": json.dumps({"default_lr_list": [1e-4], "seed": 1}),
             "world_size": 2}
    with pytest.raises(ckpt.CheckpointError, match=r"default_lr_list: \[0.0001\] -> \[0.001\]"):
        ckpt.check_matches(state, tmp_path / "x.pt", "new",
                           {"default_lr_list": [1e-3], "seed": 1}, 2)
    with pytest.raises(ckpt.CheckpointError, match="written by 2 processes"):
        ckpt.check_matches(dict(state, config_hash="new"), tmp_path / "x.pt", "new", {}, 3)


def test_loading_refuses_anything_but_tensors_and_plain_data(tmp_path):
    path = tmp_path / "e0000-s0000001.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "thing": object()}, path)
    with pytest.raises(ckpt.CheckpointError, match="damaged or not a checkpoint"):
        ckpt.load(path)


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume_demo")
    return generate(out), save_tiny_encoder(out)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _command(demo, report: Path, nproc: int, port: int, *extra: str):
    data, weights = demo
    return probe_command(data, weights, report, nproc=nproc, port=port,
                         extra=["--protocol", "clean", "--batch_size", "2", *extra])


def _record(report: Path) -> dict:
    (path,) = sorted((report / "runs" / "demo").glob("*.json"))
    return read_record(str(path))


def _comparable(record: dict):
    return [{k: h[k] for k in ("name", "status", "history")} for h in record["heads"]], \
        record["reported"]


def _descendants(pid: int):
    """Every process started (directly or not) by ``pid``, from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


@pytest.mark.slow
def test_kill_9_mid_epoch_then_rerun_equals_an_uninterrupted_run(demo, tmp_path):
    extra = ["--default_epoch", "4", "--checkpoint_every_min", "0"]
    ref_report, report = tmp_path / "ref", tmp_path / "killed"
    ref = subprocess.run(_command(demo, ref_report, 2, None, *extra), env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    cmd = _command(demo, report, 2, None, *extra)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "killed.log", "w"))
    folder = report / "checkpoints" / "demo"
    deadline = time.time() + 300
    while not any(p.name.startswith("e0001-s") and not p.name.endswith("s0000000.pt")
                  for p in folder.rglob("e*.pt")):  # a checkpoint inside epoch 1
        assert time.time() < deadline and proc.poll() is None, \
            "no mid-epoch checkpoint: " + (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.01)
    victims = [proc.pid, *_descendants(proc.pid)]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert len(victims) >= 3  # torchrun and its two workers
    assert not (report / "runs").exists() or not list((report / "runs").rglob("*.json"))
    # a new rendezvous port: the killed run's may still be held by the kernel for a while
    again = subprocess.run(_command(demo, report, 2, None, *extra), env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed, uninterrupted = _record(report), _record(ref_report)
    assert resumed["resumed_from"]["epoch"] >= 1
    assert _comparable(resumed) == _comparable(uninterrupted)  # bit for bit on CPU
    assert resumed["samples"]["val"]["scored"] == resumed["samples"]["val"]["expected"]
    assert not list(folder.rglob("e*.pt"))  # a complete run clears its checkpoints


@pytest.mark.slow
def test_one_two_and_three_processes_give_the_same_histories(demo, tmp_path):
    """Global batch 12 = 6 micro-batches of 2: 1 process x 6, 2 x 3 or 3 x 2 per step; the
    last step of each epoch (16 clips) is short, so some processes get empty micro-batches."""
    records = []
    for nproc in (1, 2, 3):
        report = tmp_path / f"w{nproc}"
        out = subprocess.run(_command(demo, report, nproc, None, "--global_batch_size", "12",
                                      "--default_epoch", "2"),
                             env=_env(), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        records.append(_record(report))
    assert [r["batch"]["accumulation_steps"] for r in records] == [6, 3, 2]
    assert all(r["batch"]["global_batch"] == 12 for r in records)
    first = _comparable(records[0])
    assert all(_comparable(r) == first for r in records[1:])
    assert len({r["config_hash"] for r in records}) == 1
