"""Users' own encoders, added without touching the package.

Two ways in, both read by the encoder builder before it looks the family up:

* ``--encoder_module my_pkg.my_encoders`` (or a path, ``--encoder_module my_encoders.py``):
  the module is imported and its ``@register_encoder("name")`` factories register.
* the ``eval_encoder.encoders`` entry-point group of an installed package::

      [options.entry_points]
      eval_encoder.encoders =
          my_encoder = my_pkg.my_encoders:build     # registers build() as "my_encoder"
          my_module = my_pkg.my_encoders            # just imports (decorators register)
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable, List, Optional

from eval_encoder.config import ConfigError
from eval_encoder.registry import ENCODERS

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "eval_encoder.encoders"
_loaded_entry_points: set = set()


def load_encoder_modules(names: Iterable[str]) -> List[ModuleType]:
    """Import each ``--encoder_module`` (dotted name or ``.py`` path); returns the modules.

    A module that cannot be found raises ConfigError naming it; an error raised inside the
    module propagates with a note saying which ``--encoder_module`` was being imported.
    Importing twice is harmless (Python keeps the first import).
    """
    modules = []
    for name in names or ():
        try:
            module = _import_path(name) if name.endswith(".py") else _import_dotted(name)
        except ModuleNotFoundError as exc:
            if not _names_module(name, exc.name):  # a dependency of the module is missing
                exc.add_note(f"while importing --encoder_module {name!r}")
                raise
            raise ConfigError(f"--encoder_module {name!r}: no such module ({exc}); give an "
                              "importable dotted name or a path to a .py file") from exc
        except Exception as exc:  # noqa: BLE001 - re-raised with context, never swallowed
            exc.add_note(f"while importing --encoder_module {name!r}")
            raise
        logger.info("encoder module %s imported", name)
        modules.append(module)
    return modules


def _names_module(name: str, missing) -> bool:
    """Whether the missing module is ``name`` itself or one of its parent packages."""
    return not missing or name == missing or name.startswith(missing + ".")


def _loaded_from(file: Path) -> Optional[ModuleType]:
    """A module already imported from ``file`` (by path or by dotted name), if any: the same
    file imported twice would register its encoders twice."""
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if origin and Path(origin).resolve() == file:
            return module
    return None


def _import_dotted(name: str) -> ModuleType:
    """Import a dotted name, unless its file is already imported by path."""
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        found = _loaded_from(Path(origin).resolve()) if origin and origin.endswith(".py") else None
        if found is not None:
            return found
    return importlib.import_module(name)


def _import_path(path: str) -> ModuleType:
    """Import a ``.py`` file once, under a module name derived from its resolved path (or the
    module already imported from that file by its dotted name)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"--encoder_module {path!r}: no such file")
    found = _loaded_from(file)
    if found is not None:
        return found
    stem = "".join(c if c.isalnum() else "_" for c in str(file.with_suffix("")))
    key = "eval_encoder_user_" + stem
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]  # a failed import must not look imported next time
        raise
    return module


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> List[str]:
    """Load every installed entry point of ``group``; returns the names newly loaded.

    ``name = pkg.mod:factory`` registers ``factory`` as family ``name`` (unless importing
    ``pkg.mod`` already registered that very factory); ``name = pkg.mod`` only imports.
    A broken entry point raises ConfigError naming it and its distribution.
    """
    loaded = []
    for ep in importlib.metadata.entry_points(group=group):
        if (ep.name, ep.value) in _loaded_entry_points:
            continue
        where = f"entry point {ep.name} = {ep.value} (group {group}, " \
                f"package {getattr(ep.dist, 'name', '?')})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is reported
            raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
        if not isinstance(obj, ModuleType):
            _register_entry_point(ep.name, obj, where)
        _loaded_entry_points.add((ep.name, ep.value))
        loaded.append(ep.name)
    return loaded


def _register_entry_point(name: str, factory, where: str) -> None:
    if not callable(factory):
        raise ConfigError(f"{where} is a {type(factory).__name__}, not a factory f(cfg)")
    if name in ENCODERS and ENCODERS.get(name) is factory:
        return  # the module's own @register_encoder already did it
    ENCODERS.register(name, factory)
