"""`make gpu-check`'s dry mode: every row of the GPU check (bare TRL, ours with and without the
levers, ours under ZeRO-3 with and without checkpointing) runs on CPU at a tiny size and reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cgd.runtime.io import write_jsonl
from tests.test_train import ROWS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_gpu_check_runs_every_row_on_cpu_and_writes_its_report(tiny_model, tmp_path):
    pytest.importorskip("deepspeed")
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, ROWS)
    out = tmp_path / "report.json"
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry", "--tokenizer", str(tiny_model), "--data", str(data),
         "--records", "16", "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry"] and report["targets"] is None and report["shape"] == "tiny"
    runs = report["runs"]
    assert list(runs) == ["bare TRL, our batch", "ours, levers off", "ours", "ours, ZeRO-3 + ckpt", "ours, ZeRO-3"]
    assert all("error" not in r and r["non_pad_tokens_per_s"] > 0 for r in runs.values())
    # on CPU auto leaves every lever off: the two in-process rows train the same losses
    assert runs["ours"]["levers"]["padding_free"] is False and runs["ours"]["levers"]["liger_kernel"] is False
    assert runs["ours"]["final_loss"] == runs["ours, levers off"]["final_loss"]
    # ZeRO-3 (bf16 weights, DeepSpeed's fp32 master copy) lands near the in-process run
    assert runs["ours, ZeRO-3"]["final_loss"] == pytest.approx(runs["ours"]["final_loss"], rel=2e-2)
    assert "| ours, ZeRO-3 |" in proc.stdout and "targets not judged" in proc.stdout


def test_gpu_check_without_a_gpu_asks_for_the_dry_run(tmp_path):
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--work", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    if "cuda" in proc.stdout.lower() and proc.returncode == 0:
        pytest.skip("a CUDA device is present")
    assert proc.returncode != 0 and "DRY=1" in proc.stderr
