"""The package's modules import each other without a circle (module-level imports; a module's own parent
packages aside, as a package's ``__init__`` imports its modules)."""

from __future__ import annotations

import ast
import pathlib

import gemmconv

ROOT = pathlib.Path(gemmconv.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = f
    return found


def _imports(mods: dict[str, pathlib.Path], name: str, everywhere: bool = False) -> set[str]:
    """The package's modules that ``name`` imports at module level (``everywhere``: inside functions too), its
    own parent packages aside."""
    path = mods[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.update(t for t in (target, *(f"{target}.{a.name}" for a in node.names)) if t in mods)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in mods)
    return {m for m in found if m != name and not name.startswith(m + ".")}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle():
    mods = _modules()
    graph = {m: _imports(mods, m) for m in mods}
    assert len(graph) > 40 and graph["gemmconv.strategies.im2col"]  # the walk sees the package
    assert _circles(graph) == []


def test_the_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: the layers from the bottom up: a module imports only its own layer and those below (``gemmconv/__init__.py``,
#: the package's face, imports from all of them)
LAYERS = ("core", "backends", "strategies", "planning", "api", "dask", "tools", "compat")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_layer_imports_one_above():
    mods = _modules()
    upward = []
    for m in mods:
        here = _layer(m)
        for d in _imports(mods, m, everywhere=True):
            there = _layer(d)
            if here and there and LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{m} ({here}) imports {d} ({there})")
    assert {_layer(m) for m in mods} >= set(LAYERS)
    assert upward == []


def test_the_core_reaches_dask_through_one_hook():
    """Below :mod:`gemmconv.dask`, only ``api/_dask_hook.py`` names it (and imports it when a Dask array comes)."""
    naming = sorted(str(path.relative_to(ROOT)) for name, path in _modules().items()
                    if not name.startswith("gemmconv.dask") and "gemmconv.dask" in path.read_text()
                    and _layer(name) is not None)
    assert naming == ["api/_dask_hook.py"]
