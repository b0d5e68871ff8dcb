"""The house stays as its map says (docs/ARCHITECTURE.md): no import cycles, no room over 600
lines, every module on a floor of the map, and every import pointing to its own floor or below.

Imports are read with ``ast`` from every module of ``eval_encoder/``, those inside functions
included (an import moved into a function to dodge a cycle is still a cycle). Importing
``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so it counts as importing those
packages too, except a package that holds the importer: a package's ``__init__`` that
re-exports its own children is not a cycle.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "eval_encoder"
MAP = ROOT / "docs" / "ARCHITECTURE.md"
MAX_LINES = 600
# | floor | room | concern |   (room: `config.py`, `video/`, `probe/head.py`, ...)
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`([^`]+)`")

Edge = Tuple[str, int]  # (imported module, line of the import)


def modules(package: Path = PACKAGE) -> Dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` of the package (``__init__`` as the
    package itself)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imported_names(node: ast.AST, module: str, is_package: bool) -> List[str]:
    """The dotted names an import statement names (``from x import y``: ``x`` and ``x.y``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def with_packages(name: str) -> List[str]:
    """``a.b.c`` and the packages Python imports before it: ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


def import_graph(mods: Dict[str, Path]) -> Dict[str, Dict[str, int]]:
    """module -> {module it imports: first line}, counting imports inside functions and the
    packages each import runs, leaving out a module's own enclosing packages."""
    graph: Dict[str, Dict[str, int]] = {m: {} for m in mods}
    for m, path in mods.items():
        own = set(with_packages(m))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in imported_names(node, m, path.name == "__init__.py"):
                for target in with_packages(name):
                    if target in mods and target not in own:
                        graph[m].setdefault(target, node.lineno)
    return graph


def cycles(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    part.append(top)
                    if top == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def describe_cycle(part: List[str], graph: Dict[str, Dict[str, int]], mods,
                   root: Path = ROOT) -> str:
    """Each import inside the cycle, as ``file:line imports module``."""
    inside = set(part)
    lines = [f"  {mods[m].relative_to(root)}:{line} imports {d}"
             for m in part for d, line in sorted(graph[m].items()) if d in inside]
    return f"a cycle of {len(part)} modules:\n" + "\n".join(lines)


def floors(text: str) -> Dict[str, int]:
    """Room -> floor from the map's table rows: ``config.py`` -> ``eval_encoder.config``,
    ``video/`` -> ``eval_encoder.video`` (the package and everything in it), ``__init__.py``
    -> ``eval_encoder`` (the top package's own file only)."""
    out = {}
    for line in text.splitlines():
        found = ROW.match(line)
        if found:
            room = found.group(2).strip().rstrip("/").removesuffix(".py").replace("/", ".")
            name = "eval_encoder" if room == "__init__" else f"eval_encoder.{room}"
            out[name] = int(found.group(1))
    return out


def floor_of(module: str, rooms: Dict[str, int]) -> int:
    """The floor of the most specific room holding ``module``; KeyError when none does (the
    top package's row holds its own file only)."""
    for name in reversed(with_packages(module)[1:] or [module]):
        if name in rooms:
            return rooms[name]
    raise KeyError(module)


MODS = modules()
GRAPH = import_graph(MODS)


def test_the_house_has_no_import_cycles():
    found = [describe_cycle(part, GRAPH, MODS) for part in cycles(GRAPH)]
    assert not found, "import cycles (move the shared thing down):\n" + "\n".join(found)


def test_no_room_is_over_600_lines():
    sizes = {p.relative_to(ROOT): p.read_text(encoding="utf-8").count("\n") for p in MODS.values()}
    over = [f"{p}: {n} lines" for p, n in sorted(sizes.items()) if n > MAX_LINES]
    assert not over, f"modules over {MAX_LINES} lines (split by concern):\n" + "\n".join(over)


def test_every_module_is_on_a_floor_of_the_map():
    rooms = floors(MAP.read_text(encoding="utf-8"))
    missing = []
    for m in MODS:
        try:
            floor_of(m, rooms)
        except KeyError:
            missing.append(m)
    assert not missing, f"modules that {MAP.relative_to(ROOT)} does not place: {missing}"
    gone = [room for room in rooms if room not in MODS]
    assert not gone, f"rooms of the map that do not exist: {gone}"


def test_imports_point_to_the_same_floor_or_below():
    rooms = floors(MAP.read_text(encoding="utf-8"))
    upward = []
    for m, targets in GRAPH.items():
        here = floor_of(m, rooms)
        for target, line in sorted(targets.items()):
            there = floor_of(target, rooms)
            if there > here:
                upward.append(f"{MODS[m].relative_to(ROOT)}:{line} (floor {here}) imports "
                              f"{target} (floor {there})")
    assert not upward, "imports that point up a floor:\n" + "\n".join(upward)


def test_the_configuration_imports_nothing_of_the_project():
    assert not GRAPH["eval_encoder.config"], GRAPH["eval_encoder.config"]


# ----------------------------------------------------------------------------- the checker itself
def _package(tmp_path: Path, files: Dict[str, str]) -> Dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / "eval_encoder" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(tmp_path / "eval_encoder")


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    mods = _package(tmp_path, {
        "__init__.py": "", "config.py": "def f():\n    from eval_encoder import registry\n",
        "registry.py": "from eval_encoder.config import f\n"})
    graph = import_graph(mods)
    assert cycles(graph) == [["eval_encoder.config", "eval_encoder.registry"]]
    said = describe_cycle(cycles(graph)[0], graph, mods, tmp_path)
    assert "eval_encoder/config.py:2 imports eval_encoder.registry" in said


def test_a_package_init_reexporting_its_children_is_not_a_cycle(tmp_path):
    mods = _package(tmp_path, {
        "__init__.py": "", "stats/__init__.py": "from eval_encoder.stats.cells import Cell\n",
        "stats/cells.py": "from eval_encoder.stats.clips import x\n", "stats/clips.py": "x = 1\n"})
    assert cycles(import_graph(mods)) == []


def test_importing_a_child_runs_its_package_init(tmp_path):
    """config -> codec.options runs codec/__init__, which imports the pipeline, which imports
    config: a cycle at run time even though no module names another directly."""
    mods = _package(tmp_path, {
        "__init__.py": "", "config.py": "from eval_encoder.codec.options import O\n",
        "codec/__init__.py": "from eval_encoder.codec.pipeline import run\n",
        "codec/options.py": "O = 1\n", "codec/pipeline.py": "from eval_encoder import config\n"})
    assert cycles(import_graph(mods)) == [
        ["eval_encoder.codec", "eval_encoder.codec.pipeline", "eval_encoder.config"]]


@pytest.mark.parametrize("row, room, floor", [
    ("| 1 | `config.py` | typed configuration |", "eval_encoder.config", 1),
    ("| 3 | `probe/head.py` | the head |", "eval_encoder.probe.head", 3),
    ("| 2 | `video/` | clips |", "eval_encoder.video", 2),
    ("| 1 | `__init__.py` | the package |", "eval_encoder", 1),
])
def test_map_rows_name_rooms_and_floors(row, room, floor):
    assert floors(row) == {room: floor}
    assert floor_of(room, floors(row)) == floor
    if room != "eval_encoder":
        assert floor_of(room + ".x", floors(row)) == floor
    else:  # the top package's row does not hold the modules the map leaves out
        with pytest.raises(KeyError):
            floor_of("eval_encoder.new_room", floors(row))
