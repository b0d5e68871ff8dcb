"""``python -m eval_encoder report``: the static HTML report of the demo's runs and of a
simulated 12 x 8 board, opened in a real headless Chromium with no network (tests/chromium.py):
the screenshot is not blank, the leaderboard in the DOM after the scripts ran has the expected
rows and columns, every link of the index is a file of the site, and no request leaves the
browser. The run pages' per-class accuracy, confusions and head grid equal computations from
the predictions file and the record written here."""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from chromium import Browser, chromium_binary, links, parse, table_rows
from eval_encoder.demo import CLASS_NAMES, generate_dataset, probe_flags, save_tiny_encoder
from eval_encoder.probe.run import main as probe_main
from eval_encoder.report.site import main as report_main
from report_board import PAPER, board_records

ROWS = 12
PAPER_TITLES = ["SSV2", "Diving48", "Perce. Test", "CharEgo", "Epic Verb", "Epic Noun", "K400",
                "HMDB51"]
HEADER = ["Method", "Arch.", "Res.", "Protocol", "GFLOPs/clip", "AVG"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    found = Browser(chromium_binary(), tmp_path_factory.mktemp("chromium-profile"))
    yield found
    found.proxy.close()


@pytest.fixture(scope="module")
def board_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    runs = board_records(root, rows=ROWS)
    start = time.perf_counter()
    assert report_main(["--runs", str(runs), "--out", str(root / "site"), "--resamples", "500",
                        "--compare", "Encoder 03", "Encoder 02"]) == 0
    print(f"12 x 8 report: {time.perf_counter() - start:.1f} s")
    return runs, root / "site"


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    """The demo's data and tiny encoder, one probe run (2 epochs, the demo's two heads)."""
    out = tmp_path_factory.mktemp("demo")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=7, seed=0)
    weights = save_tiny_encoder(out)
    flags = probe_flags(out / "data", weights, out / "report", ["--default_epoch", "2",
                                                                "--monitor_clips", "0"])
    assert probe_main(flags) == 0
    assert report_main(["--runs", str(out / "report" / "runs"), "--out", str(out / "site"),
                        "--resamples", "200"]) == 0
    return out / "report" / "runs", out / "site"


def _no_requests(browser):
    assert browser.proxy.seen == [], f"the pages made network requests: {browser.proxy.seen}"


def _not_blank(png: Path):
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.std() > 10 and (pixels < 200).mean() > 0.02, f"{png} looks blank"


def _local_links(site: Path, page: Path, dom) -> None:
    found = links(dom)
    assert found, f"{page} has no links"
    for link in found:
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc, f"{page}: external link {link}"
        if parts.path:
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file() and site.resolve() in target.parents, \
                f"{page}: {link} is not a file of {site}"


def _board(dom, n=1):
    (table,) = dom.find_all("table", id=f"board-{n}")
    assert table.attrs.get("data-sortable") == "ready"  # the script ran
    header = [th.content().replace("↕", "").strip() for th in table.find_all("th")]
    return header, table


def _measured(table):
    return [table_rows(g)[0] for g in table.find_all("tbody", **{"class": "measured"})]


def test_board_report_opens_offline_with_its_rows_columns_and_links(board_site, browser,
                                                                    tmp_path):
    _, site = board_site
    index = site / "index.html"
    _not_blank(browser.screenshot(index, tmp_path / "index.png"))
    dom = parse(browser.dom(index))
    assert dom.find_all("body")[0].attrs.get("data-ready") == "1"
    header, table = _board(dom)
    assert header == HEADER + PAPER_TITLES
    rows = _measured(table)
    assert [r[0] for r in rows] == [f"Encoder {i:02d}" for i in range(ROWS)]
    assert all(len(r) == len(header) for r in rows)
    interval = re.compile(r"^\d+\.\d (±\d+\.\d|\+\d+\.\d/-\d+\.\d)$")
    assert all(interval.match(cell) for r in rows for cell in r[5:]), rows  # AVG's too
    reported = [r[0] for g in table.find_all("tbody", **{"class": "reported"})
                for r in table_rows(g)]
    assert "OneVision Encoder" in reported and "SigLIP2" in reported  # the paper's rows
    _local_links(site, index, dom)
    hrefs = [n.attrs["href"] for n in table.find_all("a")]
    assert len(hrefs) == ROWS * len(PAPER) and "compare-1.html" in links(dom)
    page = site / "runs" / "ssv2" / "enc05-ssv2.html"
    _not_blank(browser.screenshot(page, tmp_path / "run.png", size="1200,2000"))
    _local_links(site, page, parse(browser.dom(page)))
    _local_links(site, site / "compare-1.html", parse(browser.dom(site / "compare-1.html")))
    _no_requests(browser)


