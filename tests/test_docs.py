"""The README and docs/ name only paths that exist, and the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Written by the pipeline or by a run, not part of a clone (figures/ and metrics/ are committed, but
# which files they hold depends on the run's params).
OUTPUTS = ("data/0", "data/08", "runs/", "metrics/", "models/", "sweeps/", "rehearsals/", ".cache/", "logs/",
           "dvc_plots/", ".venv/", "figures/", "data/06_eval", "/tmp/", "my-")
ROOTS = ("cgd/", "notebooks/", "configs/", "docs/", "bench/", "tests/", "requirements/", "data/paper/", ".ci/")
FILES = ("params.yaml", "dvc.yaml", "dvc.lock", "Makefile", "pyproject.toml", "environment.yml")
PLACEHOLDER = re.compile(r"[<>{}*$…|]|NAME|NN_|\.\.\.")


def named_paths(text: str) -> set[str]:
    """Relative links, and code spans that start with a repository path."""
    out = {m for m in re.findall(r"\]\(([^)#\s]+)\)", text) if not m.startswith(("http", "mailto:"))}
    for span in re.findall(r"`([^`\n]+)`", text):
        token = span.split()[0].rstrip(".,:;")
        if token.startswith(ROOTS) or token in FILES:
            out.add(token)
    return {p for p in out if not PLACEHOLDER.search(p) and not p.startswith(OUTPUTS)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_page_names_exists(doc):
    base = doc.parent
    missing = sorted(p for p in named_paths(doc.read_text())
                     if not (REPO / p).exists() and not (base / p).exists())
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {missing}"


def test_the_checker_sees_a_stale_path():
    assert named_paths("see `cgd/params.py` and [the guide](docs/nowhere.md); `runs/x.ipynb`") == {
        "cgd/params.py", "docs/nowhere.md"}


def test_the_readme_is_short_and_its_commands_are_cis():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    block = readme.split("## Two commands", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make repro", "make test"]
    ci = (REPO / ".ci/run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's test command"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^repro:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
