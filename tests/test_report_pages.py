"""The HTML report's pages from hand-written records, without a browser: ``report --selection``
numbers the index as ``leaderboard --selection`` does and says what it left out; a held-out
run's page shows its selection (val maximum, gap); with ``--heldout_val_max off`` the head
grid is the held-out top-1; a cell of two seeds links to a page listing both, with per-class
accuracy pooled over their predictions files; class names come from ``classes.csv`` beside
the manifests, indices otherwise (a malformed file is logged, never fatal)."""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from chromium import parse, table_rows
from eval_encoder.prepare.write import classes_text
from eval_encoder.report.site import main as report_main
from test_leaderboard import make_record, write_all
from test_stats import attach, predictions

LRS, WDS = (1e-4, 1e-3), (0.0, 0.05)
NAMES = ["pushing", "pulling", "lifting", "dropping", "spinning"]


def _heldout_record(method: str, top1: float, val_max):
    """A --select_on heldout record: reported chosen on held-out clips; ``val_max`` None is
    --heldout_val_max off (no val maximum, no gap)."""
    rec = make_record("ssv2", top1, method=method)
    chosen = {"head": "lr0.0001_wd0", "epoch": 1, "top1": top1, "top5": 99.0,
              "heldout_top1": 70.0}
    gap = None if val_max is None else val_max - top1
    best = None if val_max is None else {**chosen, "top1": val_max, "head": "lr0.001_wd0",
                                         "epoch": 2, "selection": "best_val", "chosen_on": "val"}
    rec["reported"].update(chosen_on="heldout", heldout_top1=70.0, val_max=best, gap_top1=gap)
    rec["selection"] = {"select_on": "heldout", "chosen": chosen, "val_max": best,
                        "gap_top1": gap}
    return rec


def _heldout_only_heads():
    """Histories as --heldout_val_max off leaves them: held-out top-1 every epoch, val top-1
    at the chosen snapshot only (epoch 1 of the first head)."""
    heads, rng = [], np.random.default_rng(3)
    for lr in LRS:
        for wd in WDS:
            history = [{"epoch": e, "train_loss": 2.0 - 0.1 * e,
                        "heldout_top1": round(float(rng.uniform(20, 80)), 2)} for e in range(3)]
            heads.append({"name": f"lr{lr:g}_wd{wd:g}", "kind": "ov", "lr": lr,
                          "weight_decay": wd, "status": "ok", "history": history})
    heads[0]["history"][1].update(top1=55.0, top5=99.0)
    return heads


@pytest.fixture(scope="module")
def selection_sites(tmp_path_factory):
    """Three runs of ssv2 (held-out with a val maximum, held-out without, chosen on val)
    reported under each --selection."""
    root = tmp_path_factory.mktemp("selection")
    held = _heldout_record("Enc H", 60.0, 65.0)
    off = _heldout_record("Enc O", 55.0, None)
    off["heads"] = _heldout_only_heads()
    runs = write_all(root, [held, off, make_record("ssv2", 50.0, method="Enc V")])
    sites = {}
    for selection in (None, "heldout", "val"):
        sites[selection] = root / f"site-{selection}"
        flags = ["--selection", selection] if selection else []
        assert report_main(["--runs", str(runs), "--out", str(sites[selection]),
                            "--resamples", "50", *flags]) == 0
    return {"runs": runs, "sites": sites, "held": held, "off": off}


def _ssv2_cells(site: Path):
    """{method: the ssv2 cell's text} of the index's first board, and its notes."""
    dom = parse((site / "index.html").read_text(encoding="utf-8"))
    (table,) = dom.find_all("table", id="board-1")
    header = [th.content().strip() for th in table.find_all("th")]
    rows = [table_rows(g)[0] for g in table.find_all("tbody", **{"class": "measured"})]
    notes = " ".join(li.content() for ul in dom.find_all("ul", **{"class": "notes"})
                     for li in ul.find_all("li"))
    return {r[0]: r[header.index("SSV2")] for r in rows}, notes


def test_the_index_numbers_each_run_as_the_selection_says(selection_sites):
    sites = selection_sites["sites"]
    cells, _ = _ssv2_cells(sites[None])
    assert cells == {"Enc H": "60.0", "Enc O": "55.0", "Enc V": "50.0"}
    cells, notes = _ssv2_cells(sites["heldout"])
    assert cells == {"Enc H": "60.0", "Enc O": "55.0"}  # the held-out choices
    assert "--selection heldout: 1 run(s) left out, chosen on the validation split" in notes
    cells, notes = _ssv2_cells(sites["val"])
    assert cells == {"Enc H": "65.0", "Enc V": "50.0"}  # the grid's val maximum
    assert "--selection val: 1 run(s) left out" in notes and "--heldout_val_max off" in notes
    intro = (sites["val"] / "index.html").read_text(encoding="utf-8")
    assert "<code>--selection val</code>" in intro


