"""Name -> factory registries for encoder families, model names and clip sources.

Registries are filled by explicit imports (``eval_encoder.encoders`` imports every family
module) and fail loudly: an unknown name lists the known ones with a "did you mean", and
registering a name twice is an error instead of a silent overwrite.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterable, Iterator, Optional, Tuple, TypeVar

from eval_encoder.text import did_you_mean

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A string-keyed table of objects with aliases and helpful lookup errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}

    def register(self, name: str, obj: T, aliases: Iterable[str] = ()) -> T:
        """Add ``obj`` under ``name`` (and ``aliases``); a taken name raises RegistryError."""
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise RegistryError(f"{self.kind} {key!r} is already registered")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name
        return obj

    def decorator(self, name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """``@registry.decorator("name")`` form of :meth:`register`."""

        def wrap(obj: T) -> T:
            return self.register(name, obj, aliases)

        return wrap

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (resolving aliases); raises if unknown."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted([*self._items, *self._aliases])
        hint = did_you_mean(name, known)
        raise RegistryError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known)}")

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def aliases_of(self, name: str) -> Tuple[str, ...]:
        return tuple(a for a, n in self._aliases.items() if n == name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self):
        return sorted(self._items.items())

    def unregister(self, name: str) -> Optional[T]:
        """Remove a name and its aliases (used by tests that register throw-away encoders)."""
        obj = self._items.pop(name, None)
        for alias in self.aliases_of(name):
            del self._aliases[alias]
        return obj


# family name -> factory(cfg) -> VideoEncoder
ENCODERS: Registry[Callable] = Registry("encoder family")
# clip-source name (EncoderSpec.clip_source) -> ClipSource class
CLIP_SOURCES: Registry[Callable] = Registry("clip source")


def register_encoder(name: str, aliases: Iterable[str] = ()) -> Callable:
    """Decorator for an encoder-family factory ``f(cfg) -> VideoEncoder``.

    Users call it in their own module and load that module with ``--encoder_module``::

        @register_encoder("my_encoder")
        def build(cfg):
            return MyEncoder(...)
    """
    return ENCODERS.decorator(name, aliases)


# Hub ids that name the same weights: alias -> canonical id (the recipes' spelling). A run
# given an alias resolves, hashes and records the canonical id (probe.args.canonical_weight).
WEIGHT_ALIASES: Dict[str, str] = {
    "lmms-lab/onevision-encoder-large": "lmms-lab-encoder/onevision-encoder-large",
}


def method_label(cfg) -> str:
    """A record's leaderboard method: the recipe's label, else ``<family>/<model name>`` with
    the family's canonical name (an alias such as llava_vit_sampling gives sampling), so a
    failed run lands in the same row as a complete one."""
    if cfg.method_label:
        return cfg.method_label
    family = ENCODERS.canonical(cfg.model_family) if cfg.model_family in ENCODERS else cfg.model_family
    return f"{family}/{cfg.model_name}"
