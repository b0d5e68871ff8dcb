"""Launchers as data: the registry, settings from the recipe and the flags, the exact batch
script a SLURM suite submits (printed by --dry_run; no SLURM needed), and clear errors."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from eval_encoder.launch import LAUNCHERS, LocalLauncher, SlurmLauncher, Topology
from eval_encoder.launch.slurm import exit_status
from eval_encoder.suite import cli, recipes, runner
from test_suite import write_recipe


def _dry_run(tmp_path, capsys, *flags, **recipe_extra) -> str:
    path = write_recipe(tmp_path, datasets=("ucf101",), **recipe_extra)
    code = cli.main([str(path), "--data_root", "/data", "--save_report",
                       str(tmp_path / "r"), "--dry_run", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _script(out: str) -> str:
    return "\n".join(line[2:] for line in out.splitlines()[1:])  # the indented script


def test_the_registry_holds_both_launchers_and_says_did_you_mean():
    assert list(LAUNCHERS) == ["local", "slurm"]
    assert LAUNCHERS.get("slurm") is SlurmLauncher and LAUNCHERS.get("local") is LocalLauncher
    with pytest.raises(KeyError, match="Did you mean 'slurm'"):
        LAUNCHERS.get("slurmm")


def test_the_slurm_script_asks_for_what_the_flags_and_the_recipe_say(tmp_path, capsys):
    out = _dry_run(tmp_path, capsys, "--launcher", "slurm", "--nnodes", "2",
                   "--nproc_per_node", "8", "--time", "01:00:00", "--sbatch=--qos=high",
                   suite={"datasets": ["ucf101"],
                          "slurm": {"partition": "gpu", "account": "proj", "time": "4:00:00"}})
    assert out.startswith("ucf101: to run\n  #!/bin/bash\n")
    script = _script(out)
    for line in ["--job-name=tiny.ucf101", "--nodes=2", "--ntasks-per-node=1",
                 "--gpus-per-node=8", "--cpus-per-task=40",  # 8 x (1 + 4 decode workers)
                 "--partition=gpu", "--account=proj", "--time=01:00:00",  # the flag wins
                 "--requeue", "--signal=B:USR1@120", "--open-mode=append", "--qos=high"]:
        assert f"#SBATCH {line}\n" in script, line
    assert f"#SBATCH --output={(tmp_path / 'r' / 'suite' / 'tiny').resolve()}/ucf101.%j.log" in script
    assert "trap requeue USR1" in script and 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert "srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=40 --kill-on-bad-exit=1" in script
    assert ("-m torch.distributed.run --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d "
            '--rdzv_endpoint="$head_node:$port" --rdzv_id="$SLURM_JOB_ID"') in script
    assert "attentive_probe.py --config" in script and "--dataset ucf101" in script
    if shutil.which("bash"):
        check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def test_no_gpus_are_asked_for_a_cpu_run(tmp_path, capsys):
    script = _script(_dry_run(tmp_path, capsys, "--launcher", "slurm", "--device", "cpu",
                              "--dali_py_num_workers", "0"))
    assert "--gpus-per-node" not in script and "#SBATCH --cpus-per-task=1\n" in script
    assert "--partition" not in script and "--time" not in script  # the cluster's defaults


def test_the_recipe_can_choose_the_launcher_and_the_flag_can_override_it(tmp_path, capsys):
    recipe = {"suite": {"datasets": ["ucf101"], "launcher": "slurm"}}
    assert "#SBATCH" in _dry_run(tmp_path, capsys, **recipe)
    local = _dry_run(tmp_path, capsys, "--launcher", "local", "--nproc_per_node", "2", **recipe)
    assert "#SBATCH" not in local and "torch.distributed.run --standalone" in local


def test_a_local_multi_node_suite_passes_the_rendezvous_to_torchrun(tmp_path, capsys):
    out = _dry_run(tmp_path, capsys, "--nodes", "2", "--node_rank", "1",
                   "--rdzv_endpoint", "node001:29500", nnodes=2)
    assert ("--nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=node001:29500 "
            "--rdzv_id=tiny.ucf101") in out
    written = yaml.safe_load((tmp_path / "r" / "suite" / "tiny" / "ucf101.yaml").read_text())
    assert "nnodes" not in written  # torchrun's key, not the trainer's


@pytest.mark.parametrize("flags, recipe, pattern", [
    (["--parallel", "2", "--launcher", "slurm"], {}, r"--parallel is a setting of the local launcher"),
    (["--partition", "gpu"], {}, r"--partition is a setting of the slurm launcher"),
    (["--no_wait"], {}, r"--no_wait: the local launcher's runs end with the suite"),
    (["--launcher", "slurm", "--rdzv_endpoint", "h:1"], {}, r"the slurm launcher sets the rendezvous"),
    (["--nnodes", "2"], {}, r"--nnodes 2 needs --rdzv_endpoint"),
    (["--rdzv_backend", "c10d"], {}, r"--rdzv_backend c10d needs --rdzv_endpoint"),
    (["--nnodes", "1:2"], {}, r"a suite needs a fixed node count"),
    (["--parallel", "2", "--nnodes", "2", "--rdzv_endpoint", "h:1"], {}, r"--parallel with --nnodes > 1"),
    ([], {"suite": {"datasets": ["ucf101"], "launcher": "slurmm"}}, r"suite\.launcher: unknown launcher 'slurmm'"),
    ([], {"suite": {"datasets": ["ucf101"], "slurm": {"partitoin": "gpu"}}},
     r"suite\.slurm: unknown key\(s\) \['partitoin'\] for the slurm launcher"),
    ([], {"suite": {"datasets": ["ucf101"], "local": {"parallel": "two"}}}, r"suite\.local\.parallel: cannot use 'two'"),
    ([], {"suite": {"datasets": ["ucf101"], "per_dataset": {"ucf101": {"nnodes": 2}}}},
     r"per_dataset\.ucf101: \['nnodes'\] are torchrun's"),
])
def test_launcher_mistakes_are_clear_errors(tmp_path, capsys, flags, recipe, pattern):
    path = write_recipe(tmp_path, datasets=("ucf101",), **recipe)
    code = cli.main([str(path), "--data_root", "/data", "--save_report", str(tmp_path / "r"),
                       *flags, *([] if "--no_wait" in flags else ["--dry_run"])])
    assert code == 2
    assert __import__("re").search(pattern, capsys.readouterr().err)


def test_sacct_exit_codes_become_one_status():
    assert [exit_status(c) for c in ("0:0", "1:0", "0:15", "", "x")] == [0, 1, 143, None, None]


def test_status_and_collect_say_when_nothing_was_started(tmp_path, capsys):
    for command in ("status", "collect"):
        assert cli.main([command, "tiny", "--save_report", str(tmp_path)]) == 1
        assert "no suite state at" in capsys.readouterr().err


def test_a_launcher_without_slurm_fails_the_dataset_saying_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    recipe = recipes.load_recipe(str(write_recipe(tmp_path, datasets=("ucf101",))))
    launcher = SlurmLauncher(dict(_defaults(SlurmLauncher)), Topology())
    (outcome,) = runner.run_suite(recipe, "/data", str(tmp_path / "r"), launcher=launcher)
    assert outcome.status == "failed" and "`sbatch` not found" in outcome.error
    assert not (tmp_path / "r" / "runs").exists()  # nothing ran: no record


def _defaults(cls):
    return {o.name: o.default for o in cls.options}
