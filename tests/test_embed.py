"""``embed``: the tokens the probe's evaluation sees, for the same clip and view, written once
per clip view into a store that a killed run continues and torchrun ranks share."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eval_encoder import embed as embed_mod
from eval_encoder.demo import free_port, generate_dataset, save_tiny_encoder
from eval_encoder.features.pool import TokenLayout, pool_tokens
from eval_encoder.features.store import open_store, read_sidecars
from eval_encoder.probe import trainer as trainer_mod
from eval_encoder.probe.run import main as probe_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("embed")
    generate_dataset(out / "data", "demo", train_per_class=2, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _encoder(tiny, *extra):
    _, weights = tiny
    return ["--model_family", "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
            str(weights), "--num_frames", "2", "--dali_py_num_workers", "0", *extra]


def _embed(tiny, out, *extra):
    data, _ = tiny
    return embed_mod.main(_encoder(tiny, "--dataset", "demo", "--data_root", str(data),
                                   "--batch_size", "3", "--out", str(out), "--save_report",
                                   str(out.parent / "report"), *extra))


def _val_ids(tiny):
    data, _ = tiny
    return [line.split(",")[0] for line in (data / "demo" / "val_new.csv").read_text().split()]


def test_embed_gives_the_tokens_the_probe_scored(tiny, tmp_path, monkeypatch):
    """Every validation clip's two spatial views: the probe's tokens, and their pool."""
    seen = {}
    tokens = trainer_mod.ProbeTrainer.tokens

    def recording(self, batch, split):
        out = tokens(self, batch, split)
        if split == "val":
            for row, index in enumerate(batch["index"].tolist()):
                seen[index] = out[row].detach().float().clone()
        return out

    monkeypatch.setattr(trainer_mod.ProbeTrainer, "tokens", recording)
    data, _ = tiny
    views = ["--num_spatial_crops", "2"]
    assert probe_main(_encoder(tiny, "--dataset", "demo", "--data_root", str(data),
                               "--batch_size", "4", "--default_epoch", "1", "--monitor_clips",
                               "0", "--save_report", str(tmp_path / "report"), *views)) == 0
    assert len(seen) == 14  # 7 clips x 2 views
    assert _embed(tiny, tmp_path / "tokens", "--views", "all", *views) == 0
    assert _embed(tiny, tmp_path / "mean", "--views", "all", "--pool", "mean", *views) == 0
    store, pooled = open_store(tmp_path / "tokens"), open_store(tmp_path / "mean")
    assert store.clips() == _val_ids(tiny) and store.views() == [0, 1]
    assert store.header["complete"] and store.header["pool"] == "none"
    for index, want in seen.items():
        clip, view = store.clips()[index // 2], index % 2
        assert torch.equal(store.get(clip, view), want)
        assert torch.allclose(pooled.get(clip, view), pool_tokens(want[None], "mean", TokenLayout())[0])
    x, y, ids = pooled.all(view=1)
    assert x.shape == (7, 128) and ids == _val_ids(tiny) and y.tolist() == [0, 1, 2, 3, 0, 1, 2]


def test_a_killed_run_continues_and_writes_each_clip_once(tiny, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert _embed(tiny, whole, "--pool", "mean") == 0
    features, calls = embed_mod.features, []

    def dies_at_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return features(*args, **kwargs)

    monkeypatch.setattr(embed_mod, "features", dies_at_the_third_batch)
    part = tmp_path / "part"
    # a shard per batch: the two batches before the kill are kept
    assert _embed(tiny, part, "--pool", "mean", "--shard_mb", "0.000001") == 1
    assert sum(len(s["rows"]) for s in read_sidecars(part)) == 6
    assert not json.loads((part / "header.json").read_text())["complete"]
    monkeypatch.setattr(embed_mod, "features", features)
    assert _embed(tiny, part, "--pool", "mean", "--shard_mb", "0.000001") == 0
    rows = [r["clip"] for s in read_sidecars(part) for r in s["rows"]]
    assert sorted(rows) == sorted(_val_ids(tiny))  # each clip once
    done, fresh = open_store(part), open_store(whole)
    assert done.header["complete"]
    for clip in fresh.clips():
        assert torch.allclose(done.get(clip), fresh.get(clip))
    # other features may not continue it; a pool the encoder cannot give is a usage mistake
    assert _embed(tiny, part, "--pool", "mean", "--dtype", "float16") == 2
    assert _embed(tiny, tmp_path / "cls", "--pool", "cls") == 2


def test_a_single_video_and_a_list(tiny, tmp_path):
    data, _ = tiny
    assert _embed(tiny, tmp_path / "split", "--pool", "mean") == 0
    clip = _val_ids(tiny)[2]
    args = _encoder(tiny, "--dataset", "demo", "--pool", "mean", "--save_report",
                    str(tmp_path / "report"))
    assert embed_mod.main([*args, "--video", str(data / "demo" / clip),
                           "--out", str(tmp_path / "one")]) == 0
    one = open_store(tmp_path / "one")
    assert one.clips() == [str(data / "demo" / clip)] and one.label(one.clips()[0]) == -1
    want = open_store(tmp_path / "split").get(clip)
    assert torch.allclose(one.get(one.clips()[0]), want, atol=1e-6)
    (data / "demo" / "list.txt").write_text(f"# two clips\n{clip},2\n{_val_ids(tiny)[0]}\n")
    assert embed_mod.main([*args, "--videos", str(data / "demo" / "list.txt"),
                           "--out", str(tmp_path / "list")]) == 0
    listed = open_store(tmp_path / "list")
    assert listed.clips() == [clip, _val_ids(tiny)[0]] and listed.label(clip) == 2
    assert torch.allclose(listed.get(clip), want, atol=1e-6)
    assert embed_mod.main([*args, "--video", str(tmp_path / "absent.mp4"),
                           "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def test_two_torchrun_ranks_give_what_one_process_gives(tiny, tmp_path):
    data, _ = tiny
    assert _embed(tiny, tmp_path / "one", "--pool", "mean") == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", "-m", "eval_encoder", "embed",
           *_encoder(tiny, "--dataset", "demo", "--data_root", str(data), "--batch_size", "3",
                     "--pool", "mean", "--out", str(tmp_path / "two"), "--save_report",
                     str(tmp_path / "report"))]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = open_store(tmp_path / "one"), open_store(tmp_path / "two")
    ranks = {s["shard"][:6] for s in read_sidecars(tmp_path / "two")}
    assert ranks == {"r00000", "r00001"}  # each rank wrote its own shards
    assert two.clips() == one.clips() and len(two) == 7
    for clip in one.clips():
        assert torch.allclose(two.get(clip), one.get(clip), atol=1e-6)
