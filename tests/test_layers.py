"""The package tree is the architecture: layers import only the layers before them, and no module
imports itself back through others (cgd/__init__.py lists the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cgd.launch import stage_deps

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cgd"
# Bottom to top; a package may import itself and those listed before it.
LAYERS = ["runtime", "grading", "data", "config", "generation", "distill", "training", "evaluation", "experiments",
          "reporting", "rehearsal", "launch"]


def graph() -> dict[str, set[str]]:
    """Module -> the cgd modules it imports, function bodies included (the same reading that derives
    dvc.yaml's deps)."""
    return stage_deps.module_graph(ROOT)


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_lower_layers():
    g = graph()
    bad = []
    for mod, deps in g.items():
        parts = mod.split(".")
        if len(parts) < 2 or parts[1] not in LAYERS:
            continue  # cgd itself and cgd.__main__, the command line over every layer
        rank = LAYERS.index(parts[1])
        for dep in deps:
            dparts = dep.split(".")
            if len(dparts) >= 2 and dparts[1] in LAYERS and LAYERS.index(dparts[1]) > rank:
                bad.append(f"{mod} imports {dep}")
    assert not bad, "a layer imports a later one:\n" + "\n".join(sorted(bad))


def test_every_package_says_what_it_holds_and_may_import():
    on_disk = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
    assert on_disk == sorted(LAYERS), "cgd/__init__.py and LAYERS must name every package"
    top = ast.get_docstring(ast.parse((PKG / "__init__.py").read_text()))
    for pkg in LAYERS:
        doc = ast.get_docstring(ast.parse((PKG / pkg / "__init__.py").read_text())) or ""
        assert "May import:" in doc, f"cgd/{pkg}/__init__.py's docstring must say what it may import"
        assert f"\n    {pkg} " in "\n" + top, f"cgd/__init__.py's layer map lacks {pkg}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_short_or_say_why(path):
    lines = len(path.read_text().splitlines())
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= 520 or "Longer than" in doc, (
        f"{path.relative_to(ROOT)} has {lines} lines: split it, or say in its docstring why not ('Longer than ...')")


def test_layer_rule_catches_an_upward_import():
    """The checker itself: a runtime module importing the config layer is reported."""
    known = {"cgd.config", "cgd.runtime.io"}
    read = stage_deps.imported_modules
    assert read(ast.parse("def f():\n    from cgd.config import load\n"), known) == {"cgd.config"}
    assert read(ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cgd.config import X\n"),
                known) == set()
