"""Packaging: the shipped data is found through eval_encoder.resources (or the user's folders),
a wheel carries it and works from any directory, and the stated Python floor is true."""
import configparser
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import eval_encoder
from eval_encoder import resources
from eval_encoder.__main__ import main as cli
from eval_encoder.video.manifest import known_datasets, load_card

REPO = Path(__file__).resolve().parents[1]
# what a wheel is built from: the package (whose _data/ links point into the rest) and metadata
BUILD_INPUTS = ("setup.cfg", "pyproject.toml", "README.md", "eval_encoder", "datasets", "probes",
                "results/paper_attentive_probe.csv", "results/val_sampling_optimism.csv",
                "results/vjepa2_attentive_probe.csv")
CANDIDATES = [Version(f"3.{minor}") for minor in range(6, 30)]


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "setup.cfg")
    return parser


def _lines(value: str):
    return [l.strip() for l in value.splitlines() if l.strip() and not l.strip().startswith("#")]


# ----------------------------------------------------------------------------- shipped data
def test_shipped_data_is_the_checkouts_folders():
    assert resources.data_dir("datasets").resolve() == REPO / "datasets"
    assert resources.data_dir("probes").resolve() == REPO / "probes"
    assert resources.reported_csv().resolve() == REPO / "results" / "paper_attentive_probe.csv"
    assert resources.optimism_csv().resolve() == REPO / "results" / "val_sampling_optimism.csv"
    assert known_datasets() == sorted(p.stem for p in (REPO / "datasets").glob("*.yaml"))
    assert resources.source_checkout() == REPO
    # the folders stay data: no __init__.py that would make `import datasets` find ours
    assert not list(REPO.glob("datasets/__init__.py")) + list(REPO.glob("probes/__init__.py"))