def _run_dom(site: Path, record):
    return parse((site / "runs" / "ssv2" / f"{record['run_id']}.html").read_text("utf-8"))


def _selection_lines(dom):
    (block,) = dom.find_all("dl", id="selection")
    terms = [n.content().strip() for n in block.find_all("dt")]
    return dict(zip(terms, [n for n in block.find_all("dd")]))


def test_a_heldout_runs_page_shows_its_val_maximum_and_gap(selection_sites):
    held, off = selection_sites["held"], selection_sites["off"]
    for selection in (None, "val"):  # the block reads the record as written
        lines = _selection_lines(_run_dom(selection_sites["sites"][selection], held))
        assert "held-out top-1 70.00%" in lines["held-out choice"].content()
        assert "validation top-1 60.00%" in lines["held-out choice"].content()
        assert float(lines["grid's val maximum"].attrs["data-v"]) == 65.0
        assert "validation top-1 65.00%" in lines["grid's val maximum"].content()
        assert float(lines["gap"].attrs["data-v"]) == 5.0
        assert lines["gap"].content().startswith("+5.00 points")
    shown = (selection_sites["sites"]["val"] / "runs" / "ssv2" / f"{held['run_id']}.html")
    assert "Shown as <code>--selection val</code>" in shown.read_text("utf-8")
    lines = _selection_lines(_run_dom(selection_sites["sites"][None], off))
    assert "--heldout_val_max off" in lines["grid's val maximum"].content()


def test_with_no_val_grid_the_heat_map_is_the_heldout_top1(selection_sites):
    off, site = selection_sites["off"], selection_sites["sites"][None]
    (table,) = _run_dom(site, off).find_all("table", **{"class": "grid-values"})
    assert table.attrs["data-score"] == "heldout"
    shown = {(float(td.attrs["data-lr"]), float(td.attrs["data-wd"])): float(td.attrs["data-v"])
             for td in table.find_all("td")}
    assert shown == {(h["lr"], h["weight_decay"]): h["history"][-1]["heldout_top1"]
                     for h in off["heads"]}
    folder = site / "runs" / "ssv2"
    assert "final held-out top-1" in (folder / f"{off['run_id']}.grid0.svg").read_text("utf-8")
    assert "held-out top-1 (%)" in (folder / f"{off['run_id']}.curves.svg").read_text("utf-8")


# ----------------------------------------------------------------------------- seeds, names
def _seed_record(root: Path, dataset: str, seed: int, rng, data: Path):
    rec = make_record(dataset, 0.0, method="Enc S")
    rec["config"] = {**rec["config"], "seed": seed}
    rec["run_id"] = f"s{seed}-{dataset}"
    rec["dataset"]["num_classes"] = len(NAMES)
    rec["dataset"]["val_manifest"] = str(data / dataset / "val.csv")
    labels = rng.integers(0, len(NAMES), 40)
    guess = np.where(rng.random(40) < 0.6, labels, (labels + 1) % len(NAMES))
    rec["reported"]["top1"] = 100.0 * float(np.mean(labels == guess))
    ids = [f"{dataset}/clip{i:03d}.mp4" for i in range(40)]
    return attach(rec, root, predictions(labels, guess, ids, classes=len(NAMES)))


@pytest.fixture(scope="module")
def seed_site(tmp_path_factory):
    """Enc S: two seeds on k400 (classes.csv written), one on hmdb51 (none), one on
    diving48 (a malformed classes.csv)."""
    root = tmp_path_factory.mktemp("seeds")
    data, rng = root / "data", np.random.default_rng(7)
    (data / "k400").mkdir(parents=True)
    (data / "k400" / "classes.csv").write_text(classes_text(NAMES), encoding="utf-8")
    (data / "diving48").mkdir(parents=True)
    (data / "diving48" / "classes.csv").write_text("label;title\n0;x\n", encoding="utf-8")
    records = [_seed_record(root, d, s, rng, data)
               for d, s in (("k400", 0), ("k400", 1), ("hmdb51", 0), ("diving48", 0))]
    runs = write_all(root, records)
    site = root / "site"
    assert report_main(["--runs", str(runs), "--out", str(site), "--resamples", "50"]) == 0
    return runs, site


def _k400_link(site: Path) -> str:
    dom = parse((site / "index.html").read_text(encoding="utf-8"))
    (table,) = dom.find_all("table", id="board-1")
    return next(a.attrs["href"] for a in table.find_all("a")
                if a.attrs["href"].startswith("cells/k400/"))


