"""cgd/runtime/progress.py: one progress bar, a widget in JupyterLab and text in papermill, DVC and logs.

The kernel tests start the project's real `cgd` kernel: once as papermill's command line starts it
(a DVC stage's way, text bars in the notebook), once as a frontend does (nbclient, no papermill:
JupyterLab's way, a widget)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import nbformat
import pytest

from cgd.runtime import progress
from tests.conftest import REPO

CELL = ("import os\nfrom cgd.runtime.progress import bar, mode\nprint('mode', mode())\n"
        "for _ in bar(range(3), desc='rows', unit='row', delay=0):\n    pass\n")


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "cgd", "display_name": "Python (cgd)", "language": "python"}
    nbformat.write(nb, path)


def _clean_env() -> dict:
    # PYTEST_CURRENT_TEST: ipykernel keeps no copy of the terminal's stderr under pytest
    drop = ("CGD_PROGRESS", "DVC_STAGE", "CGD_KERNEL_SOCKET", "PYTEST_CURRENT_TEST")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_a_text_bar_in_a_log_writes_whole_lines(monkeypatch):
    """Into a file that is not a terminal (a CI log), each update is a line, not a \\r redraw."""
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setenv("CGD_PROGRESS", "text")
    for _ in progress.bar(range(5), desc="quick"):  # done within DELAY_S: no bar at all
        pass
    assert log.getvalue() == ""
    outer = progress.bar(range(2), desc="shards", delay=0)
    for _ in outer:
        for _ in progress.bar(range(5), desc="rows", unit="row", delay=0):  # nested, as vLLM's in a shard
            pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no redraws, no cursor moves
    assert "rows: 100%" in text and "5/5" in text and "shards: 100%" in text
    lines = text.splitlines()
    assert all(line.startswith(("rows:", "shards:")) for line in lines)
    assert all(a != b for a, b in zip(lines, lines[1:]))  # the closing redraw is not a second line
    assert progress.vllm_bar(total=3, desc="Rendering prompts").disable


def test_the_mode_follows_the_run(monkeypatch):
    monkeypatch.delenv("CGD_PROGRESS", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert progress.mode() == "text"  # pytest: no Jupyter kernel
    monkeypatch.setenv("CGD_PROGRESS", "widget")
    assert progress.mode() == "widget"


def test_papermill_gets_text_bars_and_a_frontend_gets_a_widget(tmp_path):
    src = tmp_path / "bar.ipynb"
    _notebook(src)
    # papermill's command line, as a DVC stage runs it (without DVC_STAGE: the launcher sees papermill)
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "papermill") if (REPO / ".venv" / "bin" / "papermill").exists()
                           else "papermill", str(src), str(out), "--kernel", "cgd", "--cwd", str(REPO),
                           "--no-progress-bar", "--log-level", "WARNING"],
                          capture_output=True, text=True, env=_clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = nbformat.read(out, as_version=4).cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert "mode text" in text and "rows: 100%" in text and "3/3" in text
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert "rows: 100%" in proc.stderr, proc.stderr  # ... and the terminal that ran papermill saw the bar too
    assert "running over TCP without encryption" not in proc.stderr  # noise for a loopback kernel

    # a frontend (nbclient in a process that is not papermill), as JupyterLab runs the kernel
    script = ("import nbformat, nbclient, sys, json\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "nbclient.NotebookClient(nb, kernel_name='cgd', resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
              "print(json.dumps(nb.cells[0].outputs))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(src), str(REPO)], capture_output=True, text=True,
                          env=_clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "mode widget" in "".join(o.get("text", "") for o in outputs)
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, outputs
    assert not any("rows: 100%" in o.get("text", "") for o in outputs)  # no pink stderr text bar


@pytest.mark.parametrize("path", [*sorted((REPO / "cgd").rglob("*.py")), *sorted((REPO / "notebooks").glob("*.ipynb"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_and_notebook_shows_progress_through_the_one_helper(path):
    if path == REPO / "cgd/runtime/progress.py":
        return
    source = path.read_text()
    if path.suffix == ".ipynb":
        source = "\n".join("".join(c["source"]) for c in json.loads(source)["cells"] if c["cell_type"] == "code")
    assert "from tqdm" not in source and "import tqdm" not in source