def test_demo_report_opens_offline(demo_site, browser, tmp_path):
    runs, site = demo_site
    index = site / "index.html"
    _not_blank(browser.screenshot(index, tmp_path / "demo.png"))
    dom = parse(browser.dom(index))
    header, table = _board(dom)
    assert header == HEADER + PAPER_TITLES + ["demo"]
    (row,) = _measured(table)
    (record,) = [json.loads(p.read_text()) for p in runs.rglob("*.json")]
    assert row[0] == record["method"] and row[-1].startswith(f"{record['reported']['top1']:.1f}")
    _local_links(site, index, dom)
    (page,) = (site / "runs" / "demo").glob("*.html")
    run_dom = parse(browser.dom(page))
    _local_links(site, page, run_dom)
    assert _grid_values(run_dom) == _final_top1(record)
    (table,) = run_dom.find_all("table", id="classes")  # named by the demo's classes.csv
    assert {r[0] for r in table_rows(table)} <= {f"{i} {n}" for i, n in enumerate(CLASS_NAMES)}
    _no_requests(browser)


def test_a_page_with_an_external_reference_is_caught(browser, tmp_path):
    """The harness itself: a request that would leave the browser reaches the proxy."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://example.com/x.png">'
                    '<script src="https://cdn.example.org/x.js"></script>hi</body></html>')
    browser.dom(page)
    seen = browser.proxy.seen
    browser.proxy.server.seen.clear()
    assert any("example.com" in s for s in seen), seen


# ----------------------------------------------------------------------------- (b) the numbers
def _page(site: Path, run_id: str, dataset: str):
    return parse((site / "runs" / dataset / f"{run_id}.html").read_text(encoding="utf-8"))


def _arrays(runs: Path, run_id: str, dataset: str):
    with np.load(runs / dataset / f"{run_id}.predictions.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_per_class_accuracy_and_confusions_are_the_predictions(board_site):
    runs, site = board_site
    dom = _page(site, "enc04-k400", "k400")
    arrays = _arrays(runs, "enc04-k400", "k400")
    labels, guess, ids = arrays["label"].tolist(), arrays["top5"][:, 0].tolist(), arrays["id"]
    clips, right = Counter(labels), Counter(t for t, g in zip(labels, guess) if t == g)
    (table,) = dom.find_all("table", id="classes")
    shown = [(int(c), int(n), int(r), float(a)) for c, n, r, a, _ in table_rows(table)]
    assert sorted(shown) == sorted((c, n, right[c], round(100 * right[c] / n, 1))
                                   for c, n in clips.items())
    assert [s[3] for s in shown] == sorted(s[3] for s in shown)  # worst first
    wrong = Counter((t, g) for t, g in zip(labels, guess) if t != g)
    expected = sorted(wrong.items(), key=lambda kv: (-kv[1], *kv[0]))[:20]
    (table,) = dom.find_all("table", id="confusions")
    got = table_rows(table)
    assert [(int(t), int(p), int(n)) for t, p, n, _, _ in got] == \
        [(t, p, n) for (t, p), n in expected]
    for (t, p), line in zip([e[0] for e in expected], got):
        first = [str(i) for i, a, b in zip(ids, labels, guess) if (a, b) == (t, p)][:3]
        assert line[4] == ", ".join(first)


def _grid_values(dom):
    return {(float(td.attrs["data-lr"]), float(td.attrs["data-wd"])): float(td.attrs["data-v"])
            for table in dom.find_all("table", **{"class": "grid-values"})
            for td in table.find_all("td")}


def _final_top1(record):
    return {(float(h["lr"]), float(h["weight_decay"])): float(h["history"][-1]["top1"])
            for h in record["heads"]}


def test_head_grid_is_the_records_histories(board_site):
    runs, site = board_site
    record = json.loads((runs / "diving48" / "enc07-diving48.json").read_text())
    assert _grid_values(_page(site, "enc07-diving48", "diving48")) == _final_top1(record)


def test_figures_are_svg_with_text_and_no_external_reference(board_site):
    _, site = board_site
    svgs = list(site.rglob("*.svg"))
    assert len(svgs) == 2 * ROWS * len(PAPER) + 1  # grid and curves per run, compute
    for svg in svgs[:5] + [site / "figures" / "compute-0.svg"]:
        text = svg.read_text(encoding="utf-8")
        assert "<text" in text and "xlink:href=\"http" not in text and "@import" not in text
    html = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    assert "http://" not in html and "https://" not in html and "//cdn" not in html


def test_report_command_errors_are_short_and_name_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        report_main(["--out", str(tmp_path / "s"), "--resampels", "5"])
    assert "Did you mean" in capsys.readouterr().err
    bad = tmp_path / "runs" / "ssv2" / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert report_main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "s")]) == 2
    assert str(bad) in capsys.readouterr().err
