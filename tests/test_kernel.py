"""Warm kernels (cgd/runtime/kernel.py): a notebook run through papermill on a kernel forked from the server
sees its own working directory and environment, and the same kernelspec without a server is a
plain ipykernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest

CELL = ("import gc, os, sys, json\n"
        "print(json.dumps({'cwd': os.getcwd(), 'foo': os.environ.get('CGD_TEST_FOO'), 'ppid': os.getppid(),\n"
        "                  'json_preloaded': 'json' in sys.modules, 'path0': sys.path[0],\n"
        "                  'frozen': gc.get_freeze_count()}))")


@pytest.fixture
def kernelspec(tmp_path, monkeypatch):
    """A `cgdwarm` kernelspec that runs the launcher, found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "cgdwarm"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "cgd.runtime.kernel", "launch", "-f", "{connection_file}"],
        "display_name": "cgd warm test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nbformat.write(nb, tmp_path / "in.ipynb")
    return tmp_path


def _run(tmp_path: Path, workdir: Path) -> dict:
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(out), kernel_name="cgdwarm", cwd=str(workdir),
                        progress_bar=False)
    text = "".join(o.get("text", "") for o in nbformat.read(out, 4).cells[0].outputs)
    return json.loads(text.strip().splitlines()[-1])


def test_without_a_server_the_launcher_is_a_plain_kernel(kernelspec, monkeypatch):
    monkeypatch.delenv("CGD_KERNEL_SOCKET", raising=False)
    monkeypatch.setenv("CGD_TEST_FOO", "plain")
    work = kernelspec / "work"
    work.mkdir()
    seen = _run(kernelspec, work)
    assert seen["cwd"] == str(work) and seen["foo"] == "plain"
    assert seen["ppid"] == os.getpid()  # the launcher became the kernel: a child of the process papermill runs in
    assert seen["frozen"] == 0


def test_a_forked_kernel_has_the_launcher_s_cwd_and_environment(kernelspec, monkeypatch):
    sock = Path("/tmp") / f"cgd-test-{os.getpid()}.sock"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    server = subprocess.Popen([sys.executable, "-c",
                               f"from cgd.runtime import kernel; kernel.serve({str(sock)!r}, modules=('json',))"],
                              env=env, start_new_session=True)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.1)
        monkeypatch.setenv("CGD_KERNEL_SOCKET", str(sock))
        for value in ("one", "two"):  # two kernels from one server, each with its own environment
            monkeypatch.setenv("CGD_TEST_FOO", value)
            work = kernelspec / f"work-{value}"
            work.mkdir()
            seen = _run(kernelspec, work)
            assert (seen["cwd"], seen["foo"], seen["path0"]) == (str(work), value, str(work))
            assert seen["ppid"] == server.pid  # a fork of the server, not a kernel the launcher started
            assert seen["frozen"] > 0  # the preloaded heap is left out of the kernel's collections
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=10)
        sock.unlink(missing_ok=True)


def test_make_repro_runs_dvc_s_stages_with_warm_kernels_and_times_each(tmp_path):
    """`python -m cgd repro` (make repro): DVC's own repro, with the kernel server's socket in every
    stage's environment, and each stage's seconds in runs/repro-times.json."""
    from cgd.launch import repro

    subprocess.run([str(Path(sys.executable).with_name("dvc")), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    write = "import os; open('{0}.txt', 'w').write(os.environ.get('CGD_KERNEL_SOCKET', ''))"
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        f"  first:\n    cmd: python -c \"{write.format('first')}\"\n    outs: [first.txt]\n"
        f"  second:\n    cmd: python -c \"{write.format('second')}\"\n    deps: [first.txt]\n    outs: [second.txt]\n")
    assert repro.run([], cwd=tmp_path) == 0
    for stage in ("first", "second"):
        assert (tmp_path / f"{stage}.txt").read_text().endswith("server.sock")
    times = json.loads((tmp_path / "runs" / "repro-times.json").read_text())
    assert set(times["stages"]) == {"first", "second"} and times["rc"] == 0
    assert repro.run(["-s", "second"], cwd=tmp_path) == 0  # dvc repro's own options pass through
