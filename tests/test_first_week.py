"""What a researcher meets in the first week (issue 20): one results root for every command and
each run saying where its record went; the version in every record and ``--version``; short
errors with the closest flag, command or choice; the result at ``-q``; the decode-worker cap
said once; a leaderboard of one's own datasets; the demo card's epochs; the recipe keys in the
README.
"""
from __future__ import annotations

import configparser
import logging
import re
from pathlib import Path

import pytest

import eval_encoder
from eval_encoder import __main__ as cli
from eval_encoder import listing, logs, recipe
from eval_encoder.config import RESULTS_ENV, ProbeConfig
from eval_encoder.demo import generate, probe_flags, save_tiny_encoder
from eval_encoder.launch import LAUNCHERS
from eval_encoder.parsing import closest_flags
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.data import resolve_dataset
from eval_encoder.probe.run import cap_decode_workers
from eval_encoder.record import leaderboard_command, software_versions
from eval_encoder.report import cli as leaderboard_cli
from eval_encoder.report import compare
from eval_encoder.suite import cli as suite_cli
from eval_encoder.suite import follow, show
from eval_encoder.suite.books import Outcome
from eval_encoder.video import loader
from test_leaderboard import make_record, write_all

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_rank_env(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", RESULTS_ENV):
        monkeypatch.delenv(var, raising=False)


def _default(parser, dest: str):
    return parser.get_default(dest)


# ----------------------------------------------------------------------------- 1: results root
@pytest.mark.parametrize("root", [None, "elsewhere/res"])
def test_every_command_writes_and_reads_under_one_results_root(root, monkeypatch, no_rank_env):
    if root:
        monkeypatch.setenv(RESULTS_ENV, root)
    want = root or "results"
    assert ProbeConfig().save_report == want
    assert parse_config(["--dataset", "demo"]).save_report == want  # probe
    assert _default(suite_cli.build_suite_parser(), "save_report") == want  # suite
    assert _default(follow._follow_parser("status", ""), "save_report") == want
    for parser in (leaderboard_cli.build_parser(), compare.build_parser()):
        assert _default(parser, "runs") == str(Path(want) / "runs")
    # --save_report, spelt as upstream, still wins
    assert parse_config(["--dataset", "demo", "--save_report", "S"]).save_report == "S"


def test_the_leaderboard_command_is_bare_for_the_default_root_only(tmp_path, monkeypatch,
                                                                  no_rank_env):
    monkeypatch.chdir(tmp_path)
    assert leaderboard_command("results") == "python -m eval_encoder leaderboard"
    assert leaderboard_command(str(tmp_path / "results")) == "python -m eval_encoder leaderboard"
    assert leaderboard_command("my runs") == "python -m eval_encoder leaderboard --runs 'my runs/runs'"
    monkeypatch.setenv(RESULTS_ENV, "my runs")
    assert leaderboard_command("my runs") == "python -m eval_encoder leaderboard"


def test_a_suite_ends_with_its_records_and_the_command_that_shows_them(tmp_path):
    outcomes = [Outcome("demo", "complete", tmp_path / "runs/demo/a.json", 50.0),
                Outcome("demo2", "busy", error="held")]
    text = show.where_shown(outcomes, str(tmp_path))
    assert text.splitlines()[-2:] == [
        f"run record: {tmp_path / 'runs/demo/a.json'}",
        f"show it: python -m eval_encoder leaderboard --runs {tmp_path / 'runs'}"]
    assert show.where_shown([Outcome("demo", "busy")], str(tmp_path)) == ""


@pytest.mark.slow
def test_a_bare_probe_then_a_bare_leaderboard_shows_the_row(tmp_path, monkeypatch, capsys,
                                                            no_rank_env):
    """No --save_report, no --runs: the probe says where its record went (at -q too) and the
    command it prints shows the row."""
    data, weights = generate(tmp_path / "demo"), save_tiny_encoder(tmp_path / "demo")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        code = cli.main(["probe", "--dataset", "demo", "--data_root", str(data), "--model_family",
                         "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
                         str(weights), "--num_frames", "2", "--default_epoch", "1",
                         "--dali_py_num_workers", "0", "--device", "cpu", "-q"])
    finally:
        logging.getLogger("eval_encoder").setLevel(logging.INFO)
    assert code == 0
    said = capsys.readouterr().out.strip().splitlines()
    score = re.match(r"demo ov_encoder_tiny: top-1 (\d+\.\d+)% .*7/7 val clips scored", said[-3])
    assert score, said
    (record,) = (work / "results" / "runs" / "demo").glob("*.json")
    assert said[-2:] == [f"run record: {record.relative_to(work)}",
                         "show it: python -m eval_encoder leaderboard"]
    assert cli.main(said[-1].split()[5:]) == 0  # the very command it printed: show it: ...
    table = capsys.readouterr().out
    header, _, _, row = table.splitlines()[:4]
    assert header == "| Method | Arch. | Res. | Protocol | AVG | demo |"  # its own dataset only
    assert row.startswith("| sampling/ov_encoder_tiny |")
    assert row.endswith(f"| {float(score.group(1)):.1f} |")


# ----------------------------------------------------------------------------- 8: version
def test_every_record_names_the_package_version_and_version_prints_it(capsys):
    assert software_versions()["eval_encoder"] == eval_encoder.__version__
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"eval-encoder {eval_encoder.__version__}")
    assert "(git " in out  # this checkout's commit
    # one version: the wheel's metadata takes it from the package
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: eval_encoder.__version__"


