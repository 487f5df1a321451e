"""Stage 05 on one GPU in one command (`make gpu-check`): what the machine has, the bf16 matmul peak,
and non-pad tokens/s with MFU for stage 05's training paths, beside bare TRL at the same batch.

Rows (each a fresh process, as a user runs it; the model is random weights in a named real shape,
the tokenizer and the CGD rows are the demo's, packed by `make gpu-kit`):

    bare TRL, our batch        SFTTrainer at our batch: fp32 weights, bf16 autocast, padded, random order
    ours, levers off           python -m cgd train with padding_free/liger_kernel false, sdpa
    ours                       python -m cgd train with params.yaml's levers (auto)
    ours, ZeRO-3 + ckpt        accelerate launch + configs/accelerate/zero3.yaml, gradient checkpointing
    ours, ZeRO-3               the same without gradient checkpointing

All at `logging_steps: 1`, the demo's value and the one that exposed the logging stall. Printed
and written to JSON (`--out`): tok/s over the whole run and after the first optimizer step (the
"steady" rate leaves out one-off compiling), MFU of each against the peak, the padded share of the
tokens computed, and the issue's targets judged on a GPU run (never on `--dry`).

`--dry` runs every row on CPU at a tiny shape (DeepSpeed's CPU accelerator for the ZeRO-3 rows):
the same code paths, a few seconds of training each; its numbers say nothing about a GPU.

    bash bench/gpu_check.sh [--dry] [--shape llama-1b] [--records 512] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Named shapes over the kit tokenizer's config (a Llama; SmolLM2's vocabulary and chat template).
SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    "smollm2-135m": {},  # the kit config as it is
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64),
}
TARGETS = {"ours in-process MFU": 0.40, "ours ZeRO-3 MFU": 0.30, "ours / bare TRL same batch": 1.3}
PACKAGES = ("torch", "transformers", "trl", "accelerate", "deepspeed", "datasets", "dvclive",
            "liger-kernel", "triton", "flash-attn", "vllm")


def facts() -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gib": round(props.total_memory / 2 ** 30, 1),
               "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
               "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "gpu": gpu, "packages": versions}


def build_model(tokenizer_dir: str, shape: str, out: Path) -> int:
    """Random weights in `shape` with the kit's tokenizer, saved as an HF folder; the parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tokenizer_dir)
    for key, value in SHAPES[shape].items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    # Built on the GPU where there is one: seconds instead of a minute of CPU initialisation at 1B
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out, max_shard_size="20GB")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def write_rows(data: str, n: int, out: Path) -> int:
    """bench/train.py's draw of `n` complete stage-04 rows, written to `out`; the distinct count."""
    from cgd.runtime import io

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import draw_rows  # bench/train.py

    rows, distinct = draw_rows(data, n)
    io.write_jsonl(out, rows)
    return distinct


def bare_child(args) -> None:
    """The bare TRL row, in its own process; writes its numbers to --result."""
    import torch

    from cgd.runtime import io
    from cgd.training import records, train
    from cgd.training.throughput import bare_trl

    recs, _ = records.build(list(io.read_jsonl(args.data)), "cgd", records.templates())
    clock = train.StepClock(lambda: 0, torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None))
    tokens, wall = bare_trl(args.model, recs, str(Path(args.result).parent / "bare-out"), args.batch_size,
                            args.max_length, clock=clock)
    Path(args.result).write_text(json.dumps({"non_pad_tokens": tokens, "wall_s": wall, **clock.report()}))


def run(name: str, cmd: list[str], env: dict, log: Path, timeout: int) -> tuple[bool, str]:
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
    took = time.perf_counter() - start
    tail = "" if ok else " | ".join(log.read_text().splitlines()[-3:])
    print(f"  {name}: {'ok' if ok else 'FAILED'} in {took:.0f} s{'' if ok else ' -- ' + tail[-400:]}", flush=True)
    return ok, tail


