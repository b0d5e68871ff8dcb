"""Files written atomically get the mode a plain ``open`` would give them (0o666 less the
umask), not the temporary file's private 0o600: colleagues on shared storage can read the
records, manifests, checkpoints and caches a run leaves, and a private umask keeps them
private. Every writer goes through ``eval_encoder.files.atomic_path``."""
from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_encoder import checkpoint as ckpt
from eval_encoder import files
from eval_encoder import record as rec
from eval_encoder.codec import cache as codec_cache
from eval_encoder.codec.select import Selection
from eval_encoder.encoders.weights import cached_sha256
from eval_encoder.probe.predictions import PredictionStore, Scored
from eval_encoder.video import preflight
from eval_encoder.video.manifest import ManifestEntry

PACKAGE = Path(__file__).resolve().parents[1] / "eval_encoder"
EXPECTED = {0o022: 0o644, 0o077: 0o600, 0o027: 0o640}


@pytest.fixture(params=sorted(EXPECTED), ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _record(tmp_path: Path) -> Path:
    return rec.write_record({"run_id": "r1", "dataset": {"name": "demo"}, "status": "failed"},
                            str(tmp_path / "report"))


def _manifest(tmp_path: Path) -> Path:
    from eval_encoder.prepare.cli import main as prepare_main

    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    ann.mkdir()
    videos.mkdir()
    (ann / "Diving48_vocab.json").write_text(json.dumps([f"c{i}" for i in range(48)]))
    (ann / "Diving48_V2_train.json").write_text(json.dumps([{"vid_name": "a", "label": 1}]))
    (ann / "Diving48_V2_test.json").write_text(json.dumps([{"vid_name": "b", "label": 2}]))
    (videos / "a.mp4").write_bytes(b"not a video; prepare only looks for the file")
    (videos / "b.mp4").write_bytes(b"x")
    assert prepare_main(["diving48", "--annotations", str(ann), "--videos", str(videos),
                         "--out", str(out), "--no_check"]) == 0
    return out / "diving48" / "diving48_train_new.csv"


def _checkpoint(tmp_path: Path) -> Path:
    return ckpt.save(tmp_path / "ck", ckpt.Position(1, 0), {"w": torch.ones(2)})[0]


def _codec_entry(tmp_path: Path) -> Path:
    path = tmp_path / "codec" / "ab" / ("ab" + "0" * 62 + ".npy")
    codec_cache.write_entry(str(path), Selection(np.arange(0, 40, 3, dtype=np.int64)))
    return path


def _preflight_cache(tmp_path: Path) -> Path:
    path = tmp_path / "preflight" / "demo.json"
    preflight.save_cache(str(path), {"/v/a.mp4": (1, 2)})
    return path


def _weight_hash_cache(tmp_path: Path) -> Path:
    weight = tmp_path / "w.safetensors"
    weight.write_bytes(b"weights")
    cache = tmp_path / "cache" / "weight_sha256.json"
    cached_sha256([weight], cache)
    return cache


def _predictions(tmp_path: Path) -> Path:
    store = PredictionStore()
    top = np.zeros((2, 1, 5), np.int16)
    store.add(Scored(np.arange(2), np.asarray([0, 1]), top, np.zeros(top.shape, np.float32)),
              [(0, 0)])
    entries = [ManifestEntry("a.mp4", 0, 1), ManifestEntry("b.mp4", 1, 2)]
    path = tmp_path / "r1.predictions.npz"
    store.write(str(path), (0, 0), entries, ["h0"])
    return path


def _weights_folder(tmp_path: Path) -> Path:
    from eval_encoder.demo import save_tiny_encoder

    return save_tiny_encoder(tmp_path) / "model.safetensors"


WRITERS = [_record, _manifest, _checkpoint, _codec_entry, _preflight_cache, _weight_hash_cache,
           _predictions, _weights_folder]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__.strip("_"))
def test_atomically_written_files_honour_the_umask(writer, umask, tmp_path):
    path = writer(tmp_path)
    assert _mode(path) == EXPECTED[umask], f"{path}: {_mode(path):o}"
    leftovers = [p.name for p in Path(path).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary file left beside it


def test_a_failed_write_leaves_nothing_and_the_old_file_stands(tmp_path):
    path = tmp_path / "a.txt"
    files.write_atomic(path, "old")
    with pytest.raises(RuntimeError), files.atomic_open(path, "w") as fh:
        fh.write("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert files.umask() == 0o027 and files.umask() == 0o027
    finally:
        os.umask(old)


def test_no_other_module_makes_temporary_files_for_a_rename():
    """One helper for every atomic write: ``mkstemp``/``NamedTemporaryFile`` appear only in
    files.py (and in DALI's private shared-memory order file, which is never renamed)."""
    allowed = {"files.py", "dali.py"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                  for a in n.names}
        if names & {"mkstemp", "NamedTemporaryFile", "mktemp"} and path.name not in allowed:
            found.append(str(path.relative_to(PACKAGE)))
    assert found == []
