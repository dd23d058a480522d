"""The package's layering contract, checked by reading its imports.

``python tests/layers.py`` prints every broken rule (and exits 1), or the
layers and their sizes. ``tests/test_layers.py`` runs it in ``make test``.

Every import counts: at module level or inside a function, ``import x`` or
``from x import y``; only those under ``if TYPE_CHECKING:`` (annotations)
do not. The rules:

1. no import cycle anywhere in the package (the migrations aside);
2. a module of a layer imports only modules of its own or a lower layer
   (``web`` and ``contrib`` share the edge layer, independently of each other);
3. nothing in a layer imports the top-level modules (the package's face,
   the 1.2.8 import paths, the Django app's glue); they sit above every layer;
4. the foundations (``core``) import no database code (``django.db``).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "background_task"
#: Subpackage -> layer, lowest first. Top-level modules are above them all.
LAYERS = {"core": 1, "store": 2, "api": 3, "runtime": 4, "web": 5, "contrib": 5}
TOP = 6
#: Layers whose subpackages must not import each other.
INDEPENDENT = [("web", "contrib")]
EXCLUDED = ("migrations",)


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module of the package
    line: int


def modules(root: str = ROOT) -> dict[str, str]:
    """Module name -> file path, for every module of the package."""
    found = {}
    for folder, subfolders, files in os.walk(os.path.join(root, PACKAGE)):
        subfolders[:] = sorted(d for d in subfolders if d not in EXCLUDED and d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[module.removesuffix(".__init__")] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: str, known: dict[str, str]) -> Iterator[Import]:
    """The package modules ``module`` imports, resolved to modules that exist."""
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    is_package = path.endswith("__init__.py")

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from visit(other)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".")
                    keep = len(parts) - child.level + (1 if is_package else 0)
                    base = ".".join([*parts[:keep], *([base] if base else [])])
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    yield (full if full in known else base), child.lineno
            else:
                yield from visit(child)

    for name, line in visit(tree):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            target = resolve(name)
            if target is not None and target != module:
                yield Import(module, target, line)
        elif module.split(".")[1:2] == ["core"] and (
            name == "django.db" or name.startswith("django.db.")
        ):
            yield Import(module, name, line)


def layer_of(module: str) -> tuple[int, str]:
    """(layer number, subpackage) of a module; top-level modules are above every layer."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS[parts[1]], parts[1]
    return TOP, ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                connect(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def problems(root: str = ROOT) -> list[str]:
    """Every broken rule, one sentence each; empty when the contract holds."""
    known = modules(root)
    found: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in known}
    for module, path in sorted(known.items()):
        for item in imports_of(module, path, known):
            where = f"{os.path.relpath(known[module], root)}:{item.line}"
            if not item.target.startswith(PACKAGE):
                found.append(
                    f"{where}: {module} (core) imports {item.target}: no database code here"
                )
                continue
            graph[module].add(item.target)
            (source_layer, source_pkg), (target_layer, target_pkg) = (
                layer_of(module),
                layer_of(item.target),
            )
            if source_layer == TOP:
                continue
            if target_layer == TOP:
                found.append(
                    f"{where}: {module} imports the top-level module {item.target}; "
                    f"import what it re-exports from its layer instead"
                )
            elif target_layer > source_layer:
                found.append(
                    f"{where}: {module} (layer {source_layer}, {source_pkg}) imports "
                    f"{item.target} (layer {target_layer}, {target_pkg}): imports point down"
                )
            elif {source_pkg, target_pkg} in [set(pair) for pair in INDEPENDENT]:
                found.append(
                    f"{where}: {module} imports {item.target}: {source_pkg} and "
                    f"{target_pkg} are independent"
                )
    for component in cycles(graph):
        found.append(f"import cycle between {len(component)} modules: {', '.join(component)}")
    return found


def main() -> int:
    broken = problems()
    for line in broken:
        print(line)
    if broken:
        return 1
    counts: dict[str, int] = {}
    for module in modules():
        layer, package = layer_of(module)
        label = f"{layer} {package or 'top level'}"
        counts[label] = counts.get(label, 0) + 1
    for label in sorted(counts):
        print(f"layer {label}: {counts[label]} modules")
    print("no cycle, no upward import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
