"""GPU smoke test of the head kinds: what the CPU tests cannot reach (bf16 autocast and CUDA's
attention kernels). Skipped, with the reason, without CUDA; run with
``pytest -m gpu -s tests/test_gpu_heads.py``. Measured differences are printed (-s).

  * the ``vjepa2`` head at ViT-L width in bf16 autocast on the GPU against float32 on the CPU;
  * a grid of ``vjepa2`` heads training under the trainer on the GPU: one encoder pass per
    batch, finite losses, and the peak memory of 20 heads.
"""
import pytest
import torch
from torch import nn

from eval_encoder.distributed import DistEnv
from eval_encoder.probe.heads import build_head, head_grid
from eval_encoder.probe.trainer import ProbeTrainer, make_heads

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda", 0)


def test_vjepa2_head_in_bf16_matches_float32_cpu():
    torch.manual_seed(0)
    head = build_head("vjepa2", 1024, 174).eval()
    tokens = torch.randn(2, 2048, 1024)
    with torch.no_grad():
        want = head(tokens)
        with torch.autocast("cuda", torch.bfloat16):
            got = head.to(CUDA)(tokens.to(CUDA)).float().cpu()
    diff = (got - want).abs().max().item()
    cosine = nn.functional.cosine_similarity(got, want, dim=-1).min().item()
    print(f"vjepa2 head, ViT-L width, 2048 tokens: bf16 GPU vs fp32 CPU max |diff| {diff:.3g}, "
          f"min cosine {cosine:.6f}, logit scale {want.abs().max().item():.3g}")
    assert cosine > 0.99


class Passes(nn.Module):
    def __init__(self, tokens):
        super().__init__()
        self.tokens, self.calls = tokens, 0

    def forward(self, batch):
        self.calls += 1
        return self.tokens


def test_a_grid_of_vjepa2_heads_trains_on_the_gpu():
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=CUDA)
    lrs, wds = [0.005, 0.003, 0.001, 0.0003, 0.0001], [0.01, 0.1, 0.4, 0.8]
    torch.cuda.reset_peak_memory_stats(CUDA)
    heads = make_heads(head_grid(lrs, wds), 1024, 174, steps=4, min_lr=0.0, device=CUDA,
                       seed=0, kind="vjepa2")
    encoder = Passes(torch.randn(4, 2048, 1024, device=CUDA))
    trainer = ProbeTrainer(encoder, heads, env, 0.0, 0.0, 174)
    for step in range(3):
        batch = {"labels": torch.randint(0, 174, (4,)), "skipped": []}
        clips, loss = trainer.train_step(batch, 0, step)
        assert clips == 4 and torch.isfinite(loss).all()
    peak = torch.cuda.max_memory_allocated(CUDA) / 2**30
    print(f"20 vjepa2 heads (ViT-L width, 4 clips x 2048 tokens, bf16): 3 steps, peak {peak:.1f} "
          f"GiB")
    assert encoder.calls == 3 and all(h.alive for h in heads)
