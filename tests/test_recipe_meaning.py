"""One meaning per recipe: its per-dataset settings apply however it runs. For every shipped
recipe and each of its datasets, ``probe --config <recipe> --dataset <d>`` resolves the same
configuration (and config hash) as the suite's run of that dataset, and ``--help`` shows the
values that run takes."""
from __future__ import annotations

from pathlib import Path

import pytest

from eval_encoder import recipe as recipe_file
from eval_encoder import record as rec
from eval_encoder.config import ConfigError
from eval_encoder.launch import Topology
from eval_encoder.probe.args import help_defaults, parse_config
from eval_encoder.suite.plan import make_task, trainer_argv
from eval_encoder.suite.recipes import load_recipe, write_probe_yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "probes").glob("*.yaml"))
WHERE = ("sources", "config", "data_root", "save_report")  # where a run reads and writes


def _pairs():
    return [(path, dataset) for path in RECIPES for dataset in load_recipe(str(path)).datasets]


def _resolved(cfg) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in WHERE}


@pytest.mark.parametrize("path, dataset", _pairs(), ids=lambda x: getattr(x, "stem", x))
def test_probe_and_suite_resolve_a_recipe_alike(path, dataset, tmp_path):
    recipe = load_recipe(str(path))
    written = write_probe_yaml(recipe, dataset, str(tmp_path))
    by_suite = parse_config(trainer_argv(written, dataset, "/data", str(tmp_path)))
    by_probe = parse_config(["--config", str(path), "--dataset", dataset, "--data_root", "/data"])
    assert _resolved(by_probe) == _resolved(by_suite)
    assert rec.config_hash(by_probe.to_dict()) == rec.config_hash(by_suite.to_dict())


@pytest.mark.parametrize("path, dataset", _pairs(), ids=lambda x: getattr(x, "stem", x))
def test_help_shows_what_the_run_takes(path, dataset):
    known = help_defaults(["--config", str(path), "--dataset", dataset])
    cfg = parse_config(["--config", str(path), "--dataset", dataset])
    options = recipe_file.dataset_options(load_recipe(str(path)).probe,
                                          load_recipe(str(path)).per_dataset, dataset)
    for name in options:
        shown = known[name][0]
        value = getattr(cfg, name) if hasattr(cfg, name) else getattr(cfg.codec, name)
        assert str(shown) == str(value), (name, shown, value)


def test_the_paper_batch_of_hmdb51_holds_through_probe_and_help():
    """The issue's case: the 8-frame recipe on HMDB51 trains at the paper's global batch 16."""
    path = ROOT / "probes" / "ov_encoder_large_8f.yaml"
    cfg = parse_config(["--config", str(path), "--dataset", "hmdb51"])
    assert cfg.global_batch_size == 16
    assert cfg.sources["global_batch_size"] == f"yaml:{path} (suite.per_dataset.hmdb51)"
    assert help_defaults(["--config", str(path), "--dataset", "hmdb51"])["global_batch_size"] == (
        16, f"recipe {path} (suite.per_dataset.hmdb51)")
    assert parse_config(["--config", str(path), "--dataset", "k400"]).global_batch_size == 128


def test_the_command_line_wins_over_a_dataset_entry(tmp_path):
    path = ROOT / "probes" / "ov_encoder_large_8f.yaml"
    cfg = parse_config(["--config", str(path), "--dataset", "hmdb51", "--global_batch_size", "8"])
    assert cfg.global_batch_size == 8 and cfg.sources["global_batch_size"] == "command line"


def test_a_recipe_dataset_without_the_command_line_takes_its_entry(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("dataset: hmdb51\nsuite:\n  datasets: [hmdb51]\n"
                    "  per_dataset:\n    hmdb51: {global_batch_size: 16}\n")
    assert parse_config(["--config", str(path)]).global_batch_size == 16


@pytest.mark.parametrize("suite, message", [
    ("  per_datset: {}\n", r"unknown key\(s\) \['per_datset'\] under 'suite:'"),
    ("  per_dataset: [hmdb51]\n", r"suite\.per_dataset must map dataset -> options"),
    ("  per_dataset:\n    hmdb51: 16\n", r"suite\.per_dataset\.hmdb51: must be a mapping"),
    ("  per_dataset:\n    hmdb51: {global_batch: 16}\n", r"unknown option 'global_batch'"),
])
def test_a_malformed_suite_block_is_an_error_naming_the_file(tmp_path, suite, message):
    path = tmp_path / "bad.yaml"
    path.write_text("suite:\n  datasets: [hmdb51]\n" + suite)
    with pytest.raises(ConfigError, match=message):
        parse_config(["--config", str(path), "--dataset", "hmdb51"])


def test_make_task_uses_the_same_options(tmp_path):
    """The suite's task (its dry run prints it) carries the hash the probe path computes."""
    path = ROOT / "probes" / "ov_encoder_large_codec_2k.yaml"
    recipe = load_recipe(str(path))
    task = make_task(recipe, "diving48", "/data", str(tmp_path), Topology(), [])
    probe = parse_config(["--config", str(path), "--dataset", "diving48", "--data_root", "/data"])
    assert task.config_hash == rec.config_hash(probe.to_dict())
