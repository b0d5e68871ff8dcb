"""The published versions of the codec settings, pinned to the published files as read, and a
recipe's codec version filling what the recipe and the command line leave unset."""
from __future__ import annotations

from pathlib import Path

import pytest

from eval_encoder import listing
from eval_encoder.codec import versions
from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.suite.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS_README = ROOT / "results" / "README.md"
PAPER_DATE = "2026-02-09"  # arXiv 2602.08683 v1
DATASETS = ("ssv2", "diving48", "perception_test", "epic_verb", "epic_noun", "hmdb51", "k400",
            "charadesego")
# what the published files give, as read (common_codec.sh and attentive_probe_codec.py of
# EvolvingLMMs-Lab/OneVision-Encoder at each commit; 'd': the probe's argparse default)
FIXED = {"mv_compensate": "similarity", "mv_incon_ksize": 3, "res_use_grad": False,
         "fuse_mode": "weighted", "w_mv": 1.0, "w_res": 1.0, "center_sigma": 0.35,
         "static_fallback": 1, "static_uniform_frames": 4}
PUBLISHED = {
    # shell 505ba7b: get_codec_params 116/0.55, 126/0.38 for diving48 and perception_test;
    # probe 5c794b1: --center_prior 0.0 (d), --mv_use_inconsistency off (d)
    "2025-12-30": {ds: {"static_abs_thresh": 126.0 if ds in ("diving48", "perception_test")
                        else 116.0,
                        "static_rel_thresh": 0.38 if ds in ("diving48", "perception_test")
                        else 0.55,
                        "center_prior": 0.0, "mv_use_inconsistency": False} for ds in DATASETS},
    # shell be1f4d2: --mv_use_inconsistency unless diving48; probe 59a5505: 126/0.38/0.3 (d)
    "2026-01-01": {ds: {"static_abs_thresh": 126.0, "static_rel_thresh": 0.38,
                        "center_prior": 0.3, "mv_use_inconsistency": ds != "diving48"}
                   for ds in DATASETS},
    # shell d45ca2a: the same test (it reduces to DATASET != diving48); probe 23e56b3: as 59a5505
    "2026-01-18": {ds: {"static_abs_thresh": 126.0, "static_rel_thresh": 0.38,
                        "center_prior": 0.3, "mv_use_inconsistency": ds != "diving48"}
                   for ds in DATASETS},
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
@pytest.mark.parametrize("dataset", DATASETS)
def test_each_version_gives_what_the_published_files_give(name, dataset):
    assert versions.get(name).settings(dataset) == {**FIXED, **PUBLISHED[name][dataset]}


def test_the_paper_follows_the_latest_version_before_the_paper():
    before = [v.name for v in versions.VERSIONS if v.name < PAPER_DATE]
    assert versions.PAPER_VERSION == max(before) == "2026-01-18"


@pytest.mark.parametrize("name", ["ov_encoder_large_codec_2k", "ov_encoder_large_codec_4k"])
def test_the_codec_recipes_follow_one_published_version(name):
    recipe = load_recipe(str(ROOT / "probes" / f"{name}.yaml"))
    assert recipe.probe["codec_version"] == versions.PAPER_VERSION
    for dataset in recipe.datasets:
        cfg = parse_config(["--config", str(recipe.path), "--dataset", dataset])
        settings = versions.get(versions.PAPER_VERSION).settings(dataset)
        assert {k: getattr(cfg.codec, k) for k in settings} == settings, dataset
        assert cfg.sources["center_prior"] == f"codec version {versions.PAPER_VERSION}"


def test_a_version_fills_only_what_nothing_else_set(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("codec_version: 2025-12-30\nstatic_rel_thresh: 0.9\n")  # YAML reads a date
    cfg = parse_config(["--config", str(recipe), "--dataset", "ssv2", "--center_prior", "0.5"])
    assert cfg.codec.static_abs_thresh == 116.0  # the version's
    assert cfg.codec.static_rel_thresh == 0.9  # the recipe's
    assert cfg.codec.center_prior == 0.5  # the command line's
    assert cfg.sources["static_abs_thresh"] == "codec version 2025-12-30"
    assert parse_config(["--config", str(recipe), "--dataset", "diving48"]).codec.\
        static_abs_thresh == 126.0


def test_without_a_version_the_codec_options_are_as_given():
    cfg = parse_config(["--dataset", "ssv2"])
    assert cfg.codec_version is None and cfg.codec.mv_use_inconsistency is False
    assert "center_prior" not in cfg.sources


def test_an_unknown_version_is_named_with_suggestions():
    with pytest.raises(ConfigError, match=r"'2026-01-19' is not a published version\. "
                                          r"Did you mean '2026-01-18'"):
        parse_config(["--codec_version", "2026-01-19"])


def test_the_versions_table_is_listed_and_in_the_results_readme(capsys):
    assert listing.main(["codec"]) == 0
    text = capsys.readouterr().out
    assert all(v.name in text for v in versions.VERSIONS)
    assert listing.main(["codec", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert table == versions.markdown_table()
    assert table in RESULTS_README.read_text(encoding="utf-8"), \
        "results/README.md is out of date: paste `python -m eval_encoder ls codec --markdown`"
