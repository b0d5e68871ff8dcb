"""A venv holding exactly what ``pip install -e '.[test]'`` installs, made from the bigger
``.[test-dali]`` venv this script runs in, without downloading anything.

    .venv/bin/python .ci/light_venv.py .venv/light     # then: .venv/light/bin/python -m pytest

Its site-packages is a view of ours: symbolic links to every file and folder, except those of
the distributions that only ``[dali]`` brings (DALI and its own dependencies, found from the
installed metadata; a file that a kept distribution also lists is kept). Folders shared by kept
and dropped distributions (``nvidia/``) are real folders of links. The result imports and
reports (``importlib.metadata``) as an install without DALI does, so the suite run in it shows
what a user of ``[test]`` gets: the DALI tests skip and say why, everything else passes.
Standard library only, plus ``packaging`` (a dependency of pytest).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "eval-encoder"
KEEP_ALWAYS = ("pip",)  # not a dependency, but a venv has it


def installed() -> Dict[str, metadata.Distribution]:
    """This environment's distributions by canonical name (the first on sys.path wins)."""
    out: Dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        out.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return out


def requirements(dist: metadata.Distribution, extras: Tuple[str, ...]) -> List[Tuple[str, tuple]]:
    """(name, extras) of what ``dist`` with ``extras`` requires on this platform."""
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        wanted = req.marker is None or any(req.marker.evaluate({"extra": e})
                                           for e in ("", *extras))
        if wanted:
            out.append((canonicalize_name(req.name), tuple(sorted(req.extras))))
    return out


def closure(dists: Dict[str, metadata.Distribution], roots: Iterable[Tuple[str, tuple]]) -> Set[str]:
    """Every installed distribution that ``roots`` pull in, extras followed."""
    seen: Set[Tuple[str, tuple]] = set()
    names: Set[str] = set()
    todo = list(roots)
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or name not in dists:
            continue
        seen.add((name, extras))
        names.add(name)
        todo.extend(requirements(dists[name], extras))
    return names


def files_of(dists: Iterable[metadata.Distribution]) -> Set[Path]:
    """The absolute paths each distribution's RECORD lists."""
    return {Path(os.path.abspath(d.locate_file(f))) for d in dists for f in (d.files or [])}


def dropped_files(extra: str) -> Tuple[Set[Path], List[str]]:
    """Files only the distributions outside ``PROJECT[extra]`` own, and those distributions."""
    dists = installed()
    keep = closure(dists, [(PROJECT, (extra,))]) | set(KEEP_ALWAYS)
    drop = sorted(set(dists) - keep)
    owned = files_of(dists[n] for n in drop) - files_of(dists[n] for n in keep)
    return owned, drop


def site_dirs() -> List[Path]:
    """Our site-packages folders in import order: the venv's own, then any that a ``.pth``
    file of it adds (a venv layered on another one)."""
    found: List[Path] = []
    for entry in sys.path:
        path = Path(os.path.abspath(entry))
        if path.name in ("site-packages", "dist-packages") and path.is_dir() and path not in found:
            found.append(path)
    return found


def _links_sites(entry: Path, sites: List[Path]) -> bool:
    """A ``.pth`` file that only adds other site folders: the view has their entries already."""
    if entry.suffix != ".pth":
        return False
    lines = [l.strip() for l in entry.read_text().splitlines() if l.strip()]
    return bool(lines) and all(Path(os.path.abspath(l)) in sites for l in lines)


def mirror(src: Path, dst: Path, drop: Set[Path], drop_dirs: Set[Path],
           sites: List[Path] = ()) -> None:
    """Link ``src``'s entries into ``dst``, leaving out ``drop``; descend only where needed.
    An entry already in ``dst`` (from an earlier site folder) wins, as it does on import."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        path = Path(os.path.abspath(entry))
        if path in drop or os.path.lexists(dst / entry.name) or _links_sites(entry, sites):
            continue
        if entry.is_dir() and not entry.is_symlink() and path in drop_dirs:
            if _has_kept(path, drop):
                mirror(entry, dst / entry.name, drop, drop_dirs)
            continue
        (dst / entry.name).symlink_to(path)


def _has_kept(folder: Path, drop: Set[Path]) -> bool:
    """Whether ``folder`` holds a file outside ``drop`` (bytecode caches do not count)."""
    return any(Path(os.path.abspath(p)) not in drop for p in folder.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts)


def make(target: Path, extra: str = "test") -> List[str]:
    """Create the light venv at ``target``; returns the distributions left out."""
    drop, names = dropped_files(extra)
    drop_dirs = {parent for path in drop for parent in path.parents}
    if target.exists():
        shutil.rmtree(target)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    light = Path(sysconfig.get_paths(vars={"base": str(target), "platbase": str(target)})["purelib"])
    shutil.rmtree(light)
    sites = site_dirs()
    for site in sites:
        mirror(site, light, drop, drop_dirs, sites)
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="folder of the new venv (replaced if present)")
    parser.add_argument("--extra", default="test", help="the extra it holds (default test)")
    args = parser.parse_args(argv)
    names = make(Path(args.target), args.extra)
    print(f"{args.target}: {PROJECT}[{args.extra}] without {', '.join(names) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
