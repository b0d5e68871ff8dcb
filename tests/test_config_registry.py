"""Registry, config precedence and dataset-card checks."""
import pytest

from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.registry import Registry, RegistryError
from eval_encoder.video.manifest import ManifestError, load_card, read_manifest

UPSTREAM_SEED_COMMAND = (
    "--eval_freq 1 --default_lr_list 0.0001 --batch_size 32 --default_weight_decay 0 "
    "--dali_py_num_workers 8 --model_family llava_vit_sampling --dataset diving48 --num_frames 8 "
    "--model_weight lmms-lab-encoder/onevision-encoder-large --model_name hf_llava_vit_large_ln "
    "--embedding_size 1024 --frames_token_num 256").split()


def test_registry_unknown_name_suggests():
    reg = Registry("encoder family")
    reg.register("sampling", object(), aliases=("llava_vit_sampling",))
    with pytest.raises(RegistryError, match="Did you mean 'sampling'"):
        reg.get("samplng")
    assert reg.canonical("llava_vit_sampling") == "sampling"


def test_registry_duplicate_is_an_error():
    reg = Registry("x")
    reg.register("a", 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a", 2)


def test_builtin_families_and_aliases():
    from eval_encoder.encoders import build_encoder  # noqa: F401 (registers families)
    from eval_encoder.registry import ENCODERS

    for alias in ("llava_vit_sampling", "chunk_wise_sampling", "sampling"):
        assert ENCODERS.canonical(alias) == "sampling"
    for alias in ("llava_vit_codec", "ov_encoder_codec", "codec"):
        assert ENCODERS.canonical(alias) == "codec"


def test_upstream_command_parses():
    cfg = parse_config(UPSTREAM_SEED_COMMAND)
    assert cfg.model_family == "llava_vit_sampling"
    assert cfg.default_lr_list == [0.0001] and cfg.batch_size == 32
    assert cfg.embedding_size == 1024 and cfg.frames_token_num == 256
    assert cfg.sources["batch_size"] == "command line"


def test_precedence_default_yaml_cli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("num_frames: 16\ndefault_lr_list: [0.001, 0.0003]\nK_keep: 4096\n")
    cfg = parse_config(["--config", str(recipe), "--num_frames", "8"])
    assert cfg.num_frames == 8  # command line beats YAML
    assert cfg.default_lr_list == [0.001, 0.0003]  # YAML beats default
    assert cfg.codec.K_keep == 4096
    assert cfg.sources["default_lr_list"] == f"yaml:{recipe}"
    assert cfg.seed == 1 and "seed" not in cfg.sources  # default


def test_unknown_yaml_key_names_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("num_frame: 16\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown option 'num_frame' \(did you mean num_frames"):
        parse_config(["--config", str(recipe)])


def test_rank_flags_must_agree_with_launcher(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    parse_config(["--rank", "0"])
    with pytest.raises(ConfigError, match="disagrees with the launcher"):
        parse_config(["--local_rank", "3"])


def test_cards_have_the_paper_class_counts():
    expected = {"ssv2": 174, "diving48": 48, "perception_test": 63, "epic_verb": 97,
                "epic_noun": 300, "hmdb51": 51, "k400": 400, "charadesego": 157,
                "k600": 600, "k700": 700, "ucf101": 101}
    for name, classes in expected.items():
        assert load_card(name).num_classes == classes
    assert load_card("ssv2").train_manifest == "ssv2_train_new.csv"
    assert load_card("k400").val_manifest == "val_new.csv"


def test_unknown_dataset_suggests():
    with pytest.raises(ManifestError, match="Did you mean 'ssv2'"):
        load_card("ssv3")


@pytest.mark.parametrize("line,message", [
    ("videos/a.mp4", "expected 'path,label'"),
    ("videos/a.mp4,x", "label 'x' is not an integer"),
    ("videos/a.mp4,9", "label 9 outside the dataset's 4 classes"),
])
def test_manifest_errors_name_file_and_line(tmp_path, line, message):
    manifest = tmp_path / "train_new.csv"
    manifest.write_text(f"videos/ok.mp4,1\n{line}\n")
    with pytest.raises(ManifestError, match=f"{manifest}:2: {message}"):
        read_manifest(str(manifest), 4)
