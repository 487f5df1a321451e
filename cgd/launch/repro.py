"""`make repro`: `dvc repro` with warm kernels, and how long each stage took.

Every notebook stage starts a Jupyter kernel that imports torch, transformers, vLLM, TRL and
lm-eval again (~15 s on 2 cores, ~20 times in the demo). Here one kernel server (cgd/runtime/kernel.py)
imports them once and each stage's kernel is forked from it; the stages, their commands and their
outputs are DVC's own, as a plain `dvc repro` runs them (which still works, with plain kernels).
DVC's lines pass through with the time of day; at the end a table gives each stage's seconds
(from its start to the next one's), also written to runs/repro-times.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from cgd.runtime import kernel

_STAGE = re.compile(r"Running stage '([^']+)'|Stage '([^']+)' didn't change|Stage '([^']+)' is cached")
TIMES = Path("runs") / "repro-times.json"


def run(dvc_args: list[str], cwd: Path | None = None) -> int:
    cwd = Path.cwd() if cwd is None else cwd
    dvc = Path(sys.executable).with_name("dvc")
    start = time.perf_counter()
    times: dict[str, float] = {}
    current, since = None, start
    with kernel.warm_server(cwd, dict(os.environ)) as env:
        # stdout (DVC's stage lines) is read here; stderr stays the terminal, where the notebooks'
        # progress bars draw (cgd/runtime/progress.py)
        proc = subprocess.Popen([str(dvc) if dvc.exists() else "dvc", "repro", *dvc_args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            for line in proc.stdout:
                m = _STAGE.search(line)
                if m and m.group(1):
                    now = time.perf_counter()
                    if current:
                        times[current] = round(now - since, 1)
                    current, since = m.group(1), now
                    line = f"[{time.strftime('%H:%M:%S')}] {line}"
                sys.stdout.write(line)
                sys.stdout.flush()
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            rc = proc.wait()
    if current:
        times[current] = round(time.perf_counter() - since, 1)
    total = time.perf_counter() - start
    if times:
        label = "all (kernel server included)"
        width = max(len(label), *map(len, times))
        print(f"\n{'stage':<{width}}  seconds")
        for name, seconds in times.items():
            print(f"{name:<{width}}  {seconds:7.1f}")
        print(f"{label:<{width}}  {total:7.1f}")
        path = cwd / TIMES
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"stages": times, "total_seconds": round(total, 1), "rc": rc}, indent=2) + "\n")
    return rc
