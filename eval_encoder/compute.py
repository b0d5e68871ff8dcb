"""What a run cost: encoder FLOPs per clip, throughput, loader wait and peak memory.

FLOPs are counted analytically from the architecture, with the convention of
``torch.utils.flop_counter``: 2 FLOPs per multiply-add, matrix products and convolutions
only (normalisations, activations, softmax, rotary embeddings and additions are left out;
they are a fraction of a percent of a ViT). A ViT of depth L, width D, MLP width M and
sequences of N tokens costs per sequence:

  patch embedding   2 * patches * (C * t * p * p) * D  (t frames per patch: 1, V-JEPA 2's 2)
  projections       2 * N * 4 * D^2 * L             (q, k, v and output)
  attention         4 * N^2 * D * L                 (scores q.k and the weighted sum of v)
  MLP               2 * N * (D * M * matrices) * L  (2 matrices, or 3 for a gated MLP)

How a family turns a clip into sequences is a small function per encoder class, registered
in :data:`COST_MODELS` by the family's own module (see :func:`register_cost`): the OneVision ViT encodes one sequence of
``T * (S/p)^2`` patches (sampling) or of the K visible patches (codec), plus its pooling head;
a timm image encoder encodes T sequences of prefix (class, register) + patch tokens, its
shape read from its blocks; a transformers model is counted once on one frame with
``FlopCounterMode`` and scaled by T; V-JEPA 2 encodes one sequence of ``T/2 * (S/p)^2``
tubelets, each embedded from 2 frames; a clip-level module (transformers' video models, users'
clip encoders) is counted on one blank clip with ``FlopCounterMode``. An encoder of another class may define
``flops_per_clip(frames, tokens) -> EncoderCost`` itself; otherwise the record says that
its FLOPs were not counted.
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import torch
from torch import nn

# (width, depth) -> the usual ViT size name, for ``arch`` labels such as "ViT-L/14"
VIT_SIZES: Dict[tuple, str] = {
    (192, 12): "Ti", (384, 12): "S", (768, 12): "B", (1024, 24): "L", (1280, 32): "H",
    (1152, 27): "So400m", (1408, 40): "g", (1536, 40): "g", (1664, 48): "G",
}
# ru_maxrss is in kilobytes on Linux and in bytes on macOS
RSS_BYTES = {"darwin": 1}
MIB = 2 ** 20


# ----------------------------------------------------------------------------- FLOP model
@dataclass(frozen=True)
class ViTShape:
    """What a ViT's FLOPs depend on; per-token figures are summed over every layer."""

    depth: int
    width: int
    patch: int
    proj_macs: int  # multiply-adds per token in the q/k/v/output projections, all layers
    mlp_macs: int  # multiply-adds per token in the MLPs, all layers
    attn_dims: int  # heads x head width, summed over layers (the attention's N^2 term)
    patch_macs: int  # multiply-adds per embedded patch (C * p * p * D)

    @classmethod
    def plain(cls, depth: int, width: int, mlp: int, patch: int, channels: int = 3,
              mlp_matrices: int = 2) -> "ViTShape":
        """A ViT whose layers are all alike (width D, MLP width M)."""
        return cls(depth, width, patch, proj_macs=4 * width * width * depth,
                   mlp_macs=mlp_matrices * width * mlp * depth, attn_dims=width * depth,
                   patch_macs=channels * patch * patch * width)

    @property
    def arch(self) -> str:
        """``ViT-L/14`` for the usual sizes, ``ViT-<depth>x<width>/<patch>`` otherwise."""
        size = VIT_SIZES.get((self.width, self.depth), f"{self.depth}x{self.width}")
        return f"ViT-{size}/{self.patch}"


@dataclass
class EncoderCost:
    """An encoder's work on one clip (one view): FLOPs by part, and the tokens it encodes."""

    arch: str
    method: str  # "analytic" or "counter" (FlopCounterMode on one frame)
    tokens: int  # tokens encoded per clip (all sequences, prefix tokens included)
    sequences: int  # sequences the transformer runs per clip (frames for per-frame encoders)
    flops: Dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return sum(self.flops.values()) / 1e9

    def to_dict(self) -> Dict[str, Any]:
        """The record's ``compute.encoder`` part (GFLOPs, rounded)."""
        return {"arch": self.arch, "flops_method": self.method, "tokens_encoded": self.tokens,
                "sequences": self.sequences, "gflops_per_clip": round(self.gflops, 4),
                "gflops_by_part": {k: round(v / 1e9, 4) for k, v in self.flops.items()}}


