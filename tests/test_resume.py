"""Runs that survive: checkpoints (atomic, pruned, checked), exact resume after kill -9 of every
process of a 2-rank run, and the same numbers for 1, 2 and 3 processes at one global batch."""
import json
import logging
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
    assert [p.name for p in ckpt.find(tmp_path)] == ["e0000-end.pt", "e0000-s0000002.pt"]
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary file left behind
    path, state = ckpt.newest_usable(tmp_path)
    assert path.name == "e0000-end.pt" and torch.equal(state["weights"], torch.ones(3))


def test_names_count_epochs_from_0_like_the_log_and_read_the_old_names():
    """``e0003-s0000120.pt``: 120 steps into epoch 3 (the log's "epoch 3 (4 of 10)");
    ``e0003-end.pt``: epoch 3 done; before version 2 that was ``e0004-s0000000.pt``."""
    assert ckpt.Position(3, 120).file_name() == "e0003-s0000120.pt"
    assert ckpt.Position(4, 0).file_name() == "e0003-end.pt"
    for name, position in [("e0003-s0000120.pt", (3, 120)), ("e0003-end.pt", (4, 0)),
                           ("e0004-s0000000.pt", (4, 0))]:
        assert ckpt.Position.of_name(name) == ckpt.Position(*position)
    assert ckpt.Position.of_name("copies-e0003.pt") is None


class _Env:
    is_main, world_size, rank, device = True, 1, 0, torch.device("cpu")


def _run_state(copies) -> dict:
    """A run state with ``copies`` = [(epoch, head, value)] kept head copies."""
    return {"heads": [{"w": torch.zeros(1000)}], "per_rank": [{}],
            "snapshots": [{"epoch": e, "head": i, "state": {"w": torch.full((1000,), float(v))}}
                          for e, i, v in copies]}


def test_head_copies_are_written_once_beside_checkpoints_of_one_size(tmp_path, caplog):
    """``--eval_mode end`` keeps a copy of every head at every evaluation epoch: each epoch's
    copies go to one file, written once; the checkpoints name them and keep one size."""
    caplog.set_level(logging.INFO, logger="eval_encoder.checkpoint")
    folder = tmp_path / "checkpoints" / "demo" / "abc"
    saver = ckpt.Checkpointer(folder, 10, "abc", {}, _Env(), root=tmp_path)
    sizes, copies = [], []
    for epoch in range(4):
        copies += [(epoch, 0, epoch), (epoch, 1, 10 + epoch)]
        saver.save(_run_state(copies), ckpt.Position(epoch + 1, 0))
        sizes.append(saver.bytes)
    files = sorted(p.name for p in folder.glob("copies-*.pt"))
    per_epoch = min((folder / f).stat().st_size for f in files)  # two heads of 1000 floats
    assert per_epoch > 8000 and max(sizes) - min(sizes) < 500  # the names grow, not the copies
    assert files == [f"copies-e{e:04d}.pt" for e in range(4)]
    assert caplog.text.count("head copies of epoch 0:") == 1  # written once, not per save
    assert saver.describe()["copies_bytes"] == sum(
        (folder / f).stat().st_size for f in files)
    path, state = ckpt.newest_usable(folder)
    assert path.name == "e0003-end.pt"
    got = {(s["epoch"], s["head"]): float(s["state"]["w"][0]) for s in state["snapshots"]}
    assert got == {(e, i): float(v) for e, i, v in copies}


def test_a_version_1_checkpoint_with_its_copies_inside_is_still_read(tmp_path):
    path = tmp_path / "e0001-s0000000.pt"  # the old name of e0000-end.pt
    torch.save({"format": ckpt.FORMAT, "version": 1, **_run_state([(0, 1, 7)])}, path)
    found, state = ckpt.newest_usable(tmp_path)
    assert found == path and float(state["snapshots"][0]["state"]["w"][0]) == 7.0


def test_a_missing_copies_file_makes_its_checkpoints_unusable(tmp_path, caplog):
    saver = ckpt.Checkpointer(tmp_path / "c", 10, "abc", {}, _Env())
    saver.save(_run_state([(0, 0, 1)]), ckpt.Position(1, 0))
    (tmp_path / "c" / "copies-e0000.pt").unlink()
    assert ckpt.newest_usable(tmp_path / "c") is None
    assert "copies-e0000.pt: the head copies file is missing" in caplog.text


def test_a_complete_run_removes_its_files_and_the_folders_left_empty(tmp_path):
    report = tmp_path / "report"
    mine = ckpt.default_dir(str(report), "demo", "abc")
    saver = ckpt.Checkpointer(mine, 10, "abc", {}, _Env(), root=report)
    saver.save(_run_state([(0, 0, 1)]), ckpt.Position(0, 3))
    other = ckpt.default_dir(str(report), "demo", "def")  # another configuration, running
    ckpt.save(other, ckpt.Position(0, 1), _state(1.0))
    saver.remove()
    assert not mine.exists() and other.is_dir()  # the other's folder and its parents stay
    ckpt.remove_all(other, report)
    assert sorted(p.name for p in report.iterdir()) == []  # checkpoints/ went too
    assert report.is_dir()  # the root stays
    own = tmp_path / "mine" / "demo" / "abc"  # --checkpoint_dir mine: the root stays
    ckpt.save(own, ckpt.Position(0, 1), _state(1.0))
    ckpt.remove_all(own, tmp_path / "mine")
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "demo").exists()


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
    assert not (report / "checkpoints").exists()  # a complete run clears its checkpoints


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
