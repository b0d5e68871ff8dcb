"""Probe head kinds as a registry. Importing this package registers the built-in kinds:

* ``ov``: OneVision's published head (``ov.py``), fused across a grid of heads;
* ``vjepa2``: V-JEPA 2's ``AttentiveClassifier`` (``vjepa2.py``), with its published names;
* ``linear`` and ``knn``: a linear classifier and k-nearest neighbours on one pooled vector
  per clip (``pooled.py``).

``build_head(kind, dim, num_classes, **options)`` is the one way to make a head;
``register_head`` adds a kind of one's own (see ``base.py``).
"""
from __future__ import annotations

from eval_encoder.probe.heads import ov, pooled, vjepa2  # noqa: F401  (registration)
from eval_encoder.probe.heads.base import (
    HEADS,
    HeadKind,
    HeadOptionError,
    bank_groups,
    bank_logits,
    build_head,
    head_grid,
    head_name,
    head_parameters,
    register_head,
    sweep_name,
)

__all__ = ["HEADS", "HeadKind", "HeadOptionError", "bank_groups", "bank_logits", "build_head",
           "head_grid", "head_name", "head_parameters", "register_head", "sweep_name"]