def vit_flops(shape: ViTShape, tokens: int, sequences: int = 1,
              patches: Optional[int] = None) -> Dict[str, int]:
    """FLOPs of ``sequences`` sequences of ``tokens`` tokens each, ``patches`` of them embedded
    from pixels (default: every token of every sequence)."""
    n = tokens
    patches = n * sequences if patches is None else patches
    return {"patch_embed": 2 * patches * shape.patch_macs,
            "projections": 2 * sequences * n * shape.proj_macs,
            "attention": 4 * sequences * n * n * shape.attn_dims,
            "mlp": 2 * sequences * n * shape.mlp_macs}


def pooling_head_flops(width: int, mlp: int, tokens: int) -> int:
    """One learned query attending over ``tokens`` tokens (nn.MultiheadAttention), then an
    MLP on the pooled token: q and output projections once, k and v for every token."""
    return 2 * (2 * width * width + 2 * tokens * width * width + 2 * tokens * width
                + 2 * width * mlp)


# ----------------------------------------------------------------------------- per family
CostModel = Callable[[nn.Module, int, int], EncoderCost]
COST_MODELS: Dict[type, CostModel] = {}


def register_cost(cls: type) -> Callable[[CostModel], CostModel]:
    """Register ``fn(encoder, frames, tokens) -> EncoderCost`` for encoders of class ``cls``
    (and its subclasses); a second registration for one class is an error."""
    def add(fn: CostModel) -> CostModel:
        if cls in COST_MODELS:
            raise ValueError(f"a cost model for {cls.__name__} is registered already")
        COST_MODELS[cls] = fn
        return fn
    return add


def encoder_cost(encoder: nn.Module, frames: int, tokens: int) -> Optional[EncoderCost]:
    """The cost of one clip of ``frames`` frames (``tokens`` tokens to the head), or None
    when nothing knows how to count this encoder."""
    own = getattr(encoder, "flops_per_clip", None)
    if callable(own):
        return own(frames, tokens)
    for cls in type(encoder).__mro__:
        if cls in COST_MODELS:
            return COST_MODELS[cls](encoder, frames, tokens)
    return None


def repeated(cost: Optional[EncoderCost], times: int) -> Optional[EncoderCost]:
    """The cost of ``times`` passes like ``cost`` (a clip's segments, each encoded on its own)."""
    if cost is None or times == 1:
        return cost
    return EncoderCost(cost.arch, cost.method, cost.tokens * times, cost.sequences * times,
                       {part: flops * times for part, flops in cost.flops.items()})


def onevision_shape(config) -> ViTShape:
    """The shape of a OneVision ViT from its :class:`OneVisionConfig`."""
    return ViTShape.plain(config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                          config.patch_size, config.num_channels)


def onevision_cost(model, tokens: int, patches: int) -> EncoderCost:
    """One sequence of ``tokens`` tokens (``patches`` embedded), plus the pooling head, which
    runs in every forward pass although the probe reads the tokens."""
    shape, config = onevision_shape(model.config), model.config
    flops = vit_flops(shape, tokens, 1, patches)
    if model.head is not None:
        flops["pooling_head"] = pooling_head_flops(config.hidden_size, config.intermediate_size,
                                                   tokens)
    return EncoderCost(shape.arch, "analytic", tokens, 1, flops)


