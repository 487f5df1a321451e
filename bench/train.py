"""Training throughput: our stage-05 training vs a bare TRL SFTTrainer with the default SFTConfig.

Same model (the embedded SmolLM2-135M-Instruct), same 64 CGD records, one epoch each, in one
run. The baseline is what a TRL user writes first: `SFTConfig()` with only what CPU training
requires (`use_cpu=True`) and no saving or reporting; TRL's defaults give bf16 autocast,
gradient checkpointing, batches of 8 in random order. Ours is `cgd.train.train` with params.yaml
(bf16 autocast where the CPU has it, batches grouped by length, no checkpointing on CPU) at the
same batch of 8 (`--batch-size`), so both take the same optimizer steps.

Prints non-pad tokens per second for each, the ratio (target >= 1.5x), and the fraction of the
training device's bf16 matmul peak (the GPU's where there is one) that a 6 x params x tokens
training FLOP count implies, the peak being measured in the same run. `--rounds` alternates the two to average out a noisy machine.

Needs the pipeline's stage-04 data (`dvc repro refine`). The 64 records are drawn, with
replacement when fewer exist, from the rows whose three generations are all present (the CPU
demo's small teacher often truncates, so its rows are recycled; the count of distinct rows is printed).

    .venv/bin/python bench/train.py [--records 64] [--rounds 1] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from cgd import io, records, train
from cgd import params as P


def matmul_peak_tflops(dtype=torch.bfloat16, reps: int = 8) -> tuple[float, str]:
    """bf16 matmul throughput of the device the runs trained on (the GPU where there is one: a
    CPU peak would make a GPU run read as several hundred percent of it), and the device's name."""
    cuda = torch.cuda.is_available()
    device, n = ("cuda", 8192) if cuda else ("cpu", 2048)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(reps * (10 if cuda else 1)):
        a @ b
    sync()
    flops = 2 * n ** 3 * reps * (10 if cuda else 1)
    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    return flops / (time.perf_counter() - start) / 1e12, name


def bare_trl(model_dir: str, recs: list[dict], out: str) -> tuple[int, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=out, use_cpu=not torch.cuda.is_available(), num_train_epochs=1,
                     save_strategy="no", report_to="none")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                         train_dataset=Dataset.from_list(recs),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    start = time.perf_counter()
    trainer.train()
    return trainer._total_train_tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="ours; TRL's default is 8")
    parser.add_argument("--data", default="data/04_refine/cgd_data.jsonl")
    args = parser.parse_args()

    cfg = P.load("params.yaml", {"train.epochs": 1, "train.global_batch_size": args.batch_size,
                                 "train.per_device_batch_size": args.batch_size})
    complete = [r for r in io.read_jsonl(args.data)
                if r["student_answer"] and r["critique"] and r["refined_answer"]]
    if not complete:
        raise SystemExit(f"no complete rows in {args.data}; run `dvc repro refine` first")
    rng = random.Random(0)
    rows = [{**rng.choice(complete), "status": "ok", "in_mixture": True} for _ in range(args.records)]
    for i, row in enumerate(rows):
        row["id"] = f"{row['id']}#{i}"
    recs, _ = records.build(rows, "cgd", records.templates())
    print(f"{len(recs)} CGD records from {len(complete)} distinct complete rows; model {cfg.student.model}")

    results = {"bare TRL": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        io.write_jsonl(data, rows)
        for r in range(args.rounds):
            results["bare TRL"].append(bare_trl(cfg.student.model, recs, f"{tmp}/bare"))
            m = train.train(cfg, "cgd", 0, str(data), f"{tmp}/model", f"{tmp}/live", f"{tmp}/ckpt")
            results["ours"].append((m["non_pad_tokens"], m["wall_s"]))
            print(f"round {r + 1}: bare {results['bare TRL'][-1]}, ours {results['ours'][-1]} "
                  "(non-pad tokens, seconds)")

    peak, device_name = matmul_peak_tflops()
    n_params = sum(t.numel() for t in load_file(f"{cfg.student.model}/model.safetensors").values())
    peak_tok_s = peak * 1e12 / (6 * n_params)
    rates = {k: sum(t for t, _ in v) / sum(s for _, s in v) for k, v in results.items()}
    for k, rate in rates.items():
        print(f"{k:>9}: {rate:7.1f} non-pad tok/s  (MFU {rate / peak_tok_s:.1%} of the bf16 peak)")
    print(f"bf16 matmul peak measured now on {device_name}: {peak:.2f} TFLOP/s = {peak_tok_s:,.0f} tok/s "
          f"for {n_params / 1e6:.0f}M params")
    print(f"ratio ours / bare TRL: {rates['ours'] / rates['bare TRL']:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