def test_override_folder_replaces_the_shipped_one(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("name: mine\nnum_classes: 3\ntrain_manifest: t.csv\n"
                                        "val_manifest: v.csv\ndefault_epochs: 1\n"
                                        "default_batch_size: 2\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(tmp_path))
    assert known_datasets() == ["mine"] and load_card("mine").num_classes == 3
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(tmp_path / "typo"))
    with pytest.raises(resources.MissingData, match=r"EVAL_ENCODER_DATASETS=.*typo: is not a "
                                                    r"folder"):
        known_datasets()
    monkeypatch.setenv("EVAL_ENCODER_PROBES", str(tmp_path))  # cards, but no recipe is wrong too
    (tmp_path / "mine.yaml").unlink()
    with pytest.raises(resources.MissingData, match=r"EVAL_ENCODER_PROBES=.*holds no \*\.yaml"):
        resources.data_dir("probes")


def test_install_without_its_data_fails_loudly(tmp_path, monkeypatch, capsys):
    """What a wheel built without package data gave: `ls` listed 0 datasets and exited 0."""
    monkeypatch.setattr(resources, "shipped_root", lambda: tmp_path)
    assert cli(["ls"]) != 0
    said = "".join(capsys.readouterr())
    assert "shipped dataset cards are missing" in said and "EVAL_ENCODER_DATASETS" in said
    with pytest.raises(resources.MissingData, match="reinstall"):
        load_card("demo")  # not "unknown dataset 'demo'. Known: " with an empty list


def test_every_module_imports_without_the_optional_extras():
    """DALI and flash-attention stay behind their guards: under `make test-light` (no DALI)
    this imports every module of the package as a [test] install has it."""
    import importlib
    import pkgutil

    import eval_encoder

    names = [m.name for m in pkgutil.walk_packages(eval_encoder.__path__, "eval_encoder.")]
    for name in names:
        importlib.import_module(name)
    assert "eval_encoder.resources" in names and "eval_encoder._data" not in names


# ----------------------------------------------------------------------------- metadata
def _floor(spec: SpecifierSet) -> Version:
    """The lowest Python minor version a Requires-Python admits."""
    return next(v for v in CANDIDATES if spec.contains(v, prereleases=True))


def _abi3_floor(dist: metadata.Distribution):
    """The lowest Python a distribution's abi3 wheel allows (cp311-abi3: 3.11), or None (a
    cp311-cp311 tag names only the interpreter it was installed for, not a floor)."""
    tags = [l.split(":", 1)[1].strip() for l in (dist.read_text("WHEEL") or "").splitlines()
            if l.startswith("Tag:")]
    minors = [int(m.group(1)) for t in tags for m in [re.match(r"cp3(\d+)-abi3-", t)] if m]
    return Version(f"3.{min(minors)}") if minors else None


def test_python_floor_is_that_of_the_pinned_dependencies():
    cfg = setup_cfg()
    ours = SpecifierSet(cfg["options"]["python_requires"])
    assert ours.contains(f"{sys.version_info.major}.{sys.version_info.minor}")
    pinned = [Requirement(r) for r in _lines(cfg["options"]["install_requires"])]
    pinned += [Requirement(r) for v in cfg["options.extras_require"].values() for r in _lines(v)]
    floors = {}
    for req in pinned:
        if not any(s.operator == "==" for s in req.specifier):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # an extra not installed here (flash-attn, or DALI in the light venv)
        assert req.specifier.contains(dist.version), f"{req} but {dist.version} is installed"
        floors[req.name] = _floor(SpecifierSet(dist.metadata.get("Requires-Python") or ""))
        tag = _abi3_floor(dist)
        floors[req.name] = max(floors[req.name], tag) if tag else floors[req.name]
    assert floors["av"] == Version("3.11")  # PyAV 18.1.0: cp311-abi3 wheels, >= 3.11
    assert _floor(ours) == max(floors.values()), (ours, floors)


def test_test_extra_leaves_dali_to_test_dali():
    extras = setup_cfg()["options.extras_require"]
    test = [Requirement(r).name for r in _lines(extras["test"])]
    assert not [n for n in test if "dali" in n]
    both = Requirement(_lines(extras["test-dali"])[0])
    assert both.name == "eval-encoder" and both.extras == {"test", "dali"}


# ----------------------------------------------------------------------------- the wheel
def _site_dirs():
    """The site-packages folders this interpreter imports from (a layered venv has two)."""
    dirs = []
    for entry in sys.path:
        path = Path(entry).resolve()
        if path.name == "site-packages" and path.is_dir() and path not in dirs:
            dirs.append(path)
    return dirs


def _run(cmd, cwd, env, timeout=180):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A wheel of a copy of the checkout, installed into a fresh venv that cannot see the
    checkout. The venv reaches our dependencies through a .pth file listing our site-packages:
    .pth files inside those folders are not processed, so our editable install stays out."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in BUILD_INPUTS:  # built from a copy: the build writes build/ and *.egg-info
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        kwargs = {"symlinks": True, "ignore": shutil.ignore_patterns("__pycache__")}
        copy(REPO / name, src / name, **(kwargs if copy is shutil.copytree else {}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "EVAL_ENCODER_DATASETS", "EVAL_ENCODER_PROBES")}
    env["PYTHONNOUSERSITE"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "--disable-pip-version-check", "-w", root / "dist", src], root, env)
    wheel = next((root / "dist").glob("eval_encoder-*.whl"))
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     root, env).stdout.strip())
    (site / "_parent_site.pth").write_text("".join(f"{d}\n" for d in _site_dirs()))
    # --ignore-installed: our own eval-encoder metadata is visible through the .pth and must
    # neither count as installed nor be uninstalled
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
          "--disable-pip-version-check", wheel], root, env)
    work = root / "elsewhere"
    work.mkdir()
    return python, site, work, env


