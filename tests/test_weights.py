"""Weight resolution (folder / file / hub id) and weight-file reading."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from eval_encoder.config import ConfigError
from eval_encoder.encoders.weights import (load_state_dict, load_state_dict_file, resolve_weights,
                                           strip_prefixes)


def _tensors():
    return {"a.weight": torch.arange(6.0).reshape(2, 3), "b.bias": torch.ones(3)}


@pytest.mark.parametrize("value", ["NULL", "", "  "])
def test_missing_weight_says_what_to_pass(value):
    with pytest.raises(ConfigError, match="--model_weight.*folder.*hub id.*'random'"):
        resolve_weights(value)


def test_local_folder_and_file_returned_as_is(tmp_path):
    f = tmp_path / "w.safetensors"
    save_file(_tensors(), str(f))
    assert resolve_weights(str(tmp_path)) == tmp_path
    assert resolve_weights(str(f)) == f


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        resolve_weights(str(tmp_path / "nope.pt"))


def test_absent_hub_id_offline_with_empty_cache(tmp_path):
    # huggingface_hub reads HF_HOME / HF_HUB_OFFLINE at import, so check in a fresh process
    script = textwrap.dedent("""
        from eval_encoder.config import ConfigError
        from eval_encoder.encoders.weights import resolve_weights
        for allow in (False, True):
            try:
                resolve_weights("someone/not-a-cached-model", allow_download=allow)
            except ConfigError as exc:
                print("ERR", allow, exc)
            else:
                print("RESOLVED", allow)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("ERR") for line in lines), out.stdout
    assert "not in the local Hugging Face cache" in lines[0] and "--allow_download" in lines[0]
    assert "local folder" in lines[0] and "could not be downloaded" in lines[1]


def test_safetensors_and_torch_files_read_the_same(tmp_path):
    st, pt = tmp_path / "m.safetensors", tmp_path / "m.bin"
    save_file(_tensors(), str(st))
    torch.save({"state_dict": {f"module.{k}": v for k, v in _tensors().items()}, "epoch": 3}, pt)
    a, b = load_state_dict_file(st), load_state_dict_file(pt)
    assert sorted(a) == sorted(b) == ["a.weight", "b.bias"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_wrapper_and_compile_prefix(tmp_path):
    pt = tmp_path / "m.pt"
    torch.save({"model": {"_orig_mod.a.weight": torch.zeros(1),
                          "enc._orig_mod.b": torch.zeros(1)}}, pt)
    assert sorted(load_state_dict_file(pt)) == ["a.weight", "enc.b"]


def test_non_tensor_entries_and_pickled_objects_are_refused(tmp_path):
    pt = tmp_path / "m.pt"
    torch.save({"a": torch.zeros(1), "lr": 0.1}, pt)
    with pytest.raises(ConfigError, match="'lr' is a float"):
        load_state_dict_file(pt)
    bad = tmp_path / "obj.pt"
    torch.save({"a": torch.zeros(1), "cfg": {1, 2}}, bad)  # a set is not allowed weights-only
    with pytest.raises(ConfigError, match="obj.pt"):
        load_state_dict_file(bad)


def test_prefix_collision_is_an_error():
    with pytest.raises(ConfigError, match="map to 'x'"):
        strip_prefixes({"x": torch.zeros(1), "module.x": torch.zeros(1)})


def test_sharded_folder(tmp_path):
    save_file({"a.weight": torch.ones(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b.bias": torch.zeros(2)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                            "b.bias": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert sorted(load_state_dict(tmp_path)) == ["a.weight", "b.bias"]


def test_folder_without_weights_lists_what_it_has(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="notes.txt"):
        load_state_dict(tmp_path)
