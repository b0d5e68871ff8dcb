"""Fault 3 (an undecodable clip is found before training, not after it) and fault 5 (a failed
record keeps its samples section and every reason)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from eval_encoder.demo import render_clip, write_video
from eval_encoder.probe import data as data_mod
from eval_encoder.probe import run as run_mod
from eval_encoder.probe.run import main as probe_main
from eval_encoder.probe.trainer import Counters, RunFailed
from eval_encoder.record import read_record, samples_at_failure
from eval_encoder.video import preflight


def _clip(path: Path, seed: int = 0) -> str:
    write_video(path, render_clip((1, 0), 6, 32, 24, np.random.default_rng(seed)))
    return str(path)


def _audio_only(path: Path) -> str:
    import av

    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


@pytest.fixture()
def folder(tmp_path):
    good = [_clip(tmp_path / f"ok{i}.mp4", i) for i in range(3)]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    return tmp_path, good, str(junk), _audio_only(tmp_path / "sound.wav")


def test_clips_that_do_not_open_are_found_with_their_reasons(folder):
    root, good, junk, sound = folder
    missing = str(root / "gone.mp4")
    failed = preflight.check_paths([*good, junk, sound, missing], threads=4)
    assert sorted(failed) == sorted([junk, sound, missing])
    assert "cannot open" in failed[junk] and "no video stream" in failed[sound]
    assert failed[missing] == "file not found"


def test_passed_clips_are_cached_by_identity_failures_never(folder, monkeypatch):
    root, good, junk, _ = folder
    cache = str(root / "report" / "preflight" / "x.json")
    assert preflight.check_paths([*good, junk], cache) == {junk: preflight.check_paths([junk])[junk]}
    stored = json.loads(Path(cache).read_text())
    assert sorted(stored["clips"]) == sorted(os.path.abspath(p) for p in good)
    opened = []
    real = preflight.check_opens
    monkeypatch.setattr(preflight, "check_opens", lambda p: (opened.append(p), real(p)))
    assert list(preflight.check_paths([*good, junk], cache)) == [junk]
    assert opened == [junk]  # the good clips came from the cache; the failure is checked again
    os.utime(good[1], ns=(1, 1))  # a changed file is opened again
    opened.clear()
    preflight.check_paths(good, cache)
    assert opened == [good[1]]


def test_a_damaged_cache_is_reported_and_rebuilt(folder, caplog):
    root, good, _, _ = folder
    cache = root / "p.json"
    cache.write_text("{not json")
    assert preflight.check_paths(good, str(cache)) == {}
    assert "unreadable" in caplog.text and len(json.loads(cache.read_text())["clips"]) == 3


def test_ranks_check_shares_and_every_rank_gets_every_failure(folder):
    root, good, junk, sound = folder
    paths = [*good, junk, sound]
    cache = str(root / "shared.json")
    part = preflight._check_all(sorted(paths)[1::2], {}, 2, show=False)  # what rank 1 finds
    failed = preflight.check_paths(paths, cache, shard=(0, 2), gather=lambda mine: [mine, part])
    assert sorted(failed) == sorted([junk, sound])
    assert len(json.loads(Path(cache).read_text())["clips"]) == 3  # rank 0 wrote all passes


# ----------------------------------------------------------------------------- in a run
@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    """A card ``tiny`` with 4 good train clips and 8 val clips, and the run's flags."""
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny.yaml").write_text("name: tiny\nnum_classes: 2\ntrain_manifest: train.csv\n"
                                     "val_manifest: val.csv\ndefault_epochs: 1\n"
                                     "default_batch_size: 2\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "data" / "tiny"
    root.mkdir(parents=True)
    for i in range(4):
        _clip(root / f"t{i}.mp4", i)
    (root / "train.csv").write_text("".join(f"t{i}.mp4,{i % 2}\n" for i in range(4)))
    report = tmp_path / "report"
    flags = ["--dataset", "tiny", "--data_root", str(tmp_path / "data"), "--save_report",
             str(report), "--model_family", "llava_vit_sampling", "--model_name",
             "ov_encoder_tiny", "--model_weight", "random", "--num_frames", "2", "--device", "cpu"]
    return root, report, flags


