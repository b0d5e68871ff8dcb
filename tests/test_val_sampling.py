"""``--val_sampling published``: the published scripts' validation draw (checked against a
direct re-implementation), the published-sampled accuracy of every head snapshot and the head
it reports, the optimism of choosing on it by simulation, and a demo run that says so."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval_encoder import protocol, resources
from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.predictions import Scored
from eval_encoder.probe.sampling import (
    PublishedSampling,
    check_flags,
    published_batch,
    published_report,
    published_sampling,
)
from eval_encoder.record import config_hash, read_record
from eval_encoder.report.cli import main as leaderboard
from eval_encoder.report.optimism import load_optimism, optimism_note
from eval_encoder.report.names import PAPER_DATASETS
from eval_encoder.stats.selection import (
    evaluation_number,
    published_counts,
    rank_draw,
    seeds,
    simulate_optimism,
    weighted_accuracy,
)


def upstream_items(n, world, batch, e):
    """The published loader's validation items at evaluation ``e``, written out plainly."""
    items = []
    for r in range(world):
        per_rank = n // world
        steps = per_rank // batch
        perm = np.random.default_rng(1024 + r + e).permutation(n)
        mine = perm[r * per_rank: r * per_rank + steps * batch]
        items += [int(c) for step in range(steps) for c in mine[step * batch:(step + 1) * batch]]
    return items


# ----------------------------------------------------------------------------- the draw

@pytest.mark.parametrize("n,world,batch", [(7, 2, 1), (10, 3, 2), (37, 4, 4), (100, 8, 3)])
def test_the_draw_is_the_published_multiset(n, world, batch):
    for e in range(5):
        direct = np.bincount(upstream_items(n, world, batch, e), minlength=n)
        assert np.array_equal(published_counts(n, world, batch, e), direct)
        for r in range(world):  # within a rank no clip repeats
            assert len(set(rank_draw(n, world, batch, r, e).tolist())) == \
                len(rank_draw(n, world, batch, r, e))


