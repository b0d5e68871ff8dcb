"""Intervals, McNemar, AP, action accuracy and seeds from hand-built per-clip prediction files
with known answers. ``predictions`` and ``attach`` (also used by test_compare and
test_leaderboard) write files in the trainer's format."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest

from eval_encoder import stats


def predictions(labels: Sequence[int], top1: Sequence[int], ids: Optional[Sequence[str]] = None,
                prob: Optional[np.ndarray] = None, classes: int = 10) -> dict:
    """The arrays of a per-clip file: ``top1`` first in each clip's top-5, the next classes
    after it; ``prob`` (float16 [n, C]) only when given, as for cards that declare map."""
    labels, top1 = np.asarray(labels, dtype=np.int64), np.asarray(top1, dtype=np.int64)
    n = labels.size
    ids = np.asarray(ids if ids is not None else [f"v/{i:05d}.mp4" for i in range(n)])
    top5 = (top1[:, None] + np.arange(5)[None, :]) % max(classes, 5)
    arrays = {"id": ids, "line": np.arange(1, n + 1, dtype=np.int64),
              "clip": np.arange(n, dtype=np.int64), "label": labels,
              "top5": top5.astype(np.int16), "top5_prob": np.full((n, 5), 0.2, np.float32),
              "all_top1": top1[:, None].astype(np.int16),
              "all_names": np.asarray(["lr1e-4_wd0@3"])}
    if prob is not None:
        arrays["prob"] = np.asarray(prob, dtype=np.float16)
    return arrays


def attach(record: dict, root: Path, arrays: dict) -> dict:
    """Write ``arrays`` as the record's ``<run_id>.predictions.npz`` where write_record(record,
    root) puts the record, and name the file in the record."""
    folder = Path(root) / "runs" / record["dataset"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.predictions.npz"
    np.savez_compressed(path, **arrays)
    record["predictions"] = {"file": path.name,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                             "head": "lr1e-4_wd0", "epoch": 3, "clips": len(arrays["label"])}
    record["_path"] = str(folder / f"{record['run_id']}.json")
    return record


def hits_record(tmp_path: Path, hit: np.ndarray, run_id: str = "r", dataset: str = "ssv2",
                ids=None) -> dict:
    """A minimal record whose file has ``hit`` clips right (labels 0, top-1 0 or 1)."""
    record = {"run_id": run_id, "dataset": {"name": dataset}, "config": {}}
    hit = np.asarray(hit, dtype=bool)
    return attach(record, tmp_path, predictions(np.zeros(hit.size), np.where(hit, 0, 1), ids))


# ----------------------------------------------------------------------------- intervals
def test_clopper_pearson_closed_forms_and_defining_tails():
    n = 40
    assert stats.clopper_pearson(0, n).lo == 0.0
    assert stats.clopper_pearson(0, n).hi == pytest.approx(100 * (1 - 0.025 ** (1 / n)), abs=1e-9)
    assert stats.clopper_pearson(n, n).lo == pytest.approx(100 * 0.025 ** (1 / n), abs=1e-9)
    k = 13
    iv = stats.clopper_pearson(k, n)
    lo, hi = iv.lo / 100, iv.hi / 100
    # the bounds are where the binomial tails are 2.5%, summed here exactly with math.comb
    upper_tail = sum(math.comb(n, j) * lo ** j * (1 - lo) ** (n - j) for j in range(k, n + 1))
    lower_tail = sum(math.comb(n, j) * hi ** j * (1 - hi) ** (n - j) for j in range(0, k + 1))
    assert upper_tail == pytest.approx(0.025, abs=1e-9)
    assert lower_tail == pytest.approx(0.025, abs=1e-9)
    with pytest.raises(stats.StatsError, match="0 <= k <= n"):
        stats.clopper_pearson(5, 4)


def test_clopper_pearson_against_scipy_when_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in [(1, 10), (7000, 20000), (123, 124)]:
        ref = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        iv = stats.clopper_pearson(k, n)
        assert (iv.lo, iv.hi) == pytest.approx((100 * ref.low, 100 * ref.high), abs=1e-7)


def test_bootstrap_interval_matches_clopper_pearson_for_large_n():
    n, k = 20000, 14000
    hit = np.zeros(n, bool)
    hit[:k] = True
    reps = stats.bootstrap(stats.proportion(hit), 2000, stats.rng_for("ssv2"))
    boot, exact = stats.percentile_interval(reps), stats.clopper_pearson(k, n)
    assert reps.mean() == pytest.approx(70.0, abs=0.05)
    # half-width ~0.64 points; resampling noise in the 2.5% quantile ~0.02
    assert boot.lo == pytest.approx(exact.lo, abs=0.1)
    assert boot.hi == pytest.approx(exact.hi, abs=0.1)
    again = stats.bootstrap(stats.proportion(hit), 2000, stats.rng_for("ssv2"))
    assert np.array_equal(reps, again)  # fixed seed


def test_multinomial_counts_and_clip_draws_give_the_same_law():
    """Few cells draw counts from a multinomial, one cell per clip draws clip indices; both
    are resampling the clips, so the replicates' spread agrees."""
    hit = np.r_[np.ones(300, bool), np.zeros(700, bool)]
    by_counts = stats.bootstrap(stats.proportion(hit), 4000, stats.rng_for("a"))
    per_clip = stats.ClipStat(np.arange(1000), 1000, lambda c: 100.0 * c[:, :300].sum(1) / 1000)
    by_clips = stats.bootstrap(per_clip, 4000, stats.rng_for("a"))
    sd = 100 * math.sqrt(0.3 * 0.7 / 1000)
    assert by_counts.std() == pytest.approx(sd, rel=0.05)
    assert by_clips.std() == pytest.approx(sd, rel=0.05)
    assert by_clips.mean() == pytest.approx(30.0, abs=0.05)