def sampling_cost(encoder, frames: int, tokens: int) -> EncoderCost:
    """Sampling: every patch of every frame."""
    n = frames * (encoder.spec.input_size // encoder.spec.patch_size) ** 2
    return onevision_cost(encoder.model, n, n)


def codec_cost(encoder, frames: int, tokens: int) -> EncoderCost:
    """Codec: only the K visible patches are embedded and encoded."""
    return onevision_cost(encoder.model, tokens, tokens)


def timm_shape(model: nn.Module) -> ViTShape:
    """A timm ViT's shape read from its modules: every linear map of its blocks, the heads
    of their attention, and its patch convolution (gated MLPs and odd layers counted as
    they are)."""
    proj = mlp = attn = 0
    for block in model.blocks:
        proj += _linear_macs(block.attn)
        mlp += _linear_macs(block.mlp)
        attn += int(block.attn.num_heads) * int(block.attn.head_dim)
    conv = model.patch_embed.proj
    k = conv.kernel_size
    width = int(getattr(model, "embed_dim", conv.out_channels))
    return ViTShape(len(model.blocks), width, int(k[0]), proj, mlp, attn,
                    conv.in_channels * k[0] * k[1] * conv.out_channels)


def _linear_macs(module: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def timm_cost(encoder, frames: int, tokens: int) -> EncoderCost:
    """Per-frame timm encoder: T sequences of prefix (class, registers) + patch tokens, whether
    or not the head is given the prefix tokens."""
    model = encoder.model
    grid = encoder.spec.tokens_per_frame
    per_frame = grid + int(model.num_prefix_tokens)
    if not _plain_vit(model):  # a timm token model of another build: count one frame
        return frame_counted_cost(encoder, frames, per_frame, _shape_guess(model))
    shape = timm_shape(model)
    return EncoderCost(shape.arch, "analytic", frames * per_frame, frames,
                       vit_flops(shape, per_frame, frames, frames * grid))


def _plain_vit(model: nn.Module) -> bool:
    """Blocks with ``attn`` (heads, head width) and ``mlp``, a convolutional patch embedding."""
    blocks = getattr(model, "blocks", None)
    conv = getattr(getattr(model, "patch_embed", None), "proj", None)
    return (isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) > 0
            and isinstance(conv, nn.Conv2d)
            and all(hasattr(getattr(b, "attn", None), "num_heads")
                    and hasattr(b.attn, "head_dim") and hasattr(b, "mlp") for b in blocks))


def _shape_guess(model: nn.Module) -> ViTShape:
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", (0,))
    depth = len(getattr(model, "blocks", ()) or ())
    return ViTShape.plain(depth, int(getattr(model, "embed_dim", 0)), 0, int(patch[0]))


def vjepa2_shape(config) -> ViTShape:
    """A V-JEPA 2 ViT from its transformers ``VJEPA2Config``: a plain ViT (q, k, v and output
    projections, an MLP of ``int(D * mlp_ratio)``) whose patch embedding is a 3D convolution
    over a tubelet of ``tubelet_size`` frames (C * t * p * p * D multiply-adds per tubelet)."""
    width, tubelet = int(config.hidden_size), int(config.tubelet_size)
    shape = ViTShape.plain(int(config.num_hidden_layers), width, int(width * config.mlp_ratio),
                           int(config.patch_size), int(config.in_chans))
    return replace(shape, patch_macs=shape.patch_macs * tubelet)


def vjepa2_cost(encoder, frames: int, tokens: int) -> EncoderCost:
    """V-JEPA 2: one sequence of T / t tubelets x (S/p)^2 patches, every one embedded (the
    encoder's rotary embeddings are element-wise: not counted, as everywhere here)."""
    spec = encoder.spec
    n = frames // spec.tubelet_size * (spec.input_size // spec.patch_size) ** 2
    shape = vjepa2_shape(encoder.config)
    return EncoderCost(shape.arch, "analytic", n, 1, vit_flops(shape, n))


def hf_cost(encoder, frames: int, tokens: int) -> EncoderCost:
    """transformers model: counted on one blank frame with FlopCounterMode, times T (the
    model classes vary too much for one analytic form)."""
    vcfg = encoder.vision.config
    shape = ViTShape.plain(int(getattr(vcfg, "num_hidden_layers", 0)),
                           int(getattr(vcfg, "hidden_size", 0)), 0, encoder.spec.patch_size)
    # the prefix tokens the model makes (counted at build), kept by the head or not
    n = _hf_tokens_per_frame(encoder)
    return frame_counted_cost(encoder, frames, n, shape)


def _hf_tokens_per_frame(encoder) -> int:
    size = encoder.spec.input_size
    with torch.no_grad():
        out = encoder.encode_images(torch.zeros(1, 3, size, size, device=_device_of(encoder)))
    return int(out.shape[1])


def frame_counted_cost(encoder, frames: int, tokens_per_frame: int, shape: ViTShape
                       ) -> EncoderCost:
    """A per-frame encoder's cost counted with FlopCounterMode on one blank frame, times T."""
    size = encoder.spec.input_size
    image = torch.zeros(1, 3, size, size, device=_device_of(encoder))
    per_frame = count_flops(lambda: encoder.encode_images(image))
    return EncoderCost(shape.arch, "counter", frames * tokens_per_frame, frames,
                       {"total": frames * per_frame})


def clip_counted_cost(encoder, frames: int, tokens: int) -> EncoderCost:
    """A clip-level encoder counted with FlopCounterMode on one blank clip of ``frames``
    frames (its own count: a clip module takes no other), as one sequence."""
    spec = encoder.spec
    clip = torch.zeros(1, 3, frames, spec.input_size, spec.input_size, device=_device_of(encoder))
    flops = count_flops(lambda: encoder({"pixel_values": clip}))
    depth = int(getattr(encoder, "depth", 0) or 0)  # what the encoder says of its layers
    arch = ViTShape.plain(depth, spec.embed_dim, 0, spec.patch_size).arch
    return EncoderCost(arch, "counter", tokens, 1, {"total": flops})


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` by ``torch.utils.flop_counter.FlopCounterMode``, with attention on
    the math kernel so that its matrix products are seen on every device."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return int(counter.get_total_flops())


def parameter_count(module: nn.Module) -> int:
    """Parameters of the encoder as built (every tensor it holds, used or not)."""
    return int(sum(p.numel() for p in module.parameters()))


# ----------------------------------------------------------------------------- throughput
@dataclass
class SplitClock:
    """Time of one split's loops on this process: total, waiting for batches, samples seen."""

    seconds: float = 0.0
    wait_s: float = 0.0
    batches: int = 0
    samples: int = 0


class LoaderClock:
    """Wraps the trainer's loaders to time each loop and the share of it spent waiting for the
    next batch (decoding, transforms, and worker start-up that compute did not hide)."""

    def __init__(self) -> None:
        self.splits: Dict[str, SplitClock] = {}

    def timed(self, loader: Iterable, split: str) -> Iterator:
        """Yield ``loader``'s batches, adding the loop's time and the waits to ``split``."""
        clock = self.splits.setdefault(split, SplitClock())
        start = time.perf_counter()
        try:  # iter() starts the loader's workers: that wait counts too
            yield from _timed_next(iter(loader), clock, start)
        finally:
            clock.seconds += time.perf_counter() - start

    def state(self) -> Dict[str, Dict[str, float]]:
        return {name: asdict(c) for name, c in self.splits.items()}


def _timed_next(it: Iterator, clock: SplitClock, before: float) -> Iterator:
    while True:
        try:
            batch = next(it)
        except StopIteration:
            clock.wait_s += time.perf_counter() - before
            return
        clock.wait_s += time.perf_counter() - before
        clock.batches += 1
        labels = batch.get("labels") if isinstance(batch, dict) else None
        clock.samples += int(labels.shape[0]) if labels is not None else 0
        yield batch
        before = time.perf_counter()


def throughput(parts: List[Dict[str, Dict[str, float]]], split: str, views: int = 1
               ) -> Optional[Dict[str, Any]]:
    """One split's figures over every rank's clock state: clips/s (clips of all ranks over the
    slowest rank's time), the loader's wait share (waits over loop time, summed over ranks)."""
    mine = [p[split] for p in parts if split in p]
    if not mine:
        return None
    seconds = max(c["seconds"] for c in mine)
    total = sum(c["seconds"] for c in mine)
    clips = sum(c["samples"] for c in mine) / views
    return {"clips": round(clips, 3), "seconds": round(seconds, 3),
            "clips_per_s": round(clips / seconds, 3) if seconds > 0 else None,
            "loader_wait_s": round(max(c["wait_s"] for c in mine), 3),
            "loader_wait_share": round(sum(c["wait_s"] for c in mine) / total, 4) if total > 0
            else None}


# ----------------------------------------------------------------------------- memory
def peak_memory(device: Optional[torch.device]) -> Dict[str, Optional[float]]:
    """This process's peak host memory (RSS), its finished children's (loader workers), and
    the peak device memory torch allocated and reserved on CUDA (None elsewhere), in MiB."""
    unit = RSS_BYTES.get(sys.platform, 1024)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit
    out = {"host_peak_rss_mib": round(own / MIB, 1),
           "loader_workers_peak_rss_mib": round(children / MIB, 1) if children else None,
           "device_peak_allocated_mib": None, "device_peak_reserved_mib": None}
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        out["device_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / MIB, 1)
        out["device_peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / MIB, 1)
    return out


def max_over(parts: List[Dict[str, Optional[float]]]) -> Dict[str, Optional[float]]:
    """Each figure's largest value over ranks (None where no rank has one)."""
    keys = parts[0].keys() if parts else ()
    return {k: max((p[k] for p in parts if p.get(k) is not None), default=None) for k in keys}
