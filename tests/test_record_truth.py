"""Records that tell the truth: the clip shape the encoder declares is what the record's config
says and what every batch is checked against; flags that change what a number means are said
in a warning at the end of the run."""
from __future__ import annotations

import json
import logging
import textwrap

import pytest

from eval_encoder.config import ConfigError
from eval_encoder.demo import generate_dataset
from eval_encoder.encoders.base import EncoderSpec
from eval_encoder.probe.args import parse_config
from eval_encoder.probe.records import warn_flags
from eval_encoder.probe.run import main as probe_main
from eval_encoder.probe.run import resolve_clip_shape
from eval_encoder.record import read_record

CODEC = EncoderSpec(family="codec", model_name="ov_encoder_tiny", embed_dim=128, patch_size=14,
                    input_size=224, clip_source="codec", num_frames=64)


def test_a_codec_run_records_the_64_frames_and_the_k_tokens_it_used():
    cfg = parse_config(["--model_family", "codec", "--K_keep", "2048"])
    assert cfg.num_frames == 8 and cfg.num_tokens is None  # the defaults, as asked
    resolve_clip_shape(cfg, CODEC)
    assert cfg.num_frames == 64 and cfg.num_tokens == 2048
    assert cfg.sources["num_frames"] == "encoder spec (8 asked: the family takes 64)"
    assert cfg.sources["num_tokens"] == "the encoder spec: K_keep 2048 selected patches"


def test_frames_and_tokens_of_a_per_frame_encoder():
    spec = EncoderSpec(family="mine", model_name="m", embed_dim=8, patch_size=16, input_size=64,
                       tokens_per_frame=16, prefix_tokens=1)
    cfg = parse_config(["--num_frames", "4"])
    resolve_clip_shape(cfg, spec)
    assert cfg.num_frames == 4 and cfg.num_tokens == 4 * 17
    with pytest.raises(ConfigError, match=r"--num_tokens 60 but m gives 68 tokens per clip "
                                          r"\(the encoder spec: 4 frames x \(16 patch \+ 1 "
                                          r"prefix tokens\)\)"):
        resolve_clip_shape(parse_config(["--num_frames", "4", "--num_tokens", "60"]), spec)


PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn
    from eval_encoder.encoders.base import EncoderSpec, VideoEncoder
    from eval_encoder.registry import register_encoder


    class Liar(VideoEncoder):
        """Declares 17 tokens per frame, returns 16."""

        def __init__(self, spec):
            super().__init__()
            self.spec = spec
            self.proj = nn.Conv2d(3, spec.embed_dim, 16, stride=16)

        def forward(self, batch):
            video = batch["pixel_values"]
            b, c, t, h, w = video.shape
            tokens = self.proj(video.transpose(1, 2).reshape(b * t, c, h, w))
            return tokens.flatten(2).transpose(1, 2).reshape(b, -1, self.spec.embed_dim)


    @register_encoder("liar")
    def build(cfg):
        return Liar(EncoderSpec(family="liar", model_name=cfg.model_name, embed_dim=8,
                                patch_size=16, input_size=64, tokens_per_frame=17))
''')


def test_a_plugin_whose_spec_and_forward_disagree_fails_at_its_first_batch(tmp_path,
                                                                           monkeypatch):
    data = tmp_path / "data"
    generate_dataset(data, "demo", train_per_class=3, val_clips=7, seed=0)
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    plugin = tmp_path / "liar.py"
    plugin.write_text(PLUGIN)
    report = tmp_path / "report"
    code = probe_main(["--encoder_module", str(plugin), "--model_family", "liar",
                       "--model_name", "liar", "--model_weight", "random", "--dataset", "demo",
                       "--data_root", str(data), "--num_frames", "2", "--input_size", "64",
                       "--default_epoch", "1", "--batch_size", "4",
                       "--dali_py_num_workers", "0", "--save_report", str(report)])
    assert code == 1
    (path,) = (report / "runs").rglob("*.json")
    record = read_record(str(path))
    assert record["status"] == "failed"
    assert record["error"] == ("RunFailed: the encoder returned 32 tokens for a clip, but 34 "
                               "were expected (the encoder spec: 2 frames x (17 patch + 0 "
                               "prefix tokens))")
    assert json.dumps(record["samples"]["train"]["expected"]) == "12"


def test_flags_that_change_a_number_are_said_with_their_count(caplog):
    import eval_encoder.codec.source  # noqa: F401  (registers the codec's flags)

    samples = {"train": {"expected": 12, "flags": {"codec_clip_shorter_than_frames": 3,
                                                   "codec_static_fallback": 5}},
               "val": {"expected": 7, "flags": {"codec_clip_shorter_than_frames": 0}}}
    with caplog.at_level(logging.WARNING, logger="eval_encoder.run"):
        warn_flags(samples)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["3 train samples (of 12 clips) are shorter than the frames the codec "
                    "selection samples: frame ids repeat (record: "
                    "samples.train.flags.codec_clip_shorter_than_frames)"]
