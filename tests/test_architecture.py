"""The package's shape: imports go down the pipeline, never up, and never round in a circle.

Every ``import`` in every module counts, at module level and inside
functions alike (a function-local import is still a dependency). The layers
are listed in docs/ARCHITECTURE.md; a new module must be put in one here.

Run as a script to print the import graph (module -> what it imports).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "frsurvey"

#: The layers, bottom first: a module may import from its own layer and the ones below it (the longest
#: matching name places a module: ``image.preprocess`` before ``image``).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shared helpers", ("_flags", "_utils", "_compat", "status", "progress", "metrics", "plots")),
    ("catalogs in and out, canonical pixels", ("io", "image.preprocess")),
    ("image sources, measurements", ("sources", "image.morphology")),
    ("prepared cutouts, networks", ("image.prepare", "image", "model")),
    ("options, galleries", ("options", "gallery")),
    ("training and evaluation", ("training",)),
    ("running a catalog through the model", ("run",)),
    ("front ends", ("fetch", "show", "samp")),
    ("command line", ("cli", "__main__")),
]


def _layer_of(module: str) -> int:
    if module == "frsurvey":
        return len(LAYERS)  # the package's lazy public API sits above everything
    inner = module.removeprefix("frsurvey.")
    best = max(
        ((len(name), i) for i, (_, names) in enumerate(LAYERS) for name in names if f"{inner}.".startswith(f"{name}.")),
        default=None,
    )
    if best is not None:
        return best[1]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """Return {module: the frsurvey modules it imports}, from every import statement of every module."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if _is_module(f"{origin}.{a.name}") else origin for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t.split(".")[0] == "frsurvey" and t != name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_is_in_a_layer():
    for module in import_graph():
        _layer_of(module)


def test_imports_go_only_down_the_layers():
    upward = [
        f"{module} (layer {_layer_of(module)}) imports {target} (layer {_layer_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if _layer_of(target) > _layer_of(module)
    ]
    assert not upward, "imports going up:\n" + "\n".join(upward)


def test_no_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "an import cycle: " + " -> ".join(cycle)


def test_the_graph_is_read_from_every_import(tmp_path, monkeypatch):
    """The checker sees function-local and relative imports, and finds a cycle through them."""
    pkg = tmp_path / "frsurvey"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "io" / "__init__.py").write_text("from .read import x\n")
    (pkg / "io" / "read.py").write_text("def f():\n    from ..cli import main\n")
    (pkg / "cli.py").write_text("from .io import read\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    graph = import_graph()
    assert graph["frsurvey.io.read"] == {"frsurvey.cli"}
    assert graph["frsurvey.cli"] == {"frsurvey.io.read"}
    assert _cycle(graph) is not None
    with pytest.raises(AssertionError, match="imports going up"):
        test_imports_go_only_down_the_layers()


if __name__ == "__main__":
    for module, targets in sorted(import_graph().items()):
        print(f"{module} [{_layer_of(module)}] -> {', '.join(sorted(targets)) or '-'}")
