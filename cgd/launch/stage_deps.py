"""Which code each DVC stage runs, derived from its entry points, so dvc.yaml's deps stay complete.

A stage's entry points are the notebooks it executes (papermill's, and any notebook it lists as a
dependency, which the sweep commands run) and the `python -m cgd COMMAND` it calls; from them the
import closure is followed through every `import` in the package, function bodies included (a
`-m cgd COMMAND` command line built in code, as training's `accelerate launch`, counts as running
that command). dvc.yaml names the closure by package folder (`cgd/<layer>`), so a module added to
a layer a stage uses is covered without editing dvc.yaml, plus `cgd/__main__.py` for a command.
`cgd/__init__.py` holds only the layer map's docstring and is left out.

tests/test_dvc_deps.py fails when dvc.yaml's code deps differ from this; `python -m cgd stage-deps`
prints what each stage should list.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# a command line that runs `python -m cgd COMMAND` (e.g. ["accelerate", "launch", ..., "-m", "cgd", "train"])
_LAUNCH = re.compile(r"""["']-m["'],\s*["']cgd["'],\s*["']([\w-]+)["']""")
_PAPERMILL_NB = re.compile(r"\b(notebooks/[\w.-]+\.ipynb)")
_CGD_COMMAND = re.compile(r"python -m cgd ([\w-]+)")


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module under cgd/."""
    out = {}
    for path in sorted((root / "cgd").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """The cgd modules imported anywhere in `tree` (function bodies included), resolved to modules:
    `from cgd.data import sampling` is cgd.data.sampling, `from cgd.config import load` is cgd.config.
    Imports under `if TYPE_CHECKING:` only name types and do not run."""
    skip = {id(n) for t in ast.walk(tree) if _type_checking(t) for n in ast.walk(t)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "cgd"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cgd":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def _with_parents(name: str, deps: set[str]) -> set[str]:
    """Importing cgd.a.b runs cgd/a/__init__.py first (unless the importer lives in cgd.a)."""
    out = set(deps)
    for d in deps:
        parts = d.split(".")
        out |= {p for p in (".".join(parts[:i]) for i in range(2, len(parts))) if not name.startswith(p + ".")}
    return out - {name}


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the cgd modules it imports (function bodies included)."""
    mods = package_modules(root)
    known = set(mods)
    return {name: _with_parents(name, imported_modules(ast.parse(path.read_text()), known))
            for name, path in mods.items()}


def _main_functions(root: Path) -> tuple[ast.Module, dict[str, ast.FunctionDef]]:
    tree = ast.parse((root / "cgd" / "__main__.py").read_text())
    return tree, {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def cli_commands(root: Path = ROOT) -> dict[str, str]:
    """`python -m cgd` command -> the function of cgd/__main__.py that runs it (each add_parser's
    set_defaults; the two sweep commands share one parser loop)."""
    src = (root / "cgd" / "__main__.py").read_text()
    commands = dict(re.findall(r'add_parser\("([\w-]+)".*?set_defaults\(run=(\w+)\)', src, re.S))
    commands.update({"sweep": "_sweep", "sweep-point": "_sweep_point"})
    return commands


def _command_modules(command: str, root: Path, known: set[str]) -> set[str]:
    tree, funcs = _main_functions(root)
    func = cli_commands(root)[command]
    top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    # the command's function and the helpers of __main__ it calls, and main()'s own imports (it
    # parses the command line of every command; the other commands' functions it names do not run)
    reached, todo = set(), [func]
    while todo:
        f = todo.pop()
        if f in reached or f not in funcs:
            continue
        reached.add(f)
        todo += [n.id for n in ast.walk(funcs[f]) if isinstance(n, ast.Name) and n.id in funcs]
    main = funcs["main"]
    own = ast.Module(body=[n for n in ast.walk(main) if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    mods = imported_modules(top, known) | imported_modules(own, known)
    for f in reached:
        mods |= imported_modules(funcs[f], known)
    return mods | {"cgd.__main__"}


def notebook_modules(path: Path, known: set[str]) -> set[str]:
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    return imported_modules(ast.parse(code), known)


def closure(notebooks: list[Path], commands: list[str], root: Path = ROOT) -> set[str]:
    """Every cgd module the notebooks and commands run."""
    mods = package_modules(root)
    known = set(mods)
    graph = module_graph(root)
    todo = set()
    for nb in notebooks:
        todo |= notebook_modules(nb, known)
    for cmd in commands:
        todo |= _command_modules(cmd, root, known)
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m != "cgd.__main__":  # its reach is each command's own (above), not every command's
            todo |= graph.get(m, set())
        for cmd in _LAUNCH.findall(mods[m].read_text()):
            todo |= _command_modules(cmd, root, known)
    return seen


def stage_entries(stage: dict, root: Path = ROOT) -> tuple[list[Path], list[str]]:
    """The notebooks a dvc.yaml stage executes or lists, and the `python -m cgd` commands it calls."""
    cmd = stage.get("cmd", "")
    cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    notebooks = sorted({*_PAPERMILL_NB.findall(cmd), *(d for d in deps if _PAPERMILL_NB.fullmatch(d))})
    return [root / n for n in notebooks], _CGD_COMMAND.findall(cmd)


def code_deps(modules: set[str]) -> list[str]:
    """What dvc.yaml lists for those modules: each layer's folder, and cgd/__main__.py."""
    out = set()
    for m in modules:
        parts = m.split(".")
        if parts == ["cgd"]:
            continue  # the layer map's docstring only (tests/test_dvc_deps.py checks it stays so)
        out.add("cgd/__main__.py" if parts[1] == "__main__" else f"cgd/{parts[1]}")
    return sorted(out)


def expected(dvc_yaml: Path = ROOT / "dvc.yaml", root: Path = ROOT) -> dict[str, list[str]]:
    """Stage name -> the cgd paths its deps must list."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: code_deps(closure(*stage_entries(stage, root), root=root)) for name, stage in stages.items()}


def listed(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """Stage name -> the cgd paths its deps list now."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: sorted(d.rstrip("/") for d in (x if isinstance(x, str) else next(iter(x)) for x in stage.get("deps", []))
                         if d.startswith("cgd")) for name, stage in stages.items()}


def main() -> int:
    want, have = expected(), listed()
    bad = 0
    for name in want:
        flag = "" if want[name] == have.get(name) else "   <- dvc.yaml differs"
        bad += bool(flag)
        print(f"{name}: {', '.join(want[name])}{flag}")
    return 1 if bad else 0