def test_about_a_third_of_the_clips_go_unscored_at_eight_ranks():
    counts = published_counts(100_000, 8, 4, 0)
    assert counts.sum() == 8 * ((100_000 // 8) // 4) * 4
    assert abs((counts == 0).mean() - (7 / 8) ** 8) < 0.005  # 34.4%
    assert counts.max() <= 8
    assert not np.array_equal(counts, published_counts(100_000, 8, 4, 1))


def test_evaluations_count_learning_rates_outside_and_epochs_inside():
    assert [evaluation_number(l, k, 3) for l in range(2) for k in range(3)] == list(range(6))
    assert seeds(8, 2) == tuple(range(1026, 1034))
    assert weighted_accuracy(np.array([1, 0, 1]), np.array([2, 1, 0])) == pytest.approx(200 / 3)
    assert np.isnan(weighted_accuracy(np.array([1]), np.array([0])))


# ----------------------------------------------------------------------------- a run's draw

def _scored(clips, labels, top1):
    top = np.stack([top1, (np.asarray(top1) + 1) % 4], axis=1).astype(np.int16)[:, None, :]
    return Scored(np.asarray(clips), np.asarray(labels), top, np.zeros(top.shape, np.float32))


def test_a_snapshot_is_scored_on_its_evaluations_draw_skipped_clips_left_out():
    sampling = PublishedSampling(11, 3, 2, (0, 2, 4), "test")
    clips = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]  # clip 4 could not be read
    labels = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    guess = [0, 1, 0, 0, 0, 1, 1, 3, 2, 1]
    one = _scored(clips, labels, guess)
    e = sampling.evaluation(4, 1)  # head 1's third evaluation
    assert e == 5
    items = [c for c in upstream_items(11, 3, 2, e) if c != 4]
    hits = {c: int(g == lab) for c, g, lab in zip(clips, guess, labels)}
    got = sampling.scores(one, 4, 1)
    assert got["published_items"] == len(items)
    assert got["published_top1"] == pytest.approx(100 * sum(hits[c] for c in items) / len(items))


def test_b_is_the_papers_per_gpu_batch_unless_given():
    cfg = parse_config(["--val_sampling", "published", "--global_batch_size", "32"])
    cfg.batch_size = 2
    assert published_batch(cfg) == (4, "--global_batch_size 32 / 8")
    cfg.global_batch_size = None
    assert published_batch(cfg) == (2, "--batch_size")
    cfg.global_batch_size = 12
    with pytest.raises(ConfigError, match="not a multiple"):
        published_batch(cfg)
    cfg.published_batch_size = 5
    assert published_batch(cfg) == (5, "--published_batch_size")


def test_its_flags_need_published_and_a_draw_that_scores_something():
    check_flags(parse_config([]))
    with pytest.raises(ConfigError, match="--published_world_size is read only with"):
        check_flags(parse_config(["--published_world_size", "4"]))
    cfg = parse_config(["--val_sampling", "published"])
    cfg.batch_size = 4
    with pytest.raises(ConfigError, match="scores nothing"):
        published_sampling(cfg, 7, [0, 1])  # the demo's 7 clips at W=8
    assert published_sampling(parse_config([]), 7, [0]) is None
    assert published_sampling(cfg, 64, [0, 1]).batch == 4


def _rows(*histories, status="ok"):
    return [{"name": f"h{i}", "status": status, "history": [
        {"epoch": e, "top1": 50.0 + e, "top5": 90.0, "published_top1": p, "published_top5": 95.0,
         "published_items": 6} for e, p in enumerate(h)]} for i, h in enumerate(histories)]


def test_the_reported_snapshot_is_the_best_published_one_first_among_equals():
    sampling = PublishedSampling(7, 2, 1, (0, 1, 2), "test")
    reported, block = published_report(_rows([10, 30, 20], [30, 5, 30]), "best_val", sampling)
    assert (reported["head"], reported["epoch"], reported["top1"]) == ("h0", 1, 30)
    assert reported["chosen_on"] == "val, published sampling"
    assert block["reported"]["exact_top1"] == 51.0 and block["reported"]["evaluation"] == 1
    assert block["reported"]["seeds"] == [1025, 1026] and block["items_per_evaluation"] == 6
    last, _ = published_report(_rows([10, 30, 20], [30, 5, 30]), "last", sampling)
    assert (last["head"], last["epoch"]) == ("h1", 2)


def test_published_departs_from_the_protocol_and_keeps_earlier_hashes_at_exact():
    plain, exact = parse_config([]), parse_config(["--val_sampling", "exact"])
    published = parse_config(["--val_sampling", "published"])
    assert config_hash(plain.to_dict()) == config_hash(exact.to_dict())
    assert config_hash(plain.to_dict()) != config_hash(published.to_dict())
    assert protocol.departures(published) == {"val_sampling": "published"}
    assert protocol.label({"protocol": protocol.describe(published)}) == "paper*"
    assert protocol.departures(plain) == {}


# ----------------------------------------------------------------------------- optimism

def test_no_selection_and_no_draw_noise_give_no_optimism():
    one_eval = simulate_optimism(500, 0.6, 4, 5, 1, replicates=400)
    assert abs(one_eval.published.mean) < 4 * one_eval.published.error  # one evaluation
    whole = simulate_optimism(300, 0.6, 1, 1, 5, replicates=50)  # W=B=1: every clip once
    assert whole.published.mean == pytest.approx(0, abs=1e-9)
    assert simulate_optimism(300, 1.0, 8, 2, 5, replicates=50).published.mean == \
        pytest.approx(0, abs=1e-9)


def test_optimism_grows_with_evaluations_and_is_reproducible():
    few = simulate_optimism(1000, 0.6, 8, 4, 2, replicates=300)
    many = simulate_optimism(1000, 0.6, 8, 4, 20, replicates=300)
    assert 0 < few.published.mean < many.published.mean
    assert simulate_optimism(1000, 0.6, 8, 4, 20, replicates=300) == many
    noisy = simulate_optimism(1000, 0.6, 8, 4, 5, replicates=200, unstable=0.2)
    assert noisy.exact.mean > 0  # the exact-once best epoch is optimistic too


def test_the_stored_figures_are_the_functions_and_the_deviation_quotes_them():
    table = load_optimism()
    assert set(table.dataset) == set(PAPER_DATASETS)
    row = table[(table.dataset == "hmdb51") & (table.model == "same_head")].iloc[0]
    again = simulate_optimism(int(row.clips), float(row.p), int(row.world), int(row["batch"]),
                              int(row.evals), replicates=1000, seed=7)
    error = np.hypot(again.published.error, row.gain_error)
    assert abs(again.published.mean - row.gain) < 4 * error
    effect = next(d.effect for d in protocol.DEVIATIONS if d.option == "val_sampling")
    for r in table[table.model == "same_head"].itertuples():
        assert f"+{r.gain:.2f}" in effect, r.dataset


def test_the_leaderboard_quotes_them_only_when_asked(tmp_path, capsys):
    note = optimism_note(load_optimism(), list(PAPER_DATASETS))
    assert "Diving48 +2.18" in note
    assert leaderboard(["--runs", str(tmp_path), "--reported"]) == 0
    assert "validation draw" not in capsys.readouterr().out
    assert leaderboard(["--runs", str(tmp_path), "--reported", "--val_optimism"]) == 0
    assert note in capsys.readouterr().out
    assert leaderboard(["--runs", str(tmp_path), "--val_optimism"]) == 2
    assert resources.optimism_csv().is_file()


# ----------------------------------------------------------------------------- a demo run

@pytest.mark.slow
def test_a_published_run_of_the_demo_reports_the_published_draws_best(tmp_path, monkeypatch,
                                                                        capsys):
    from eval_encoder.demo import generate, probe_command, save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    data, weights = generate(tmp_path), save_tiny_encoder(tmp_path)
    report = tmp_path / "report"
    cmd = probe_command(data, weights, report, nproc=1, extra=[
        "--default_epoch", "2", "--default_lr_list", "0.001", "0.0003",
        "--val_sampling", "published", "--published_world_size", "2",
        "--published_batch_size", "1"])
    assert probe_main(cmd[2:]) == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["dataset"]["name"] == "demo" and record["status"] == "complete"
    assert record["protocol"]["departures"] == {"val_sampling": "published"}
    block, reported = record["val_sampling"], record["reported"]
    assert (block["world_size"], block["batch"], block["clips"]) == (2, 1, 7)
    assert block["items_per_evaluation"] == 6 and reported["chosen_on"] == "val, published sampling"
    assert record["samples"]["val"]["scored"] == 7  # still every clip once
    _check_against_the_predictions(record, Path(path).parent)
    out = capsys.readouterr().out  # the last lines say both numbers
    assert f"top-1 {reported['top1']:.2f}%" in out
    assert f"every clip once, as leaderboard tables it: {record['metrics']['top1']:.2f}%" in out


def _check_against_the_predictions(record, folder: Path):
    """Every snapshot's published top-1, recomputed from the predictions file and a plain
    re-implementation of the draw, and the reported one the best of them."""
    files = np.load(folder / record["predictions"]["file"], allow_pickle=False)
    heads = [h["name"] for h in record["heads"]]
    measured = {}
    for k, name in enumerate(files["all_names"]):
        head, epoch = str(name).rsplit("@", 1)
        e = heads.index(head) * 2 + int(epoch)
        hits = {int(c): int(t == y) for c, t, y in
                zip(files["clip"], files["all_top1"][:, k], files["label"])}
        items = upstream_items(7, 2, 1, e)
        measured[(heads.index(head), int(epoch))] = 100 * sum(hits[c] for c in items) / len(items)
        entry = record["heads"][heads.index(head)]["history"][int(epoch)]
        assert entry["published_top1"] == pytest.approx(measured[(heads.index(head), int(epoch))])
    best = max(sorted(measured), key=measured.get)  # the first of equals, lr outer (upstream)
    reported = record["reported"]
    assert (heads.index(reported["head"]), reported["epoch"]) == best
    assert reported["top1"] == pytest.approx(measured[best])
    exact = pd.Series(files["all_top1"][:, list(files["all_names"]).index(
        f"{reported['head']}@{reported['epoch']}")] == files["label"]).mean() * 100
    assert record["val_sampling"]["reported"]["exact_top1"] == pytest.approx(exact)
    assert record["metrics"]["top1"] == pytest.approx(exact)