def test_average_interval_resamples_each_dataset_on_its_own():
    a = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    reps = [stats.bootstrap(stats.proportion(a), 3000, stats.rng_for(d)) for d in ("x", "y")]
    iv = stats.average_interval(reps)
    # independent datasets: the mean's sd is 1/sqrt(2) of one dataset's
    one = stats.percentile_interval(reps[0])
    assert (iv.hi - iv.lo) == pytest.approx((one.hi - one.lo) / math.sqrt(2), rel=0.08)


# ----------------------------------------------------------------------------- McNemar
def test_mcnemar_exact_on_a_known_table():
    # A right / B wrong on 8 clips, A wrong / B right on 2: p = 2 * P(X <= 2), X ~ Bin(10, 1/2)
    by_hand = 2 * (math.comb(10, 0) + math.comb(10, 1) + math.comb(10, 2)) / 2 ** 10
    assert by_hand == pytest.approx(0.109375)
    assert stats.mcnemar_exact(8, 2) == pytest.approx(by_hand, abs=1e-12)
    assert stats.mcnemar_exact(2, 8) == pytest.approx(by_hand, abs=1e-12)
    assert stats.mcnemar_exact(5, 5) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(20, 0) == pytest.approx(2 / 2 ** 20)


def test_paired_comparison_of_two_runs(tmp_path):
    # 100 clips: both right on 50, A only on 8, B only on 2, both wrong on 40
    a = np.r_[np.ones(58, bool), np.zeros(42, bool)]
    b = np.r_[np.ones(50, bool), np.zeros(8, bool), np.ones(2, bool), np.zeros(40, bool)]
    ids = [f"c{i:03d}" for i in range(100)]
    ra = hits_record(tmp_path, a, "a", ids=ids)
    rb = hits_record(tmp_path, b[::-1], "b", ids=ids[::-1])  # other order: matched by id
    out = stats.paired([stats.measure(ra, "top1", ids=True)], [stats.measure(rb, "top1", ids=True)],
                       ["a", "b"], "ssv2")
    assert (out.a, out.b, out.diff) == pytest.approx((58.0, 52.0, 6.0))
    assert (out.only_a, out.only_b) == (8, 2)
    assert out.p == pytest.approx(0.109375)
    assert out.interval.lo < 6.0 < out.interval.hi
    # paired: the spread of the difference comes from the 10 discordant clips only
    assert out.replicates.std() == pytest.approx(100 * math.sqrt((0.1 - 0.06 ** 2) / 100), rel=0.1)


