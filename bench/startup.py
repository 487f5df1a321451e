"""Notebook start-up cost: what every papermill stage pays before its first cell does work.

Measured in one run, each against its baseline:
- `import papermill` with jsonschema's optional IRI checker (rfc3987-syntax, which builds a Lark
  grammar at import) importable vs blocked: `make setup` uninstalls it;
- a notebook whose one cell imports torch, transformers and vLLM, run by papermill on a plain
  `cgd` kernel vs a warm kernel forked from `python -m cgd.runtime.kernel serve` (cgd/runtime/kernel.py), the
  server already started (its own start is printed apart).

    .venv/bin/python bench/startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = ("import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
         "        if name == 'rfc3987_syntax': raise ImportError(name)\nsys.meta_path.insert(0, _Block())\n")


def _seconds(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def _notebook(folder: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch, transformers\nfrom vllm import LLM, SamplingParams")]
    path = folder / "imports.ipynb"
    nbformat.write(nb, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    out = {}
    with_iri = [_seconds([py, "-c", "import papermill.cli"]) for _ in range(args.rounds)]
    without = [_seconds([py, "-c", BLOCK + "import papermill.cli"]) for _ in range(args.rounds)]
    out["import papermill"] = {"with rfc3987-syntax s": round(min(with_iri), 2),
                               "without s": round(min(without), 2), "ratio": round(min(with_iri) / min(without), 2)}
    with tempfile.TemporaryDirectory() as tmp:
        nb = _notebook(Path(tmp))
        env = {k: v for k, v in os.environ.items() if k != "CGD_KERNEL_SOCKET"}
        run = [py, "-m", "papermill", "--kernel", "cgd", "--no-progress-bar", str(nb), str(Path(tmp) / "out.ipynb")]
        plain = [_seconds(run, env) for _ in range(args.rounds)]
        sock = Path(tmp) / "k.sock"
        start = time.perf_counter()
        server = subprocess.Popen([py, "-m", "cgd.runtime.kernel", "serve", "--socket", str(sock)], env=env,
                                  start_new_session=True, stderr=subprocess.DEVNULL)
        while not sock.exists():
            time.sleep(0.2)
        served = time.perf_counter() - start
        try:
            warm = [_seconds(run, {**env, "CGD_KERNEL_SOCKET": str(sock)}) for _ in range(args.rounds)]
        finally:
            os.killpg(server.pid, 15)
        out["papermill, one import cell"] = {"plain kernel s": round(min(plain), 2), "warm kernel s": round(min(warm), 2),
                                             "ratio": round(min(plain) / min(warm), 2),
                                             "server start s (once per run)": round(served, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
