"""Training augmentations by name (``--train_augment``): ``ov``, the OneVision colour jitter
after resize and centre crop (:mod:`eval_encoder.video.transforms`), and ``vjepa2``, V-JEPA
2's video augmentation, written here after its published code (facebookresearch/vjepa2
c2963a4: ``evals/video_classification_frozen/utils.py`` ``VideoTransform`` as
``make_dataloader`` builds it, ``src/datasets/utils/video/{randaugment,transforms,randerase}.py``).

``vjepa2``, on each segment of a training clip with its own draws (the published transform
runs once per segment):

1. RandAugment ``rand-m7-n4-mstd0.5-inc1`` on the decoded frames at their own size, with
   PIL: 4 ops chosen with replacement from 15, each applied with probability 0.5 at a
   magnitude drawn from N(7, 0.5) clipped to [0, 10], the same op and magnitude on every
   frame; geometric ops bicubic with a (128, 128, 128) fill.
2. A random resized crop of the frames: area fraction U(0.08, 1), log-uniform aspect in
   [3/4, 4/3], 10 tries then a centre crop, resized to the input size by torch's bilinear
   interpolation (no antialiasing); the published code normalises first, which a linear
   resize makes the same to float rounding.
3. Normalisation with the encoder's mean and std.
4. Random erasing with probability 0.25: one box (area U(0.02, 1/3), log-uniform aspect in
   [0.3, 1/0.3], 100 tries) through every frame, filled with standard normal noise drawn per
   pixel, channel and frame.

No horizontal flip (``make_dataloader`` passes ``random_horizontal_flip=False``). The draws
come from a seed drawn per segment from the sample's generator, keyed by (seed, epoch,
sample), so any worker or world size gives the same pixels. The torch loader only: the DALI
pipeline has no RandAugment, and a run asking for both is refused before it starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from eval_encoder.video.transforms import TransformSpec, draw_jitter, normalise

MAGNITUDE, MAGNITUDE_STD, MAX_LEVEL, LAYERS, OP_PROB = 7.0, 0.5, 10.0, 4, 0.5
FILL = (128, 128, 128)
CROP_SCALE, CROP_RATIO, CROP_TRIES = (0.08, 1.0), (3 / 4, 4 / 3), 10
ERASE_PROB, ERASE_AREA, ERASE_ASPECT, ERASE_TRIES = 0.25, (0.02, 1 / 3), (0.3, 1 / 0.3), 100


# ----------------------------------------------------------------------------- RandAugment

def _sign(rng: np.random.Generator, value: float) -> float:
    """``value`` negated with probability 1/2 (the published ``_randomly_negate``)."""
    return -value if rng.random() > 0.5 else value


def _affine(coeffs: Tuple[float, ...]) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.transform(img.size, Image.AFFINE, coeffs,
                                     resample=Image.BICUBIC, fillcolor=FILL)


def _translate(level: float, axis: int, rng: np.random.Generator):
    pct = _sign(rng, level / MAX_LEVEL * 0.45)

    def op(img: Image.Image) -> Image.Image:
        shift = pct * img.size[axis]
        coeffs = (1, 0, shift, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, shift)
        return _affine(coeffs)(img)
    return op


def _enhance(kind) -> Callable:
    def make(level: float, rng: np.random.Generator):
        factor = 1.0 + _sign(rng, level / MAX_LEVEL * 0.9)
        return lambda img: kind(img).enhance(factor)
    return make


def _solarize_add(level: float, _rng) -> Callable[[Image.Image], Image.Image]:
    add = int(level / MAX_LEVEL * 110)
    lut = [min(255, i + add) if i < 128 else i for i in range(256)]
    return lambda img: img.point(lut * 3)


def _posterize(level: float, _rng) -> Callable[[Image.Image], Image.Image]:
    bits = 4 - int(level / MAX_LEVEL * 4)
    if bits == 0:  # level 10 keeps no bit: black, as older PIL computed (PIL 10+ refuses 0)
        return lambda img: Image.new(img.mode, img.size)
    return lambda img: ImageOps.posterize(img, bits)


def _solarize(level: float, _rng) -> Callable[[Image.Image], Image.Image]:
    threshold = 256 - int(level / MAX_LEVEL * 256)
    return lambda img: ImageOps.solarize(img, threshold)


def _rotate(level: float, rng: np.random.Generator) -> Callable[[Image.Image], Image.Image]:
    degrees = _sign(rng, level / MAX_LEVEL * 30.0)
    return lambda img: img.rotate(degrees, resample=Image.BICUBIC, fillcolor=FILL)


def _shear(axis: int) -> Callable:
    def make(level: float, rng: np.random.Generator):
        factor = _sign(rng, level / MAX_LEVEL * 0.3)
        return _affine((1, factor, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, factor, 1, 0))
    return make


# the "increasing" op set (inc1): name -> (level, rng) -> op on one PIL image
RAND_OPS: Dict[str, Callable] = {
    "AutoContrast": lambda level, rng: ImageOps.autocontrast,
    "Equalize": lambda level, rng: ImageOps.equalize,
    "Invert": lambda level, rng: ImageOps.invert,
    "Rotate": _rotate,
    "PosterizeIncreasing": _posterize,
    "SolarizeIncreasing": _solarize,
    "SolarizeAdd": _solarize_add,
    "ColorIncreasing": _enhance(ImageEnhance.Color),
    "ContrastIncreasing": _enhance(ImageEnhance.Contrast),
    "BrightnessIncreasing": _enhance(ImageEnhance.Brightness),
    "SharpnessIncreasing": _enhance(ImageEnhance.Sharpness),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateXRel": lambda level, rng: _translate(level, 0, rng),
    "TranslateYRel": lambda level, rng: _translate(level, 1, rng),
}


def draw_rand_augment(rng: np.random.Generator) -> List[Tuple[str, Callable]]:
    """The ops one segment gets: (name, op on an image) for each of the 4 chosen that fires."""
    names = list(RAND_OPS)
    chosen = [names[i] for i in rng.integers(0, len(names), size=LAYERS)]
    ops = []
    for name in chosen:
        if rng.random() > OP_PROB:
            continue
        level = min(MAX_LEVEL, max(0.0, rng.normal(MAGNITUDE, MAGNITUDE_STD)))
        ops.append((name, RAND_OPS[name](level, rng)))
    return ops


def rand_augment(frames: np.ndarray, ops: List[Tuple[str, Callable]]) -> np.ndarray:
    """uint8 [T, H, W, 3] with ``ops`` applied to every frame, in order (PIL)."""
    if not ops:
        return frames
    out = []
    for frame in frames:
        img = Image.fromarray(frame)
        for _, op in ops:
            img = op(img)
        out.append(np.asarray(img))
    return np.stack(out)


# ----------------------------------------------------------------------------- crop and erase

def crop_box(rng: np.random.Generator, height: int, width: int) -> Tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop; a centre crop when 10 tries miss."""
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(CROP_TRIES):
        area = rng.uniform(*CROP_SCALE) * height * width
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return _centre_box(height, width)


