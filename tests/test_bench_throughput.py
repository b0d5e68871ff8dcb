"""The throughput benchmark's CPU smoke run: every case runs, and its counts are right."""
import json

import pytest


def vit_gflops(tokens: int, dim: int, hidden: int, layers: int, patch_pixels: int) -> float:
    """Matmul FLOPs of a ViT forward over ``tokens`` tokens (2 per multiply-add): patch
    embedding, q/k/v/out projections, the MLP, and attention's two N x N products."""
    embed = 2 * tokens * patch_pixels * dim
    per_layer = 2 * tokens * (4 * dim * dim + 2 * dim * hidden) + 4 * tokens * tokens * dim
    return (embed + layers * per_layer) / 1e9


@pytest.fixture(scope="module")
def bench_throughput(load_benchmark):
    return load_benchmark("bench_throughput")


@pytest.fixture(scope="module")
def results(tmp_path_factory, bench_throughput):
    out = tmp_path_factory.mktemp("bench") / "throughput.json"
    assert bench_throughput.main(["--size", "tiny", "--rounds", "1", "--device", "cpu",
                                  "--attn", "sdpa", "flash", "--peak_tflops", "1", "--json",
                                  str(out), "--loader_workers", "0", "1"]) == 0
    return json.loads(out.read_text())


def test_every_case_runs_with_its_tokens(results):
    rows = {r["case"]: r for r in results["encoder"]}
    assert list(rows) == ["sampling-8f", "sampling-16f", "codec-K2048", "codec-K4096"]
    assert [r["attn"] for r in rows.values()] == ["sdpa"] * 4  # flash needs CUDA
    tokens = {"sampling-8f": 8 * 256, "sampling-16f": 16 * 256, "codec-K2048": 2048,
              "codec-K4096": 4096}
    for name, row in rows.items():
        assert row["tokens_per_clip"] == tokens[name]
        assert row["clips_per_s"] and all(v > 0 for v in row["clips_per_s"])


def test_flop_count_matches_the_architecture(results):
    """ov_encoder_tiny: 128 wide, MLP 256, 2 layers, 14-pixel patches. The counter adds the
    pooling head (a few percent); attention is counted on CPU too (math kernel)."""
    for row in results["encoder"]:
        expected = vit_gflops(row["tokens_per_clip"], 128, 256, 2, 3 * 14 * 14)
        assert expected <= row["gflops_per_clip"] <= 1.1 * expected, row


def test_mfu_from_the_peak(results):
    for row in results["encoder"]:
        clips = sorted(row["clips_per_s"])[len(row["clips_per_s"]) // 2]
        assert row["mfu"] == pytest.approx(row["gflops_per_clip"] * clips / 1e3)


def test_peak_known_per_gpu_and_none_on_cpu(bench_throughput):
    args = bench_throughput.parse_args([])
    assert bench_throughput.peak_tflops(args, __import__("torch").device("cpu")) is None
    assert bench_throughput.known_peak("NVIDIA H200") == 989.4
    assert bench_throughput.known_peak("Some GPU") is None


def test_loader_clips_per_second_beside_bare_decoding(results):
    (size,) = results["loader"].values()
    assert size["bare_clips_s"] > 0
    assert sorted(size["workers"], key=int) == ["0", "1"]  # JSON keys
    assert all(w["clips_s"] > 0 for w in size["workers"].values())
