"""The package's shape, read from its source with ``ast``: no import cycle, private framework names only in
``keras_resnet/_compat.py``, and functions short enough to read as a list of steps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"keras_resnet": ROOT / "keras_resnet", "kres": ROOT / "cli"}  # cli/ is installed as kres
MAX_FUNCTION_LINES = 60
KNOWN_CYCLES: set[tuple[str, str]] = set()  # none left: weights.py gets the builder from its caller
PRIVATE_MODULES = ("keras.src", "tensorflow.python")


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the two packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imported(module: str, tree: ast.AST) -> set[str]:
    """The package modules ``module`` imports anywhere (lazy imports in functions too: they cycle just the same).
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module; the implicit import of a
    parent package does not count, since it never cycles back at import time here."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in out if name in MODULES and name != module and name not in PACKAGES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_package_folder_is_installed():
    """pyproject.toml names every folder with an ``__init__.py``: a plain (not editable) install left out
    ``keras_resnet.bench``, so ``kres bench`` failed there while the editable install found it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {name: ROOT / setuptools["package-dir"].get(name, name) for name in PACKAGES} == PACKAGES
    folders = {".".join([name, *init.parent.relative_to(folder).parts])
               for name, folder in PACKAGES.items() for init in folder.rglob("__init__.py")}
    assert "keras_resnet.bench" in folders
    assert sorted(setuptools["packages"]) == sorted(folders)


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_reads_lazy_imports_and_has_no_cycle():
    graph = {name: _imported(name, tree) for name, tree in TREES.items()}
    assert not KNOWN_CYCLES  # a new cycle is to be removed, not listed
    assert "keras_resnet.model" not in graph["keras_resnet.weights"]  # the builder is passed in, not imported
    assert "keras_resnet.qat" in graph["keras_resnet.export"]  # a lazy import inside a function counts
    assert "keras_resnet.rebuild" in graph["keras_resnet.qat"]
    assert "keras_resnet.export" not in graph["keras_resnet.qat"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_rebuild_imports_neither_train_nor_export_nor_qat():
    imported = _imported("keras_resnet.rebuild", TREES["keras_resnet.rebuild"])
    assert not imported & {"keras_resnet.train", "keras_resnet.export", "keras_resnet.qat"}


def _own_private_names() -> set[str]:
    """Underscore names the package itself defines (functions, classes, module names, assigned attributes):
    reaching one of these through another object is not a use of a framework's private API."""
    names = {path.stem for path in MODULES.values()}
    for tree in TREES.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
    return {n for n in names if n.startswith("_")}


def private_uses(tree: ast.AST, own: set[str]) -> list[str]:
    """``keras.src``/``tensorflow.python`` imports and underscore attributes of objects that are not ours."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith(PRIVATE_MODULES)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PRIVATE_MODULES):
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in own:
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith(PRIVATE_MODULES) and " " not in node.value:
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def test_the_private_name_scan_catches_what_it_should():
    own = {"_mine"}
    code = ("from keras.src.ops import numpy\nimport tensorflow.python.framework\n"
            "model._nodes_by_depth\nlayer._inbound_nodes = []\nself._x\nthing._mine\nx.__class__\n")
    assert private_uses(ast.parse(code), own) == [
        "from keras.src.ops import ...", "import tensorflow.python.framework", "line 3: ._nodes_by_depth",
        "line 4: ._inbound_nodes"]


def test_only_compat_uses_private_keras_or_tensorflow_names():
    own = _own_private_names()
    offenders = {name: uses for name, tree in TREES.items()
                 if name != "keras_resnet._compat" and (uses := private_uses(tree, own))}
    assert offenders == {}


@pytest.mark.parametrize("module", sorted(n for n in MODULES if n.startswith("keras_resnet")))
def test_no_function_is_longer_than_a_screen(module):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(TREES[module]) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{module}: split into named steps of {MAX_FUNCTION_LINES} lines or less"
