"""Users' own encoders: --encoder_module (the README example) and entry points."""
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import eval_encoder.encoders  # noqa: F401  (registers the built-in families)
from eval_encoder.config import ConfigError
from eval_encoder.probe.args import parse_config
from eval_encoder.encoders import user
from eval_encoder.registry import ENCODERS

USER_MODULES = ("eval_encoder_user_", "examples", "fakeplug", "needs_dep", "broken")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_encoders.py"


@pytest.fixture(autouse=True)
def clean_registry():
    """Families and modules a test adds are removed afterwards."""
    families, modules = set(ENCODERS), set(sys.modules)
    loaded = set(user._loaded_entry_points)
    yield
    for name in set(ENCODERS) - families:
        ENCODERS.unregister(name)
    for name in set(sys.modules) - modules:
        if name.startswith(USER_MODULES):
            del sys.modules[name]
    user._loaded_entry_points.intersection_update(loaded)


def build(argv):
    """What the encoder builder does: user modules and entry points, then the family."""
    cfg = parse_config(argv)
    user.load_encoder_modules(cfg.encoder_module)
    user.load_entry_points()
    return ENCODERS.get(cfg.model_family)(cfg).freeze()


def test_readme_example_runs_through_the_registry(tmp_path):
    argv = ["--encoder_module", str(EXAMPLE), "--model_family", "my_patch_encoder",
            "--model_name", "tiny", "--model_weight", "random", "--input_size", "32"]
    enc = build(argv)
    assert enc.spec.family == "my_patch_encoder" and enc.spec.tokens_per_frame == 4
    assert "input_size" in enc.spec.overrides
    video = torch.randn(2, 3, 2, 32, 32)
    out = enc({"pixel_values": video})
    assert out.shape == (2, 2 * 4, 32)
    # its weights saved and loaded back through --model_weight give the same tokens
    from safetensors.torch import save_file

    save_file(enc.state_dict(), str(tmp_path / "mine.safetensors"))
    again = build([*argv[:-4], "--model_weight", str(tmp_path / "mine.safetensors"),
                   "--input_size", "32"])
    assert torch.equal(again({"pixel_values": video}), out)


def test_dotted_module_name_and_repeated_loading(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE.parents[1]))
    first = user.load_encoder_modules(["examples.my_encoders"])
    again = user.load_encoder_modules(["examples.my_encoders"])  # no double registration
    assert first == again and "my_patch_encoder" in ENCODERS


def test_one_file_by_path_and_by_dotted_name_is_imported_once(monkeypatch):
    """A file given by path and then by dotted name (or the other way) is one module: its
    encoders register once, whichever spelling came first."""
    monkeypatch.syspath_prepend(str(EXAMPLE.parents[1]))
    by_path = user.load_encoder_modules([str(EXAMPLE)])
    by_name = user.load_encoder_modules(["examples.my_encoders"])
    assert by_path == by_name and "my_patch_encoder" in ENCODERS


def test_missing_module_is_named():
    with pytest.raises(ConfigError, match="--encoder_module 'no_such_pkg.encoders': no such module"):
        user.load_encoder_modules(["no_such_pkg.encoders"])
    with pytest.raises(ConfigError, match="no such file"):
        user.load_encoder_modules(["does/not/exist.py"])


def test_errors_inside_a_user_module_keep_their_cause_and_name_it(tmp_path, monkeypatch):
    (tmp_path / "needs_dep.py").write_text("import some_missing_dependency_xyz\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        user.load_encoder_modules(["needs_dep"])
    assert "--encoder_module 'needs_dep'" in "".join(info.value.__notes__)
    with pytest.raises(RuntimeError, match="boom") as info:
        user.load_encoder_modules([str(tmp_path / "broken.py")])
    assert "broken.py" in "".join(info.value.__notes__)


def _fake_distribution(root: Path, entry_points: str, module_source: str) -> None:
    """An installed-looking package: a module plus a dist-info with entry_points.txt."""
    info = root / "fakeplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[eval_encoder.encoders]\n{entry_points}\n")
    (root / "fakeplug_encoders.py").write_text(textwrap.dedent(module_source))


def test_entry_points_register_factories_once(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "plug_family = fakeplug_encoders:build\n"
                                 "plug_module = fakeplug_encoders", """
        from eval_encoder.registry import register_encoder

        def build(cfg):
            raise NotImplementedError

        @register_encoder("plug_decorated")
        def build_decorated(cfg):
            raise NotImplementedError
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sorted(user.load_entry_points()) == ["plug_family", "plug_module"]
    assert "plug_family" in ENCODERS and "plug_decorated" in ENCODERS
    assert user.load_entry_points() == []  # already loaded


def test_broken_entry_point_is_named(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "bad = fakeplug_encoders:missing_name", "x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"entry point bad = fakeplug_encoders:missing_name .*"
                                          r"package fakeplug"):
        user.load_entry_points()
