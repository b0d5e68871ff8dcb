"""The OneVision Encoder's architecture: its ``config.json`` as a checked dataclass (the
published configuration class's keys and defaults), and the named sizes of the model factory.
The model itself is :mod:`eval_encoder.encoders.onevision`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from eval_encoder.config import ConfigError
from eval_encoder.files import write_atomic
from eval_encoder.text import did_you_mean


MODEL_TYPE = "onevision_encoder"


_ACTIVATIONS = {"gelu": "none", "gelu_pytorch_tanh": "tanh"}


_NORMS = ("layer_norm", "rms_norm")


@dataclass
class OneVisionConfig:
    """Architecture of a OneVision Encoder, read from / written to an HF ``config.json``.

    Defaults are those of the published configuration class, so a ``config.json`` that
    leaves a key out means the same thing here as in ``transformers``. Keys we do not use
    (``architectures``, ``auto_map``, ``torch_dtype``, ...) are kept in ``extra`` and written
    back on save.
    """

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 448
    patch_size: int = 16
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    layer_norm_type: str = "layer_norm"
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    rope_theta: float = 10000.0
    # temporal extent of the RoPE grid the model was trained with (sampled frames are
    # placed on it); positions here are explicit, so it is kept for reference and re-saving
    rope_temporal_size: Optional[int] = 64
    use_head: bool = True
    model_type: str = MODEL_TYPE
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self, origin: str = "OneVisionConfig") -> None:
        """Raise ConfigError naming ``origin`` when the architecture cannot be built."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"{origin}: {msg}")

        for name in ("hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_channels", "patch_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.hidden_size % self.num_attention_heads == 0,
             f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
             f"{self.num_attention_heads}")
        need(self.head_dim % 32 == 0, f"head_dim {self.head_dim} must be a multiple of 32 so "
             "that its half splits 4:6:6 into t/h/w rotary parts")
        need(self.hidden_act in _ACTIVATIONS,
             f"hidden_act {self.hidden_act!r} is not supported (use one of {list(_ACTIVATIONS)})")
        need(self.layer_norm_type in _NORMS,
             f"layer_norm_type {self.layer_norm_type!r} is not one of {list(_NORMS)}")
        need(self.model_type == MODEL_TYPE,
             f"model_type {self.model_type!r} is not {MODEL_TYPE!r}; this loader only reads "
             "OneVision Encoder checkpoints")

    @classmethod
    def from_dict(cls, values: Dict[str, Any], origin: str = "config") -> "OneVisionConfig":
        """Build from HF-style values; unknown keys go to ``extra``, bad values raise."""
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        kwargs: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for key, value in values.items():
            if key in known:
                kwargs[key] = _check_type(key, value, known[key].type, origin)
            else:
                extra[key] = value
        config = cls._build_unvalidated(kwargs, extra)
        config.validate(origin)
        return config

    @classmethod
    def _build_unvalidated(cls, kwargs: Dict[str, Any], extra: Dict[str, Any]) -> "OneVisionConfig":
        # dataclass __init__ calls __post_init__ -> validate(), whose message would not name
        # the file; build field by field and validate once with the origin.
        config = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            setattr(config, f.name, kwargs.get(f.name, default))
        config.extra = dict(extra)
        return config

    @classmethod
    def from_json_file(cls, path: Union[str, os.PathLike]) -> "OneVisionConfig":
        """Read an HF ``config.json``; errors name the file."""
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings")
        return cls.from_dict(values, origin=str(path))

    def to_dict(self) -> Dict[str, Any]:
        """HF-style flat dict: the kept unknown keys, then every architecture field."""
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        out.setdefault("architectures", ["OneVisionEncoderModel"])
        return out

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write ``config.json`` atomically."""
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _check_type(key: str, value: Any, annotation: Any, origin: str) -> Any:
    text = str(annotation)
    if value is None and "Optional" in text:
        return None
    if "bool" in text:
        ok = isinstance(value, bool)
    elif "int" in text:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif "float" in text:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{origin}: {key}: expected {text}, got {value!r}")
    return value


# name -> (architecture values, short description). Shapes follow the upstream model factory:
# ov_encoder_* (model_factory/vit_ov_encoder.py) and hf_llava_vit_*_ln (vit_preview_v0_hf.py,
# whose base uses 16-pixel patches). Every head_dim is 64.
_NAMED: Dict[str, Tuple[Dict[str, Any], str]] = {
    "ov_encoder_tiny": (dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=2, patch_size=14, image_size=224),
                        "ViT-tiny/14, 128 wide, 2 layers; random weights for tests and demos"),
    "ov_encoder_base": (dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                             num_attention_heads=12, patch_size=14, image_size=224),
                        "ViT-B/14, 768 wide, 12 layers"),
    "ov_encoder_large": (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, patch_size=14, image_size=224),
                         "ViT-L/14, 1024 wide, 24 layers (lmms-lab-encoder/onevision-encoder-large)"),
    "ov_encoder_huge": (dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                             num_attention_heads=20, patch_size=14, image_size=224),
                        "ViT-H/14, 1280 wide, 32 layers"),
    "hf_llava_vit_base_ln": (dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                  num_attention_heads=12, patch_size=16, image_size=224),
                             "ViT-B/16, 768 wide, 12 layers (upstream name)"),
    "hf_llava_vit_large_ln": (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                   num_attention_heads=16, patch_size=14, image_size=224),
                              "ViT-L/14, same shape as ov_encoder_large (upstream name)"),
    "hf_llava_vit_huge_ln": (dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                  num_attention_heads=20, patch_size=14, image_size=224),
                             "ViT-H/14, same shape as ov_encoder_huge (upstream name)"),
}


ONEVISION_MODEL_NAMES: Dict[str, str] = {name: desc for name, (_, desc) in _NAMED.items()}


def onevision_config(model_name: str) -> OneVisionConfig:
    """The architecture of a named size; an unknown name raises with close matches."""
    if model_name not in _NAMED:
        hint = did_you_mean(model_name, _NAMED)
        raise ConfigError(f"unknown OneVision model name {model_name!r}.{hint} "
                          f"Known: {', '.join(sorted(_NAMED))}")
    return OneVisionConfig(**_NAMED[model_name][0])
