"""``check``: it finds missing, unreadable, short, repeated and leaking clips, parses segment
lines like the suite, and fails (exit 1) only on what would make a run fail."""
import json
import os
import time
from pathlib import Path

import pytest

from eval_encoder.codec.synthetic import moving_square, write_video
from eval_encoder.prepare.check import main as check_main, run_check
from eval_encoder.prepare.cli import main as prepare_main
from eval_encoder.prepare.lines import format_line, read_entries
from eval_encoder.prepare.base import Segment
from eval_encoder.video.manifest import ManifestError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = moving_square(frames=24, height=32, width=32, size=8).frames
    return write_video(str(tmp_path_factory.mktemp("clip") / "c.mp4"), frames, rate=8)


def root_with(tmp_path: Path, clip: str, dataset: str, train, val, files=()):
    """A data root holding ``files`` (copies of the clip) and the two manifests' lines."""
    folder = tmp_path / "root" / dataset
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(Path(clip).read_bytes())
    (folder / "train_new.csv").write_text("".join(f"{line}\n" for line in train), encoding="utf-8")
    (folder / "val_new.csv").write_text("".join(f"{line}\n" for line in val), encoding="utf-8")
    return tmp_path / "root"


def test_check_finds_missing_unreadable_duplicate_and_overlap(clip, tmp_path, capsys):
    root = root_with(tmp_path, clip, "ucf101",
                     train=["v/a.mp4,0", "v/a.mp4,0", "v/gone.mp4,1", "v/broken.mp4,2", "v/shared.mp4,3"],
                     val=["v/b.mp4,0", "v/shared.mp4,3"],
                     files=["v/a.mp4", "v/b.mp4", "v/shared.mp4"])
    (root / "ucf101" / "v" / "broken.mp4").write_bytes(b"not a video" * 50)
    rc = check_main(["--data_root", str(root), "--dataset", "ucf101"])
    printed = capsys.readouterr().out
    assert rc == 1
    report = json.loads((root / "ucf101" / "check_report.json").read_text())
    train = report["splits"]["train"]
    assert train["missing"] == ["v/gone.mp4"]
    assert [u["path"] for u in train["unreadable"]] == ["v/broken.mp4"]
    assert "cannot open" in train["unreadable"][0]["reason"]
    assert train["duplicates"] == [{"path": "v/a.mp4", "segment": None, "lines": [1, 2], "labels": [0]}]
    assert train["lost_lines"] == 2 and train["lines"] == 5
    assert report["overlap"]["same_path"] == ["v/shared.mp4"]
    assert len(report["problems"]) == 2  # train lost 40% of its lines; the overlap
    assert "missing: 1: v/gone.mp4" in printed and "FAIL" in printed


def test_few_missing_clips_within_the_limit_pass(clip, tmp_path):
    names = [f"v/{i}.mp4" for i in range(200)]
    root = root_with(tmp_path, clip, "ucf101", train=[f"{n},{i % 101}" for i, n in enumerate(names)],
                     val=["v/val.mp4,0"], files=names[1:] + ["v/val.mp4"])
    report = run_check(str(root), "ucf101", threads=8)
    assert report["ok"], report["problems"]
    assert report["splits"]["train"]["missing"] == ["v/0.mp4"]  # 0.5%: listed, not failing
    assert report["splits"]["train"]["classes_present"] == 101
    assert report["histograms"]["resolution"] == {"32x32": 200}
    assert report["histograms"]["duration"] == {"2-5s": 200}


def test_segments_overlap_short_and_past_end(clip, tmp_path):
    root = root_with(tmp_path, clip, "epic_verb",
                     train=["P01.mp4,0,1f,20f", "P01.mp4,1,30f,40f", "P02.mp4,2,1f,17f"],
                     val=["P01.mp4,3,15f,25f", "P02.mp4,2,17f,24f", "P03.mp4,4,0.5,2.5"],
                     files=["P01.mp4", "P02.mp4", "P03.mp4"])
    report = run_check(str(root), "epic_verb")
    over = report["overlap"]
    assert over["same_path"] == []
    # P01 1f-20f meets 15f-25f; P02 1f-17f only touches 17f-24f, which is no overlap
    assert over["same_segment"] == [{"path": "P01.mp4", "train": "1f-20f", "val": "15f-25f"}]
    assert not report["ok"]
    train, val = report["splits"]["train"], report["splits"]["val"]
    assert [s["segment"] for s in train["short"]] == ["30f-40f"]
    assert train["segments_past_end"] == [{"path": "P01.mp4", "segment": "30f-40f"}]
    assert [s["segment"] for s in val["short"]] == ["15f-25f", "17f-24f"]  # 10 and 7 frames
    assert val["segments_past_end"] == []


def test_multi_label_segments_are_listed_not_failed(clip, tmp_path):
    root = root_with(tmp_path, clip, "charadesego",
                     train=["x.mp4,1,0.0,2.0", "x.mp4,2,0.0,2.0"], val=["y.mp4,1,0.0,2.0"],
                     files=["x.mp4", "y.mp4"])
    report = run_check(str(root), "charadesego")
    assert report["ok"]
    assert report["splits"]["train"]["conflicting_labels"][0]["labels"] == [1, 2]
    assert report["splits"]["train"]["duplicates"] == []