def _pooled(runs: Path):
    """(class, clips, right) of both k400 seeds' predictions files together, and their
    confusions {(true, predicted): clips}."""
    clips, right, wrong = Counter(), Counter(), Counter()
    for seed in (0, 1):
        with np.load(runs / "k400" / f"s{seed}-k400.predictions.npz") as npz:
            for label, guess in zip(npz["label"].tolist(), npz["top5"][:, 0].tolist()):
                clips[label] += 1
                right[label] += label == guess
                wrong[(label, guess)] += label != guess
    return sorted((c, n, right[c]) for c, n in clips.items()), +wrong


def test_a_cell_of_two_seeds_links_to_a_page_of_both_with_pooled_classes(seed_site):
    runs, site = seed_site
    page = site / _k400_link(site)
    dom = parse(page.read_text(encoding="utf-8"))
    (seeds,) = dom.find_all("table", id="seeds")
    hrefs = [a.attrs["href"] for a in seeds.find_all("a")]
    assert [Path(h).name for h in hrefs] == ["s0-k400.html", "s1-k400.html"]
    assert all((page.parent / h).resolve().is_file() for h in hrefs)  # a page per seed
    (table,) = dom.find_all("table", id="classes")
    rows, (per_class, wrong) = table_rows(table), _pooled(runs)
    assert sorted((int(c.split()[0]), int(n), int(r)) for c, n, r, _, _ in rows) == per_class
    assert sorted(r[0] for r in rows) == [f"{i} {name}" for i, name in enumerate(NAMES)]
    accuracy = [float(r[3]) for r in rows]
    assert accuracy == sorted(accuracy)  # worst first
    (table,) = dom.find_all("table", id="confusions")  # summed over the seeds
    assert {(int(t.split()[0]), int(p.split()[0])): int(n)
            for t, p, n, _, _ in table_rows(table)} == dict(wrong)


def _class_column(site: Path, dataset: str, run_id: str):
    dom = parse((site / "runs" / dataset / f"{run_id}.html").read_text(encoding="utf-8"))
    (table,) = dom.find_all("table", id="classes")
    return [r[0] for r in table_rows(table)]


def test_class_names_from_classes_csv_else_indices(seed_site):
    _, site = seed_site
    assert all(re.fullmatch(r"\d+ [a-z]+", t) for t in _class_column(site, "k400", "s0-k400"))
    assert all(t.isdigit() for t in _class_column(site, "hmdb51", "s0-hmdb51"))
    assert all(t.isdigit() for t in _class_column(site, "diving48", "s0-diving48"))


def test_a_malformed_classes_csv_is_a_warning_naming_it(tmp_path, caplog):
    from eval_encoder.report.classnames import class_names, names_in

    names_in.cache_clear()
    bad = tmp_path / "d" / "classes.csv"
    bad.parent.mkdir()
    bad.write_bytes(b"index,name\n0,ok\nx,broken\n")
    record = {"dataset": {"name": "d", "val_manifest": str(tmp_path / "d" / "val.csv")}}
    with caplog.at_level(logging.WARNING):
        assert class_names(record) == {}
    assert str(bad) in caplog.text and "line 3" in caplog.text
    bad.write_text(classes_text(["a, with comma", "b"]), encoding="utf-8")
    names_in.cache_clear()
    assert class_names(record) == {0: "a, with comma", 1: "b"}
    assert class_names({"dataset": {"name": "d"}}) == {}  # no manifest path: no names


def test_a_run_page_of_1000_classes_holds_every_class_and_stays_small(tmp_path):
    """Kinetics-700 or EPIC-noun sized: every class is a row of the sortable table (worst
    first), the page is folded behind its summary, and it stays a few hundred KB."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1000), 2)
    guess = np.where(rng.random(labels.size) < 0.6, labels, rng.integers(0, 1000, labels.size))
    record = attach(make_record("k400", 60.0, method="Enc K"), tmp_path,
                    predictions(labels, guess, classes=1000))
    runs = write_all(tmp_path, [record])
    site = tmp_path / "site"
    assert report_main(["--runs", str(runs), "--out", str(site), "--resamples", "20"]) == 0
    page = site / "runs" / "k400" / f"{record['run_id']}.html"
    dom = parse(page.read_text(encoding="utf-8"))
    (table,) = dom.find_all("table", id="classes")
    rows = table_rows(table)
    assert len(rows) == 1000 and sorted(int(r[0]) for r in rows) == list(range(1000))
    accuracy = [float(r[3]) for r in rows]
    assert accuracy == sorted(accuracy)  # worst first
    assert "1000 classes" in page.read_text(encoding="utf-8")
    assert page.stat().st_size < 600_000, page.stat().st_size
