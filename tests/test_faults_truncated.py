"""Fault 4: clips whose tail does not decode are named, with the frames they were sampled over."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from eval_encoder.demo import render_clip, write_video
from eval_encoder.probe.trainer import Counters, ProbeTrainer
from eval_encoder.video.dataset import FLAG_NAMES, FLAG_TRUNCATED, ClipDataset, FramesSource
from eval_encoder.video.decode import decode_clip_counted
from eval_encoder.video.loader import _Indexed, collate
from eval_encoder.video.manifest import ManifestEntry
from eval_encoder.video.transforms import TransformSpec


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """An intact 20-frame clip and a copy whose last third of frame data is zeroed."""
    root = tmp_path_factory.mktemp("trunc")
    path = root / "ok.mp4"
    write_video(path, render_clip((1, 0), 20, 64, 48, np.random.default_rng(0)))
    data = bytearray(path.read_bytes())
    moov, mdat = data.index(b"moov") - 4, data.index(b"mdat") + 4
    cut = mdat + (moov - mdat) * 2 // 3
    data[cut:moov] = bytes(moov - cut)
    (root / "damaged.mp4").write_bytes(bytes(data))
    return root


def test_the_frame_count_says_packets_and_frames_used(clips):
    _, _, intact = decode_clip_counted(str(clips / "ok.mp4"), 4, False, None)
    assert (intact.used, intact.packets, intact.truncated) == (20, 20, False)
    _, idx, cut = decode_clip_counted(str(clips / "damaged.mp4"), 4, False, None)
    assert cut.truncated and cut.packets == 20 and 0 < cut.used < 20 and idx.max() < cut.used


def _trainer():
    env = SimpleNamespace(device=torch.device("cpu"), is_main=True, rank=0, world_size=1)
    return ProbeTrainer(nn.Identity(), [], env, 0.0, 0.0, num_classes=2)


def test_truncated_clips_are_listed_by_path_with_their_counts(clips):
    entries = [ManifestEntry("ok.mp4", 0, 1), ManifestEntry("damaged.mp4", 1, 2)]
    ds = ClipDataset(entries, str(clips), FramesSource(4), train=False, seed=0, temporal_views=2)
    tspec = TransformSpec(input_size=32, short_side=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    batch = collate([_Indexed(ds, tspec)[(i, 0)] for i in range(len(ds))])  # as the loader does
    assert batch["packets"].view(-1).tolist() == [20] * 4
    trainer = _trainer()
    trainer.note_batch(batch, "val")
    trainer.note_batch(batch, "val")  # seen again (another epoch): listed once
    assert trainer.flag_counts("val") == {FLAG_NAMES[FLAG_TRUNCATED]: 2}  # two views
    listed = trainer.truncated_clips("val", ds)
    assert [(t["index"], t["clip"], t["path"]) for t in listed] == \
        [(2, 1, str(clips / "damaged.mp4")), (3, 1, str(clips / "damaged.mp4"))]
    assert all(t["packets"] == 20 and 0 < t["frames_used"] < 20 for t in listed)


def test_a_source_without_packet_counts_still_names_the_clip():
    counters = Counters()
    batch = {"flags": torch.tensor([[FLAG_TRUNCATED], [0]]), "index": torch.tensor([5, 6]),
             "total_frames": torch.tensor([31, 64])}
    counters.note_flags(batch, "train")
    assert counters.truncated["train"] == {5: {"frames_used": 31, "packets": None}}


@pytest.mark.slow
def test_a_run_record_names_its_truncated_clips(clips, tmp_path, monkeypatch):
    from eval_encoder.probe.run import main as probe_main
    from eval_encoder.record import read_record

    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "trunc.yaml").write_text("name: trunc\nnum_classes: 2\ntrain_manifest: train.csv\n"
                                      "val_manifest: val.csv\ndefault_epochs: 1\n"
                                      "default_batch_size: 2\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "data" / "trunc"
    root.mkdir(parents=True)
    for name in ("ok.mp4", "damaged.mp4"):
        (root / name).write_bytes((clips / name).read_bytes())
    (root / "train.csv").write_text("ok.mp4,0\nok.mp4,1\n")
    (root / "val.csv").write_text("ok.mp4,0\ndamaged.mp4,1\n")
    report = tmp_path / "report"
    assert probe_main(["--dataset", "trunc", "--data_root", str(tmp_path / "data"),
                       "--save_report", str(report), "--model_family", "llava_vit_sampling",
                       "--model_name", "ov_encoder_tiny", "--model_weight", "random",
                       "--num_frames", "2", "--device", "cpu", "--dali_py_num_workers", "0",
                       "--loader", "torch"]) == 0
    (path,) = (report / "runs" / "trunc").glob("*.json")
    val = read_record(str(path))["samples"]["val"]
    assert val["flags"] == {FLAG_NAMES[FLAG_TRUNCATED]: 1}
    (item,) = val["truncated"]
    assert item["clip"] == 1 and item["path"] == str(root / "damaged.mp4")
    assert item["packets"] == 20 and 0 < item["frames_used"] < 20