def ours_cmd(args, work: Path, tag: str, overrides: dict, zero3: bool) -> list[str]:
    base = {"student.model": str(work / "model"), "teacher.model": str(work / "model"), "train.epochs": 1,
            "train.global_batch_size": args.batch_size, "train.per_device_batch_size": args.batch_size,
            "train.max_length": args.max_length, "train.logging_steps": 1, "train.save_steps": None,
            "train.snapshot_steps": None, **overrides}
    cgd = ["-m", "cgd", "train", "--params", "params.yaml", "--overrides", json.dumps(base),
           "--method", "cgd", "--seed", "0", "--data", str(work / "rows.jsonl"),
           "--model-out", str(work / tag / "model"), "--live-dir", str(work / tag / "live"),
           "--checkpoint-dir", str(work / tag / "ckpt")]
    if not zero3:
        return [sys.executable, *cgd]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/zero3.yaml",
            "--num_processes", "1", *cgd]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dry", action="store_true", help="CPU, tiny shape, few records: the code paths only")
    p.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: llama-1b (tiny with --dry)")
    p.add_argument("--records", type=int, default=None, help="default: 512 (24 with --dry)")
    p.add_argument("--batch-size", type=int, default=None, help="rows a step; default 16 (4 with --dry)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--kit", default=".gpu", help="make gpu-kit's folder (tokenizer/, cgd_data.jsonl)")
    p.add_argument("--tokenizer", default=None, help="default: <kit>/tokenizer, else models/smollm2-135m-instruct")
    p.add_argument("--data", default=None, help="default: <kit>/cgd_data.jsonl, else data/04_refine/cgd_data.jsonl")
    p.add_argument("--work", default="runs/gpu_check/work")
    p.add_argument("--out", default=None, help="default: runs/gpu_check/<UTC time>.json")
    p.add_argument("--timeout", type=int, default=300, help="seconds per row")
    p.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_child:
        return bare_child(args)

    import torch

    from cgd.training.throughput import matmul_peak_tflops, mfu

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry:
        raise SystemExit("no CUDA device here: run `make gpu-check` on the GPU machine, or "
                         "`make gpu-check DRY=1` for the CPU dry run")
    shape = args.shape or ("tiny" if args.dry else "llama-1b")
    n_records = args.records or (24 if args.dry else 512)
    args.batch_size = args.batch_size or (4 if args.dry else 16)
    kit = Path(args.kit)
    tokenizer = args.tokenizer or (str(kit / "tokenizer") if (kit / "tokenizer").is_dir()
                                   else "models/smollm2-135m-instruct")
    data = args.data or (str(kit / "cgd_data.jsonl") if (kit / "cgd_data.jsonl").exists()
                         else "data/04_refine/cgd_data.jsonl")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    machine = facts()
    print("machine:", json.dumps(machine), flush=True)
    n_params = build_model(tokenizer, shape, work / "model")
    distinct = write_rows(data, n_records, work / "rows.jsonl")
    peak, device_name = matmul_peak_tflops()
    print(f"model: {shape}, {n_params / 1e6:.1f}M params; {n_records} CGD rows from {distinct} distinct; "
          f"batch {args.batch_size}, max_length {args.max_length}; bf16 matmul peak on {device_name}: "
          f"{peak:.1f} TFLOP/s", flush=True)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if not cuda:
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator (gloo): the ZeRO-3 path without a GPU
    off = {"train.padding_free": False, "train.liger_kernel": False, "train.attn_implementation": "sdpa"}
    rows = [("bare TRL, our batch", None, None, False),
            ("ours, levers off", "off", off, False),
            ("ours", "ours", {}, False),
            ("ours, ZeRO-3 + ckpt", "z3ckpt", {"train.deepspeed": "configs/accelerate/zero3.yaml",
                                                "train.gradient_checkpointing": True}, True),
            ("ours, ZeRO-3", "z3", {"train.deepspeed": "configs/accelerate/zero3.yaml",
                                    "train.gradient_checkpointing": False}, True)]
    results = {}
    for name, tag, overrides, zero3 in rows:
        if tag is None:
            result = work / "bare.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-child", "--model", str(work / "model"),
                   "--data", str(work / "rows.jsonl"), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length), "--result", str(result)]
            ok, tail = run(name, cmd, env, work / "bare.log", args.timeout)
            m = json.loads(result.read_text()) if ok else None
        else:
            ok, tail = run(name, ours_cmd(args, work, tag, overrides, zero3), env, work / f"{tag}.log", args.timeout)
            m = json.loads((work / tag / "live" / "metrics.json").read_text()) if ok else None
        if not ok:
            results[name] = {"error": tail}
            continue
        rate = m["non_pad_tokens"] / m["wall_s"]
        steady = m.get("steady_non_pad_tokens_per_s")
        results[name] = {
            "non_pad_tokens_per_s": round(rate, 1), "steady_non_pad_tokens_per_s": steady,
            "mfu": round(mfu(rate, n_params, peak), 4),
            "steady_mfu": round(mfu(steady, n_params, peak), 4) if steady else None,
            "first_step_s": m.get("first_step_s"),
            "padding_fraction": m.get("padding_fraction"), "final_loss": m.get("final_loss"),
            "levers": m.get("levers"), "steps": m.get("steps")}

    def rate(name, key="steady_non_pad_tokens_per_s"):
        r = results.get(name, {})
        return r.get(key) or r.get("non_pad_tokens_per_s")

    ratios = {}
    if rate("ours") and rate("bare TRL, our batch"):
        ratios["ours / bare TRL same batch"] = round(rate("ours") / rate("bare TRL, our batch"), 3)
    if rate("ours") and rate("ours, levers off"):
        ratios["ours / ours levers off"] = round(rate("ours") / rate("ours, levers off"), 3)
    judged = None
    if cuda:
        best_z3 = max((results.get(n, {}).get("steady_mfu") or 0) for n in ("ours, ZeRO-3 + ckpt", "ours, ZeRO-3"))
        got = {"ours in-process MFU": results.get("ours", {}).get("steady_mfu") or 0,
               "ours ZeRO-3 MFU": best_z3, "ours / bare TRL same batch": ratios.get("ours / bare TRL same batch", 0)}
        judged = {k: {"target": TARGETS[k], "got": got[k], "met": got[k] >= TARGETS[k]} for k in TARGETS}

    print("\n| run | tok/s | steady tok/s | MFU (steady) | padded share | first step s | final loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed | | | | | |")
            continue
        sm = f"{r['steady_mfu']:.1%}" if r["steady_mfu"] is not None else "n/a"
        print(f"| {name} | {r['non_pad_tokens_per_s']:,.0f} | {r['steady_non_pad_tokens_per_s'] or 'n/a'} | "
              f"{r['mfu']:.1%} ({sm}) | {r['padding_fraction'] if r['padding_fraction'] is not None else 'n/a'} | "
              f"{r['first_step_s']} | {r['final_loss']} |")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    if judged:
        for k, v in judged.items():
            print(f"target {k} >= {v['target']}: got {v['got']:.3g} -> {'met' if v['met'] else 'NOT met'}")
    else:
        print("targets not judged: a dry run on CPU says nothing about a GPU")
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dry": args.dry, "machine": machine,
              "shape": shape, "params": n_params, "records": n_records, "distinct_rows": distinct,
              "batch_size": args.batch_size, "max_length": args.max_length, "logging_steps": 1,
              "peak_tflops": round(peak, 2), "peak_device": device_name, "runs": results, "ratios": ratios,
              "targets": judged, "seconds": round(time.perf_counter() - started, 1)}
    out = Path(args.out or f"runs/gpu_check/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(f"written {out} ({report['seconds']:.0f} s in all)")
    if any("error" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