def _centre_box(height: int, width: int) -> Tuple[int, int, int, int]:
    ratio = width / height
    h, w = height, width
    if ratio < CROP_RATIO[0]:
        h = int(round(width / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        w = int(round(height * CROP_RATIO[1]))
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(frames: np.ndarray, box: Tuple[int, int, int, int], size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [3, T, size, size] (0..255): the box, bilinear, no
    antialiasing (torch.nn.functional.interpolate, align_corners=False, as published)."""
    top, left, h, w = box
    crop = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + h, left:left + w]))
    x = crop.permute(0, 3, 1, 2).float()  # [T, 3, h, w]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                        align_corners=False)
    return x.permute(1, 0, 2, 3)


def erase_box(rng: np.random.Generator, size: int) -> Optional[Tuple[int, int, int, int]]:
    """(top, left, h, w) of the random erasing of a ``size`` x ``size`` clip, or None."""
    if rng.random() > ERASE_PROB:
        return None
    log_aspect = (math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]))
    for _ in range(ERASE_TRIES):
        area = rng.uniform(*ERASE_AREA) * size * size
        aspect = math.exp(rng.uniform(*log_aspect))
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if w < size and h < size:
            return int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1)), h, w
    return None


def erase(x: torch.Tensor, box, rng: np.random.Generator) -> torch.Tensor:
    """Fill ``box`` of every frame of normalised [3, T, S, S] with standard normal noise."""
    if box is None:
        return x
    top, left, h, w = box
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    x[:, :, top:top + h, left:left + w] = torch.randn((x.shape[0], x.shape[1], h, w),
                                                      generator=gen)
    return x


# ----------------------------------------------------------------------------- one sample

def vjepa2_segment(frames: np.ndarray, spec: TransformSpec, rng: np.random.Generator,
                   out: torch.Tensor) -> torch.Tensor:
    """One segment's frames (uint8 [T, H, W, 3]) through V-JEPA 2's augmentation into ``out``
    (float [3, T, S, S], normalised)."""
    frames = rand_augment(frames, draw_rand_augment(rng))
    box = crop_box(rng, frames.shape[1], frames.shape[2])
    normalise(resized_crop(frames, box, spec.input_size), spec, out)
    return erase(out, erase_box(rng, spec.input_size), rng)


@dataclass(frozen=True)
class VJepa2Augment:
    """One training sample's V-JEPA 2 augmentation: a seed per segment, from which the
    transform draws everything once it knows the frame and crop sizes."""

    seeds: Tuple[int, ...]

    def transform(self, frames, spec: TransformSpec,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """uint8 [S*T, H, W, 3] (numpy or torch) -> normalised float32 [3, S*T, size, size]."""
        frames = frames.numpy() if torch.is_tensor(frames) else np.asarray(frames)
        per = frames.shape[0] // len(self.seeds)
        size = spec.input_size
        out = torch.empty((3, frames.shape[0], size, size)) if out is None else out
        for s, seed in enumerate(self.seeds):
            part = slice(s * per, (s + 1) * per)
            vjepa2_segment(frames[part], spec, np.random.default_rng(seed), out[:, part])
        return out


def draw_vjepa2(rng: np.random.Generator, segments: int = 1) -> VJepa2Augment:
    return VJepa2Augment(tuple(int(s) for s in rng.integers(0, 2 ** 63, size=segments)))


def _draw_ov(rng: np.random.Generator, segments: int = 1):
    return draw_jitter(rng)  # one jitter for the whole clip, as the OneVision scripts


# --train_augment -> (sample generator, segments) -> what the transform applies
AUGMENTS: Dict[str, Callable] = {"ov": _draw_ov, "vjepa2": draw_vjepa2}
# augmentations the DALI pipeline can apply (it takes the jitter as numbers)
DALI_AUGMENTS = ("ov",)


def augment_drawer(name: str) -> Callable:
    """The draw of ``--train_augment name``; ValueError naming the choices."""
    if name not in AUGMENTS:
        raise ValueError(f"--train_augment {name!r}: choose one of {', '.join(AUGMENTS)}")
    return AUGMENTS[name]