@pytest.mark.slow
def test_wheel_imports_its_own_copy_and_lists_its_data(wheel_venv):
    python, site, work, env = wheel_venv
    where = _run([python, "-c", "import eval_encoder; print(eval_encoder.__file__)"], work, env)
    assert Path(where.stdout.strip()).resolve() == (site / "eval_encoder" / "__init__.py").resolve()
    assert not (site / "eval_encoder" / "_data" / "datasets").is_symlink()  # real files
    listing = _run([python.parent / "eval-encoder", "ls", "datasets", "recipes", "--json"],
                   work, env)
    data = json.loads(listing.stdout)
    assert sorted(r["name"] for r in data["datasets"]) == sorted(
        p.stem for p in (REPO / "datasets").glob("*.yaml"))
    assert sorted(r["name"] for r in data["recipes"]) == sorted(
        p.stem for p in (REPO / "probes").glob("*.yaml"))
    assert data["datasets"] and data["recipes"]
    # a trainer started by the suite (launch/process.py) imports this same copy
    child = _run([python, "-c", "import subprocess, sys; from eval_encoder.launch.process import "
                  "child_env; subprocess.run([sys.executable, '-c', 'import eval_encoder; "
                  "print(eval_encoder.__file__)'], env=child_env(), check=True)"], work, env)
    assert Path(child.stdout.strip()).resolve() == (site / "eval_encoder" / "__init__.py").resolve()


@pytest.mark.slow
def test_wheel_leaderboard_shows_the_papers_numbers(wheel_venv, tmp_path):
    python, _, work, env = wheel_venv
    out = _run([python, "-m", "eval_encoder", "leaderboard", "--runs", tmp_path / "none",
                "--reported", "--format", "csv"], work, env).stdout
    shown = {(r["frames"], r["method"]): r for r in csv.DictReader(io.StringIO(out))
             if r["source"] == "reported"}
    text = (REPO / "results" / "paper_attentive_probe.csv").read_text()
    paper = list(csv.DictReader(l for l in io.StringIO(text) if not l.startswith("#")))
    assert len(shown) == len(paper) > 0
    for row in paper:
        cells = shown[(row["frames"], row["method"])]
        for column in ("avg", "ssv2", "diving48", "k400", "hmdb51"):
            assert float(cells[column]) == float(row[column]), (row["method"], column)
    note = _run([python, "-m", "eval_encoder", "leaderboard", "--runs", tmp_path / "none",
                 "--reported", "--val_optimism"], work, env).stdout
    assert "paper's validation draw" in note and "Diving48 +" in note  # the wheel carries it


@pytest.mark.slow
def test_wheel_runs_the_demo_to_a_complete_record(wheel_venv, tmp_path):
    from eval_encoder.record import read_record

    python, _, work, env = wheel_venv
    out = tmp_path / "demo"
    # one epoch, one process: the demo's own path, made short
    run = _run([python, "-m", "eval_encoder", "demo", "--out", out, "--nproc_per_node", "1",
                "--default_epoch", "1"], work, env, timeout=300)
    (path,) = (out / "report" / "runs" / "demo").glob("*.json")
    # it ends with the result, the record's path and the command that shows it
    said = run.stdout.strip().splitlines()
    assert said[-3].startswith("demo ov_encoder_tiny: top-1 ")
    assert said[-2:] == [f"run record: {path}",
                         f"show it: python -m eval_encoder leaderboard --runs {path.parents[1]}"]
    record = read_record(str(path))
    val_clips = len((out / "data" / "demo" / "val_new.csv").read_text().splitlines())
    assert record["status"] == "complete" and record["dataset"]["name"] == "demo"
    assert record["dataset"]["num_classes"] == load_card("demo").num_classes  # the shipped card
    assert record["samples"]["val"]["scored"] == record["samples"]["val"]["expected"] == val_clips
    assert 0 <= record["reported"]["top1"] <= 100
    predictions = path.parent / record["predictions"]["file"]
    assert hashlib.sha256(predictions.read_bytes()).hexdigest() == record["predictions"]["sha256"]
    assert record["git_commit"] is None  # an installed copy is not a checkout ...
    assert record["versions"]["eval_encoder"] == eval_encoder.__version__  # ... but a version
    shown = _run([python.parent / "eval-encoder", "--version"], work, env).stdout
    assert shown == f"eval-encoder {eval_encoder.__version__}\n"  # no commit: not a checkout
    installed = _run([python, "-c", "from importlib import metadata; "
                      "print(metadata.version('eval-encoder'))"], work, env).stdout
    assert installed.strip() == eval_encoder.__version__  # setup.cfg reads the package's