# ----------------------------------------------------------------------------- 9: short errors
def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err and len(err.splitlines()) <= 2, err
    return err


def test_a_misspelt_flag_gets_a_short_error_with_the_closest_flags(capsys):
    err = _error(["probe", "--datset", "demo"], capsys)
    assert err.startswith("python -m eval_encoder probe: error: unrecognized arguments: "
                          "--datset demo. Did you mean '--dataset'")
    assert "python -m eval_encoder probe --help lists every option" in err
    err = _error(["probe", "--data", "x"], capsys)
    assert "ambiguous option: --data could match --dataset, --data_root" in err
    err = _error(["probe", "--protocol", "clen"], capsys)
    assert "invalid choice: 'clen'" in err and "Did you mean 'clean'?" in err
    err = _error(["leaderboard", "--formt", "md"], capsys)
    assert err.startswith("python -m eval_encoder leaderboard: error:") and "'--format'" in err


def test_several_misspelt_flags_each_get_their_own_suggestion():
    hint = closest_flags(["--datset", "x", "--protocl", "clean", "--zzzzzz"],
                         ["--dataset", "--protocol", "--data_root"])
    assert hint == " --datset: Did you mean '--dataset'? --protocl: Did you mean '--protocol'?"


@pytest.mark.parametrize("argv", [["ls", "--jsn"], ["compare", "a", "b", "--metrc", "top5"],
                                  ["check", "--data_root", "D", "--dataset", "demo", "--theads", "2"],
                                  ["prepare", "ucf101", "--annotations", "a", "--videos", "v",
                                   "--out", "o", "--no_chek"]])
def test_every_command_is_short_about_a_misspelt_flag(argv, capsys):
    err = _error(argv, capsys)
    assert err.startswith(f"python -m eval_encoder {argv[0]}: error:") and "Did you mean" in err


def test_a_misspelt_suite_flag_is_matched_among_suite_and_trainer_flags(capsys):
    assert cli.main(["suite", "ov_encoder_large_8f", "--data_root", "D", "--datsets", "ssv2"]) == 2
    err = capsys.readouterr().err
    assert "not trainer flags: --datsets ssv2. Did you mean '--datasets'" in err