def test_undecodable_val_clips_fail_the_run_before_training_listing_all(dataset, monkeypatch):
    root, report, flags = dataset
    for i in range(8):  # 7 of 8 val clips are not videos
        if i == 0:
            _clip(root / "v0.mp4")
        else:
            (root / f"v{i}.mp4").write_bytes(b"junk" * 40)
    (root / "val.csv").write_text("".join(f"v{i}.mp4,{i % 2}\n" for i in range(8)))
    monkeypatch.setattr(run_mod, "build_encoder",
                        lambda cfg: pytest.fail("the encoder was built: the check came too late"))
    assert probe_main(flags) == 1
    (path,) = (report / "runs" / "tiny").glob("*.json")
    record = read_record(str(path))
    assert record["status"] == "failed" and "7 of 8 val clips could not be read" in record["error"]
    assert "v1.mp4: cannot open" in record["error"] and "(and 2 more" in record["error"]
    val = record["samples"]["val"]
    assert val["expected"] == 8 and record["samples"]["train"]["expected"] == 4
    assert [s["clip"] for s in val["skipped"]] == list(range(1, 8))  # all 7, not the first 5
    assert all("cannot open" in s["reason"] and s["path"].endswith(f"v{s['clip']}.mp4")
               for s in val["skipped"])
    assert json.loads((report / "preflight" / "tiny.json").read_text())["clips"]  # cached


def test_below_the_limit_a_warning_names_them_and_the_run_goes_on(dataset, caplog):
    root, report, _ = dataset
    for i in range(8):
        _clip(root / f"v{i}.mp4", i)
    (root / "v3.mp4").write_bytes(b"junk" * 40)
    (root / "val.csv").write_text("".join(f"v{i}.mp4,{i % 2}\n" for i in range(8)))
    from eval_encoder.probe.args import parse_config
    from eval_encoder.video.manifest import load_card

    _, _, flags = dataset
    cfg = parse_config(flags + ["--max_skip_fraction", "0.2"])
    manifests = data_mod.read_manifests(cfg, load_card("tiny"))
    assert len(manifests.val) == 8
    assert "1 val clips cannot be read" in caplog.text and "v3.mp4" in caplog.text


def test_a_training_time_skip_failure_carries_every_clip():
    counters = Counters()
    counters.skipped["val"] = {2 * k: {"index": 2 * k, "path": f"/d/v{k}.mp4", "reason": "bad"}
                               for k in range(7)}
    trainer = type("T", (), {"counters": counters})()
    with pytest.raises(RunFailed) as info:
        data_mod.skip_check(trainer, "val", clips=9, views=2, limit=0.1)
    assert "7 of 9 val clips" in str(info.value) and "/d/v4.mp4" in str(info.value)
    assert "/d/v5.mp4" not in str(info.value)  # the message stays short
    listed = info.value.samples["val"]["skipped"]
    assert [s["clip"] for s in listed] == list(range(7)) and info.value.samples["val"]["expected"] == 9
    # the failed record: expected counts and what the error carries (the full list)
    samples = samples_at_failure({"train": 20, "val": 9}, counters.skipped, info.value.samples)
    assert samples["train"] == {"expected": 20, "skipped": []}
    assert len(samples["val"]["skipped"]) == 7 and samples["val"]["expected"] == 9


@pytest.mark.slow
def test_a_skip_failure_after_training_keeps_the_samples_section(dataset):
    root, report, flags = dataset
    for i in range(3):
        _clip(root / f"v{i}.mp4", i)
    data = bytearray((root / "v2.mp4").read_bytes())  # opens (index intact), decodes nothing
    start, end = data.index(b"mdat") + 4, data.index(b"moov") - 4
    data[start:end] = bytes(end - start)
    (root / "v2.mp4").write_bytes(bytes(data))
    (root / "val.csv").write_text("".join(f"v{i}.mp4,{i % 2}\n" for i in range(3)))
    assert probe_main(flags + ["--dali_py_num_workers", "0", "--loader", "torch"]) == 1
    (path,) = (report / "runs" / "tiny").glob("*.json")
    record = read_record(str(path))
    assert "1 of 3 val clips could not be read" in record["error"]
    val = record["samples"]["val"]
    assert val["expected"] == 3 and record["samples"]["train"]["expected"] == 4
    (item,) = val["skipped"]
    assert item["clip"] == 2 and item["path"].endswith("v2.mp4") and item["reason"]
