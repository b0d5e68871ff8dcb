"""Clip mode of the user-encoder contract (encoders/clip.py): the README's worked example,
examples/my_clip_encoder.py, end to end, and a declared layout the module does not keep."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from eval_encoder.config import ConfigError, ProbeConfig
from eval_encoder.encoders.clip import register_clip_encoder
from eval_encoder.registry import ENCODERS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_clip_encoder.py"


def test_the_example_clip_encoder_runs_a_probe_end_to_end(tmp_path, monkeypatch):
    from eval_encoder.demo import generate_dataset
    from eval_encoder.probe.run import main as probe_main
    from eval_encoder.record import read_record

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    generate_dataset(tmp_path / "data", "demo", train_per_class=2, val_clips=3, seed=0)
    report = tmp_path / "report"
    code = probe_main(["--encoder_module", str(EXAMPLE), "--model_family", "my_clip_encoder",
                       "--model_name", "tiny", "--model_weight", "random", "--dataset", "demo",
                       "--data_root", str(tmp_path / "data"), "--default_epoch", "1",
                       "--default_lr_list", "1e-3", "--batch_size", "4", "--loader", "torch",
                       "--dali_py_num_workers", "0", "--save_report", str(report)])
    assert code == 0
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    spec = record["encoder"]["spec"]
    assert record["status"] == "complete" and record["token_budget"] == 1 + 8 // 2 * 16
    assert spec["num_frames"] == 8 and spec["clip_prefix_tokens"] == 1
    assert spec["tubelet_size"] == 2 and spec["mean"] == [0.5, 0.5, 0.5]
    assert record["compute"]["encoder"]["flops_method"] == "counter"


def test_a_module_that_breaks_its_declared_layout_is_refused():
    class PerFrame(nn.Module):  # 16 tokens per frame, no class token
        def forward(self, clip):
            return torch.zeros(clip.shape[0], clip.shape[1] * 16, 8)

    register_clip_encoder("liar_clip", num_frames=4, input_size=64, patch_size=16,
                          clip_prefix_tokens=1, mean=(0.5,) * 3, std=(0.5,) * 3)(
        lambda cfg: PerFrame())
    try:
        with pytest.raises(ConfigError, match=r"gives \(1, 64, 8\).*declares \[1, 65, D\]"):
            ENCODERS.get("liar_clip")(ProbeConfig(model_family="liar_clip", model_name="x",
                                                  num_frames=4))
    finally:
        ENCODERS.unregister("liar_clip")
