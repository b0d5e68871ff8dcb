"""Suite runs: recipes, resume by config hash, failures recorded, the shipped recipes.

Fast tests drive the suite with a stand-in trainer (a function that writes records the way
the trainer does); the slow ones run the real trainer over the two demo datasets.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval_encoder.config import ConfigError
from eval_encoder.launch.base import TRAINER
from eval_encoder.launch.process import LAUNCHER_ENV, stream_process
from eval_encoder.probe.args import parse_config
from eval_encoder.record import (
    SCHEMA,
    SCHEMA_VERSION,
    config_hash,
    new_run_id,
    read_record,
    write_record,
)
from eval_encoder.report.reported import load_reported
from eval_encoder.suite import cli, plan, recipes, runner, show
from eval_encoder.video.manifest import load_card

REPO = Path(__file__).resolve().parents[1]
PROBES = REPO / "probes"


def write_recipe(folder: Path, datasets=("ucf101", "hmdb51"), name="tiny", **extra) -> Path:
    data = {"model_family": "llava_vit_sampling", "model_name": "ov_encoder_tiny",
            "model_weight": "random", "num_frames": 2, "batch_size": 2, "default_epoch": 1,
            "default_lr_list": [1e-3], "method_label": "Tiny OV", "arch_label": "ViT-T",
            "suite": {"datasets": list(datasets)}, **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class FakeTrainer:
    """Stands in for attentive_probe.py: hashes its argv as the trainer does and writes a
    record; ``behaviour[dataset]`` is "ok", "crash" (no record) or "own_fail"."""

    def __init__(self, **behaviour):
        self.behaviour = behaviour
        self.calls = []

    def __call__(self, cmd, log_path):
        argv = cmd[cmd.index(str(TRAINER)) + 1:]
        cfg = parse_config(argv)
        self.calls.append((cfg.dataset, list(cmd)))
        log_path.write_text("fake trainer output\n")
        mode = self.behaviour.get(cfg.dataset, "ok")
        if mode == "crash":
            return 1, "Traceback ...\nRuntimeError: CUDA out of memory\n"
        record = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                  "run_id": new_run_id(cfg.dataset), "created": f"2026-01-01T00:00:0{len(self.calls)}Z",
                  # as the trainer writes it (no manifests exist under the fake data root)
                  "dataset": {"name": cfg.dataset, "version": load_card(cfg.dataset).version},
                  "config": cfg.to_dict(),
                  "config_hash": config_hash(cfg.to_dict()),
                  "world_size": 2 if "torch.distributed.run" in cmd else 1}
        if mode == "own_fail":
            record.update(status="failed", error="RunFailed: 3 of 5 val clips could not be read")
        else:
            record.update(status="complete", error=None, method=cfg.method_label, arch=cfg.arch_label,
                          res=224, frames=cfg.num_frames, token_budget=cfg.num_frames * 256,
                          reported={"top1": 40.0 + len(self.calls), "top5": 100.0})
        write_record(record, cfg.save_report)
        return (0 if mode == "ok" else 1), ""


def test_recipe_runs_then_rerun_skips_and_extra_flags_change_the_config(tmp_path):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path)))
    report = str(tmp_path / "report")
    fake = FakeTrainer()
    first = runner.run_suite(recipe, "/data", report, launcher=fake)
    assert [(o.dataset, o.status) for o in first] == [("ucf101", "complete"), ("hmdb51", "complete")]
    # the trainer got the recipe's options through a --config file, without the suite key
    written = yaml.safe_load(Path(report, "suite", "tiny", "ucf101.yaml").read_text())
    assert "suite" not in written and written["num_frames"] == 2
    cmd = fake.calls[0][1]
    assert cmd[:2] == [sys.executable, str(TRAINER)] and "--dataset" in cmd
    again = runner.run_suite(recipe, "/elsewhere", report, launcher=fake)  # data_root: runtime only
    assert [o.status for o in again] == ["skipped", "skipped"] and len(fake.calls) == 2
    assert [o.record_path for o in again] == [o.record_path for o in first]
    changed = runner.run_suite(recipe, "/data", report, extra=["--default_lr_list", "0.01"],
                              launcher=fake)
    assert [o.status for o in changed] == ["complete", "complete"] and len(fake.calls) == 4
    row = show.recipe_row(again)
    assert "| Tiny OV | ViT-T | 224 | paper | 41.5 | 41.0 | 42.0 |" in row


def test_killed_run_resumes_with_the_missing_dataset_only(tmp_path):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path)))
    report = str(tmp_path / "report")
    runner.run_suite(recipe, "/data", report, datasets=["ucf101"], launcher=FakeTrainer())
    fake = FakeTrainer()  # "killed" after ucf101: the rerun must only run hmdb51
    outcomes = runner.run_suite(recipe, "/data", report, launcher=fake)
    assert [o.status for o in outcomes] == ["skipped", "complete"]
    assert [d for d, _ in fake.calls] == ["hmdb51"]


def test_failures_are_recorded_and_the_suite_goes_on(tmp_path):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=("ucf101", "hmdb51", "k400"))))
    report = tmp_path / "report"
    fake = FakeTrainer(ucf101="crash", hmdb51="own_fail")
    outcomes = runner.run_suite(recipe, "/data", str(report), launcher=fake)
    assert [o.status for o in outcomes] == ["failed", "failed", "complete"]
    crashed = read_record(str(outcomes[0].record_path))  # written by the suite, schema v1
    assert crashed["status"] == "failed" and "exited with status 1" in crashed["error"]
    assert "CUDA out of memory" in crashed["error"] and crashed["method"] == "Tiny OV"
    assert crashed["config_hash"] == fake_hash(report, "tiny", "ucf101")
    assert len(list((report / "runs" / "hmdb51").glob("*.json"))) == 1  # the trainer's own, no copy
    assert "RunFailed" in outcomes[1].error
    row = show.recipe_row(outcomes)
    assert "| Tiny OV | ViT-T | 224 | paper | partial (1/3) | fail | fail |" in row
    # failed datasets are not "done": a rerun tries them again and skips the complete one
    rerun = runner.run_suite(recipe, "/data", str(report), launcher=FakeTrainer())
    assert [o.status for o in rerun] == ["complete", "complete", "skipped"]


def fake_hash(report: Path, recipe: str, dataset: str) -> str:
    argv = plan.trainer_argv(report / "suite" / recipe / f"{dataset}.yaml", dataset, "/data",
                              str(report))
    return plan.expected_hash(argv)


def test_world_size_is_part_of_done_and_torchrun_is_used(tmp_path):
    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=("ucf101",))))
    report = str(tmp_path / "report")
    runner.run_suite(recipe, "/data", report, launcher=FakeTrainer())
    fake = FakeTrainer()
    (outcome,) = runner.run_suite(recipe, "/data", report, nproc=2, launcher=fake)
    assert outcome.status == "complete"
    cmd = fake.calls[0][1]
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def test_per_dataset_options_reach_only_their_dataset(tmp_path):
    path = write_recipe(tmp_path, suite={"datasets": ["ucf101", "hmdb51"],
                                         "per_dataset": {"hmdb51": {"default_epoch": 3}}})
    recipe = recipes.load_recipe(str(path))
    assert recipes.probe_options(recipe, "ucf101")["default_epoch"] == 1
    assert recipes.probe_options(recipe, "hmdb51")["default_epoch"] == 3


@pytest.mark.parametrize("change, pattern", [
    ({"num_frame": 4}, r"tiny\.yaml: unknown option 'num_frame' \(did you mean num_frames"),
    ({"suite": {"datasets": ["ucf101", "ucf11"]}}, r"suite\.datasets: unknown dataset 'ucf11'"),
    ({"suite": {"datasets": ["ucf101"], "epochs": 3}}, r"unknown key\(s\) \['epochs'\] under 'suite:'"),
    ({"suite": {"datasets": []}}, r"non-empty list"),
    ({"suite": None}, r"needs a 'suite:' mapping"),
    ({"dataset": "ucf101"}, r"set by the suite"),
    ({"suite": {"datasets": ["ucf101"], "per_dataset": {"hmdb51": {"seed": 2}}}}, r"not in suite\.datasets"),
    ({"suite": {"datasets": ["ucf101"], "per_dataset": {"ucf101": {"sed": 2}}}},
     r"per_dataset\.ucf101: unknown option 'sed'"),
    ({"num_frames": "eight"}, r"num_frames: cannot use 'eight'"),
])
def test_bad_recipes_are_clear_errors(tmp_path, change, pattern):
    path = write_recipe(tmp_path, **change)
    with pytest.raises(ConfigError, match=pattern):
        recipes.load_recipe(str(path))


def test_extra_flags_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--dataset is set by the suite"):
        plan.check_extra_flags(["--dataset", "ssv2"])
    with pytest.raises(ConfigError, match="not trainer flags"):
        plan.check_extra_flags(["--no_such_flag", "1"])
    with pytest.raises(ConfigError, match="the recipe is the suite's first argument"):
        plan.check_extra_flags(["--config"])  # `suite --config RECIPE` as probe spells it
    plan.check_extra_flags(["--device", "cpu", "--default_lr_list", "1e-3", "3e-4"])


def test_stream_process_passes_output_through_and_keeps_the_tail(tmp_path, capfd):
    code, tail = stream_process(
        [sys.executable, "-c", "import sys; print('step 1\\rstep 2'); sys.exit(3)"],
        tmp_path / "x.log")
    assert code == 3 and "step 2" in tail
    assert "step 1\rstep 2" in capfd.readouterr().out
    assert (tmp_path / "x.log").read_bytes() == b"step 1\rstep 2\n"


def test_main_dry_run_and_errors(tmp_path, capsys):
    path = write_recipe(tmp_path)
    args = [str(path), "--data_root", "/data", "--save_report", str(tmp_path / "r")]
    assert cli.main([*args, "--dry_run", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ucf101: to run" in out and "--device cpu" in out
    assert cli.main([*args, "--datasets", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shipped recipes
def _block(probe: dict) -> int:
    """The paper's frame block of a recipe: its frames, or a codec budget in frames."""
    if probe["num_frames"] == 64:
        return probe["K_keep"] // 256
    return probe["num_frames"]


