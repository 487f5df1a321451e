"""Training throughput: our stage-05 training vs bare TRL SFTTrainer, on the device it runs on.

Same model, same CGD records, one epoch each, in one run, against two baselines:
- "bare TRL default": what a TRL user writes first, `SFTConfig()` with only what the device
  requires (`use_cpu=True` on CPU) and no saving or reporting: bf16 autocast, gradient
  checkpointing, batches of 8 in random order;
- "bare TRL same batch": the same SFTTrainer at our settings (batch `--batch-size`, no
  checkpointing, fp32 weights with bf16 autocast, `--max-length`), rows in random order. Ours must
  never be below it (issue 17): what we add (length grouping, completion-only LM head, logging,
  DVCLive, token counting) has to pay for itself.
Ours is `cgd.training.train.train` with params.yaml at `--batch-size` rows per step.

Prints non-pad tokens per second for each, the ratios, the padded share of our micro-batches' tokens,
and MFU: the fraction of the device's bf16
matmul peak (the GPU's where there is one, measured in the same run) that a 6 x params x tokens
training FLOP count implies. For ours it also prints the steady rate after the first optimizer step
(`steady_non_pad_tokens_per_s` in stage 05's metrics) and how long that first step took. On CUDA a
two-step warm-up run goes first, so no timed run pays for the CUDA context or Triton's compiling.
`--rounds` alternates the runs to average out a noisy machine; `--profile` prints the top kernels of
one more run of ours and of the same-batch baseline (torch.profiler, by self device time).

Needs stage-04 rows (`dvc repro refine`, or the GPU kit's `.gpu/cgd_data.jsonl`). The records are
drawn, with replacement when fewer exist, from the rows whose three generations are all present
(the CPU demo's small teacher often truncates, so its rows are recycled; the count of distinct rows
is printed). On a GPU machine with the kit of `../shared/gpu/` (random weights in a real shape):

    .venv/bin/python bench/train.py [--records 64] [--rounds 1] [--batch-size 8]
    python bench/train.py --model /tmp/smoke-model --data .gpu/cgd_data.jsonl --records 512 --batch-size 16
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch

from cgd import config as P
from cgd.runtime import io
from cgd.training import records, train
from cgd.training.throughput import bare_trl, count_params, matmul_peak_tflops


def draw_rows(data: str, n: int) -> tuple[list[dict], int]:
    """`n` stage-04 rows with all three generations, drawn with replacement (the demo keeps few), each
    with its own id; and how many distinct complete rows there were. bench/gpu_check.py draws the same."""
    complete = [r for r in io.read_jsonl(data) if r["student_answer"] and r["critique"] and r["refined_answer"]]
    if not complete:
        raise SystemExit(f"no complete rows in {data}; run `dvc repro refine` first (or `make gpu-kit`)")
    rng = random.Random(0)
    rows = [{**rng.choice(complete), "status": "ok", "in_mixture": True} for _ in range(n)]
    for i, row in enumerate(rows):
        row["id"] = f"{row['id']}#{i}"
    return rows, len(complete)


def profile(label: str, fn) -> None:
    """Runs `fn` under torch.profiler and prints its top ops by self device time (CPU time on CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=acts) as prof:
        fn()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"--- profile: {label} (sorted by {key}) ---")
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="ours and the same-batch baseline; TRL's default is 8")
    parser.add_argument("--max-length", type=int, default=None, help="default: train.max_length")
    parser.add_argument("--model", default=None, help="an HF folder; default: student.model")
    parser.add_argument("--data", default="data/04_refine/cgd_data.jsonl")
    parser.add_argument("--skip-default", action="store_true", help="leave out the bare TRL default baseline")
    parser.add_argument("--profile", action="store_true", help="print the top kernels of ours and the same-batch baseline")
    args = parser.parse_args()

    overrides = {"train.epochs": 1, "train.global_batch_size": args.batch_size,
                 "train.per_device_batch_size": args.batch_size}
    if args.model:
        overrides.update({"student.model": args.model, "teacher.model": args.model})
    if args.max_length:
        overrides["train.max_length"] = args.max_length
    cfg = P.load("params.yaml", overrides)
    model_dir, max_length = cfg.student.model, cfg.train.max_length
    rows, distinct = draw_rows(args.data, args.records)
    recs, _ = records.build(rows, "cgd", records.templates())
    print(f"{len(recs)} CGD records from {distinct} distinct complete rows; model {model_dir}; "
          f"batch {args.batch_size}, max_length {max_length}")

    runs = {} if args.skip_default else {"bare TRL default": []}
    runs.update({"bare TRL same batch": [], "ours": []})
    steady, first_steps, padded = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        io.write_jsonl(data, rows)

        def ours():
            return train.train(cfg, "cgd", 0, str(data), f"{tmp}/model", f"{tmp}/live", f"{tmp}/ckpt")

        def same_batch():
            return bare_trl(model_dir, recs, f"{tmp}/bare", args.batch_size, max_length)

        if torch.cuda.is_available():  # CUDA context, cuBLAS handles, Triton's kernels: paid here
            bare_trl(model_dir, recs, f"{tmp}/warm", args.batch_size, max_length, max_steps=2)
        for r in range(args.rounds):
            if "bare TRL default" in runs:
                runs["bare TRL default"].append(bare_trl(model_dir, recs, f"{tmp}/bare"))
            runs["bare TRL same batch"].append(same_batch())
            m = ours()
            runs["ours"].append((m["non_pad_tokens"], m["wall_s"]))
            steady.append(m["steady_non_pad_tokens_per_s"])
            padded.append((m["tokens"] - m["non_pad_tokens"], m["tokens"]))
            first_steps.append(m["first_step_s"])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1][0]} tok in {v[-1][1]:.1f} s" for k, v in runs.items())
                  + f"; ours after step 1: {m['steady_non_pad_tokens_per_s']} tok/s")
        if args.profile:
            profile("ours", ours)
            profile("bare TRL same batch", same_batch)

    peak, device_name = matmul_peak_tflops()
    n_params = count_params(model_dir)
    peak_tok_s = peak * 1e12 / (6 * n_params)
    rates = {k: sum(t for t, _ in v) / sum(s for _, s in v) for k, v in runs.items()}
    for k, rate in rates.items():
        print(f"{k:>20}: {rate:9.1f} non-pad tok/s  (MFU {rate / peak_tok_s:.1%})")
    if all(x is not None for x in steady):
        rate = sum(steady) / len(steady)
        print(f"{'ours after step 1':>20}: {rate:9.1f} non-pad tok/s  (MFU {rate / peak_tok_s:.1%}; "
              f"first step {sum(first_steps) / len(first_steps):.2f} s)")
    pad, total = (sum(x) for x in zip(*padded))
    print(f"padded share of ours' micro-batch tokens: {pad / total:.1%} ({pad} of {total}; "
          f"{args.batch_size} rows a micro-batch, grouped by length)")
    print(f"bf16 matmul peak measured now on {device_name}: {peak:.2f} TFLOP/s = {peak_tok_s:,.0f} tok/s "
          f"for {n_params / 1e6:.0f}M params")
    if "bare TRL default" in rates:
        print(f"ratio ours / bare TRL default: {rates['ours'] / rates['bare TRL default']:.2f}x (target >= 1.5x on CPU)")
    print(f"ratio ours / bare TRL same batch: {rates['ours'] / rates['bare TRL same batch']:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