def test_a_misspelt_command_gets_the_closest(capsys):
    assert cli.main(["leaderbord"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == (
        "python -m eval_encoder: error: unknown command 'leaderbord'. Did you mean "
        "'leaderboard'? (python -m eval_encoder --help lists the commands)")


def test_the_demos_errors_name_the_demo_and_come_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    err = _error(["demo", "--out", str(out), "--protocl", "clean"], capsys)
    assert err.startswith("python -m eval_encoder demo: error: unrecognized arguments: "
                          "--protocl clean. Did you mean '--protocol'?")
    assert "attentive_probe" not in err and not out.exists()  # nothing generated
    err = _error(["demo", "--out", str(out), "--num_frames", "0"], capsys)
    assert "python -m eval_encoder demo: error: argument --num_frames: must be >= 1" in err


# ----------------------------------------------------------------------------- 9: -q, workers
def test_the_result_shows_at_q_and_not_at_qq(capsys):
    logger = logging.getLogger("eval_encoder")
    try:
        for level, shown in ((logging.INFO, True), (logging.WARNING, True),
                             (logging.ERROR, False)):
            logger.setLevel(level)
            logs.result("top-1 50.00%")
            assert (capsys.readouterr().out == "top-1 50.00%\n") == shown
    finally:
        logger.setLevel(logging.INFO)


def test_the_decode_worker_cap_is_said_once_and_recorded(monkeypatch, caplog):
    monkeypatch.setattr(loader, "_usable_cpus", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    cfg = parse_config(["--dataset", "demo", "--dali_py_num_workers", "8"])
    with caplog.at_level(logging.INFO, logger="eval_encoder"):
        cap_decode_workers(cfg)
        for _ in ("train", "val"):  # what each loader then does with the number
            assert loader.loader_workers(cfg.dali_py_num_workers) == 2
    assert [r.getMessage() for r in caplog.records if "decode workers" in r.getMessage()] == [
        "--dali_py_num_workers 8: using 2 decode workers (2 CPUs for 1 local processes)"]
    assert cfg.dali_py_num_workers == 2
    assert cfg.sources["dali_py_num_workers"] == (
        "command line (8, capped to this process's share of the CPUs)")


# ----------------------------------------------------------------------------- 9: leaderboard
def test_a_leaderboard_of_ones_own_datasets_shows_them_not_the_papers(tmp_path, capsys):
    runs = write_all(tmp_path, [make_record("demo", 60.0), make_record("demo2", 70.0)])
    board = leaderboard_cli.make_board(str(runs))
    assert board.datasets == ["demo", "demo2"] and board.table.loc[0, "avg"] == 65.0
    # beside the paper's rows, the paper's eight
    assert leaderboard_cli.make_board(str(runs), reported=True).datasets[:2] == ["ssv2",
                                                                                 "diving48"]
    # paper datasets among the records: those are AVG's columns, the others stand after them
    mixed = write_all(tmp_path / "mixed", [make_record("hmdb51", 50.0), make_record("demo", 1.0)])
    board = leaderboard_cli.make_board(str(mixed))
    assert (board.datasets, board.extras) == (["hmdb51"], ["demo"])


def test_the_plot_hint_names_commands_that_work_and_no_registry(tmp_path, monkeypatch):
    import sys

    from eval_encoder.report.names import LeaderboardError
    from eval_encoder.report.plots import plot_board

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    board = leaderboard_cli.make_board(str(write_all(tmp_path, [make_record("demo", 60.0)])))
    with pytest.raises(LeaderboardError) as exc:
        plot_board(board, str(tmp_path / "p.png"))
    text = str(exc.value)
    assert "pip install 'matplotlib>=3.8'" in text and "pip install -e '.[plot]'" in text
    assert "eval-encoder[" not in text and not re.search(r"pypi|://|\.org", text, re.I)


# ----------------------------------------------------------------------------- 9: demo card
def test_ls_gives_the_demo_the_epochs_the_demo_trains(tmp_path, no_rank_env):
    flags = probe_flags(tmp_path / "data", tmp_path / "weights", tmp_path / "report")
    assert "--default_epoch" not in flags  # the demo trains what its card says
    cfg = parse_config(flags)
    resolve_dataset(cfg)
    (row,) = [r for r in listing.collect(["datasets"])["datasets"] if r["name"] == "demo"]
    assert row["default_epochs"] == cfg.default_epoch == 10


# ----------------------------------------------------------------------------- 9: README
def test_the_readme_lists_every_recipe_key():
    text = (REPO / "README.md").read_text()
    section = text.split("### Recipe files", 1)[1].split("\n## ", 1)[0]
    keys = ["protocol", "codec_version", "method_label", "arch_label", recipe.SUITE_KEY,
            *recipe.SUITE_FIELDS, "nnodes", "rdzv_endpoint"]
    for name, launcher in LAUNCHERS.items():
        keys += [name, *(o.name for o in launcher.options)]
    missing = [k for k in keys if f"`{k}`" not in section]
    assert not missing, f"README's recipe section leaves out {missing}"
    assert "eval_encoder/recipe.py" in section and "eval_encoder/suite/recipes.py" in section


def test_make_test_says_why_tests_were_skipped():
    (line,) = [l for l in (REPO / "Makefile").read_text().splitlines()
               if "EVAL_ENCODER_REQUIRE_DALI=1" in l and "pytest" in l]
    assert " -rs" in line

