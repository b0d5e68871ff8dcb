"""benchmarks/bench_vjepa2_resize.py: the view offsets by hand arithmetic (no OpenCV), the suite's
views against the published ones where nothing is resized (no OpenCV), and a tiny run of the
whole comparison (skipped without OpenCV)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

NO_RESIZE = ["--sizes", "--input_size", "16", "--count_shorts", "16", "--count_longs", "17", "20"]


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("bench_vjepa2_resize")


@pytest.fixture
def no_cv2(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError


def test_the_offset_count_needs_no_opencv(bench, no_cv2, capsys):
    # shorter side = the crop (256): no resize; ours puts view 1 at round-half-up of d / 2 and
    # view 2 at d, published at floor(d / 2) and 2 floor(d / 2): 1 px apart when d is odd
    counts = bench.offset_counts([256], range(257, 301), 256)
    assert counts == {256: {"sizes": 44, "long": 0, "any": 22, "views": [0, 22, 22],
                            "max": [0, 1, 1]}}
    # 250 x 240 -> 266.67: published int() 266, ours rounds to 267; d = 10 and 11
    case = bench.offsets(240, 250, 256, 256, 3)
    assert case["long"] == (267, 266)
    assert case["starts"] == ([0, 6, 11], [0, 5, 10]) and case["shift"] == [0, 1, 1]
    out = bench.main(["--offsets_only", "--count_shorts", "256", "--count_longs", "257", "300"])
    assert out["pixels"] == {} and out["offsets"][256]["any"] == 22
    assert "some view elsewhere in 22" in capsys.readouterr().out


def test_without_opencv_the_comparison_says_how_to_install_it(bench, no_cv2):
    with pytest.raises(SystemExit, match="pip install opencv-python-headless"):
        bench.main(NO_RESIZE)


@pytest.mark.parametrize("h, w, shift", [(16, 40, [0, 0, 0]), (16, 41, [0, 1, 1]),
                                         (41, 16, [0, 1, 1])])
def test_where_nothing_is_resized_the_views_differ_only_by_their_offsets(bench, h, w, shift):
    """Shorter side = crop: both sides take the frames as they are, so the views are equal where
    the offsets are (exactly: the suite's cubic at scale 1 is the identity)."""
    cfg, tspec = bench.suite_setup(16)
    frames = np.random.default_rng(0).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    f = bench.compare(frames, cfg, tspec, cv2=None)
    assert f["shift"] == shift and f["long"] == (max(h, w),) * 2
    assert [m == 0 for m in f["view_mad"]] == [s == 0 for s in shift]
    assert (f["mad"] == 0) == (f["psnr"] == float("inf")) == (shift == [0, 0, 0])


def test_the_benchmark_runs_at_a_tiny_size(bench, tmp_path, capsys):
    """Smoke test of the whole comparison (seconds), with OpenCV."""
    pytest.importorskip("cv2")
    from PIL import Image

    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    out = bench.main(["--sizes", "40x30", "30x50", "--frames", "2", "--images", str(photo),
                      "--crops", "40x30", *NO_RESIZE[1:]])
    assert set(out["pixels"]) == {"40x30 1/f noise", "30x50 1/f noise", str(photo),
                                  f"{photo} [40x30 window]"}
    for f in out["pixels"].values():
        assert 0 < f["mad"] < 128 and 0 < f["psnr"] < 60 and len(f["view_mad"]) == 3
    assert out["pixels"]["30x50 1/f noise"]["long"] == (27, 26)  # 26.67: rounded, truncated
    text = capsys.readouterr().out
    assert "--protocol vjepa2: crop 16, 3 views; OpenCV" in text and "PSNR" in text
