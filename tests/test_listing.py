"""`python -m eval_encoder ls`: families, model names, dataset cards, recipes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_encoder import listing
from eval_encoder.encoders import baselines
from eval_encoder.registry import ENCODERS

REPO = Path(__file__).resolve().parents[1]
CARD = """name: {name}
version: "2"
num_classes: 5
train_manifest: t.csv
val_manifest: v.csv
default_epochs: 3
default_batch_size: 2
"""


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """One good and one broken dataset card, one recipe."""
    cards, probes = tmp_path / "datasets", tmp_path / "probes"
    cards.mkdir(), probes.mkdir()
    (cards / "tiny.yaml").write_text(CARD.format(name="tiny"))
    (probes / "siglip2_row.yaml").write_text(
        "model_family: siglip2\nmodel_name: siglip2_base\nnum_frames: 8\ndatasets: [ssv2, k400]\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    monkeypatch.setenv("EVAL_ENCODER_PROBES", str(probes))
    return cards, probes


def test_text_lists_families_models_datasets_recipes(data_dirs, capsys):
    assert listing.main([]) == 0
    text = capsys.readouterr().out
    for name in baselines.MODELS:
        assert name in text
    assert "dino_v2" in text  # aliases are shown
    line = next(l for l in text.splitlines() if l.startswith("clip ") and "large_patch14" in l)
    assert line.split()[1:6] == ["clip_vit_large_patch14", "1024", "14", "224", "257"]
    assert "tiny" in text and "siglip2_row" in text and "ssv2,k400" in text
    assert "MetaCLIP 1 L/14 fullcc2.5b" in text and "not MetaCLIP 2" in text  # its note


def test_json_rows_carry_width_tokens_size_and_stats(data_dirs, capsys):
    assert listing.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"families", "models", "datasets", "recipes"}
    row = next(r for r in data["models"] if r["model_name"] == "siglip2_large_patch16_256")
    assert (row["embed_dim"], row["tokens_per_frame"], row["input_size"]) == (1024, 256, 256)
    assert row["mean"] == [0.5] * 3 and row["std"] == [0.5] * 3
    fams = {r["family"]: r for r in data["families"]}
    assert fams["hf"]["aliases"] and fams["dinov3"]["models"] == 2
    assert data["datasets"] == [{"name": "tiny", "version": "2", "num_classes": 5,
                                 "default_epochs": 3, "default_batch_size": 2, "metric": "top1",
                                 "train_manifest": "t.csv", "val_manifest": "v.csv"}]
    assert data["recipes"][0]["model_name"] == "siglip2_base"


def test_broken_card_is_reported_and_fails(data_dirs, capsys):
    cards, _ = data_dirs
    (cards / "bad.yaml").write_text("name: bad\ndescription: a: b\n")
    assert listing.main(["datasets"]) == 1
    out = capsys.readouterr().out
    assert "Problems" in out and "bad.yaml: not valid YAML" in out


def test_sections_and_family_filter(data_dirs, capsys):
    assert listing.main(["models", "--family", "dino_v2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["models"]
    assert {r["model_name"] for r in data["models"]} == {"dinov2_base", "dinov2_large"}
    with pytest.raises(SystemExit):
        listing.main(["nonsense"])


def test_user_module_families_are_listed(data_dirs, capsys):
    example = str(REPO / "examples" / "my_encoders.py")
    try:
        assert listing.main(["families", "--encoder_module", example]) == 0
        assert "my_patch_encoder" in capsys.readouterr().out
    finally:
        ENCODERS.unregister("my_patch_encoder")
        for name in [m for m in sys.modules if m.startswith("eval_encoder_user_")]:
            del sys.modules[name]


def test_module_command_line(data_dirs):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "eval_encoder", "ls", "models", "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["models"]) > len(list(baselines.MODELS))
