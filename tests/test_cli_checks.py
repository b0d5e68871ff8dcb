"""A newcomer's mistakes caught before work starts, and what the command lines print.

Model names checked per family before any record; hub-id aliases; numeric ranges of every
flag and YAML key; a batch larger than a split; --help with defaults and prog; log lines
without a rank prefix in single-process tools, -v/-q; ``ls`` notes and recipe families;
leaderboard and suite tables when every run failed.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval_encoder import __main__ as cli
from eval_encoder import listing, logs
from eval_encoder.codec.options import CodecOptions
from eval_encoder.config import ConfigError, ProbeConfig, bound_of
from eval_encoder.encoders import check_names
from eval_encoder.flags import build_parser
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import batch_warnings
from eval_encoder.probe.run import main as probe_main
from eval_encoder.record import config_hash
from eval_encoder.registry import WEIGHT_ALIASES, RegistryError
from eval_encoder.report.cli import main as leaderboard_main
from eval_encoder.report.cli import make_board
from eval_encoder.report.render import FORMATS
from eval_encoder.suite import recipes, runner, show
from eval_encoder.video.steps import StepPlanError, make_plan

REPO = Path(__file__).resolve().parents[1]
CANONICAL = "lmms-lab-encoder/onevision-encoder-large"


def _no_rank_env(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


# ----------------------------------------------------------------------------- model names
def test_misspelt_model_name_with_folder_weights_fails_before_any_record(tmp_path, capsys,
                                                                         monkeypatch):
    _no_rank_env(monkeypatch)
    weights = tmp_path / "weights"
    weights.mkdir()  # a folder: before, any name was accepted and labelled the record
    report = tmp_path / "report"
    code = probe_main(["--dataset", "demo", "--data_root", str(tmp_path), "--model_family",
                       "sampling", "--model_name", "ov_encoder_larg", "--model_weight",
                       str(weights), "--save_report", str(report)])
    assert code == 2 and not any(tmp_path.rglob("*.json"))
    err = capsys.readouterr().err
    assert "unknown OneVision model name 'ov_encoder_larg'" in err
    assert "Did you mean 'ov_encoder_large'" in err


def _cfg(*argv):
    return parse_config(["--dataset", "demo", *argv])


@pytest.mark.parametrize("family,name", [("sampling", "ov_encoder_tiny"),
                                         ("ov_encoder_codec", "hf_llava_vit_large_ln"),
                                         ("dinov3", "dinov3_large"),
                                         ("siglip2", "test_vit"),  # any timm architecture
                                         ("hf", "some-org/any-model")])  # any hub id or folder
def test_known_model_names_pass(family, name):
    check_names(_cfg("--model_family", family, "--model_name", name))


@pytest.mark.parametrize("family,name,hint", [
    ("codec", "ov_encoder_hug", "'ov_encoder_huge'"),
    ("dinov3", "dinov3_larg", "'dinov3_large'"),
    ("samplng", "ov_encoder_tiny", "'sampling'"),
])
def test_unknown_model_or_family_names_are_refused_with_suggestions(family, name, hint):
    with pytest.raises((ConfigError, RegistryError), match="(?i)did you mean") as exc:
        check_names(_cfg("--model_family", family, "--model_name", name))
    assert hint in str(exc.value)


def test_a_users_encoder_module_takes_its_own_model_names():
    example = REPO / "examples" / "my_encoders.py"
    family = re.search(r'register_encoder\("([^"]+)"', example.read_text()).group(1)
    check_names(_cfg("--encoder_module", str(example), "--model_family", family,
                     "--model_name", "anything_the_user_likes"))


# ----------------------------------------------------------------------------- weight aliases
def test_a_weight_alias_resolves_hashes_and_records_as_the_canonical_id():
    alias = next(a for a, c in WEIGHT_ALIASES.items() if c == CANONICAL)
    by_alias, by_name = _cfg("--model_weight", alias), _cfg("--model_weight", CANONICAL)
    assert by_alias.model_weight == CANONICAL
    assert config_hash(by_alias.to_dict()) == config_hash(by_name.to_dict())
    assert "alias" in by_alias.sources["model_weight"]


def test_readme_and_recipes_spell_the_weights_alike():
    recipes = {yaml.safe_load(p.read_text()).get("model_weight")
               for p in (REPO / "probes").glob("*.yaml")} - {None}
    readme = re.findall(r"--model_weight (\S+)", (REPO / "README.md").read_text())
    hub_ids = [w for w in readme if w.count("/") == 1 and not w.startswith((".", "/", "<"))]
    assert CANONICAL in recipes and hub_ids
    assert not set(hub_ids) & set(WEIGHT_ALIASES), "README uses an alias in a command"


def test_an_uncached_hub_id_under_its_alias_is_refused_before_anything_is_written(tmp_path):
    """A real command whose weights are not cached: a usage mistake, found before any clip is
    opened; the message names the canonical id and the way out, and no record is written."""
    from eval_encoder.demo import generate

    data = generate(tmp_path)
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(HF_HUB_CACHE=str(tmp_path / "empty_hub"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "eval_encoder", "probe", "--dataset", "demo", "--data_root",
         str(data), "--model_name", "ov_encoder_tiny", "--model_weight",
         "lmms-lab/onevision-encoder-large", "--save_report", str(report)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "[rank" not in run.stderr  # one process: no rank prefix
    assert f"--model_weight '{CANONICAL}'" in run.stderr
    assert "not in the local Hugging Face cache" in run.stderr and "--allow_download" in run.stderr
    assert "preflight" not in run.stderr  # no clip was opened
    assert not report.exists()  # no record, no cache, nothing


# ----------------------------------------------------------------------------- numeric ranges
@pytest.mark.parametrize("argv,message", [
    (["--default_lr_list", "1e-3", "-0.1"], "argument --default_lr_list: must be > 0, got -0.1"),
    (["--default_lr_list", "0"], "argument --default_lr_list: must be > 0, got 0.0"),
    (["--num_frames", "0"], "argument --num_frames: must be >= 1, got 0"),
    (["--default_weight_decay", "-0.05"],
     "argument --default_weight_decay: must be >= 0, got -0.05"),
    (["--default_epoch", "0"], "argument --default_epoch: must be >= 1, got 0"),
    (["--batch_size", "0"], "argument --batch_size: must be >= 1, got 0"),
    (["--global_batch_size", "-4"], "argument --global_batch_size: must be >= 1, got -4"),
    (["--K_keep", "0"], "argument --K_keep: must be >= 1, got 0"),
    (["--num_tokens", "0"], "argument --num_tokens: must be >= 1, got 0"),
    (["--smoothing", "1"], "argument --smoothing: must be in [0, 1), got 1.0"),
    (["--max_skip_fraction", "nan"], "argument --max_skip_fraction: must be in [0, 1), got nan"),
    (["--std", "0.2", "0", "0.2"], "argument --std: must be > 0, got 0.0"),
])
def test_numeric_flags_are_checked_while_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--dataset", "demo", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_yaml_values_are_checked_the_same_way_naming_file_and_key(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("num_frames: 0\n")
    with pytest.raises(ConfigError, match=rf"yaml:{re.escape(str(recipe))}: num_frames: must be "
                                          r">= 1, got 0"):
        parse_config(["--config", str(recipe)])
    recipe.write_text("default_lr_list: [0.001, -1]\n")
    with pytest.raises(ConfigError, match=r"default_lr_list: must be > 0, got -1.0"):
        parse_config(["--config", str(recipe)])


def test_every_numeric_option_declares_its_range():
    """A new numeric flag must say which values it takes (mean is any number)."""
    free = {"mean"}
    numeric = [f for cls in (ProbeConfig, CodecOptions) for f in dataclasses.fields(cls)
               if re.search(r"\b(int|float)\b", str(f.type)) and f.name not in free]
    assert numeric and [f.name for f in numeric if bound_of(f) is None] == []


# ----------------------------------------------------------------------------- batch vs split
def test_a_batch_larger_than_a_split_is_warned_with_its_steps():
    plan = make_plan(None, 8, 1, drop_last=False)
    train, val = batch_warnings(plan, n_train=5, n_val=7)
    assert "global batch 8" in train and "5 training clips: 1 optimiser step(s) per epoch" in train
    assert "--batch_size 8 is larger than the 7 validation" in val
    assert batch_warnings(make_plan(8, 2, 2, drop_last=False), 20, 30) == []
    two_ranks = batch_warnings(make_plan(16, 4, 2, drop_last=False), 12, 6)
    assert "2 processes x 2 micro-batches of --batch_size 4" in two_ranks[0]
    assert "3 validation clip views per process (6 over 2)" in two_ranks[1]


def test_no_full_step_under_drop_last_names_the_ways_out():
    """The paper protocol's drop_last with fewer clips than the global batch: the error gives
    the count and names --drop_last false, --protocol clean and the batch flags."""
    with pytest.raises(StepPlanError) as exc:
        make_plan(None, 16, 1, drop_last=True).steps(12)
    text = str(exc.value)
    assert "12 training clips and a global batch of 16" in text
    assert "floor(12/16) = 0 full steps" in text and "--drop_last false" in text
    assert "1 step of 12 clips" in text and "--protocol clean" in text
    assert "at most 12 clips (--batch_size, --global_batch_size)" in text
    assert make_plan(None, 16, 1, drop_last=False).steps(12) == 1


# ----------------------------------------------------------------------------- help
def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_probe_help_names_itself_and_shows_each_default_and_its_origin(tmp_path, capsys):
    text = _help(["probe", "--help"], capsys)
    assert text.startswith("usage: python -m eval_encoder probe ")
    assert "--num_frames NUM_FRAMES frames per clip [default: 8, built-in]" in text
    # the card gives the input size (224) where the recipe and the command line give none
    assert re.search(r"cropsize\[default:224,fromdatasetcard\S*ssv2\.yaml\]",
                     text.replace(" ", ""))
    assert re.search(r"--batch_size.*\[default:4,fromdatasetcard\S*ssv2\.yaml\]",
                     text.replace(" ", ""))  # argparse may break a long path at its hyphens
    recipe = tmp_path / "r.yaml"
    recipe.write_text("num_frames: 16\ndataset: hmdb51\nbatch_size: 3\n")
    text = _help(["probe", "--config", str(recipe), "--help"], capsys)
    packed = text.replace(" ", "")  # argparse may break a long path at its hyphens
    assert f"[default:16,fromrecipe{recipe}]" in packed
    assert f"[default:3,fromrecipe{recipe}]" in packed  # the recipe's, not the card's 2
    assert re.search(r"\[default:30,fromdatasetcard\S*hmdb51\.yaml\]", packed)  # epochs


def test_help_leaves_the_precedence_alone(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("num_frames: 16\nbatch_size: 3\n")
    cfg = parse_config(["--config", str(recipe), "--batch_size", "5"])
    assert (cfg.num_frames, cfg.batch_size, cfg.default_lr_list) == (16, 5, [1e-4])
    assert cfg.sources["num_frames"].startswith("yaml:") and "default_lr_list" not in cfg.sources


@pytest.mark.parametrize("command", ["ls", "leaderboard", "suite", "compare", "prepare", "check"])
def test_every_sub_command_names_itself(command, capsys):
    assert _help([command, "--help"], capsys).startswith(f"usage: python -m eval_encoder {command}")


# ----------------------------------------------------------------------------- log lines
def test_rank_prefix_only_with_several_processes():
    assert "[rank" not in logs.log_format(1) and "[rank %(rank)s]" in logs.log_format(2)


def test_verbosity_flags_set_the_level_and_stay_out_of_the_config():
    logger = logging.getLogger("eval_encoder")
    try:
        cfg = parse_config(["--dataset", "demo", "-qq"])
        assert logger.level == logging.ERROR and "quiet" not in cfg.to_dict()
        build_parser().parse_args(["-v"])
        assert logger.level == logging.DEBUG
        args = listing.build_parser().parse_args(["-q", "models"])
        assert logger.level == logging.WARNING and args.sections == ["models"]
    finally:
        logger.setLevel(logging.INFO)


def test_leaderboard_logs_plain_lines_and_q_silences_warnings(tmp_path, capsys):
    logs.setup_logging()
    leaderboard_main(["--runs", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert "no run records under" in err and "[rank" not in err
    try:
        leaderboard_main(["--runs", str(tmp_path / "none"), "-qq"])
        assert "no run records under" not in capsys.readouterr().err
    finally:
        logging.getLogger("eval_encoder").setLevel(logging.INFO)


# ----------------------------------------------------------------------------- ls
def test_ls_notes_each_model_once_and_recipes_by_canonical_family():
    listing.load_families()
    data = listing.collect(["models", "recipes"])
    text = listing.render_text(data)
    notes = text.split("Notes\n", 1)[1]
    assert notes.count("  ov_encoder_large (") == 1 and "(codec, sampling)" in notes
    families = {r["name"]: r["model_family"] for r in data["recipes"]}
    assert families["ov_encoder_large_8f"] == "sampling"
    assert families["ov_encoder_large_codec_2k"] == "codec"


# ----------------------------------------------------------------------------- all failed
def _failed(dataset, error, labelled=True, created="2026-01-01T00:00:00Z"):
    from eval_encoder.record import SCHEMA, SCHEMA_VERSION

    record = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "status": "failed",
              "run_id": f"{created.replace(':', '')}-{dataset}-x", "error": error,
              "created": created, "dataset": {"name": dataset},
              "config": {"model_family": "sampling", "model_name": "ov_encoder_large",
                         "num_frames": 8, "protocol": "paper"},
              "protocol": {"name": "paper", "values": {}, "departures": {}},
              "config_hash": "h", "world_size": 1}
    if labelled:
        record.update(method="OV-L", arch="ViT-L/14", res=224, frames=8)
    return record


def test_leaderboard_of_failed_runs_only_renders_every_format_with_reasons(tmp_path, capsys):
    from eval_encoder.record import write_record

    write_record(_failed("ssv2", "ConfigError: weights not cached\nsecond line"), str(tmp_path))
    write_record(_failed("k400", "RunFailed: 3 of 5 | val clips unreadable", labelled=False),
                 str(tmp_path))
    for fmt in FORMATS:
        assert leaderboard_main(["--runs", str(tmp_path / "runs"), "--format", fmt]) == 0
        out = capsys.readouterr().out
        if fmt != "csv":
            assert "ConfigError: weights not cached" in out and "second line" not in out
            assert "val clips unreadable" in out
    board = make_board(str(tmp_path / "runs"))
    # a run that died before its encoder was built is labelled from its config
    assert [(f["dataset"], f["method"]) for f in board.failures] == [
        ("ssv2", "OV-L"), ("k400", "sampling/ov_encoder_large")]


def test_suite_summary_of_failed_runs_shows_the_table_with_reasons(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_suite import FakeTrainer, write_recipe

    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=("ucf101", "hmdb51"))))
    report = tmp_path / "report"
    outcomes = runner.run_suite(recipe, "/data", str(report),
                               launcher=FakeTrainer(ucf101="crash", hmdb51="own_fail"))
    capsys.readouterr()
    assert show._summary(recipe.name, outcomes, str(report), False) == 1
    out = capsys.readouterr().out
    assert "Failed runs (2" in out and "| fail | fail |" in out
    assert "CUDA out of memory" in out and "3 of 5 val clips could not be read" in out


# ----------------------------------------------------------------------------- earlier fixes
def test_demo_takes_a_free_port_not_a_fixed_one():
    import socket

    from eval_encoder.demo import probe_command

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        cmd = probe_command(Path("d"), Path("w"), Path("r"), nproc=2)
        port = int(next(a for a in cmd if a.startswith("--master_port=")).split("=")[1])
        assert port != taken
    assert "29507" not in (REPO / "Makefile").read_text()


def test_one_log_line_per_epoch_with_loss_lr_speed_and_eta(caplog):
    from types import SimpleNamespace

    from eval_encoder.probe.training import log_epoch

    def head(name, lr):
        return SimpleNamespace(name=name, optimizer=SimpleNamespace(param_groups=[{"lr": lr}]))

    trainer = SimpleNamespace(heads=[head("a", 1e-3), head("b", 1e-4)],
                              last_epoch={"seconds": 10.0, "clips": 50})
    with caplog.at_level(logging.INFO, logger="eval_encoder"):
        log_epoch(trainer, epoch=1, epochs=4, losses={"a": 0.9, "b": 0.5})
    (line,) = [r.getMessage() for r in caplog.records]
    # a fixed head (the grid's first), named, and the lowest loss with its head
    assert line == ("epoch 1 (2 of 4): loss 0.9000 (head a, lr 1.00e-03; lowest of 2 heads "
                    "0.5000, head b), 5.0 clips/s, ETA 0m20s")


def test_a_recipe_with_a_misspelt_model_name_fails_when_loaded(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_suite import write_recipe

    path = write_recipe(tmp_path, model_name="ov_encoder_tin")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: .*Did you mean "
                                          r"'ov_encoder_tiny'"):
        recipes.load_recipe(str(path))


def test_a_records_method_names_the_canonical_family():
    """A failed run under an alias lands in the row of the complete runs (which name the
    family the encoder reports), unless the recipe labels the method itself."""
    import eval_encoder.encoders  # noqa: F401  (registers the families)
    from eval_encoder.config import ProbeConfig
    from eval_encoder.registry import method_label

    cfg = ProbeConfig(model_family="llava_vit_sampling", model_name="ov_encoder_tiny")
    assert method_label(cfg) == "sampling/ov_encoder_tiny"
    cfg.method_label = "Tiny OV"
    assert method_label(cfg) == "Tiny OV"
