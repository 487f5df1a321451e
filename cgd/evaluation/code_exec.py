"""Running model-written code for the code suites (HumanEval through lm-eval), in a separate process
with limits, and only where params allow it.

A program (the prompt's function signature, the model's completion, the benchmark's tests) passes
when it exits 0 within `timeout_s` seconds of wall clock. It runs as `python -I` in an empty
temporary folder with an empty environment, no stdin, its address space capped at `memory_mb`
(RLIMIT_AS), CPU time at the timeout, files it writes at 16 MiB and no core dumps; on timeout its
whole process group is killed. These limits stop runaway loops and memory, not a hostile program:
the process can still read files and reach the network. Run it where that is acceptable (a
container or a node without credentials); params say so (eval.general.code_execution).

lm-eval's own humaneval tasks grade through HF `evaluate`'s code_eval metric, which its task module
downloads from the hub on import and which runs programs without a memory limit; cgd's tasks
(cgd/evaluation/lm_eval_tasks/) grade through `score` here instead.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FILE_LIMIT = 16 * 2**20  # bytes a program may write to one file


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int


_allowed: Limits | None = None  # set only inside `allowed(...)`: outside it, nothing runs


@contextlib.contextmanager
def allowed(limits: Limits):
    """Lets `run` execute programs under `limits` for the duration (general.run enters it when
    eval.general.code_execution.enabled is true)."""
    global _allowed
    before, _allowed = _allowed, limits
    try:
        yield
    finally:
        _allowed = before


class CodeExecutionRefused(RuntimeError):
    pass


def _limit(limits: Limits):
    def apply() -> None:  # runs in the child, between fork and exec
        import resource

        memory = limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = math.ceil(limits.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run(program: str) -> dict:
    """{"passed": bool, "reason": "passed" | "failed" | "timeout", "returncode"} of one program."""
    limits = _allowed
    if limits is None:
        raise CodeExecutionRefused(
            "refusing to execute model-written code: set eval.general.code_execution.enabled: true in "
            "params.yaml (read cgd/evaluation/code_exec.py first: limits, not a sandbox)")
    with tempfile.TemporaryDirectory(prefix="cgd-code-") as folder:
        path = Path(folder) / "program.py"
        path.write_text(program, encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-I", str(path)], cwd=folder, env={}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_limit(limits))
        try:
            code = proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            # the program's children too (start_new_session gave them one group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"passed": False, "reason": "timeout", "returncode": None}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left running in the background
    return {"passed": code == 0, "reason": "passed" if code == 0 else "failed", "returncode": code}


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from n samples of which c pass (Chen et al. 2021, HumanEval):
    1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def score(references: list[str], predictions: list[list[str]], k: list[int] | int = 1) -> dict[str, float]:
    """lm-eval metric for one document: `predictions` [[program without tests, ...]] (one per
    sample), `references` [tests calling check(entry_point)]; {"pass@k": estimate} for each k."""
    ks = [k] if isinstance(k, int) else list(k)
    (tests,), (candidates,) = references, predictions
    passed = sum(run(f"{code}\n\n{tests}\n")["passed"] for code in candidates)
    return {f"pass@{x}": pass_at_k(len(candidates), passed, x) for x in ks}