def test_empty_split_and_bad_line_fail(clip, tmp_path, capsys):
    root = root_with(tmp_path, clip, "ucf101", train=["a.mp4,0"], val=[], files=["a.mp4"])
    assert not run_check(str(root), "ucf101")["ok"]
    (root / "ucf101" / "val_new.csv").write_text("a.mp4,0\na.mp4,zero\n")
    assert check_main(["--data_root", str(root), "--dataset", "ucf101"]) == 1
    assert "val_new.csv:2: label 'zero' is not an integer" in capsys.readouterr().err


def test_manifest_lines_round_trip_like_the_suite(tmp_path):
    path = tmp_path / "m.csv"
    lines = [format_line("a,b/clip.mp4", 3), format_line("long.MP4", 2, Segment(1200, 1300, "f")),
             format_line("x.mp4", 1, Segment(0.0, 12.5, "s")),
             format_line("y.mp4", 0, Segment(1.0, 2.966666, "s"))]
    assert lines[1:] == ["long.MP4,2,1200f,1300f", "x.mp4,1,0.0,12.5", "y.mp4,0,1.0,2.966666"]
    path.write_text("\ufeff# comment\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    entries = read_entries(str(path), 5)
    assert [(e.path, e.label, e.segment, e.line) for e in entries] == [
        ("a,b/clip.mp4", 3, None, 3), ("long.MP4", 2, Segment(1200, 1300, "f"), 4),
        ("x.mp4", 1, Segment(0.0, 12.5, "s"), 5), ("y.mp4", 0, Segment(1.0, 2.966666, "s"), 6)]
    path.write_text("x.mp4,1,5.0,2.0\n")
    with pytest.raises(ManifestError, match=r"m.csv:1: segment 5.0-2.0 is empty, reversed or negative"):
        read_entries(str(path), 5)


def test_two_field_manifests_still_read_by_the_suite(clip, tmp_path, capsys):
    """A prepared two-field dataset is read by the suite's own manifest reader unchanged."""
    from eval_encoder.video.manifest import read_manifest

    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    ann.mkdir()
    (ann / "classInd.txt").write_text("".join(f"{i + 1} C{i}\n" for i in range(101)))
    (ann / "trainlist01.txt").write_text("C0/v_C0_g01_c01.avi 1\nC5/v_C5_g01_c01.avi 6\n")
    (ann / "testlist01.txt").write_text("C3/v_C3_g02_c01.avi\n")
    for name in ("C0/v_C0_g01_c01.avi", "C5/v_C5_g01_c01.avi", "C3/v_C3_g02_c01.avi"):
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(Path(clip).read_bytes())
    assert prepare_main(["ucf101", "--annotations", str(ann), "--videos", str(videos),
                         "--out", str(out)]) == 0
    entries = read_manifest(str(out / "ucf101" / "train_new.csv"), 101)
    assert [(e.path, e.label) for e in entries] == [("videos/C0/v_C0_g01_c01.avi", 0),
                                                    ("videos/C5/v_C5_g01_c01.avi", 5)]
    assert os.path.isfile(out / "ucf101" / entries[0].path)


@pytest.mark.benchmark
def test_measure_prepare_and_check_per_1000_clips(clip, tmp_path, capsys):
    """Not run by default (-m benchmark): UCF101 format, 1,000 train and 1,000 val entries,
    each a distinct symlink to one 3 s 32x32 H.264 clip; one run, wall clock."""
    ann, videos, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "root"
    ann.mkdir()
    (ann / "classInd.txt").write_text("".join(f"{i + 1} C{i}\n" for i in range(101)))
    lists = {"trainlist01.txt": [], "testlist01.txt": []}
    for i in range(2000):
        name = f"C{i % 101}/v_C{i % 101}_g{i:04d}_c01.avi"
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(clip, videos / name)
        which = "trainlist01.txt" if i < 1000 else "testlist01.txt"
        lists[which].append(f"{name} {i % 101 + 1}" if i < 1000 else name)
    for fname, rows in lists.items():
        (ann / fname).write_text("\n".join(rows) + "\n")
    args = ["ucf101", "--annotations", str(ann), "--videos", str(videos), "--out", str(out)]
    t0 = time.perf_counter()
    assert prepare_main(args + ["--no_check"]) == 0
    t1 = time.perf_counter()
    report = run_check(str(out), "ucf101")
    t2 = time.perf_counter()
    assert report["ok"]
    with capsys.disabled():
        print(f"\nprepare: {(t1 - t0) / 2:.3f} s per 1,000 clips (2,000 written); "
              f"check: {(t2 - t1) / 2:.3f} s per 1,000 clips ({os.cpu_count()} CPUs)")


def test_a_path_that_would_read_as_a_segment_is_refused():
    from eval_encoder.prepare.base import PrepareError

    with pytest.raises(PrepareError, match="would be read back as a segment"):
        format_line("clip,3,1.5", 2)
    with pytest.raises(PrepareError, match="line break"):
        format_line("a\nb.mp4", 0)