# ----------------------------------------------------------------------------- metrics
def test_average_precision_by_hand_and_with_ties():
    # ranks: + - + -  -> precisions at the positives 1/1 and 2/3
    assert stats.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a tie of a positive and a negative is one threshold: precision 1/2 there, whatever the order
    assert stats.average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert stats.average_precision([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    # thresholds 0.9 (1 of 1 right, recall 1/3) and 0.4 (3 of 5 right, recall 1): 1/3 + 2/3*3/5
    assert stats.average_precision([0.9, 0.4, 0.4, 0.4, 0.4], [1, 1, 0, 1, 0]) == pytest.approx(
        1 / 3 + (2 / 3) * (3 / 5))


def test_average_precision_against_scikit_learn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 2)  # many ties
    positive = rng.random(300) < 0.2
    assert stats.average_precision(scores, positive) == pytest.approx(
        metrics.average_precision_score(positive, scores), abs=1e-12)


def test_map_and_mean_class_accuracy_from_a_file(tmp_path):
    labels = [0, 0, 1, 1, 2]
    top1 = [0, 1, 1, 1, 0]
    prob = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1],
                     [0.6, 0.1, 0.3]])
    rec = attach({"run_id": "r", "dataset": {"name": "charadesego"}}, tmp_path,
                 predictions(labels, top1, prob=prob, classes=3))
    # class 0: 1/2, class 1: 2/2, class 2: 0/1
    assert stats.measure(rec, "mean_class_acc").stat.estimate() == pytest.approx(100 * 1.5 / 3)
    assert stats.measure(rec, "top1").stat.estimate() == pytest.approx(60.0)
    # class 0 ranks (0.8+, 0.6-, 0.4+, ...): 1 and 2/3; class 1 (0.8+, 0.7+): 1; class 2
    # (0.3+ first): 1
    assert stats.measure(rec, "map").stat.estimate() == pytest.approx(100 * (5 / 6 + 1 + 1) / 3,
                                                                      abs=0.01)


def test_map_bootstrap_weights_equal_resampled_clips():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 200)
    prob = rng.random((200, 6)).astype(np.float16).astype(np.float32)
    stat = stats.map_stat(prob, labels)
    draws = rng.integers(0, 200, (5, 200))
    weights = np.stack([np.bincount(d, minlength=200) for d in draws])
    direct = [100 * np.mean([stats.average_precision(prob[d, c], labels[d] == c)
                             for c in np.unique(labels[d])]) for d in draws]
    assert stat.value(weights) == pytest.approx(direct, abs=1e-9)


def test_file_without_prob_and_changed_file_are_clear_errors(tmp_path):
    rec = hits_record(tmp_path, np.ones(5, bool))
    with pytest.raises(stats.StatsError, match="no prob array.*only when the dataset card"):
        stats.measure(rec, "map")
    path = Path(rec["_path"]).with_suffix(".predictions.npz")
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(stats.StatsError, match="sha256 .* is not the"):
        stats.measure(rec, "top1")
    with pytest.raises(stats.MissingPredictions, match="no per-clip predictions"):
        stats.measure({"run_id": "old", "dataset": {"name": "ssv2"}}, "top1")


def test_action_accuracy_from_verb_and_noun_files(tmp_path):
    ids = ["P01/videos/P01_01.MP4@0f-99f", "P01/videos/P01_01.MP4@99f-200f",
           "P01/videos/P01_02.MP4@5f-60f", "P02/videos/P02_01.MP4@0f-30f"]
    # verb right on clips 0, 1, 2; noun right on clips 1, 2, 3 -> action right on 1 and 2
    verb = attach({"run_id": "v", "dataset": {"name": "epic_verb"}}, tmp_path,
                  predictions([1, 2, 3, 4], [1, 2, 3, 0], ids))
    noun_order = [3, 1, 0, 2]  # another order: matched by id
    noun = attach({"run_id": "n", "dataset": {"name": "epic_noun"}}, tmp_path,
                  predictions(np.array([5, 6, 7, 8])[noun_order], np.array([0, 6, 7, 8])[noun_order],
                              [ids[i] for i in noun_order]))
    found = stats.derived_measure("epic_action", verb, noun)
    assert found.stat.estimate() == pytest.approx(50.0)
    cell = stats.derived_summary("epic_action", [(verb, noun)], ci="exact")
    assert cell.value == pytest.approx(50.0) and cell.interval.method == "exact"
    missing = attach({"run_id": "m", "dataset": {"name": "epic_noun"}}, tmp_path,
                     predictions([5, 6, 7], [5, 6, 7], ids[:3]))
    with pytest.raises(stats.ClipsDiffer, match="1 clip.*only in"):
        stats.derived_measure("epic_action", verb, missing)


def test_repeated_ids_are_matched_in_file_order():
    keys = stats.clip_keys(np.array(["a@0f-9f", "b", "a@0f-9f"]))
    assert keys.tolist() == ["a@0f-9f", "b", "a@0f-9f#2"]