def test_shipped_recipes_cover_every_paper_row_once():
    """The paper protocol's recipes (V-JEPA 2's are tested in test_vjepa2_recipes.py)."""
    reported = load_reported()
    want = {(r.frames, r.method, r.arch, r.res) for r in reported.itertuples()}
    got = []
    for path in sorted(PROBES.glob("*.yaml")):
        recipe = recipes.load_recipe(str(path))
        p = recipe.probe
        if p["protocol"] != "paper":
            continue
        got.append((_block(p), p["method_label"], p["arch_label"], str(p["input_size"])))
        assert recipe.datasets == ["ssv2", "diving48", "perception_test", "epic_verb",
                                   "epic_noun", "hmdb51", "k400", "charadesego"]
        for dataset in recipe.datasets:  # every dataset's options resolve as the trainer's would
            cfg = parse_config(["--dataset", dataset], base=recipes.probe_options(recipe, dataset))
            assert cfg.batch_size is None and cfg.default_epoch is None  # from the cards
            assert cfg.default_lr_list == [1e-4]
    assert sorted(got) == sorted(want) and len(got) == 12
    assert not (PROBES / "__init__.py").exists()


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """The demo datasets and tiny encoder, made by the demo command."""
    out = tmp_path_factory.mktemp("suite_demo")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    proc = subprocess.run([sys.executable, "-m", "eval_encoder", "demo", "--generate-only",
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "data", out / "weights" / "ov_encoder_tiny"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.slow
def test_end_to_end_two_demo_datasets_resume_and_rerun(demo_data, tmp_path, capsys, monkeypatch,
                                                        umask_022):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data, weights = demo_data
    recipe = write_recipe(tmp_path, datasets=("demo", "demo2"), model_weight=str(weights),
                          embedding_size=128)
    report = tmp_path / "report"
    args = [str(recipe), "--data_root", str(data), "--save_report", str(report),
            "--device", "cpu", "--loader", "torch", "--dali_py_num_workers", "0"]
    # a run "killed" after its first dataset: only demo has a record
    assert cli.main([*args, "--datasets", "demo"]) == 0, capsys.readouterr().out[-3000:]
    capsys.readouterr()
    assert cli.main(args) == 0  # resumes: demo skipped, demo2 run
    out = capsys.readouterr().out
    assert "demo: [paper protocol] already complete" in out, out[-3000:]
    assert "demo2: [paper protocol] complete in" in out, out[-3000:]
    records = [read_record(str(p)) for p in sorted((report / "runs").rglob("*.json"))]
    assert sorted(r["dataset"]["name"] for r in records) == ["demo", "demo2"]
    assert all(r["status"] == "complete" and r["config"]["default_epoch"] == 1 for r in records)
    cells = [f"{r['reported']['top1']:.1f}" for r in sorted(records, key=lambda r: r["dataset"]["name"])]
    (row,) = [line for line in out.splitlines() if line.startswith("| Tiny OV | ViT-T | 224 |")]
    assert " | ".join(cells) in row
    # it ends with its records and the command that shows them
    paths = sorted(str(p) for p in (report / "runs").rglob("*.json"))
    assert sorted(out.splitlines()[-3:-1]) == [f"run record: {p}" for p in paths]
    shown = f"show it: python -m eval_encoder leaderboard --runs {report / 'runs'}"
    assert out.splitlines()[-1] == shown
    assert cli.main(args) == 0  # a rerun skips both and runs nothing
    assert capsys.readouterr().out.count("already complete") == 2
    assert len(list((report / "runs").rglob("*.json"))) == 2
    # what complete runs leave: no lock, no checkpoint, no empty folder; all readable (umask 022)
    left = list(report.rglob("*"))
    assert not [p for p in left if p.suffix == ".lock" or "checkpoints" in p.parts]
    assert not [p for p in left if p.is_dir() and not any(p.iterdir())]
    assert not [p for p in left if p.is_file() and not p.stat().st_mode & 0o044]


def one_clip_data_root(tmp_path):
    """A data root whose ucf101 and hmdb51 manifests list one clip per split."""
    root = tmp_path / "data"
    for name in ("ucf101", "hmdb51"):
        (root / name).mkdir(parents=True)
        for split in ("train", "val"):
            (root / name / f"{split}_new.csv").write_text("videos/a.mp4,0\n")
    return root


def test_a_changed_manifest_is_not_taken_as_done(tmp_path):
    root = one_clip_data_root(tmp_path)
    recipe = recipes.load_recipe(str(write_recipe(tmp_path)))
    report = str(tmp_path / "report")
    fake = FakeTrainer()
    runner.run_suite(recipe, str(root), report, launcher=fake)
    # the fake trainer records the manifests' hashes as the real one does
    from eval_encoder.files import file_sha256
    for path in Path(report, "runs").rglob("*.json"):
        data = read_record(str(path))
        name = data["dataset"]["name"]
        for split in ("train", "val"):
            data["dataset"][f"{split}_manifest_sha256"] = file_sha256(str(root / name / f"{split}_new.csv"))
        write_record(data, report, replace=True)  # the test edits the record in place
    assert [o.status for o in runner.run_suite(recipe, str(root), report, launcher=FakeTrainer())] \
        == ["skipped", "skipped"]
    (root / "hmdb51" / "val_new.csv").write_text("videos/a.mp4,0\nvideos/b.mp4,1\n")
    again = runner.run_suite(recipe, str(root), report, launcher=FakeTrainer())
    assert [o.status for o in again] == ["skipped", "complete"]


def test_a_killed_suite_resumes_its_dataset_from_the_checkpoint(demo_data, tmp_path):
    """kill -9 of the suite in the middle of a dataset; the rerun continues that dataset from
    its newest checkpoint instead of starting it over."""
    import signal
    import time

    data, weights = demo_data
    recipe = write_recipe(tmp_path, datasets=("demo",), model_weight=str(weights),
                          embedding_size=128, default_epoch=4, checkpoint_every_min=0)
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "eval_encoder", "suite", str(recipe), "--data_root", str(data),
           "--save_report", str(report), "--device", "cpu", "--loader", "torch",
           "--dali_py_num_workers", "0"]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((report / "checkpoints").rglob("e0001-s*.pt")):
        assert time.time() < deadline and proc.poll() is None, "no checkpoint in epoch 1"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # the suite takes its trainer down with it
    proc.wait()
    time.sleep(1.0)
    assert not list((report / "runs").rglob("*.json"))
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "demo: resuming from the checkpoint" in again.stdout, again.stdout[-3000:]
    (path,) = (report / "runs" / "demo").glob("*.json")
    record = read_record(str(path))
    assert record["status"] == "complete" and record["resumed_from"]["epoch"] >= 1


def test_seeds_run_every_dataset_once_per_seed(tmp_path):
    root = one_clip_data_root(tmp_path)
    recipe = recipes.load_recipe(str(write_recipe(tmp_path)))
    fake = FakeTrainer()
    for extra in plan.seed_extras([1, 2, 1], []):
        runner.run_suite(recipe, str(root), str(tmp_path / "report"), extra=extra, launcher=fake)
    runs = sorted((name, parse_config(cmd[cmd.index(str(TRAINER)) + 1:]).seed)
                  for name, cmd in fake.calls)
    assert runs == [("hmdb51", 1), ("hmdb51", 2), ("ucf101", 1), ("ucf101", 2)]
    with pytest.raises(ConfigError, match="--seeds only"):
        plan.seed_extras([1], ["--seed", "3"])


def test_a_recipe_is_found_by_its_name_from_any_folder(tmp_path, monkeypatch):
    """`suite ov_encoder_large_8f` reads the shipped recipe (as after a wheel install); a file
    path still wins, and a misspelt name says what is close."""
    from eval_encoder.suite.recipes import load_recipe

    monkeypatch.chdir(tmp_path)
    by_name = load_recipe("ov_encoder_large_8f")
    assert by_name.path.name == "ov_encoder_large_8f.yaml" and by_name.path.is_file()
    assert by_name.datasets == load_recipe(str(by_name.path)).datasets
    with pytest.raises(ConfigError, match="Did you mean 'ov_encoder_large_8f'"):
        load_recipe("ov_encoder_lrge_8f")
    with pytest.raises(ConfigError, match="config file not found"):
        load_recipe("missing.yaml")
