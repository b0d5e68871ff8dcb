"""A clip's segments through the encoder (folded into the batch, tokens side by side) and a
clip's views into one score (logits or softmax probabilities averaged)."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from eval_encoder import compute
from eval_encoder.probe.records import budget_text, token_budget
from eval_encoder.probe.trainer import ProbeTrainer
from eval_encoder.probe.views import VIEW_FUSIONS, fold_segments, unfold_tokens, view_fusion


class Tubelets(nn.Module):
    """A stand-in for a video ViT with 2-frame tubelets of 16x16 patches (V-JEPA 2's
    embedding): [B, 3, T, H, W] -> [B, T/2 * H/16 * W/16, D]; it refuses any other layout."""

    def __init__(self, width: int = 4, frames: int = 16):
        super().__init__()
        self.frames = frames
        self.embed = nn.Conv3d(3, width, (2, 16, 16), stride=(2, 16, 16))
        self.seen = []

    def forward(self, batch):
        x = batch["pixel_values"]
        assert x.dim() == 5 and x.shape[2] == self.frames, x.shape
        assert batch["frame_indices"].shape == (x.shape[0], self.frames)
        self.seen.append(batch["frame_indices"].clone())
        return self.embed(x).flatten(2).transpose(1, 2)


def _trainer(encoder, segments, tokens=None, fusion="logits"):
    env = SimpleNamespace(device=torch.device("cpu"), world_size=1, is_main=True)
    return ProbeTrainer(encoder, [], env, 0.0, 0.0, 2, tokens, segments=segments, fusion=fusion)


def test_vit_l_16_frames_x_2_segments_gives_the_head_4096_tokens():
    """16 frames x 2 segments at 256 px, tubelet 2, patch 16: 2 x (8 x 16 x 16) = 2 x 2048."""
    torch.manual_seed(0)
    enc = Tubelets()
    pixels = torch.randn(2, 3, 32, 256, 256)
    indices = torch.arange(32).repeat(2, 1) + torch.tensor([[0], [100]])
    batch = {"pixel_values": pixels, "frame_indices": indices, "total_frames": torch.tensor([60, 200]),
             "labels": torch.tensor([0, 1])}
    out = _trainer(enc, 2, tokens=4096).tokens(batch, "train")
    assert out.shape == (2, 4096, 4)
    with torch.no_grad():
        for b in range(2):
            for s in range(2):
                one = {"pixel_values": pixels[b:b + 1, :, 16 * s:16 * (s + 1)],
                       "frame_indices": indices[b:b + 1, 16 * s:16 * (s + 1)]}
                assert torch.equal(out[b, 2048 * s:2048 * (s + 1)], enc(one)[0])
    assert enc.seen[0][:, 0].tolist() == [0, 16, 100, 116]  # clip b, segment s at row 2b + s


def test_a_token_count_that_disagrees_fails_the_run():
    from eval_encoder.probe.trainer import RunFailed

    enc = Tubelets(frames=2)
    batch = {"pixel_values": torch.zeros(1, 3, 4, 16, 16), "frame_indices": torch.zeros(1, 4)}
    with pytest.raises(RunFailed, match="returned 2 tokens for a clip, but 3"):
        _trainer(enc, 2, tokens=3).tokens(batch, "val")


def test_fold_repeats_what_belongs_to_the_whole_clip():
    batch = {"pixel_values": torch.arange(2 * 3 * 6).float().reshape(2, 3, 6, 1, 1),
             "frame_indices": torch.arange(12).reshape(2, 6), "total_frames": torch.tensor([7, 9]),
             "labels": torch.tensor([3, 4]), "skipped": [], "index": torch.tensor([10, 11])}
    folded = fold_segments(batch, 3)
    assert folded["pixel_values"].shape == (6, 3, 2, 1, 1)
    assert folded["pixel_values"][1, 0, :, 0, 0].tolist() == [2.0, 3.0]
    assert folded["frame_indices"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert folded["total_frames"].tolist() == [7, 7, 7, 9, 9, 9]
    assert folded["skipped"] == [] and fold_segments(batch, 1) is batch
    assert unfold_tokens(torch.arange(6).reshape(6, 1, 1), 3).reshape(2, 3).tolist() == \
        [[0, 1, 2], [3, 4, 5]]


def test_fold_refuses_what_cannot_be_split():
    with pytest.raises(ValueError, match="not a multiple of 2 segments"):
        fold_segments({"pixel_values": torch.zeros(1, 3, 5, 2, 2)}, 2)
    with pytest.raises(ValueError, match="codec"):
        fold_segments({"pixel_values": torch.zeros(1, 3, 4, 2, 2),
                       "visible_indices": torch.zeros(1, 8)}, 2)


def test_softmax_fusion_averages_probabilities():
    views = torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.5]])
    soft = view_fusion("softmax")
    mean = sum(soft.per_view(v) for v in views) / 3
    assert torch.allclose(soft.to_logits(mean).softmax(-1), views.softmax(-1).mean(0))
    logits = VIEW_FUSIONS["logits"]
    assert torch.equal(logits.to_logits(sum(logits.per_view(v) for v in views) / 3),
                       views.mean(0))
    # the two can disagree: one confident view wins the logit mean, not the probability mean
    assert views.mean(0).argmax() == 0 and views.softmax(-1).mean(0).argmax() == 0
    split = torch.tensor([[9.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    assert split.mean(0).argmax() == 0 and split.softmax(-1).mean(0).argmax() == 1
    with pytest.raises(ValueError, match="choose one of logits, softmax"):
        view_fusion("max")


def test_evaluate_combines_views_as_asked(monkeypatch):
    """Three views of one clip whose logits favour class 0 and whose probabilities favour 1."""
    from eval_encoder.probe import trainer as module

    monkeypatch.setattr(module, "bank_logits", lambda heads, feats: feats[:, None, 0, :2])
    batch = {"pixel_values": torch.tensor([[[9.0, 0.0]], [[0.0, 2.0]], [[0.0, 2.0]]]),
             "labels": torch.tensor([1, 1, 1]), "clip_index": torch.tensor([0, 0, 0])}
    for fusion, top in (("logits", 0), ("softmax", 1)):
        trainer = _trainer(lambda b: b["pixel_values"], 1, fusion=fusion)
        scored = trainer.evaluate([batch], 3, [nn.Identity()])
        assert scored.top5[0, 0, 0] == top


def test_token_budget_and_cost_count_every_segment():
    cfg = SimpleNamespace(num_segments=2, num_frames=16, codec=SimpleNamespace(K_keep=2048))
    spec = SimpleNamespace(num_frames=None, tokens_per_frame=128, prefix_tokens=0,
                           tubelet_size=1, clip_prefix_tokens=0)
    assert token_budget(cfg, spec) == 4096
    assert budget_text(cfg, spec) == ("the encoder spec: 2 segments x 16 frames x (128 patch + 0 "
                                      "prefix tokens)")
    one = compute.EncoderCost("ViT-L/16", "analytic", 2048, 1, {"mlp": 10, "attention": 4})
    two = compute.repeated(one, 2)
    assert (two.tokens, two.sequences, two.flops) == (4096, 2, {"mlp": 20, "attention": 8})
    assert compute.repeated(None, 2) is None and compute.repeated(one, 1) is one