# ----------------------------------------------------------------------------- seeds
def test_seed_cell_mean_sd_and_joint_interval(tmp_path):
    ids = [f"c{i}" for i in range(400)]
    runs = []
    for seed, right in [(1, 200), (2, 220), (3, 240)]:
        rec = hits_record(tmp_path, np.arange(400) < right, f"s{seed}", ids=ids)
        rec["config"] = {"seed": seed}
        rec["reported"] = {"top1": 100 * right / 400}
        runs.append(rec)
    cell = stats.cell_summary(runs, "top1", "ssv2", ci="bootstrap")
    assert cell.value == pytest.approx(55.0) and cell.seeds == (1, 2, 3)
    assert cell.sd == pytest.approx(5.0)  # 50, 55, 60
    assert cell.interval.lo < 55.0 < cell.interval.hi
    # one resample for all seeds: a clip counts with its share of seeds right (1, 2/3, 1/3, 0)
    share = np.r_[np.ones(200), np.full(20, 2 / 3), np.full(20, 1 / 3), np.zeros(160)]
    assert cell.replicates.std() == pytest.approx(100 * share.std() / math.sqrt(400), rel=0.06)


# ----------------------------------------------------------------------------- benchmarks
def realistic(n: int, classes: int, rng: np.random.Generator, snapshots: int = 10,
              with_prob: bool = False, accuracy: float = 0.55) -> dict:
    """A per-clip file as a run writes it, with realistic content: softmax scores of a head
    that is right on about ``accuracy`` of the clips, EPIC-style segment ids, and M snapshots
    that mostly agree with the reported one."""
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0.0, 1.0, (n, classes)).astype(np.float32)
    logits[np.arange(n), labels] += np.where(rng.random(n) < accuracy, 4.0, 0.0)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    top5 = np.argsort(-prob, axis=1)[:, :5]
    changed = rng.random((n, snapshots)) < np.linspace(0.5, 0.0, snapshots)
    all_top1 = np.where(changed, rng.integers(0, classes, (n, snapshots)), top5[:, :1])
    start = rng.integers(0, 50_000, n)
    arrays = {"id": np.asarray([f"P{p:02d}/videos/P{p:02d}_{v:02d}.MP4@{s}f-{s + 120}f"
                                for p, v, s in zip(rng.integers(1, 37, n), rng.integers(1, 30, n),
                                                   start)]),
              "line": np.arange(1, n + 1, dtype=np.int64), "clip": np.arange(n, dtype=np.int64),
              "label": labels.astype(np.int64), "top5": top5.astype(np.int16),
              "top5_prob": np.take_along_axis(prob, top5, axis=1).astype(np.float32),
              "all_top1": all_top1.astype(np.int16),
              "all_names": np.asarray([f"lr1e-4_wd0@{e}" for e in range(snapshots)])}
    if with_prob:
        arrays["prob"] = prob.astype(np.float16)
    return arrays


@pytest.mark.benchmark
def test_benchmark_file_size_per_1000_clips(tmp_path):
    rng = np.random.default_rng(0)
    for with_prob in (False, True):
        path = tmp_path / f"p{int(with_prob)}.npz"
        np.savez_compressed(path, **realistic(10_000, 174, rng, with_prob=with_prob))
        print(f"\n174 classes, M=10, prob={with_prob}: "
              f"{path.stat().st_size / 10 / 1024:.1f} KiB per 1,000 clips")


# the paper's eight datasets: validation clips, classes (Charades-Ego keeps every class's prob)
BENCH_DATASETS = {"ssv2": (24_777, 174), "diving48": (1_971, 48), "perception_test": (9_000, 63),
                  "charadesego": (9_000, 157), "epic_verb": (9_668, 97),
                  "epic_noun": (9_668, 300), "k400": (19_881, 400), "hmdb51": (1_530, 51)}


@pytest.mark.benchmark
def test_benchmark_leaderboard_ci_time(tmp_path):
    import subprocess
    import sys
    import time

    from test_leaderboard import make_record, write_all

    rng = np.random.default_rng(0)
    files = {d: realistic(n, c, rng, with_prob=d == "charadesego")
             for d, (n, c) in BENCH_DATASETS.items()}
    recs = []
    for row in range(12):
        for d, arrays in files.items():
            rec = make_record(d, 55.0, method=f"Enc {row:02d}", frames=8 if row < 6 else 16)
            rec["metrics"] = {"top1": 55.0, "top5": 80.0, "mean_class_acc": 50.0,
                              **({"map": 20.0} if "prob" in arrays else {})}
            recs.append(attach(rec, tmp_path, arrays))
    runs = write_all(tmp_path, recs)

    def seconds(*args: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "eval_encoder", "leaderboard", "--runs",
                            str(runs), *args], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    plain = seconds()
    print(f"\n12 x 8 table: {plain:.2f} s; --ci adds {seconds('--ci') - plain:.2f} s; --ci exact "
          f"adds {seconds('--ci', 'exact') - plain:.2f} s; --metric map --ci adds "
          f"{seconds('--metric', 'map', '--ci') - plain:.2f} s (medians of 5)")
